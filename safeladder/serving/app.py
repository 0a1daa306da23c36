"""The reward server: ``create_app(reward, settings) -> FastAPI``.

Endpoints (wire formats in ``safeladder.serving.schemas``):

- ``POST /get_reward``: OpenRLHF's remote reward contract (``--reward.remote_url
  http://HOST:PORT/get_reward``). The completion is the query minus its prompt
  (``safeladder.integrations.openrlhf.split_query``; a query that does not start with its
  prompt is a 422 naming the row, never a guess), minus trailing end-of-sequence markers
  (``settings.strip_suffixes``), as the python-file adapter does; labels become the
  reference; rows get ``settings.default_meta`` as meta. An empty request answers empty lists (OpenRLHF sends
  empty lists to every server after the first when it shards one sample over several URLs).
- ``POST /score``: native; samples in, per row the total, per-term score / status / detail,
  ``gated``, route, plus the verifier fingerprints.
- ``GET /health``: terms, weights, devices, fingerprints, queue depth.
- ``GET /metrics``: Prometheus text (``safeladder.serving.metrics``).

Requests are queued and coalesced across clients into one ``Reward.score`` call
(``safeladder.serving.batcher``), which runs in a single worker thread: the ``Reward`` is only
ever called from that one thread, and the event loop stays free to accept requests. Rewards
with a term that normalizes across rows (batch / group z-score, rank) are not coalesced: each
request is scored alone, so its rows are normalized together exactly as offline.

Status codes: 401 missing / wrong API key; 413 body over ``max_body_bytes`` or more than
``max_request_samples`` samples; 422 a bad field (the body names its path) or a row the reward
rejects; 503 queue full or shutting down (with ``Retry-After``); 504 no result within
``request_timeout_s``; 500 a verifier raised (the message says which).

Example::

    from safeladder import load_reward
    from safeladder.serving import ServeSettings, create_app
    app = create_app(load_reward(None), ServeSettings(max_batch_size=128))
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from safeladder.errors import ConfigError, InputError
from safeladder.integrations.openrlhf import RESERVED_KEYS, split_query
from safeladder.rewards import Reward
from safeladder.serving.batcher import DynamicBatcher, QueueFull, ShuttingDown
from safeladder.serving.metrics import Metrics
from safeladder.serving.schemas import (
    ErrorResponse,
    GetRewardRequest,
    GetRewardResponse,
    HealthResponse,
    ScoreRequest,
    ScoreResponse,
)
from safeladder.serving.settings import ServeSettings
from safeladder.types import RewardResult, Sample

logger = logging.getLogger("safeladder.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths reported by name in /metrics; anything else is counted as "other" (bounded labels).
ENDPOINTS = ("/get_reward", "/score", "/health", "/metrics")
_JSON = "application/json"


# ---------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An expected failure answered as ``ErrorResponse`` with ``status``."""

    def __init__(
        self,
        status: int,
        msg: str,
        loc: list[str | int] | None = None,
        type_: str = "error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.loc = loc or []
        self.type = type_
        self.headers = headers or {}


def _error_body(message: str, items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"message": message, "detail": items}, default=str).encode()


def _where(loc: list[str | int]) -> str:
    return ".".join(str(p) for p in loc if p != "body")


# ---------------------------------------------------------------------------- rows
@dataclass(frozen=True, slots=True)
class _Row:
    """One scored row, cut out of a batch's ``RewardResult`` in the scoring thread."""

    total: float
    scores: tuple[float, ...]  # per term, in reward.term_names order; NaN = did not score
    statuses: tuple[str, ...]
    details: tuple[dict[str, Any], ...]
    gated: bool
    gated_by: str | None
    route: str | None


def _floats(arr: np.ndarray) -> list[float]:
    # str() of a float32 is its shortest repr ("0.7"), so 0.7 goes out as 0.7, not
    # 0.699999988079071; the value read back rounds to the same float32.
    return [float(str(x)) for x in arr.astype(np.float32)]


def _rows_of(result: RewardResult, terms: list[str]) -> list[_Row]:
    n = len(result)
    totals = _floats(result.total)
    scores = [_floats(result.terms[t].scores) for t in terms]
    gate_by = result.gate_by or [None] * n
    return [
        _Row(
            total=totals[i],
            scores=tuple(s[i] for s in scores),
            statuses=tuple(str(result.terms[t].status[i]) for t in terms),
            details=tuple(result.terms[t].details[i] for t in terms),
            gated=bool(result.gated[i]),
            gated_by=gate_by[i],
            route=result.route[i],
        )
        for i in range(n)
    ]


