"""Wire formats of the reward server (pydantic, frozen, ``extra="forbid"``: an unknown key is a
422 naming it, never silently ignored).

``POST /get_reward`` (OpenRLHF's remote reward contract; client ``openrlhf/utils/agent.py``
``SingleTurnAgentExecutor._fetch_rewards_via_http``, server ``openrlhf/cli/serve_rm.py``)::

    {"query": ["<prompt><completion>"], "prompts": ["<prompt>"], "labels": ["72"]}
    -> {"rewards": [1.0], "scores": [1.0], "extra_logs": {"math_correct": [1.0], ...}}

    safeladder extension: "images": [["data:image/png;base64,..."], null, ...] (one list per
    query; OpenRLHF itself sends none)

``POST /score`` (native)::

    {"samples": [{"prompt": "1+1?", "completion": "2", "reference": "2", "meta": {"task": "math"},
                  "images": ["data:image/png;base64,..."]}]}
    -> {"reward": "default", "reward_fingerprint": "...", "weights": {...}, "fingerprints": {...},
        "results": [{"total": 1.0, "gated": false, "gated_by": null, "route": "math",
                     "terms": {"math_correct": {"score": 1.0, "status": "ok", "detail": {...}}}}]}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from safeladder.types import Prompt, Sample

_IMAGES_HELP = (
    "data:image/<type>;base64,<payload> URLs, or file paths when the server's image_root is "
    "set (relative to it; paths outside it are refused); http(s) URLs are never fetched. Limits "
    "(413 naming the row and image past them): max_images_per_row (the prompt's image parts "
    "count too), max_image_bytes, max_image_pixels. An image that cannot be decoded is that "
    "row's error (status 'error' on the image terms), not a failed request."
)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GetRewardRequest(_Wire):
    """OpenRLHF's payload: one query per rollout, with its prompt and label."""

    query: list[str] = Field(
        description="Full decoded texts, prompt + response (special tokens kept)."
    )
    prompts: list[str] | None = Field(
        default=None,
        description="The prompt of each query; the completion is the query minus this prefix.",
    )
    labels: list[Any] | None = Field(
        default=None, description="The dataset label of each query; becomes the reference."
    )
    images: list[list[str] | None] | None = Field(
        default=None,
        description="safeladder extension (OpenRLHF sends none): the images of each query, one "
        "list (or null) per query; they become the row's images. " + _IMAGES_HELP,
    )


class GetRewardResponse(_Wire):
    """OpenRLHF's answer. ``rewards`` and ``scores`` hold the same totals (as OpenRLHF's own
    ``serve_rm`` does); a row no term could score is ``null`` (or the configured
    ``unscorable_reward``). ``extra_logs`` has every term on every response (OpenRLHF merges
    experiences key by key), a missing value written per ``log_missing_as``; plus
    ``unscorable`` (1/0) when ``unscorable_reward`` is set and ``gated`` (1/0) when the reward
    has gates -- the same keys as ``safeladder.integrations.openrlhf.reward_func``."""

    rewards: list[float | None]
    scores: list[float | None]
    extra_logs: dict[str, list[float | None]]


class ScoreSample(Sample):
    """A ``Sample`` on the wire: the prompt is required (a row without one is a bad row, never
    an empty prompt)."""

    prompt: Prompt = Field(
        description="A string, or chat messages [{role, content}, ...]; a content may be a list "
        'of parts: {"type": "text", "text": ...}, {"type": "image"} (a placeholder for the next '
        'of images), {"type": "image", "image": URL} or {"type": "image_url", "image_url": '
        '{"url": URL}}.'
    )
    images: tuple[str, ...] = Field(default=(), description="The row's images: " + _IMAGES_HELP)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("the prompt is required: a string or a list of chat messages")
        try:  # Sample's own checks of chat messages, reported at this field's path
            return Sample.model_validate({"prompt": value, "completion": ""}).prompt
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


class ScoreRequest(_Wire):
    """Native request: samples in ``safeladder.Sample`` form."""

    samples: list[ScoreSample] = Field(
        description="Rows to score: prompt, completion, reference, meta, images."
    )


class TermScore(_Wire):
    score: float | None = Field(
        description="The term's score (after normalization); null when it did not score."
    )
    status: str = Field(description="ok | abstain | timeout | error | skipped (not routed).")
    detail: dict[str, Any] = Field(default_factory=dict, description="The verifier's reasons.")


class RowScore(_Wire):
    total: float | None = Field(
        description="The reward; null when the row could not be judged (see unscorable_reason)."
    )
    gated: bool = Field(description="A gate vetoed the row and set its total.")
    gated_by: str | None = Field(default=None, description="The gate term that tripped.")
    route: str | None = Field(default=None, description="The recipe the row was routed to.")
    unscorable_reason: str | None = Field(
        default=None, description="Why total is null (a required term did not score, ...)."
    )
    reference_unread: bool = Field(
        default=False, description="The row carried a reference that no term read."
    )
    images_unread: bool = Field(
        default=False,
        description="The row carried images (its images or image parts of its prompt) that no "
        "term looked at: a text-only judgement of an answer to a picture.",
    )
    terms: dict[str, TermScore]


class ScoreResponse(_Wire):
    reward: str = Field(description="The reward config's name.")
    reward_fingerprint: str
    weights: dict[str, float]
    fingerprints: dict[str, str] = Field(description="Term → verifier config fingerprint.")
    results: list[RowScore]


class TermInfo(_Wire):
    name: str
    weight: float
    verifier: str = Field(description="The verifier's type tag.")
    fingerprint: str
    devices: list[str] = Field(
        default_factory=list, description="Where a neural verifier runs (empty for rules)."
    )


class QueueInfo(_Wire):
    rows: int = Field(description="Rows waiting to be scored.")
    requests: int = Field(description="Requests waiting.")
    running_rows: int = Field(description="Rows in the scoring call running now.")
    max_rows: int
    batch_age_s: float = Field(
        description="How long the running Reward.score call has run (0 when idle)."
    )


class HealthResponse(_Wire):
    status: str = Field(
        description="ok; degraded (HTTP 503) when a batch has run longer than stuck_batch_s; "
        "draining during shutdown."
    )
    version: str
    reward: str
    reward_fingerprint: str
    terms: list[TermInfo]
    devices: list[str] = Field(description="Every device any verifier runs on.")
    coalescing: bool = Field(
        description="Requests are merged into shared batches (false when a term normalizes "
        "across rows, or with max_batch_size 1)."
    )
    max_batch_size: int
    max_wait_ms: float
    queue: QueueInfo


class ErrorItem(_Wire):
    loc: list[str | int] = Field(description="Path of the bad field, e.g. ['body', 'query', 3].")
    msg: str
    type: str


class ErrorResponse(_Wire):
    """Every 4xx / 5xx body: ``detail`` lists what was wrong and where."""

    message: str
    detail: list[ErrorItem]
