"""Core types shared by every part of safeladder.

``Sample`` → ``SampleBatch`` (columnar) → verifiers → ``ScoreBatch`` (one per verifier) →
``Reward`` → ``RewardResult``. Higher is better everywhere; NaN means "abstain", never 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from safeladder.errors import InputError
from safeladder.images import ImageRef, coerce_images, content_text
from safeladder.numeric import nan_to_none

Status = Literal["ok", "abstain", "timeout", "error", "skipped"]
#: Row outcomes a verifier may report. ``skipped`` is only used by ``Reward`` for rows a routed
#: term did not apply to; a verifier never returns it.
VERIFIER_STATUSES: tuple[str, ...] = ("ok", "abstain", "timeout", "error")
STATUSES: tuple[str, ...] = (*VERIFIER_STATUSES, "skipped")
_STATUS_SET = frozenset(STATUSES)

Message = dict[str, Any]
Prompt = str | list[Message]


def has_reference(value: Any) -> bool:
    """Whether a reference carries something to check against.

    None, blank strings, NaN (a missing cell of a CSV / Parquet file) and empty lists / dicts
    are "no reference"; anything else (a number, a string, a list of answers, a dict) is one.

    >>> [has_reference(v) for v in (None, "", "  ", float("nan"), [], "4", 0, ["a"])]
    [False, False, False, False, False, True, True, True]
    """
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (float, np.floating)):
        return not np.isnan(value)
    if isinstance(value, (list, tuple, dict)):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.size > 0
    return True


def _check_messages(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise InputError(
            f"{where}: expected a string or a list of chat messages, got {type(value).__name__}"
        )
    for j, msg in enumerate(value):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise InputError(
                f"{where}[{j}]: a chat message must be a mapping with 'role' and 'content', got {msg!r:.80}"
            )


def prompt_text(prompt: Prompt) -> str:
    """Plain text of a prompt: the string itself, or the message contents joined by newlines.

    A content that is a list of parts contributes its text parts only (image parts are not
    text; ``safeladder.images.prompt_images`` reads them).

    >>> prompt_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    'hi\\nyo'
    >>> prompt_text([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}])
    'what?'
    """
    if isinstance(prompt, str):
        return prompt
    return "\n".join(content_text(m.get("content")) for m in prompt)


class Sample(BaseModel):
    """One (prompt, completion, reference) row to score.

    Args:
        prompt: a string, or chat messages ``[{"role": ..., "content": ...}, ...]``.
        completion: the model's text (for conversational data, the assistant message content).
        reference: the gold answer or reference text; any JSON-like value (a string, a list of
            acceptable strings, a dict for structured answers) or None.
        meta: everything else (task label, data_source, ids); rewards route on it.
        images: image references (file paths, ``data:image/...;base64,`` URLs, bytes, PIL
            images; see ``safeladder.images``), decoded lazily by the verifiers that read them.
            A list is stored as a tuple.

    >>> Sample(prompt="1+1?", completion="2", reference="2").reference
    '2'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Prompt = ""
    completion: str
    reference: Any = None
    meta: dict[str, Any] = Field(default_factory=dict)
    images: tuple[ImageRef, ...] = ()

    @field_validator("images", mode="before")
    @classmethod
    def _images_shape(cls, value: Any) -> tuple[ImageRef, ...]:
        return coerce_images(value, "images")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        if value is None:
            return ""
        if not isinstance(value, str):
            _check_messages(value, "prompt")
        return value


