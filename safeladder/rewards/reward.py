"""``Reward``: runs each verifier once per batch on the rows that need it and combines the terms.

Order of operations per batch (every step is per row):
1. route: ``meta[routes.key]`` picks a recipe, else the row's data source (``routes.sources``),
   else its reference (``routes.with_reference``), else ``routes.default``; a term applies to
   the rows whose recipe lists it, plus ``routes.with_images`` on rows that carry images;
2. verifiers run once each (terms with identical verifier configs share one run), on the
   union of rows where their terms apply or where a term that ``requires`` them applies,
   dependencies first (a calibration term reads the correctness term's raw scores). A verifier
   that raises on a batch is retried on halves until the rows it fails on are isolated: those
   rows get status ``error`` with the message, the others are scored as usual;
3. each term's raw scores → normalization → clipping (on the rows the term applies to);
4. ``total = Σ weight·score`` over the row's objective terms that scored; NaN (unscorable,
   with the reason in ``unscorable_reason``) when none scored, when a ``required`` term did not
   score, or when a verifier raised on the row;
5. gates, in term order: the first gate whose raw score is below its threshold (or that could
   not score, with ``on_abstain: veto``) sets the row's total to the gate's value.

Rows that carry a reference (``has_reference``) that no applied term reads are flagged in
``RewardResult.reference_unread``, rows with images no applied term looks at in
``RewardResult.images_unread``; each kind is warned about once per reward
(``safeladder.rewards.unread``): a misrouted config shows itself on the first batch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from safeladder.config import apply_overrides, load_yaml, preset_path, validate
from safeladder.errors import ConfigError, InputError, SafeladderError
from safeladder.images import carries_images
from safeladder.rewards.config import RewardConfig, TermConfig
from safeladder.rewards.normalize import group_zscore, rank01, zscore
from safeladder.rewards.unread import UnreadInputs
from safeladder.types import (
    RewardResult,
    Sample,
    SampleBatch,
    ScoreBatch,
    has_reference,
    prompt_text,
)
from safeladder.verifiers.base import Verifier

logger = logging.getLogger("safeladder.rewards")


def _verifier_key(term: TermConfig) -> str:
    """Identity of a verifier run: its config without the display name."""
    payload = term.verifier.model_dump(mode="json", exclude={"name"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Reward:
    """A composed reward built from a ``RewardConfig``; see the module docstring.

    >>> r = Reward(RewardConfig(terms=[{"name": "qa", "verifier": {"type": "qa_match"}}]))
    >>> r.score([Sample(completion="Paris", reference="Paris")]).total
    array([1.], dtype=float32)
    """

    def __init__(self, config: RewardConfig):
        self.config = config
        self.terms: dict[str, TermConfig] = {t.name: t for t in config.terms}
        self.weights: dict[str, float] = {t.name: float(t.weight) for t in config.terms}
        # One verifier per distinct config: identical configs share the instance and the run.
        self._term_key: dict[str, str] = {}
        self._verifiers: dict[str, Verifier] = {}
        for t in config.terms:
            key = _verifier_key(t)
            self._term_key[t.name] = key
            if key not in self._verifiers:
                self._verifiers[key] = t.verifier.build()
        self._deps = self._resolve_dependencies()
        self._order = self._topological_order()
        self._unread = UnreadInputs(config.name)

    @property
    def term_names(self) -> list[str]:
        return list(self.terms)

    @property
    def name(self) -> str:
        return self.config.name

    def verifier(self, term: str) -> Verifier:
        """The verifier instance behind a term."""
        return self._verifiers[self._term_key[term]]

    @property
    def fingerprints(self) -> dict[str, str]:
        return {name: self.verifier(name).fingerprint for name in self.terms}

    @property
    def fingerprint(self) -> str:
        """Hash of the whole reward config (and its verifiers' checkpoints)."""
        payload = json.dumps(
            {"config": self.config.model_dump(mode="json"), "verifiers": self.fingerprints},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _resolve_dependencies(self) -> dict[str, tuple[str, ...]]:
        deps: dict[str, tuple[str, ...]] = {}
        for name in self.terms:
            needed = tuple(self.verifier(name).requires)
            for d in needed:
                if d not in self.terms:
                    raise ConfigError(
                        f"term {name!r}: its verifier reads term {d!r}, which is not a term of this reward "
                        f"(terms: {self.term_names})"
                    )
                if d == name:
                    raise ConfigError(f"term {name!r} cannot depend on itself")
            deps[name] = needed
        return deps

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                raise ConfigError(
                    f"terms depend on each other in a cycle: {' -> '.join([*path, n])}"
                )
            state[n] = 1
            for d in self._deps[n]:
                visit(d, [*path, n])
            state[n] = 2
            order.append(n)

        for n in self.terms:
            visit(n, [])
        return order

    def _routes(self, batch: SampleBatch) -> tuple[list[str | None], dict[str, np.ndarray]]:
        n = len(batch)
        routes = self.config.routes
        if routes is None:
            return [None] * n, {t: np.ones(n, dtype=bool) for t in self.terms}
        recipe_of: list[str | None] = []
        for i, meta in enumerate(batch.metas):
            try:
                recipe = self._recipe_of(meta, batch.references[i])
            except InputError as exc:
                raise InputError(f"row {i}: {exc}", row=i, field=exc.field) from None
            if recipe is None:
                raise InputError(
                    f"row {i}: meta[{routes.key!r}] = {meta.get(routes.key)!r} names no recipe "
                    f"(recipes: {sorted(routes.recipes)}), meta[{routes.source_key!r}] = "
                    f"{meta.get(routes.source_key)!r} matches no routes.sources, and "
                    "routes.default is not set",
                    row=i,
                    field=routes.key,
                )
            recipe_of.append(recipe)
        active = {t: np.zeros(n, dtype=bool) for t in self.terms}
        for i, recipe in enumerate(recipe_of):
            for t in routes.recipes[str(recipe)]:
                active[t][i] = True
            if routes.with_images and carries_images(batch.images[i], batch.prompts[i]):
                for t in routes.with_images:
                    active[t][i] = True
        return recipe_of, active

    def _recipe_of(self, meta: Mapping[str, Any], reference: Any) -> str | None:
        """The recipe of one row: its task, else its data source, else its reference, else the default."""
        routes = self.config.routes
        assert routes is not None
        value = meta.get(routes.key)
        if isinstance(value, str) and value in routes.recipes:
            return value
        source = meta.get(routes.source_key)
        if isinstance(source, str):
            for pattern, why in routes.refuse_sources.items():
                if source == pattern or fnmatch.fnmatchcase(source, pattern):
                    raise InputError(
                        f"{routes.source_key} {source!r}: {why}", field=routes.source_key
                    )
            for pattern, recipe in routes.sources.items():
                if source == pattern or fnmatch.fnmatchcase(source, pattern):
                    return recipe
        if routes.with_reference is not None and has_reference(reference):
            return routes.with_reference
        return routes.default

    def score(self, samples: SampleBatch | Iterable[Sample | Mapping[str, Any]]) -> RewardResult:
        """Score a batch.

        Args:
            samples: a ``SampleBatch`` or a list of ``Sample`` / sample dicts, length ``b``.

        Returns:
            ``RewardResult`` with ``total`` float32 ``(b,)`` and one ``ScoreBatch`` per term.
        """
        batch = SampleBatch.coerce(samples)
        n = len(batch)
        route, active = self._routes(batch)

        # Rows each term must be computed on: where it applies, plus where a dependent applies.
        needed = {t: active[t].copy() for t in self.terms}
        for t in reversed(self._order):
            for d in self._deps[t]:
                needed[d] |= needed[t]

        raw_full: dict[str, ScoreBatch] = {}
        runs: dict[str, ScoreBatch] = {}
        for t in self._order:
            key = self._term_key[t]
            if key not in runs:
                sharing = [u for u in self._order if self._term_key[u] == key]
                rows = np.flatnonzero(np.logical_or.reduce([needed[u] for u in sharing]))
                runs[key] = self._run(self._verifiers[key], batch, rows, raw_full)
            raw_full[t] = runs[key]

        terms: dict[str, ScoreBatch] = {}
        raw: dict[str, ScoreBatch] = {}
        for t, cfg in self.terms.items():
            raw[t] = _mask(raw_full[t], active[t], t)
            terms[t] = self._normalize(raw[t], active[t], cfg, batch)

        total = np.zeros(n, dtype=np.float64)
        scored = np.zeros(n, dtype=bool)
        for t, w in self.weights.items():
            if w == 0:
                continue
            s = terms[t].scores.astype(np.float64)
            m = ~np.isnan(s)
            total[m] += w * s[m]
            scored |= m
        total[~scored] = np.nan
        reasons: list[str | None] = [
            None if scored[i] else _nothing_scored(raw, self.weights, route[i], i) for i in range(n)
        ]
        row_errors: list[str | None] = [None] * n
        for t in self.terms:
            sb = raw_full[t]
            for i in np.flatnonzero(needed[t]):
                if sb.details[i].get("raised") and row_errors[i] is None:
                    row_errors[int(i)] = f"term {t!r}: {sb.details[i].get('reason')}"
        for t, cfg in self.terms.items():
            if not cfg.required:
                continue
            missed = active[t] & (raw[t].status != "ok")
            for j in np.flatnonzero(missed):
                total[j] = np.nan
                if reasons[j] is None:
                    reasons[j] = f"required term {t!r}: {_status_text(raw[t], int(j))}"
        for k, err in enumerate(row_errors):
            if err is not None:
                total[k] = np.nan
                reasons[k] = f"a verifier raised on the row: {err}"

        gated = np.zeros(n, dtype=bool)
        gate_by: list[str | None] = [None] * n
        for t, cfg in self.terms.items():
            if cfg.gate is None:
                continue
            sb = raw[t]
            applies = active[t] & ~gated
            scored_rows = sb.status == "ok"
            trip = applies & scored_rows & (sb.scores < cfg.gate.below)
            if cfg.gate.on_abstain == "veto":
                trip |= applies & ~scored_rows
            total[trip] = cfg.gate.value
            gated |= trip
            for i in np.flatnonzero(trip):
                gate_by[int(i)] = t
                reasons[int(i)] = None

        return RewardResult(
            total=total.astype(np.float32),
            terms=terms,
            raw=raw,
            gated=gated,
            route=route,
            weights=dict(self.weights),
            fingerprints=self.fingerprints,
            gate_by=gate_by,
            unscorable_reason=reasons,
            reference_unread=self._unread.references(batch, needed, self.verifier, route),
            images_unread=self._unread.images(batch, needed, self.verifier, route),
            row_errors=row_errors,
        )

    def _run(
        self,
        verifier: Verifier,
        batch: SampleBatch,
        rows: np.ndarray,
        done: Mapping[str, ScoreBatch],
    ) -> ScoreBatch:
        """Run a verifier on ``rows`` only; the result is full length, ``skipped`` elsewhere."""
        n = len(batch)
        full = ScoreBatch(
            verifier.name,
            np.full(n, np.nan, dtype=np.float32),
            np.array(["skipped"] * n, dtype=object),
            [{} for _ in range(n)],
        )
        if rows.size == 0:
            return full
        context = {d: done[d].take(rows) for d in verifier.requires}
        rows_batch = batch if rows.size == n else batch.take(rows)  # all rows: reuse its Samples
        sub = _score_isolating(verifier, rows_batch, context)
        full.scores[rows] = sub.scores
        full.status[rows] = sub.status
        for j, i in enumerate(rows):
            full.details[int(i)] = sub.details[j]
        return full

    def _normalize(
        self, sb: ScoreBatch, active: np.ndarray, cfg: TermConfig, batch: SampleBatch
    ) -> ScoreBatch:
        if cfg.normalize == "none" and cfg.clip is None:
            return sb
        rows = np.flatnonzero(active)
        x = sb.scores[rows].astype(np.float64)
        if cfg.normalize == "batch_zscore":
            x = zscore(x)
        elif cfg.normalize == "rank":
            x = rank01(x)
        elif cfg.normalize == "group_zscore":
            key = str(cfg.group_key)
            groups: list[Any] = []
            for i in rows:
                meta = batch.metas[int(i)]
                if key in meta:
                    groups.append(("group", _hashable(meta[key])))
                elif cfg.group_fallback == "prompt":
                    # Rows of one GRPO group share their prompt: group by its text.
                    groups.append(("prompt", prompt_text(batch.prompts[int(i)])))
                else:
                    index = self.term_names.index(cfg.name)
                    raise InputError(
                        f"row {int(i)}: term {cfg.name!r} normalizes by group but the row has no "
                        f"{key!r} field; add it, or --set terms.{index}.group_fallback=prompt "
                        f"(group rows by prompt text), or --set terms.{index}.normalize=none",
                        row=int(i),
                        field=key,
                    )
            x = group_zscore(x, groups)
        if cfg.clip is not None:
            x = np.clip(x, cfg.clip[0], cfg.clip[1])
        scores = sb.scores.copy()
        scores[rows] = x.astype(np.float32)
        return ScoreBatch(sb.name, scores, sb.status.copy(), sb.details)

    def save_state(self, directory: str | Path) -> Path | None:
        """Write the state of the stateful terms (adaptive λ) to ``directory/safeladder_reward_state.json``.

        Returns the file written, or None when no term has a state (nothing is written).
        """
        from safeladder.verifiers.adaptive_lambda import STATE_FILE_NAME, save_states

        named = {t: self.verifier(t) for t in self.terms}
        path = Path(directory) / STATE_FILE_NAME
        return save_states(named, path, reward=self.name, fingerprint=self.fingerprint)

    def state_metrics(self) -> dict[str, dict[str, float]]:
        """Scrape-time numbers of the stateful terms: term → its verifier's ``metrics()``
        (adaptive λ: ``lambda``, ``false_certain_rate``, ``false_certain_rate_total``,
        ``lambda_step``). Empty when no term keeps a state."""
        from safeladder.verifiers.adaptive_lambda import stateful_verifiers

        named = {t: self.verifier(t) for t in self.terms}
        out: dict[str, dict[str, float]] = {}
        for term, v in stateful_verifiers(named).items():
            read = getattr(v, "metrics", None)
            if callable(read):
                out[term] = {str(k): float(x) for k, x in read().items()}
        return out

    def load_state(self, directory: str | Path) -> list[str]:
        """Restore what ``save_state(directory)`` wrote; returns the restored term names.

        ``ConfigError`` (naming the file and terms) when the file is missing or corrupt or its
        terms are not this reward's stateful terms.
        """
        from safeladder.verifiers.adaptive_lambda import STATE_FILE_NAME, load_states

        named = {t: self.verifier(t) for t in self.terms}
        return load_states(named, Path(directory) / STATE_FILE_NAME)

    def as_trl(self, **kw: Any) -> Any:
        """Deprecated: use ``safeladder.integrations.trl.as_trl(reward)``.

        Rewards know nothing of trainers (the adapters depend on rewards, not the reverse);
        this shim stays for code written against the old README and will be removed.
        """
        warnings.warn(
            "Reward.as_trl() is deprecated; use safeladder.integrations.trl.as_trl(reward)",
            DeprecationWarning,
            stacklevel=2,
        )
        from safeladder.integrations.trl import as_trl

        return as_trl(self, **kw)

    def as_trl_terms(self, **kw: Any) -> Any:
        """Deprecated: use ``safeladder.integrations.trl.as_trl_terms(reward)`` (see ``as_trl``)."""
        warnings.warn(
            "Reward.as_trl_terms() is deprecated; use "
            "safeladder.integrations.trl.as_trl_terms(reward)",
            DeprecationWarning,
            stacklevel=2,
        )
        from safeladder.integrations.trl import as_trl_terms

        return as_trl_terms(self, **kw)

    def close(self) -> None:
        """Release every verifier's processes and models."""
        for v in self._verifiers.values():
            v.close()

    def __enter__(self) -> Reward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = ", ".join(f"{t}×{w:g}" for t, w in self.weights.items())
        return f"Reward({self.name!r}: {parts})"


def _status_text(sb: ScoreBatch, i: int) -> str:
    reason = sb.details[i].get("reason") if sb.details[i] else None
    return str(sb.status[i]) + (f" ({reason})" if reason else "")


def _nothing_scored(
    raw: Mapping[str, ScoreBatch], weights: Mapping[str, float], route: str | None, i: int
) -> str:
    """Why no objective term scored row ``i``: each applied objective term's status."""
    parts = [
        f"{name}: {_status_text(sb, i)}"
        for name, sb in raw.items()
        if weights.get(name, 0.0) != 0 and sb.status[i] != "skipped"
    ]
    on = f" on route {route!r}" if route is not None else ""
    return f"no objective term{on} could score it [" + "; ".join(parts) + "]"


def _score_isolating(
    verifier: Verifier, batch: SampleBatch, context: Mapping[str, ScoreBatch]
) -> ScoreBatch:
    """``verifier.score``, with the rows it raises on isolated by bisection.

    A failing row gets NaN, status ``error`` and ``{"reason", "raised": True}``; the rest of
    the batch is scored as usual, so one poisoned row (a lone surrogate a tokenizer rejects)
    never takes its batch down. A ``ConfigError`` is not a row's fault and propagates. Cost: a
    batch with k bad rows of n takes O(k·log n) extra calls.
    """
    try:
        return verifier.score(batch, context=context)
    except ConfigError:
        raise
    except Exception as exc:
        result = _bisect(verifier, batch, context, exc)
        failed = sum(1 for d in result.details if d.get("raised"))
        logger.warning(
            "verifier %s raised on a batch of %d rows (%s: %.200s); isolated %d failing row(s) "
            "with status 'error', scored the rest",
            verifier.name,
            len(batch),
            type(exc).__name__,
            exc,
            failed,
        )
        return result


def _bisect(
    verifier: Verifier, batch: SampleBatch, context: Mapping[str, ScoreBatch], exc: Exception
) -> ScoreBatch:
    """The rows of a batch that raised ``exc``, scored half by half."""
    n = len(batch)
    if n == 1:
        message = str(exc).removeprefix(f"{verifier.name}: row 0: ")
        reason = message if isinstance(exc, SafeladderError) else f"{type(exc).__name__}: {message}"
        return ScoreBatch(
            verifier.name,
            np.array([np.nan], dtype=np.float32),
            np.array(["error"], dtype=object),
            [{"reason": reason[:1000], "raised": True}],
        )
    parts = []
    for idx in (np.arange(0, n // 2), np.arange(n // 2, n)):
        sub, ctx = batch.take(idx), {k: v.take(idx) for k, v in context.items()}
        try:
            parts.append(verifier.score(sub, context=ctx))
        except ConfigError:
            raise
        except Exception as sub_exc:
            parts.append(_bisect(verifier, sub, ctx, sub_exc))
    return ScoreBatch(
        verifier.name,
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.status for p in parts]),
        [d for p in parts for d in p.details],
    )


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v


def _mask(sb: ScoreBatch, active: np.ndarray, name: str) -> ScoreBatch:
    """The term's view: rows it does not apply to become ``skipped``."""
    scores = sb.scores.copy()
    status = sb.status.copy()
    scores[~active] = np.nan
    status[~active] = "skipped"
    details = [d if a else {} for d, a in zip(sb.details, active, strict=True)]
    return ScoreBatch(name, scores, status, details)


def parse_reward_config(config: Any = None, overrides: Iterable[str] = ()) -> RewardConfig:
    """A validated ``RewardConfig`` from a YAML path, a dict, a config, a preset name or None.

    None is the shipped default reward (``safeladder/presets/rewards/default.yaml``). Errors
    are ``ConfigError`` naming the file and the key path.
    """
    overrides = list(overrides)
    if isinstance(config, RewardConfig) and not overrides:
        return config
    source: str | None = None
    if config is None:
        config = "default"
    if isinstance(config, RewardConfig):
        data: Any = config.model_dump(mode="json")
    elif isinstance(config, (str, Path)):
        preset = preset_path("rewards", str(config)) if isinstance(config, str) else None
        path = preset or Path(config)
        data = load_yaml(path)
        source = str(path)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ConfigError(
            f"cannot load a reward from {type(config).__name__}; pass a YAML path, a dict or None"
        )
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(RewardConfig, data, source)


def load_reward(config: Any = None, overrides: Iterable[str] = ()) -> Reward:
    """Build a ``Reward`` from a YAML path, a dict, a ``RewardConfig``, a preset name, or None (the default).

    Args:
        config: see ``parse_reward_config``.
        overrides: dotted ``key.path=value`` overrides, e.g. ``["terms.0.weight=0.5"]``.
    """
    return Reward(parse_reward_config(config, overrides))
