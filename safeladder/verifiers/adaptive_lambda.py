"""An adaptive Lagrange multiplier λ held by a verifier, and the JSON that carries it across restarts.

Deliberative Searcher (arXiv 2507.16727; ``reference/papers.md`` §2) trains with
``r = r_format·(0.1·r_format + 0.9·r_acc + λ·r_reliab)`` where λ is not a constant but the
multiplier of a soft constraint, *the false-certain rate stays below ε* (a row is false-certain
when its answer is wrong and its stated confidence is ≥ ζ); their ablation found a fixed λ worse.
``AdaptiveLambda`` is that multiplier, updated by projected dual ascent once per scored batch::

    rate_t = (# false-certain rows of batch t) / (# counted rows of batch t)
    λ_{t+1} = clip(λ_t + η·(rate_t − ε), 0, λ_max)          # λ_max = ∞ when unset

- batch t is scored with λ_t, the value **before** its own update (the usual order of
  primal-dual training: the policy's reward uses the current multiplier, then the multiplier
  reacts to what the batch showed);
- counted rows are the rows the verifier scored (status ``ok``); rows that abstain or error do
  not count, and a batch with no counted row leaves the state unchanged;
- with ``min_rows: N`` the counts of successive calls accumulate until at least N rows are
  counted, and then λ takes one step on their pooled rate (for hosts that score one row per
  call); the default, 1, updates after every batch that counted a row;
- the update is a pure function of the sequence of batches (integer counts, then one float
  step), so the same stream gives the same λ trajectory, bit for bit;
- the read-score-update of one batch happens under a lock: concurrent batches are serialised
  (each is scored with the λ left by the one before it; which goes first is the callers' order).

The state (``state_dict()``: λ, the number of updates, the cumulative counts) is a small JSON
document; ``write_state_file`` / ``read_state_file`` store the states of several named holders in
one file (``Reward.save_state(dir)`` writes ``safeladder_reward_state.json`` beside a trainer's
checkpoint with them).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safeladder.errors import ConfigError

#: File name of a reward's saved state inside a checkpoint directory.
STATE_FILE_NAME = "safeladder_reward_state.json"
#: Version of the JSON layout written by ``write_state_file``.
STATE_FORMAT = 1


class AdaptiveLambdaConfig(BaseModel):
    """How λ adapts: ``λ ← clip(λ + lr·(rate − target_rate), 0, lambda_max)`` once per batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lambda_init: float = Field(
        default=0.3,
        ge=0.0,
        description=(
            "λ before the first batch (0.3 = the fixed weight of configs/reward/calibrated_qa.yaml; "
            "the paper does not publish its initial value)."
        ),
    )
    lr: float = Field(
        default=0.5,
        gt=0.0,
        description=(
            "η, the dual step: λ moves by lr·(rate − target_rate) per batch, so with lr 0.5 a "
            "batch at rate 0.45 and target 0.05 raises λ by 0.2."
        ),
    )
    target_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description=(
            "ε, the false-certain rate the constraint allows (fraction of counted rows that are "
            "wrong with confidence ≥ threshold); λ rises while a batch is above it, falls below it."
        ),
    )
    lambda_max: float | None = Field(
        default=None,
        gt=0.0,
        description="Upper bound of λ (projection onto [0, lambda_max]); null = no bound.",
    )
    min_rows: int = Field(
        default=1,
        ge=1,
        description=(
            "Update λ only once this many counted rows have accumulated since the last update "
            "(over one or more score calls; the rate is taken over all of them). 1 = once per "
            "batch; set it to the rollout batch size where the host scores one row per call "
            "(verl's per-sample compute_score, a server)."
        ),
    )
    state_file: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "A JSON file the state is loaded from when the verifier is built (if it exists) and "
            "written to after every update (atomically): persistence for hosts with no "
            "checkpoint hook (verl's compute_score, a server). One file per process."
        ),
    )

    @model_validator(mode="after")
    def _init_in_bounds(self) -> AdaptiveLambdaConfig:
        if self.lambda_max is not None and self.lambda_init > self.lambda_max:
            raise ValueError(
                f"lambda_init={self.lambda_init} is above lambda_max={self.lambda_max}; "
                "lower lambda_init or raise lambda_max"
            )
        return self


@dataclass(frozen=True)
class LambdaStep:
    """What one batch did to λ.

    Attributes:
        lam: the λ the batch was scored with (before its update).
        lam_next: λ after this call (equal to ``lam`` when it made no update).
        rate: the batch's false-certain rate; NaN when no row was counted.
        counted: rows counted; ``false_certain``: how many of them were false-certain.
        step: number of updates made so far, this call's included.
    """

    lam: float
    lam_next: float
    rate: float
    counted: int
    false_certain: int
    step: int

    def metrics(self) -> dict[str, float]:
        """Batch-level numbers for a trainer's log (``lambda`` is the λ the batch was scored with)."""
        return {
            "lambda": self.lam,
            "lambda_next": self.lam_next,
            "false_certain_rate": self.rate,
            "lambda_step": float(self.step),
        }


