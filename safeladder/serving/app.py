"""The reward server: ``create_app(reward, settings) -> FastAPI``.

Endpoints (wire formats in ``safeladder.serving.schemas``):

- ``POST /get_reward``: OpenRLHF's remote reward contract (``--reward.remote_url
  http://HOST:PORT/get_reward``). The completion is the query minus its prompt
  (``safeladder.integrations.openrlhf.split_query``; a query that does not start with its
  prompt is a 422 naming the row, never a guess), minus trailing end-of-sequence markers
  (``settings.strip_suffixes``), as the python-file adapter does; labels become the
  reference; rows get ``settings.default_meta`` as meta; the optional ``images`` field (a
  safeladder extension: one list of data URLs per query) becomes each row's images. An empty request answers empty lists
  (OpenRLHF sends empty lists to every server after the first when it shards one sample over
  several URLs). A row that could not be judged (NaN total) is ``null``, or
  ``settings.unscorable_reward`` when set -- never a plausible 0.
- ``POST /score``: native; samples in (with their ``images`` and image parts of chat
  prompts), per row the total, per-term score / status / detail, ``gated``, route, why a row
  is unscorable, plus the verifier fingerprints.

Images (``safeladder.serving.images``): data URLs, or file paths inside
``settings.image_root`` only; checked against ``max_images_per_row`` / ``max_image_bytes`` /
``max_image_pixels`` (read from the header) before the rows are queued, in a worker thread.
- ``GET /health``: terms, weights, devices, fingerprints, queue depth; 503 ``degraded`` when a
  batch has run longer than ``settings.stuck_batch_s``.
- ``GET /metrics``: Prometheus text (``safeladder.serving.metrics``); ``GET /docs``, ``/redoc``:
  the OpenAPI docs, with local assets (``safeladder.serving.docs``).

Requests are queued and coalesced across clients into one ``Reward.score`` call
(``safeladder.serving.batcher``) in a single worker thread, or in a child process with
``settings.scoring_process`` (``safeladder.serving.process_scorer``; CPU rewards). Rewards
with a term that normalizes across rows (batch / group z-score, rank) are not coalesced: each
request is scored alone, so its rows are normalized together exactly as offline. A queued
request whose client disconnected or whose wait timed out leaves the queue before it is scored.
A ``POST /get_reward`` with a plain ``application/json`` body that the model accepts is answered
by the guard without FastAPI's layers (``_Service.fast_get_reward``: the same answers, well
under half the cost per one-sample request); every other request goes through FastAPI.

Status codes, all with the ``ErrorResponse`` body (``safeladder.serving.errors``): 400 a body
that is not parseable JSON; 401 missing / wrong API key; 408 body not received within
``body_timeout_s``; 413 body over ``max_body_bytes``, more than ``max_request_samples``
samples, or an image over the image limits (the message names the row and image); 422 a bad field (the body names its path: a wrong type, a missing prompt, text that
cannot be encoded) or a row the reward rejects; 503 queue full or shutting down (with
``Retry-After``, answered before the body is read); 504 no result within
``request_timeout_s``; 500 a bug (the message says which).

Example::

    from safeladder import load_reward
    from safeladder.serving import ServeSettings, create_app
    app = create_app(load_reward(None), ServeSettings(max_batch_size=128))  # then uvicorn.run(app)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from safeladder.errors import ConfigError, InputError
from safeladder.integrations.openrlhf import RESERVED_KEYS, split_query
from safeladder.rewards import Reward
from safeladder.serving.batcher import DynamicBatcher, QueueFull, ShuttingDown
from safeladder.serving.docs import add_offline_docs
from safeladder.serving.errors import (
    JSON_TYPE,
    ApiError,
    error_responses,
    install_error_handlers,
    internal_error,
    send_error,
    send_json,
)
from safeladder.serving.guard import ASGIApp, Guard, Receive, Scope, Send
from safeladder.serving.images import ImageChecker
from safeladder.serving.metrics import CLIENT_CLOSED, CONTENT_TYPE, Metrics
from safeladder.serving.process_scorer import ScoringProcess
from safeladder.serving.schemas import (
    GetRewardRequest,
    GetRewardResponse,
    HealthResponse,
    ScoreRequest,
    ScoreResponse,
)
from safeladder.serving.settings import ServeSettings
from safeladder.serving.wire import (
    Row,
    WireSample,
    batch_of,
    dumps,
    get_reward_body,
    json_request,
    jsonable,
    num,
    rows_of,
    unencodable,
)
from safeladder.types import Sample

logger = logging.getLogger("safeladder.serving")

_SAMPLE_FIELDS = ("prompt", "completion", "reference", "meta")


class _ClientGone(Exception):
    """The client disconnected while its request waited; its rows left the queue."""


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


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (the body was read already, so the next ASGI event
    of this request is its disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _Service:
    """The endpoints' work, over one reward, one batcher and one metrics registry."""

    def __init__(self, reward: Reward, settings: ServeSettings, metrics: Metrics):
        self.reward = reward
        self.settings = settings
        self.metrics = metrics
        self.terms = list(reward.term_names)
        clash = [t for t in self.terms if t in RESERVED_KEYS]
        if clash:
            raise ConfigError(
                f"reward {reward.name!r}: term names {clash} clash with OpenRLHF's sample info "
                f"keys ({list(RESERVED_KEYS)}), where /get_reward's extra_logs end up; rename "
                "the terms"
            )
        self.has_gates = any(t.gate is not None for t in reward.config.terms)
        self.images = ImageChecker(settings)
        row_independent = all(t.normalize == "none" for t in reward.config.terms)
        self.coalesce = row_independent and settings.max_batch_size > 1
        self.batcher: DynamicBatcher[WireSample, Row] = DynamicBatcher(
            self._score_rows,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            coalesce=self.coalesce,
            on_drop=lambda rows, reason: metrics.count_dropped(rows, reason),
        )
        self.draining = False
        self.term_info: list[dict[str, Any]] = []
        self.devices: list[str] = []
        for t in self.terms:
            verifier = reward.verifier(t)
            where = devices_of(verifier)
            self.devices += [d for d in where if d not in self.devices]
            self.term_info.append(
                {
                    "name": t,
                    "weight": reward.weights[t],
                    "verifier": verifier.config.type,
                    "fingerprint": verifier.fingerprint,
                    "devices": where,
                }
            )
        self.reward_fingerprint = reward.fingerprint
        self.fingerprints = reward.fingerprints
        self.scoring = (
            ScoringProcess(reward, self.terms, self.devices) if settings.scoring_process else None
        )
        metrics.gauges(
            safeladder_queue_rows=("Rows waiting to be scored.", lambda: self.batcher.queue_rows),
            safeladder_queue_requests=("Requests waiting.", lambda: self.batcher.queue_requests),
            safeladder_running_rows=(
                "Rows in the Reward.score call running now.",
                lambda: self.batcher.running_rows,
            ),
            safeladder_batch_age_seconds=(
                "How long the running Reward.score call has run (0 when idle).",
                lambda: self.batcher.batch_age_s,
            ),
        )
        if reward.state_metrics():
            metrics.term_state(reward.state_metrics)

    # ------------------------------------------------------------------ scoring
    def _score_rows(self, samples: list[WireSample]) -> list[Row]:
        # Runs in the batcher's single worker thread. The batch is built from its columns (what
        # SampleBatch.from_samples does, without a pydantic Sample per request).
        started = time.perf_counter()
        if self.scoring is not None:
            rows = self.scoring.score(samples)
        else:
            rows = rows_of(self.reward.score(batch_of(samples)), self.terms)
        self.metrics.count_batch(
            len(samples),
            time.perf_counter() - started,
            {t: [r.statuses[j] for r in rows] for j, t in enumerate(self.terms)},
            unscorable=sum(math.isnan(r.total) for r in rows),
            gated=sum(r.gated for r in rows),
            reference_unread=sum(r.reference_unread for r in rows),
            images_unread=sum(r.images_unread for r in rows),
        )
        return rows

    def refusal(self) -> ApiError | None:
        """Why a new scoring request is refused before its body is read (or None)."""
        retry = {"retry-after": str(self.settings.retry_after_s)}
        if self.draining or self.batcher.closing:
            return ApiError(503, "the server is shutting down", [], "shutting_down", retry)
        if self.batcher.queue_rows >= self.settings.max_queue:
            return ApiError(
                503,
                f"overloaded: {self.batcher.queue_rows} rows queued (max_queue="
                f"{self.settings.max_queue})",
                [],
                "queue_full",
                retry,
            )
        return None

    def check(self, body: Any, n: int, field: str, *, plain_text: bool = False) -> None:
        """Request-level checks before queueing: sample count, text that cannot be encoded
        (skipped when ``plain_text``: the raw body was ASCII without a ``\\u`` escape, so no
        string in it can hold a lone surrogate)."""
        if n > self.settings.max_request_samples:
            raise ApiError(
                413,
                f"{n} samples; at most {self.settings.max_request_samples} per request "
                "(max_request_samples): split the request",
                ["body", field],
                "too_many_samples",
            )
        found = None if plain_text else unencodable(body, ["body"])
        if found is not None:
            loc, reason = found
            raise ApiError(
                422, f"text cannot be encoded as UTF-8: {reason}", loc, "unencodable_text"
            )

    async def run(self, samples: list[WireSample], rows_field: str, receive: Receive) -> list[Row]:
        """Queue the samples, wait for their rows; expected failures become ``ApiError``.

        The wait ends early when the client disconnects (``_ClientGone``): its rows leave the
        queue unscored if they have not started. One future per request (the batcher's), a
        timer and one task watching for the disconnect: no task or ``asyncio.wait`` around it.
        """
        settings = self.settings
        retry = {"retry-after": str(settings.retry_after_s)}
        try:
            future = self.batcher.enqueue(samples)
        except QueueFull as exc:
            raise ApiError(503, f"overloaded: {exc}", [], "queue_full", retry) from None
        except ShuttingDown as exc:
            raise ApiError(503, str(exc), [], "shutting_down", retry) from None
        stopped: list[str] = []  # why the wait was cut short: "timeout" / "disconnect"

        def stop(reason: str) -> None:
            if not future.done():
                stopped.append(reason)
                future.cancel(reason)  # the batcher drops it if still queued

        def on_gone(task: asyncio.Task[None]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved: a receive that failed means the client is gone
                stop("disconnect")

        loop = asyncio.get_running_loop()
        timer = loop.call_later(settings.request_timeout_s, stop, "timeout")
        gone = loop.create_task(_disconnected(receive))
        gone.add_done_callback(on_gone)
        try:
            return await future
        except asyncio.CancelledError:
            if not stopped:
                raise  # this handler itself was cancelled (the future went with it)
            if stopped[0] == "disconnect":
                raise _ClientGone from None
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
                    loc += [exc.field] if exc.field in _SAMPLE_FIELDS else ["meta", exc.field]
            raise ApiError(422, str(exc), loc, "input_error") from None
        except Exception as exc:
            # Reward.score isolates rows a verifier raised on; what reaches here is a bug.
            logger.exception("scoring failed")
            raise ApiError(
                500, f"scoring failed: {type(exc).__name__}: {exc}", [], "scoring_error"
            ) from None
        finally:
            timer.cancel()
            gone.remove_done_callback(on_gone)
            gone.cancel()

    # ------------------------------------------------------------------ endpoints
    async def get_reward(
        self, body: GetRewardRequest, receive: Receive, *, plain_text: bool = False
    ) -> bytes:
        """/get_reward's answer as JSON bytes; raises ``ApiError`` / ``_ClientGone``."""
        settings = self.settings
        n = len(body.query)
        self.check(body, n, "query", plain_text=plain_text)
        suffixes = settings.strip_suffixes
        if body.prompts is None:
            if settings.missing_prompts == "reject":
                raise ApiError(
                    422,
                    "field required: the completion is the query minus its prompt, so "
                    "'prompts' must be sent (or start the server with --missing-prompts "
                    "query_is_completion if each query is the response alone)",
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
        images = (
            await asyncio.to_thread(self.images.queries, body.images, prompts)
            if body.images is not None
            else [() for _ in range(n)]
        )
        meta = settings.default_meta
        samples = [
            WireSample(p, c, lab, dict(meta), im)
            for p, c, lab, im in zip(prompts, completions, labels, images, strict=True)
        ]
        rows = await self.run(samples, "query", receive)
        return get_reward_body(
            rows,
            self.terms,
            unscorable_reward=settings.unscorable_reward,
            nan_logs=settings.log_missing_as == "nan",
            gated=self.has_gates,
        )

    async def score(self, body: ScoreRequest, receive: Receive) -> bytes:
        self.check(body, len(body.samples), "samples")
        samples: list[Sample] = list(body.samples)
        if self.images.any_images(samples):
            samples = await asyncio.to_thread(self.images.samples, samples, "samples")
        rows = await self.run([WireSample.of(s) for s in samples], "samples", receive)
        results = [
            {
                "total": num(r.total),
                "gated": r.gated,
                "gated_by": r.gated_by,
                "route": r.route,
                "unscorable_reason": r.unscorable_reason,
                "reference_unread": r.reference_unread,
                "images_unread": r.images_unread,
                "terms": {
                    t: {
                        "score": num(r.scores[j]),
                        "status": r.statuses[j],
                        "detail": jsonable(r.details[j]),
                    }
                    for j, t in enumerate(self.terms)
                },
            }
            for r in rows
        ]
        payload = {
            "reward": self.reward.name,
            "reward_fingerprint": self.reward_fingerprint,
            "weights": jsonable(self.reward.weights),
            "fingerprints": self.fingerprints,
            "results": results,
        }
        return dumps(payload).encode()

    async def fast_get_reward(
        self, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> bool:
        """``POST /get_reward`` answered without FastAPI's layers (routing, dependency
        resolution, its middlewares: most of a one-sample request's cost); False leaves the
        request to the FastAPI route, which then answers it exactly as before. Only a body
        sent as ``application/json`` that FastAPI would parse and validate the same way
        (``json.loads``, then the same ``GetRewardRequest`` model) is taken here, so every
        malformed request still gets FastAPI's 400 / 422 answer."""
        request = json_request(scope, body, GetRewardRequest)
        if request is None:
            return False
        try:
            # ASCII (no NUL: not UTF-16/32, which json.loads also reads) without a "\u"
            # escape: no lone surrogate can hide in it. Most rollouts' text is.
            plain = body.isascii() and b"\\u" not in body and b"\x00" not in body
            answer = await self.get_reward(request, receive, plain_text=plain)
        except ApiError as exc:
            await send_error(send, exc)
        except _ClientGone:
            await send_json(send, CLIENT_CLOSED, b"")  # nobody reads it; counted as 499
        except Exception as exc:  # a bug: the same answer as the app's handler gives
            logger.exception("/get_reward failed")
            await send_error(send, internal_error(exc))
        else:
            await send_json(send, 200, answer)
        return True

    def health(self) -> tuple[int, dict[str, Any]]:
        from safeladder.version import __version__

        age = self.batcher.batch_age_s
        if self.draining or self.batcher.closing:
            status, code = "draining", 200
        elif age > self.settings.stuck_batch_s:
            status, code = "degraded", 503
        else:
            status, code = "ok", 200
        return code, {
            "status": status,
            "version": __version__,
            "reward": self.reward.name,
            "reward_fingerprint": self.reward_fingerprint,
            "terms": self.term_info,
            "devices": self.devices,
            "coalescing": self.coalesce,
            "max_batch_size": self.settings.max_batch_size,
            "max_wait_ms": self.settings.max_wait_ms,
            "queue": {
                "rows": self.batcher.queue_rows,
                "requests": self.batcher.queue_requests,
                "running_rows": self.batcher.running_rows,
                "max_rows": self.settings.max_queue,
                "batch_age_s": round(age, 3),
            },
        }


class _RewardApp(FastAPI):
    """FastAPI behind the guard: every HTTP request passes ``Guard`` (pure ASGI) first, which
    answers ``POST /get_reward`` itself when it can (``_Service.fast_get_reward``) and hands
    the rest to FastAPI's own stack (``inner``). Lifespan events go straight to FastAPI."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.front is not None:
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


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
    metrics = Metrics()
    service = _Service(reward, settings, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        service.draining = True
        await service.batcher.close()
        if service.scoring is not None:
            service.scoring.close()
        if close_reward:
            reward.close()

    app = _RewardApp(
        title="safeladder reward server",
        summary="Verifier-based rewards over HTTP, with cross-request dynamic batching.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=error_responses(400, 401, 408, 413, 422, 500, 503, 504),
    )
    app.state.batcher = service.batcher
    app.state.metrics = metrics
    app.state.settings = settings
    app.front = Guard(
        app.inner,
        settings=settings,
        metrics=metrics,
        refusal=service.refusal,
        fast={"/get_reward": service.fast_get_reward},
    )
    install_error_handlers(app)
    add_offline_docs(app)

    @app.exception_handler(_ClientGone)
    async def _gone(_request: Request, _exc: _ClientGone) -> Response:
        # Nobody reads this; the guard counts the request as 499 (client closed request).
        return Response(status_code=499)

    @app.post(
        "/get_reward",
        response_model=GetRewardResponse,
        summary="OpenRLHF remote reward: {query, prompts, labels[, images]} → {rewards, scores, "
        "extra_logs}",
    )
    async def get_reward(body: GetRewardRequest, request: Request) -> Response:
        # Reached only by requests the guard's fast path left alone (it answers the rest).
        return Response(await service.get_reward(body, request.receive), media_type=JSON_TYPE)

    @app.post(
        "/score",
        response_model=ScoreResponse,
        summary="Native: samples (with images) in → total, per-term scores and statuses, gated, "
        "fingerprints",
    )
    async def score(body: ScoreRequest, request: Request) -> Response:
        return Response(await service.score(body, request.receive), media_type=JSON_TYPE)

    @app.get(
        "/health",
        response_model=HealthResponse,
        summary="Terms, devices, queue depth; 503 when a batch is stuck",
    )
    async def health() -> Response:
        code, payload = service.health()
        return JSONResponse(payload, status_code=code)

    @app.get("/metrics", summary="Prometheus text exposition", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return app