@dataclass(frozen=True)
class SampleBatch:
    """A columnar batch of samples; every column has the same length.

    Build it with ``SampleBatch.from_samples`` / ``from_columns`` or ``SampleBatch.coerce``.
    """

    prompts: list[Prompt]
    completions: list[str]
    references: list[Any]
    metas: list[dict[str, Any]]
    #: per row, a tuple of image references; empty (the default) = no row has images.
    images: list[tuple[ImageRef, ...]] = field(default_factory=list)
    #: ``Sample`` views built so far (they are frozen, so every verifier of a reward can share
    #: them instead of building its own per row).
    _rows: list[Sample | None] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.completions)
        if not self.images:
            object.__setattr__(self, "images", [() for _ in range(n)])
        elif all(type(v) is tuple and not v for v in self.images):
            pass  # rows without images (a batch's take() of them): nothing to coerce
        else:
            object.__setattr__(
                self,
                "images",
                [coerce_images(v, f"row {i}: images", row=i) for i, v in enumerate(self.images)],
            )
        for name in ("prompts", "references", "metas", "images"):
            if len(getattr(self, name)) != n:
                raise InputError(
                    f"SampleBatch columns differ in length: completions has {n} rows, "
                    f"{name} has {len(getattr(self, name))}"
                )
        for i, c in enumerate(self.completions):
            if not isinstance(c, str):
                raise InputError(
                    f"row {i}: completion must be a string, got {type(c).__name__}",
                    row=i,
                    field="completion",
                )
        for i, p in enumerate(self.prompts):
            if not isinstance(p, str):
                _check_messages(p, f"row {i}: prompt")
        for i, m in enumerate(self.metas):
            if not isinstance(m, dict):
                raise InputError(
                    f"row {i}: meta must be a dict, got {type(m).__name__}", row=i, field="meta"
                )

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> SampleBatch:
        rows = list(samples)
        for i, s in enumerate(rows):
            if not isinstance(s, Sample):
                raise InputError(f"row {i}: expected a Sample, got {type(s).__name__}", row=i)
        return cls(
            prompts=[s.prompt for s in rows],
            completions=[s.completion for s in rows],
            references=[s.reference for s in rows],
            metas=[dict(s.meta) for s in rows],
            images=[s.images for s in rows],
        )

    @classmethod
    def from_columns(
        cls,
        prompts: Sequence[Prompt] | None,
        completions: Sequence[str],
        references: Sequence[Any] | None = None,
        metas: Sequence[dict[str, Any]] | None = None,
        images: Sequence[Any] | None = None,
    ) -> SampleBatch:
        """Columns in, batch out; missing columns become ``""`` / ``None`` / ``{}`` / ``()``."""
        n = len(completions)
        return cls(
            prompts=[("" if p is None else p) for p in prompts]
            if prompts is not None
            else [""] * n,
            completions=list(completions),
            references=list(references) if references is not None else [None] * n,
            metas=[dict(m) for m in metas] if metas is not None else [{} for _ in range(n)],
            images=list(images) if images is not None else [],
        )

    @classmethod
    def coerce(
        cls, samples: SampleBatch | Sample | Iterable[Sample | Mapping[str, Any]]
    ) -> SampleBatch:
        """Accept a batch, one Sample, or an iterable of Samples / sample dicts."""
        if isinstance(samples, SampleBatch):
            return samples
        if isinstance(samples, Sample):
            return cls.from_samples([samples])
        rows: list[Sample] = []
        for i, s in enumerate(samples):
            if isinstance(s, Sample):
                rows.append(s)
            elif isinstance(s, Mapping):
                try:
                    rows.append(Sample.model_validate(dict(s)))
                except Exception as exc:  # pydantic's message names the field
                    raise InputError(f"row {i}: {exc}", row=i) from exc
            else:
                raise InputError(
                    f"row {i}: expected a Sample or a dict, got {type(s).__name__}", row=i
                )
        return cls.from_samples(rows)

    def __len__(self) -> int:
        return len(self.completions)

    def __getitem__(self, i: int) -> Sample:
        rows = self._rows
        if not rows:
            rows = [None] * len(self)
            object.__setattr__(self, "_rows", rows)
        sample = rows[i]
        if sample is None:
            sample = rows[i] = Sample.model_construct(
                prompt=self.prompts[i],
                completion=self.completions[i],
                reference=self.references[i],
                meta=self.metas[i],
                images=self.images[i],
            )
        return sample

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def take(self, indices: Sequence[int] | np.ndarray) -> SampleBatch:
        """The rows at ``indices`` (in that order) as a new batch."""
        idx = [int(i) for i in indices]
        return SampleBatch(
            prompts=[self.prompts[i] for i in idx],
            completions=[self.completions[i] for i in idx],
            references=[self.references[i] for i in idx],
            metas=[self.metas[i] for i in idx],
            images=[self.images[i] for i in idx],
        )