class AdaptiveLambda:
    """A thread-safe λ updated by projected dual ascent (see the module docstring).

    >>> lam = AdaptiveLambda(AdaptiveLambdaConfig(lambda_init=0.0, lr=1.0, target_rate=0.1))
    >>> lam.observe([True, False, False, False]).lam_next   # rate 0.25: 0 + 1·(0.25 − 0.1)
    0.15
    >>> round(lam.observe([False] * 4).lam_next, 12)        # rate 0: 0.15 − 0.1
    0.05
    >>> lam.observe([False] * 4).lam_next                   # projected onto λ ≥ 0
    0.0
    """

    def __init__(self, config: AdaptiveLambdaConfig):
        self.config = config
        self._lock = threading.Lock()
        self._lam = float(config.lambda_init)
        self._step = 0
        self._rows = 0
        self._false_certain = 0
        self._pending_rows = 0
        self._pending_false_certain = 0
        self._last: LambdaStep | None = None
        if config.state_file is not None and Path(config.state_file).is_file():
            self.load_state_dict(_read_json(Path(config.state_file)))

    @property
    def value(self) -> float:
        """The current λ (the one the next batch will be scored with)."""
        with self._lock:
            return self._lam

    def observe(self, false_certain: Sequence[bool]) -> LambdaStep:
        """Take the λ for a batch and update it from the batch's counted rows.

        Args:
            false_certain: one flag per counted row of the batch, in row order (rows that
                abstained are left out by the caller).

        Returns:
            ``LambdaStep``: ``lam`` is the value to score this batch with.
        """
        counted = len(false_certain)
        bad = sum(1 for f in false_certain if f)
        cfg = self.config
        with self._lock:
            lam = self._lam
            if counted == 0:
                return LambdaStep(lam, lam, math.nan, 0, 0, self._step)
            self._rows += counted
            self._false_certain += bad
            self._pending_rows += counted
            self._pending_false_certain += bad
            if self._pending_rows >= cfg.min_rows:
                pooled = self._pending_false_certain / self._pending_rows
                nxt = max(0.0, lam + cfg.lr * (pooled - cfg.target_rate))
                if cfg.lambda_max is not None:
                    nxt = min(nxt, cfg.lambda_max)
                self._lam = nxt
                self._step += 1
                self._pending_rows = self._pending_false_certain = 0
            step = LambdaStep(lam, self._lam, bad / counted, counted, bad, self._step)
            self._last = step
            if cfg.state_file is not None:
                # Under the lock, so the file never goes back to an older state.
                _write_json(Path(cfg.state_file), self._state_unlocked())
        return step

    def metrics(self) -> dict[str, float]:
        """Numbers for a scrape (a server's ``/metrics``): ``lambda`` (current),
        ``false_certain_rate`` (the last batch that counted a row; NaN before any),
        ``false_certain_rate_total`` (all counted rows; NaN before any), ``lambda_step``."""
        with self._lock:
            last = self._last
            return {
                "lambda": self._lam,
                "false_certain_rate": last.rate if last is not None else math.nan,
                "false_certain_rate_total": (
                    self._false_certain / self._rows if self._rows else math.nan
                ),
                "lambda_step": float(self._step),
            }

    def _state_unlocked(self) -> dict[str, Any]:
        return {
            "lambda": self._lam,
            "step": self._step,
            "rows": self._rows,
            "false_certain": self._false_certain,
            "pending_rows": self._pending_rows,
            "pending_false_certain": self._pending_false_certain,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready, enough to resume exactly: ``lambda``, ``step`` (updates made), ``rows`` /
        ``false_certain`` (counted so far), ``pending_rows`` / ``pending_false_certain`` (counted
        since the last update, waiting for ``min_rows``)."""
        with self._lock:
            return self._state_unlocked()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict()``; a malformed one raises ``ConfigError`` naming the field."""
        if not isinstance(state, Mapping):
            raise ConfigError(f"adaptive λ state must be a mapping, got {type(state).__name__}")
        names = ("step", "rows", "false_certain", "pending_rows", "pending_false_certain")
        expected = {"lambda", *names}
        if set(state) != expected:
            raise ConfigError(
                f"adaptive λ state has keys {sorted(state)}; expected {sorted(expected)}"
            )
        lam = state["lambda"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
            raise ConfigError(f"adaptive λ state: 'lambda' must be a finite number, got {lam!r}")
        if lam < 0 or (self.config.lambda_max is not None and lam > self.config.lambda_max):
            raise ConfigError(
                f"adaptive λ state: lambda={lam} is outside [0, {self.config.lambda_max or 'inf'}]"
            )
        counts = {k: state[k] for k in names}
        for key, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(
                    f"adaptive λ state: {key!r} must be a non-negative integer, got {v!r}"
                )
        for part, whole in (
            ("false_certain", "rows"),
            ("pending_false_certain", "pending_rows"),
            ("pending_rows", "rows"),
        ):
            if counts[part] > counts[whole]:
                raise ConfigError(
                    f"adaptive λ state: {part}={counts[part]} exceeds {whole}={counts[whole]}"
                )
        with self._lock:
            self._lam = float(lam)
            self._step, self._rows, self._false_certain = (
                counts["step"],
                counts["rows"],
                counts["false_certain"],
            )
            self._pending_rows = counts["pending_rows"]
            self._pending_false_certain = counts["pending_false_certain"]


@runtime_checkable
class Stateful(Protocol):
    """A verifier whose scores depend on a state it updates (``confidence_calibration`` with
    ``adaptive_lambda``); ``Reward.save_state`` / ``load_state`` carry it across restarts."""

    @property
    def stateful(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the saved state: {exc}") from exc


def write_state_file(
    path: str | Path, states: Mapping[str, Mapping[str, Any]], **header: Any
) -> Path:
    """Write ``{"format", **header, "terms": states}`` to ``path`` atomically.

    Args:
        path: the JSON file (its directory is created).
        states: term name → that term's ``state_dict()`` (plus anything identifying it).
        header: extra top-level keys, e.g. ``reward=<name>``, ``fingerprint=<hash>``.
    """
    p = Path(path)
    _write_json(p, {"format": STATE_FORMAT, **header, "terms": dict(states)})
    return p


def read_state_file(path: str | Path) -> dict[str, Any]:
    """Read a file written by ``write_state_file``; ``ConfigError`` naming the file when it is
    missing, corrupt or of another format."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no saved reward state there")
    data = _read_json(p)
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise ConfigError(
            f"{p}: not a safeladder reward state of format {STATE_FORMAT} "
            f"(format={data.get('format') if isinstance(data, dict) else None!r})"
        )
    if not isinstance(data.get("terms"), dict):
        raise ConfigError(f"{p}: 'terms' must be a mapping of term name to state")
    return data


def stateful_verifiers(named: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``named`` (term name → verifier) that carry a state, one per verifier
    instance (terms sharing a verifier share its state; the first term's name keys it)."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for name, v in named.items():
        if isinstance(v, Stateful) and v.stateful and id(v) not in seen:
            seen.add(id(v))
            out[name] = v
    return out


def save_states(named: Mapping[str, Any], path: str | Path, **header: Any) -> Path | None:
    """Write the state of every stateful verifier of ``named`` to one JSON file.

    Returns:
        the path written, or None (nothing written) when no verifier has a state.
    """
    stateful = stateful_verifiers(named)
    if not stateful:
        return None
    states = {
        name: {"fingerprint": v.fingerprint, "state": v.state_dict()}
        for name, v in stateful.items()
    }
    return write_state_file(path, states, **header)


def load_states(named: Mapping[str, Any], path: str | Path) -> list[str]:
    """Restore the stateful verifiers of ``named`` from a file written by ``save_states``.

    Every stateful term must be in the file and every term of the file must be a stateful term
    here (``ConfigError`` naming them otherwise: a silently fresh λ would undo the
    constraint's history). A term whose verifier config changed since (another ``target_rate``,
    say) is restored with a ``SafeladderWarning``. Nothing is restored unless everything is valid.

    Returns:
        the names of the restored terms.
    """
    import warnings

    from safeladder.errors import SafeladderWarning

    data = read_state_file(path)
    stateful = stateful_verifiers(named)
    saved: dict[str, Any] = data["terms"]
    missing = sorted(set(stateful) - set(saved))
    extra = sorted(set(saved) - set(stateful))
    if missing or extra:
        raise ConfigError(
            f"{path}: saved states for terms {sorted(saved)}, this reward's stateful terms are "
            f"{sorted(stateful)} (missing: {missing}, unknown: {extra}); was it saved by another reward?"
        )
    for name, v in stateful.items():
        entry = saved[name]
        if not isinstance(entry, dict) or "state" not in entry:
            raise ConfigError(f"{path}: term {name!r} has no 'state'")
        if entry.get("fingerprint") != v.fingerprint:
            warnings.warn(
                f"{path}: term {name!r} was saved by a verifier config with fingerprint "
                f"{entry.get('fingerprint')!r}, now {v.fingerprint!r}; restoring its state anyway",
                SafeladderWarning,
                stacklevel=3,
            )
    # All or nothing: a bad entry puts back the states already replaced.
    before = {name: v.state_dict() for name, v in stateful.items()}
    done: list[str] = []
    try:
        for name, v in stateful.items():
            try:
                v.load_state_dict(saved[name]["state"])
            except ConfigError as exc:
                raise ConfigError(f"{path}: term {name!r}: {exc}") from exc
            done.append(name)
    except ConfigError:
        for name in done:
            stateful[name].load_state_dict(before[name])
        raise
    return list(stateful)


__all__ = [
    "STATE_FILE_NAME",
    "AdaptiveLambda",
    "AdaptiveLambdaConfig",
    "LambdaStep",
    "Stateful",
    "load_states",
    "read_state_file",
    "save_states",
    "stateful_verifiers",
    "write_state_file",
]
