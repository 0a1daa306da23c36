"""``ServeSettings``: every knob of ``safeladder serve`` in one frozen pydantic model.

The CLI flags and ``create_app`` read the same model; each knob's help is its
``Field(description=...)``. Example::

    ServeSettings(max_batch_size=128, max_wait_ms=5, api_key=os.environ["SAFELADDER_API_KEY"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from safeladder.errors import ConfigError
from safeladder.integrations.openrlhf import DEFAULT_STRIP_SUFFIXES

#: Environment variable read for the API key when no key file is given.
API_KEY_ENV = "SAFELADDER_API_KEY"


class ServeSettings(BaseModel):
    """Settings of the reward server (``safeladder serve``; ``create_app(reward, settings)``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(
        default="127.0.0.1",
        description="Interface to bind. Loopback by default; use 0.0.0.0 only behind a firewall "
        "and with an API key.",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free port).")
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Most rows coalesced from queued requests into one Reward.score call. A "
        "single request is never split, so a larger request runs as one call of its own. "
        "1 turns cross-request batching off.",
    )
    max_wait_ms: float = Field(
        default=10.0,
        ge=0.0,
        le=60_000.0,
        description="How long the first queued request waits for others to fill a batch before "
        "the batch runs anyway (under load batches fill while the previous one runs).",
    )
    scoring_process: bool = Field(
        default=False,
        description="Score in a child process instead of a thread, so a CPU-bound rule reward "
        "does not share the event loop's GIL (CPU rewards only: verifiers on a GPU and "
        "stateful terms are refused; CPU models load once more in the child).",
    )
    max_queue: int = Field(
        default=8192,
        ge=1,
        description="Most rows waiting to be scored; a request that would exceed it gets 503 "
        "with Retry-After. Size it above the trainer's concurrent rollouts (e.g. OpenRLHF's "
        "rollout batch x samples per prompt) so only real overload is refused.",
    )
    retry_after_s: int = Field(
        default=1, ge=1, description="Seconds sent in the Retry-After header of a 503."
    )
    max_request_samples: int = Field(
        default=4096,
        ge=1,
        description="Most samples in one request (more: 413). Must not exceed max_queue.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (more: 413, checked before parsing).",
    )
    request_timeout_s: float = Field(
        default=120.0,
        gt=0.0,
        description="Longest a request waits for its scores (queue + scoring); then 504. A "
        "batch already running finishes; a request still queued is dropped from the queue "
        '(counted in /metrics as safeladder_dropped_rows_total{reason="timeout"}).',
    )
    body_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        description="Longest a client may take to send its whole request body; then 408 and "
        "the connection is closed (a client that sends half a request and stalls must not "
        "hold a connection forever). Raise it for large bodies over slow links.",
    )
    keep_alive_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        description="uvicorn closes an idle keep-alive connection after this many seconds.",
    )
    stuck_batch_s: float = Field(
        default=60.0,
        gt=0.0,
        description="A Reward.score call running longer than this makes GET /health answer "
        "503 with status 'degraded' and the batch's age, so a load balancer or a watchdog "
        "sees a scorer stuck on one batch.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="If set, every endpoint needs 'Authorization: Bearer <key>' or "
        "'X-API-Key: <key>' (else 401). Read from $SAFELADDER_API_KEY or --api-key-file; "
        "never logged.",
    )
    missing_prompts: Literal["reject", "query_is_completion"] = Field(
        default="reject",
        description="/get_reward without 'prompts' (OpenRLHF >= 0.11 servers read only 'query'): "
        "'reject' answers 422, since the completion cannot be cut from the query without the "
        "prompt; 'query_is_completion' scores the whole query as the completion (empty "
        "prompt), for clients that send the response text alone.",
    )
    unscorable_reward: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="What /get_reward sends as reward and score for a row no objective term "
        "could judge (NaN total: a required term did not score, or no objective term did). None (default) sends JSON null: OpenRLHF's client then stops "
        "when it builds the experience, instead of training on a made-up number. A number "
        "(e.g. -1.0) is sent instead, by explicit choice, and extra_logs['unscorable'] marks "
        "those rows; /metrics counts them either way (safeladder_unscorable_rows_total).",
    )
    log_missing_as: Literal["null", "nan"] = Field(
        default="null",
        description="How /get_reward writes a per-term value in extra_logs that is missing (the "
        "term was not routed to the row, abstained, timed out or failed): 'null' (default) "
        "keeps every answer strict JSON; 'nan' writes the non-standard token NaN, which "
        "Python's json module (so OpenRLHF's aiohttp client) reads as float NaN -- choose it "
        "for OpenRLHF with a routed reward, since OpenRLHF turns every extra_logs value into a "
        "tensor and fails on null.",
    )
    strip_suffixes: tuple[str, ...] = Field(
        default=DEFAULT_STRIP_SUFFIXES,
        description="End-of-sequence markers removed from the end of each /get_reward "
        "completion (OpenRLHF decodes with special tokens kept), as the python-file adapter "
        "does; empty to keep the text as sent.",
    )
    default_meta: dict[str, Any] = Field(
        default_factory=dict,
        description="meta given to every /get_reward row (OpenRLHF sends no meta), e.g. "
        "{task: math} so a routed reward picks the math recipe.",
    )

    max_images_per_row: int = Field(
        default=8,
        ge=0,
        description="Most images one row may carry (its images list plus the image parts of its "
        "chat prompt); more: 413 naming the row.",
    )
    max_image_bytes: int = Field(
        default=10_000_000,
        ge=1,
        description="Largest encoded image in bytes (a data URL's decoded payload, an image "
        "file's size); more: 413 naming the row and image. The whole body is bounded by "
        "max_body_bytes as well.",
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Most pixels (width x height, read from the image header before any "
        "decoding) of one image; more: 413 naming the row and image.",
    )
    image_root: str | None = Field(
        default=None,
        description="Folder the server may read image files from: an image given as a file "
        "path (relative to this folder, or absolute inside it) is allowed only when this is "
        "set. None (default): images must be data:image URLs; a path is a 422. http(s) image "
        "URLs are never fetched.",
    )

    @model_validator(mode="after")
    def _limits_fit(self) -> ServeSettings:
        if self.max_request_samples > self.max_queue:
            raise ValueError(
                f"max_request_samples ({self.max_request_samples}) exceeds max_queue "
                f"({self.max_queue}): such a request could never be queued; lower "
                "max_request_samples or raise max_queue"
            )
        return self


def resolve_api_key(api_key_file: str | Path | None = None) -> SecretStr | None:
    """The API key from ``api_key_file`` (first line, stripped) or ``$SAFELADDER_API_KEY``.

    Returns None when neither is set. An empty key is an error (it would accept anyone who
    sends an empty header).
    """
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from exc
        lines = text.splitlines()
        key = lines[0].strip() if lines else ""
        if not key:
            raise ConfigError(f"the API key file {path} is empty")
        return SecretStr(key)
    env = os.environ.get(API_KEY_ENV)
    if env is None:
        return None
    if not env.strip():
        raise ConfigError(f"${API_KEY_ENV} is set but empty; unset it or give it a key")
    return SecretStr(env.strip())
