"""Between the wire and ``Reward.score``: rows cut out of a ``RewardResult``, strict JSON, and
the check that every string in a request can be encoded.

Every JSON the server sends is strict (RFC 8259): a number that is NaN or infinite goes out as
``null`` -- except ``/get_reward``'s ``extra_logs`` under the explicit ``log_missing_as: nan``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel

from safeladder.jsonsafe import jsonable as to_json_values
from safeladder.numeric import finite_or_none
from safeladder.types import Prompt, RewardResult, Sample, SampleBatch


class WireSample(NamedTuple):
    """One sample as the server queues it: ``Sample``'s fields, without building (and later
    re-checking) a pydantic model per request; ``SampleBatch`` checks the columns."""

    prompt: Prompt
    completion: str
    reference: Any
    meta: dict[str, Any]
    images: tuple[Any, ...]

    @classmethod
    def of(cls, sample: Sample) -> WireSample:
        return cls(
            sample.prompt, sample.completion, sample.reference, dict(sample.meta), sample.images
        )


def batch_of(samples: Sequence[WireSample]) -> SampleBatch:
    """The queued samples as one ``SampleBatch`` (its columns, no pydantic ``Sample`` each)."""
    images = [s.images for s in samples]
    return SampleBatch(
        prompts=[s.prompt for s in samples],
        completions=[s.completion for s in samples],
        references=[s.reference for s in samples],
        metas=[s.meta for s in samples],
        images=images if any(images) else [],  # [] = no row has images (nothing to check)
    )


@dataclass(frozen=True, slots=True)
class Row:
    """One scored row, cut out of a batch's ``RewardResult`` in the scoring thread."""

    total: float  # NaN: unscorable
    scores: tuple[float, ...]  # per term, in reward.term_names order; NaN = did not score
    statuses: tuple[str, ...]
    details: tuple[dict[str, Any], ...]
    gated: bool
    gated_by: str | None
    route: str | None
    unscorable_reason: str | None
    reference_unread: bool
    images_unread: bool


_EXACT_INT = 2.0**24  # float32 holds every integer up to this; its repr is the integer's


def floats(arr: np.ndarray) -> list[float]:
    """float32 values as the floats they print as: ``0.7`` stays 0.7, not 0.699999988079071
    (``str`` of a float32 is its shortest repr; read back it rounds to the same float32)."""
    values = arr.astype(np.float32)
    # Small whole numbers and NaN (most reward terms' values) print the same either way: only
    # the others go through the float32's shortest repr.
    return [
        v if v != v or (v.is_integer() and abs(v) <= _EXACT_INT) else float(str(x))
        for v, x in zip(values.tolist(), values, strict=True)
    ]


def rows_of(result: RewardResult, terms: Sequence[str]) -> list[Row]:
    """Per-row view of ``result`` (length ``len(result)``), terms in ``terms`` order."""
    n = len(result)
    totals = floats(result.total)
    scores = [floats(result.terms[t].scores) for t in terms]
    gate_by = result.gate_by or [None] * n
    reasons = result.unscorable_reason or [None] * n
    unread = result.reference_unread
    if unread.shape[0] != n:
        unread = np.zeros(n, dtype=bool)
    unseen = result.images_unread
    if unseen.shape[0] != n:
        unseen = np.zeros(n, dtype=bool)
    # Columns turned into per-row tuples by zip (C speed); no terms: one empty tuple per row.
    row_scores = list(zip(*scores, strict=True)) if terms else [()] * n
    row_statuses = (
        list(zip(*([str(x) for x in result.terms[t].status] for t in terms), strict=True))
        if terms
        else [()] * n
    )
    row_details = (
        list(zip(*(result.terms[t].details for t in terms), strict=True)) if terms else [()] * n
    )
    gated = result.gated.tolist()
    unread_list, unseen_list = unread.tolist(), unseen.tolist()
    return [
        Row(
            total=totals[i],
            scores=row_scores[i],
            statuses=row_statuses[i],
            details=row_details[i],
            gated=bool(gated[i]),
            gated_by=gate_by[i],
            route=result.route[i],
            unscorable_reason=reasons[i],
            reference_unread=bool(unread_list[i]),
            images_unread=bool(unseen_list[i]),
        )
        for i in range(n)
    ]