@dataclass
class ScoreBatch:
    """One verifier's scores for a batch.

    Attributes:
        name: the verifier (or reward term) name.
        scores: float32 array, shape ``(b,)``; higher is better; NaN = no score.
        status: array of str, shape ``(b,)``, each one of ``ok | abstain | timeout | error``
            (``skipped`` only inside a ``RewardResult``). ``ok`` rows have a finite score, every
            other status has NaN.
        details: ``b`` dicts of optional per-row reasons and sub-scores (``{"reason": ...}``).
    """

    name: str
    scores: np.ndarray
    status: np.ndarray
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = self.scores.shape[0]
        self.status = np.asarray(self.status, dtype=object).reshape(-1)
        if not self.details:
            self.details = [{} for _ in range(n)]
        if self.status.shape[0] != n or len(self.details) != n:
            raise ValueError(
                f"ScoreBatch {self.name!r}: scores has {n} rows, status {self.status.shape[0]}, "
                f"details {len(self.details)}"
            )
        # Vectorised: a reward builds a few dozen of these per batch, and a per-row Python loop
        # here cost more than some rule verifiers.
        statuses = self.status.tolist()
        try:
            known = _STATUS_SET.issuperset(statuses)
        except TypeError:  # an unhashable status: found below
            known = False
        if not known:
            i = next(i for i, st in enumerate(statuses) if st not in STATUSES)
            raise ValueError(f"ScoreBatch {self.name!r} row {i}: unknown status {statuses[i]!r}")
        mismatch = (self.status == "ok") == np.isnan(self.scores)
        if mismatch.any():
            i = int(np.flatnonzero(mismatch)[0])
            raise ValueError(
                f"ScoreBatch {self.name!r} row {i}: status {statuses[i]!r} with score "
                f"{self.scores[i]}; 'ok' needs a finite score, every other status NaN"
            )

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[tuple[float, str, dict[str, Any]]]) -> ScoreBatch:
        """Build from ``(score, status, detail)`` triples."""
        return cls(
            name=name,
            scores=np.array([r[0] for r in rows], dtype=np.float32),
            status=np.array([r[1] for r in rows], dtype=object),
            details=[r[2] for r in rows],
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, indices: Sequence[int] | np.ndarray) -> ScoreBatch:
        idx = np.asarray(indices, dtype=np.int64)
        return ScoreBatch(
            self.name, self.scores[idx], self.status[idx], [self.details[i] for i in idx]
        )

    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (zeros included)."""
        return {s: int(np.sum(self.status == s)) for s in STATUSES}

    def rate(self, status: str) -> float:
        """Fraction of rows (excluding ``skipped``) with ``status``; NaN for an empty batch."""
        active = self.status != "skipped"
        n = int(np.sum(active))
        return float(np.sum(self.status[active] == status)) / n if n else float("nan")


@dataclass
class RewardResult:
    """What ``Reward.score`` returns.

    Attributes:
        total: float32 ``(b,)``; the combined reward; NaN when no objective term could score the
            row (a trainer should drop or mask it).
        terms: term name → ``ScoreBatch`` of length ``b`` (the term's scores after
            normalization and clipping, before weighting; ``skipped`` rows were not routed to it).
        raw: term name → the verifier's own ``ScoreBatch`` before normalization.
        gated: bool ``(b,)``; True where a gate vetoed the row and set ``total`` to its value.
        route: per-row recipe name, or None when the reward has no routes.
        weights: term name → weight (0 for metric-only terms).
        fingerprints: term name → fingerprint of the verifier config (and checkpoint).
        gate_by: per row, the term whose gate vetoed it, or None.
        unscorable_reason: per row, why ``total`` is NaN (a required term that did not score,
            or no objective term that scored), else None.
        reference_unread: bool ``(b,)``; True where the row carries a reference (see
            ``has_reference``) that no term applied to the row reads: a misrouted row whose
            gold answer was ignored.
        images_unread: bool ``(b,)``; True where the row carries images (``Sample.images`` or
            image parts of its chat prompt) that no term applied to the row looks at: a text
            verifier judged a response to a picture it never saw.
        row_errors: per row, the message of a verifier that raised on it (the row was isolated
            and its term has status ``error``), else None.
    """

    total: np.ndarray
    terms: dict[str, ScoreBatch]
    raw: dict[str, ScoreBatch]
    gated: np.ndarray
    route: list[str | None]
    weights: dict[str, float]
    fingerprints: dict[str, str]
    gate_by: list[str | None] = field(default_factory=list)
    unscorable_reason: list[str | None] = field(default_factory=list)
    reference_unread: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    row_errors: list[str | None] = field(default_factory=list)
    images_unread: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        n = len(self)
        if not self.gate_by:
            self.gate_by = [None] * n
        if not self.unscorable_reason:
            self.unscorable_reason = [None] * n
        if self.reference_unread.shape[0] != n:
            self.reference_unread = np.zeros(n, dtype=bool)
        if self.images_unread.shape[0] != n:
            self.images_unread = np.zeros(n, dtype=bool)
        if not self.row_errors:
            self.row_errors = [None] * n

    @property
    def unscorable(self) -> np.ndarray:
        """bool ``(b,)``: rows whose total is NaN."""
        return np.isnan(self.total)

    def __len__(self) -> int:
        return int(self.total.shape[0])

    def to_records(self, *, prefix: str = "reward") -> list[dict[str, Any]]:
        """One flat dict per row: ``reward``, ``reward/<term>``, ``status/<term>``, ``gated``, ``route``.

        Missing scores are ``None`` (JSON null), never 0. Rows that need a look also get
        ``gated_by`` (the vetoing term), ``unscorable`` (why the total is null) and
        ``reference_unread: true`` (the row's reference was read by no term) and
        ``images_unread: true`` (its images were looked at by no term).
        """

        routed = any(r is not None for r in self.route)
        records: list[dict[str, Any]] = []
        for i in range(len(self)):
            rec: dict[str, Any] = {prefix: nan_to_none(self.total[i])}
            for name, sb in self.terms.items():
                rec[f"{prefix}/{name}"] = nan_to_none(sb.scores[i])
            for name, sb in self.terms.items():
                rec[f"status/{name}"] = str(sb.status[i])
            rec["gated"] = bool(self.gated[i])
            if self.gate_by[i] is not None:
                rec["gated_by"] = self.gate_by[i]
            if self.unscorable_reason[i] is not None:
                rec["unscorable"] = self.unscorable_reason[i]
            if self.reference_unread[i]:
                rec["reference_unread"] = True
            if self.images_unread[i]:
                rec["images_unread"] = True
            if routed:
                rec["route"] = self.route[i]
            records.append(rec)
        return records

    def log_dict(self, *, prefix: str = "reward") -> dict[str, float]:
        """Batch statistics for a trainer's logger: means over scored rows, rates over routed rows."""
        out: dict[str, float] = {}
        finite = self.total[~np.isnan(self.total)]
        out[f"{prefix}/mean"] = float(finite.mean()) if finite.size else float("nan")
        out[f"{prefix}/std"] = float(finite.std()) if finite.size else float("nan")
        out[f"{prefix}/unscorable_rate"] = (
            float(np.mean(np.isnan(self.total))) if len(self) else float("nan")
        )
        out[f"{prefix}/gated_rate"] = float(np.mean(self.gated)) if len(self) else float("nan")
        out[f"{prefix}/reference_unread_rate"] = (
            float(np.mean(self.reference_unread)) if len(self) else float("nan")
        )
        out[f"{prefix}/images_unread_rate"] = (
            float(np.mean(self.images_unread)) if len(self) else float("nan")
        )
        out[f"{prefix}/row_error_rate"] = (
            float(np.mean([e is not None for e in self.row_errors])) if len(self) else float("nan")
        )
        for name, sb in self.raw.items():
            ok = sb.scores[sb.status == "ok"]
            out[f"{prefix}/{name}/mean"] = float(ok.mean()) if ok.size else float("nan")
            for st in ("abstain", "timeout", "error"):
                out[f"{prefix}/{name}/{st}_rate"] = sb.rate(st)
            # Batch-level numbers a stateful verifier reports (adaptive λ, false-certain rate):
            # the same dict on each row it ran on.
            batch_metrics: dict[str, Any] = next(
                (d["batch_metrics"] for d in sb.details if "batch_metrics" in d), {}
            )
            for key, value in batch_metrics.items():
                out[f"{prefix}/{name}/{key}"] = float(value)
        return out
