"""The outermost ASGI layer of the reward server: what is checked before the app parses
anything, and what every request is counted as.

In order, for each HTTP request:

1. the API key (401);
2. for a POST to a scoring endpoint, the queue: when it is full (or the server is draining),
   answer 503 with Retry-After *before reading the body*, so a client sending megabytes to an
   overloaded server is refused at once, not after its upload;
3. the body: ``Content-Length`` over ``max_body_bytes`` is 413 at once; the body is read up to
   the limit within ``body_timeout_s`` (a client that sends half a request and stalls gets 408
   and its connection closed, instead of holding a slot forever);
4. a POST whose path has a fast handler (``/get_reward``) is offered to it with the body; what
   it does not answer, and every other request, goes on to the app (FastAPI) with the body
   replayed;
5. the request is counted in ``/metrics`` with the status the client got; a client that left
   before its answer was sent counts as 499, never as a server error.

The guard wraps the whole FastAPI app (``create_app``), so none of FastAPI's own middleware
runs before it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from safeladder.serving.errors import ApiError, send_error
from safeladder.serving.metrics import CLIENT_CLOSED, Metrics
from safeladder.serving.settings import ServeSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``fast(scope, body, receive, send) -> answered``: answers a POST from its body, or returns
#: False to leave it to the app.
FastHandler = Callable[[Scope, bytes, Receive, Send], Awaitable[bool]]

#: Paths reported by name in /metrics; anything else is counted as "other" (bounded labels).
ENDPOINTS = ("/get_reward", "/score", "/health", "/metrics")
#: Endpoints that queue rows: refused before their body is read when the queue is full.
SCORING_ENDPOINTS = ("/get_reward", "/score")
#: Answers that leave the body unread close the connection (the unread bytes would otherwise
#: be parsed as the next request).
_CLOSE = {"connection": "close"}


class Guard:
    """ASGI middleware: API key, early 503, body limit and timeout, request metrics.

    Args:
        app: the ASGI app behind it.
        settings: ``api_key``, ``max_body_bytes``, ``body_timeout_s``, ``retry_after_s``.
        metrics: where requests are counted.
        refusal: called before a scoring request's body is read; returns the ``ApiError`` to
            answer instead (queue full, draining) or None.
        fast: path → handler given a POST's body once it is read (``FastHandler``): it answers
            the request itself, or returns False and the app gets it (body replayed).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ServeSettings,
        metrics: Metrics,
        refusal: Callable[[], ApiError | None],
        fast: Mapping[str, FastHandler] | None = None,
    ):
        self.app = app
        self.fast = dict(fast or {})
        self.metrics = metrics
        self.refusal = refusal
        self.max_body = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s
        self.key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status: int | None = None  # what was sent; None if the app died before answering
        gone = False  # the client disconnected before the answer started

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        async def watched(source: Receive) -> Message:
            nonlocal gone
            message = await source()
            if message["type"] == "http.disconnect" and status is None:
                gone = True
            return message

        try:
            if self.key is not None and not self._authorized(scope):
                await send_error(
                    send_status,
                    ApiError(
                        401,
                        "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                        "'X-API-Key: <key>'",
                        ["header", "authorization"],
                        "unauthorized",
                        {"www-authenticate": "Bearer"},
                    ),
                )
                return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                if path in SCORING_ENDPOINTS and (refused := self.refusal()) is not None:
                    refused.headers.update(_CLOSE)
                    await send_error(send_status, refused)
                    return
                try:
                    body = await self._read_body(scope, lambda: watched(receive))
                except ApiError as exc:
                    exc.headers.update(_CLOSE)
                    await send_error(send_status, exc)
                    return
                if body is None:
                    return  # the client left; nobody to answer
                fast = self.fast.get(path)
                if fast is not None and await fast(
                    scope, body, lambda: watched(receive), send_status
                ):
                    return
                receive = _replay(body, receive)
            await self.app(scope, lambda: watched(receive), send_status)
        finally:
            if gone:
                status = CLIENT_CLOSED
            self.metrics.count_request(
                endpoint, 500 if status is None else status, time.perf_counter() - started
            )

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

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, within the size limit and the time limit; None if the client left."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise ApiError(
                        400, "invalid Content-Length", ["header", "content-length"], "bad_header"
                    ) from None
                if declared > self.max_body:
                    raise self._too_large(declared)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        raise self._too_large(size, at_least=True)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise ApiError(
                408,
                f"the request body did not arrive within {self.body_timeout_s:g} s "
                f"({size} bytes received; body_timeout_s)",
                ["body"],
                "body_timeout",
            ) from None
        return b"".join(chunks)

    def _too_large(self, size: int, at_least: bool = False) -> ApiError:
        more = "at least " if at_least else ""
        return ApiError(
            413,
            f"request body is {more}{size} bytes; the limit is {self.max_body} (max_body_bytes)",
            ["body"],
            "body_too_large",
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the client's next events
    (so the app can still see a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