#: A finite float, else None (JSON null).
num = finite_or_none


def jsonable(x: Any) -> Any:
    """Details as strict JSON values: numpy scalars → numbers, NaN / ±inf → null, tuples →
    lists, anything else (a user's verifier may put any object there) → ``str``."""
    return to_json_values(x, default=str)


def get_reward_body(
    rows: Sequence[Row],
    terms: Sequence[str],
    *,
    unscorable_reward: float | None,
    nan_logs: bool,
    gated: bool,
) -> bytes:
    """/get_reward's answer: ``{"rewards", "scores", "extra_logs"}`` as JSON bytes. An
    unscorable total is ``unscorable_reward`` (None: null); a term's missing score is null, or
    NaN with ``nan_logs``; ``extra_logs`` adds ``unscorable`` when ``unscorable_reward`` is set
    and ``gated`` when the reward has gates -- the same keys as
    ``safeladder.integrations.openrlhf.reward_func`` (python-file mode)."""
    totals = [num(r.total) if not math.isnan(r.total) else unscorable_reward for r in rows]
    missing = float("nan") if nan_logs else None
    extra_logs: dict[str, list[float | None]] = {
        t: [s if math.isfinite(s) else missing for s in (r.scores[j] for r in rows)]
        for j, t in enumerate(terms)
    }
    if unscorable_reward is not None:
        extra_logs["unscorable"] = [float(math.isnan(r.total)) for r in rows]
    if gated:
        extra_logs["gated"] = [float(r.gated) for r in rows]
    payload = {"rewards": totals, "scores": totals, "extra_logs": extra_logs}
    return dumps(payload, allow_nan=nan_logs).encode()


def dumps(payload: Any, *, allow_nan: bool = False) -> str:
    """JSON text; strict (a NaN raises) unless ``allow_nan``."""
    return json.dumps(payload, allow_nan=allow_nan)


M = TypeVar("M", bound=BaseModel)


def json_request(scope: Mapping[str, Any], body: bytes, model: type[M]) -> M | None:
    """``body`` parsed and validated as ``model`` exactly as a FastAPI route with a ``model``
    body does it (``json.loads`` of the bytes, then the model's validation), for a body sent
    as ``application/json``; None for anything else -- another content type, JSON that does
    not parse, a body the model refuses -- so the caller can leave it to FastAPI's own
    400 / 422 answers.

    >>> from pydantic import BaseModel
    >>> class Q(BaseModel):
    ...     query: list[str]
    >>> json_request({"headers": [(b"content-type", b"application/json")]}, b'{"query": ["a"]}', Q)
    Q(query=['a'])
    >>> json_request({"headers": []}, b'{"query": ["a"]}', Q) is None  # no content type
    True
    """
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind = value.lower()
            if kind == b"application/json" or kind.startswith(b"application/json;"):
                break
            return None
    else:
        return None
    try:
        return model.model_validate(json.loads(body))
    except Exception:  # JSONDecodeError, UnicodeDecodeError, RecursionError, ValidationError
        return None


_SCALARS = (bool, int, float)


def unencodable(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    """The first string under ``value`` that cannot be encoded as UTF-8 (a lone surrogate such
    as JSON ``"\\ud800"``, which Python's JSON parser accepts and tokenizers reject), as
    ``(loc, reason)``; None when every string is fine. Dict keys count as strings.

    >>> unencodable({"query": ["ok", "bad \\ud800"]}, ["body"])
    (['body', 'query', 1], "lone surrogate '\\\\ud800' at character 4")
    """
    if isinstance(value, str):
        if value.isascii():  # O(1) in CPython: most text stops here
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            return loc, f"lone surrogate {bad!r} at character {exc.start}"
        return None
    # Cheap checks first: pydantic's isinstance(x, BaseModel) is slow, and a body is mostly
    # lists, strings, numbers and None.
    if value is None or type(value) in _SCALARS:
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = unencodable(v, [*loc, i])
            if found is not None:
                return found
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = unencodable(k, [*loc, str(k)]) or unencodable(v, [*loc, str(k)])
            if found is not None:
                return found
        return None
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found = unencodable(getattr(value, name), [*loc, name])
            if found is not None:
                return found
    return None