def _jsonable(x: Any) -> Any:
    """Details as JSON: numpy scalars → numbers, NaN → null, tuples → lists, else str()."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    return str(x)


def devices_of(verifier: Any) -> list[str]:
    """Where a verifier runs: its own ``devices`` / ``device`` attribute, else its loaded
    model's (neural verifiers: ``verifier.loaded.devices``, e.g. ``["cuda:0"]``); ``[]`` for
    rule verifiers.

    >>> from types import SimpleNamespace
    >>> devices_of(SimpleNamespace(loaded=SimpleNamespace(devices=["cuda:0", "cuda:1"])))
    ['cuda:0', 'cuda:1']
    """

    def attr(obj: Any, name: str) -> Any:
        try:
            return getattr(obj, name, None)
        except Exception:  # e.g. a closed neural verifier's ``loaded`` raises
            return None

    for owner in (verifier, attr(verifier, "loaded")):
        if owner is None:
            continue
        for name in ("devices", "device"):
            value = attr(owner, name)
            if value is not None:
                items = value if isinstance(value, (list, tuple)) else [value]
                return [str(d) for d in items]
    return []


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------- ASGI guard
class _Guard:
    """Outermost ASGI layer: request metrics, API key, body size limit (before parsing)."""

    def __init__(self, app: ASGIApp, *, settings: ServeSettings, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self.max_body = settings.max_body_bytes
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = [500]  # what reached the client; 500 if the app died before answering

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            if self.key is not None and not self._authorized(scope):
                await _send_error(
                    send_status,
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                    ["header", "authorization"],
                    "unauthorized",
                    {"www-authenticate": "Bearer"},
                )
                return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                replay = await self._read_body(scope, receive, send_status)
                if replay is None:
                    return
                receive = replay
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.count_request(endpoint, status[0], time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        assert self.key is not None
        ok = False
        for name, value in scope.get("headers", []):
            candidate: bytes | None = None
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                candidate = value[7:].strip()
            elif name == b"x-api-key":
                candidate = value.strip()
            # Constant-time comparison; keep looping so timing does not say which header matched.
            if candidate is not None and hmac.compare_digest(candidate, self.key):
                ok = True
        return ok

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the whole body up to the limit; None when a response was already sent."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(
                        send,
                        400,
                        "invalid Content-Length",
                        ["header", "content-length"],
                        "bad_header",
                    )
                    return None
                if declared > self.max_body:
                    await _send_error(send, 413, *self._too_large(declared))
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, *self._too_large(size, at_least=True))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _too_large(self, size: int, at_least: bool = False) -> tuple[str, list[str | int], str]:
        more = "at least " if at_least else ""
        return (
            f"request body is {more}{size} bytes; the limit is {self.max_body} (max_body_bytes)",
            ["body"],
            "body_too_large",
        )


async def _send_error(
    send: Send,
    status: int,
    msg: str,
    loc: list[str | int],
    type_: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = _error_body(msg, [{"loc": loc, "msg": msg, "type": type_}])
    raw_headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------- the app
def create_app(
    reward: Reward, settings: ServeSettings | None = None, *, close_reward: bool = False
) -> FastAPI:
    """The reward server as an ASGI app (see the module docstring).

    Args:
        reward: the ``Reward`` to serve; the app calls ``reward.score`` from one worker thread
            only.
        settings: ``ServeSettings``; defaults when None.
        close_reward: close the reward at shutdown, after the queue is drained (``safeladder
            serve`` does: uvicorn re-raises SIGTERM after its graceful shutdown, so code after
            ``uvicorn.run`` never runs then). Otherwise the caller closes it.

    The app's state holds ``batcher`` (``DynamicBatcher``), ``metrics`` and ``settings``. The
    batcher starts with the first request; the app's lifespan shutdown drains it (every queued
    request is answered) and stops its thread.
    """
    settings = settings or ServeSettings()
    terms = list(reward.term_names)
    clash = [t for t in terms if t in RESERVED_KEYS]
    if clash:
        raise ConfigError(
            f"reward {reward.name!r}: term names {clash} clash with OpenRLHF's sample info keys "
            f"({list(RESERVED_KEYS)}), where /get_reward's extra_logs end up; rename the terms"
        )
    has_gates = any(t.gate is not None for t in reward.config.terms)
    metrics = Metrics()
    row_independent = all(t.normalize == "none" for t in reward.config.terms)
    coalesce = row_independent and settings.max_batch_size > 1

    def score_rows(samples: list[Sample]) -> list[_Row]:
        # Runs in the batcher's single worker thread.
        started = time.perf_counter()
        result = reward.score(samples)
        rows = _rows_of(result, terms)
        metrics.count_batch(
            len(samples),
            time.perf_counter() - started,
            {t: list(result.terms[t].status) for t in terms},
            unscorable=int(np.isnan(result.total).sum()),
            gated=int(result.gated.sum()),
        )
        return rows

    batcher: DynamicBatcher[Sample, _Row] = DynamicBatcher(
        score_rows,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000.0,
        max_queue=settings.max_queue,
        coalesce=coalesce,
    )
    term_info = []
    devices: list[str] = []
    for t in terms:
        verifier = reward.verifier(t)
        where = devices_of(verifier)
        devices += [d for d in where if d not in devices]
        term_info.append(
            {
                "name": t,
                "weight": reward.weights[t],
                "verifier": verifier.config.type,
                "fingerprint": verifier.fingerprint,
                "devices": where,
            }
        )
    reward_fingerprint = reward.fingerprint
    fingerprints = reward.fingerprints
    draining = False

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal draining
        yield
        draining = True
        await batcher.close()
        if close_reward:
            reward.close()

    app = FastAPI(
        title="safeladder reward server",
        summary="Verifier-based rewards over HTTP, with cross-request dynamic batching.",
        lifespan=lifespan,
        responses={
            401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
            413: {"model": ErrorResponse, "description": "Body or sample count over the limit."},
            422: {"model": ErrorResponse, "description": "A bad field or row (path in 'loc')."},
            503: {"model": ErrorResponse, "description": "Queue full or shutting down."},
            504: {"model": ErrorResponse, "description": "No result within the timeout."},
        },
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.settings = settings
    app.add_middleware(_Guard, settings=settings, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        items: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = items[0] if items else {"loc": [], "msg": "invalid request"}
        message = f"{_where(list(first['loc'])) or 'body'}: {first['msg']}"
        if len(items) > 1:
            message += f" (and {len(items) - 1} more)"
        return Response(_error_body(message, items), status_code=422, media_type=_JSON)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        where = _where(exc.loc)
        message = f"{where}: {exc.msg}" if where else exc.msg
        body = _error_body(message, [{"loc": exc.loc, "msg": exc.msg, "type": exc.type}])
        return Response(body, status_code=exc.status, media_type=_JSON, headers=exc.headers)

    def check_count(n: int, field: str) -> None:
        if n > settings.max_request_samples:
            raise ApiError(
                413,
                f"{n} samples; at most {settings.max_request_samples} per request "
                "(max_request_samples): split the request",
                ["body", field],
                "too_many_samples",
            )

    async def run(samples: list[Sample], rows_field: str) -> list[_Row]:
        """Queue the samples, wait for their rows; expected failures become ``ApiError``."""
        retry = {"retry-after": str(settings.retry_after_s)}
        try:
            return await asyncio.wait_for(batcher.submit(samples), settings.request_timeout_s)
        except QueueFull as exc:
            raise ApiError(503, f"overloaded: {exc}", [], "queue_full", retry) from None
        except ShuttingDown as exc:
            raise ApiError(503, str(exc), [], "shutting_down", retry) from None
        except TimeoutError:
            raise ApiError(
                504,
                f"no result within {settings.request_timeout_s:g} s (request_timeout_s)",
                [],
                "timeout",
            ) from None
        except InputError as exc:
            loc: list[str | int] = ["body", rows_field]
            if exc.row is not None:
                loc.append(exc.row)
                if exc.field is not None and rows_field == "samples":
                    # A field that is not a Sample field is a meta key (route / group key).
                    sample_fields = ("prompt", "completion", "reference", "meta")
                    loc += [exc.field] if exc.field in sample_fields else ["meta", exc.field]
            raise ApiError(422, str(exc), loc, "input_error") from None
        except Exception as exc:
            logger.exception("scoring failed")
            raise ApiError(
                500, f"scoring failed: {type(exc).__name__}: {exc}", [], "scoring_error"
            ) from None

    @app.post(
        "/get_reward",
        response_model=GetRewardResponse,
        summary="OpenRLHF remote reward: {query, prompts, labels} → {rewards, scores, extra_logs}",
    )
    async def get_reward(body: GetRewardRequest) -> Response:
        n = len(body.query)
        check_count(n, "query")
        suffixes = settings.strip_suffixes
        if body.prompts is None:
            if settings.missing_prompts == "reject":
                raise ApiError(
                    422,
                    "field required: the completion is the query minus its prompt, so 'prompts' "
                    "must be sent (or start the server with --missing-prompts query_is_completion "
                    "if each query is the response alone)",
                    ["body", "prompts"],
                    "missing",
                )
            prompts = [""] * n
            completions = [split_query(q, "", strip_suffixes=suffixes) for q in body.query]
        else:
            if len(body.prompts) != n:
                raise ApiError(
                    422,
                    f"has {len(body.prompts)} items but query has {n}",
                    ["body", "prompts"],
                    "length_mismatch",
                )
            prompts = list(body.prompts)
            completions = []
            for i, (q, p) in enumerate(zip(body.query, prompts, strict=True)):
                try:
                    completions.append(split_query(q, p, row=i, strip_suffixes=suffixes))
                except InputError as exc:
                    raise ApiError(422, str(exc), ["body", "query", i], "prompt_mismatch") from None
        labels = body.labels if body.labels is not None else [None] * n
        if len(labels) != n:
            raise ApiError(
                422,
                f"has {len(labels)} items but query has {n}",
                ["body", "labels"],
                "length_mismatch",
            )
        samples = [
            Sample.model_construct(
                prompt=p, completion=c, reference=lab, meta=dict(settings.default_meta)
            )
            for p, c, lab in zip(prompts, completions, labels, strict=True)
        ]
        rows = await run(samples, "query")
        fill = settings.unscorable_reward
        totals = [(r.total if not math.isnan(r.total) else fill) for r in rows]
        missing = float("nan") if settings.log_missing_as == "nan" else None
        extra_logs = {
            t: [(s if not math.isnan(s) else missing) for s in (r.scores[j] for r in rows)]
            for j, t in enumerate(terms)
        }
        # Same extra keys as safeladder.integrations.openrlhf.reward_func (python-file mode).
        if fill is not None:
            extra_logs["unscorable"] = [float(math.isnan(r.total)) for r in rows]
        if has_gates:
            extra_logs["gated"] = [float(r.gated) for r in rows]
        payload = {"rewards": totals, "scores": totals, "extra_logs": extra_logs}
        content = json.dumps(payload, allow_nan=settings.log_missing_as == "nan")
        return Response(content, media_type=_JSON)

    @app.post(
        "/score",
        response_model=ScoreResponse,
        summary="Native: samples in → total, per-term scores and statuses, gated, fingerprints",
    )
    async def score(body: ScoreRequest) -> Response:
        check_count(len(body.samples), "samples")
        rows = await run(list(body.samples), "samples")
        results = [
            {
                "total": _num(r.total),
                "gated": r.gated,
                "gated_by": r.gated_by,
                "route": r.route,
                "terms": {
                    t: {
                        "score": _num(r.scores[j]),
                        "status": r.statuses[j],
                        "detail": _jsonable(r.details[j]),
                    }
                    for j, t in enumerate(terms)
                },
            }
            for r in rows
        ]
        payload = {
            "reward": reward.name,
            "reward_fingerprint": reward_fingerprint,
            "weights": reward.weights,
            "fingerprints": fingerprints,
            "results": results,
        }
        return Response(json.dumps(payload, allow_nan=False), media_type=_JSON)

    @app.get("/health", response_model=HealthResponse, summary="Terms, devices, queue depth")
    async def health() -> dict[str, Any]:
        from safeladder import __version__

        return {
            "status": "draining" if draining or batcher.closing else "ok",
            "version": __version__,
            "reward": reward.name,
            "reward_fingerprint": reward_fingerprint,
            "terms": term_info,
            "devices": devices,
            "coalescing": coalesce,
            "max_batch_size": settings.max_batch_size,
            "max_wait_ms": settings.max_wait_ms,
            "queue": {
                "rows": batcher.queue_rows,
                "requests": batcher.queue_requests,
                "running_rows": batcher.running_rows,
                "max_rows": settings.max_queue,
            },
        }

    @app.get("/metrics", summary="Prometheus text exposition", response_class=Response)
    async def prometheus() -> Response:
        text = metrics.render(
            {
                "safeladder_queue_rows": ("Rows waiting to be scored.", batcher.queue_rows),
                "safeladder_queue_requests": ("Requests waiting.", batcher.queue_requests),
                "safeladder_running_rows": (
                    "Rows in the Reward.score call running now.",
                    batcher.running_rows,
                ),
            }
        )
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
