"""One error format for every 4xx / 5xx answer of the reward server.

Body (``schemas.ErrorResponse``)::

    {"message": "query.3: text cannot be encoded as UTF-8 (lone surrogate ...)",
     "detail": [{"loc": ["body", "query", 3], "msg": "...", "type": "unencodable_text"}]}

The same shape comes from FastAPI's own validation (422), from the body parser (400: not
UTF-8, nesting too deep, integers too long), from Starlette's HTTP errors (404, 405), from the
ASGI guard before the app runs (401, 408, 413, 503) and from unexpected bugs (500).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from safeladder.serving.schemas import ErrorResponse

logger = logging.getLogger("safeladder.serving")

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = "application/json"
_JSON_TYPE_BYTES = JSON_TYPE.encode()


class ApiError(Exception):
    """An expected failure answered as ``ErrorResponse`` with HTTP ``status``.

    ``loc`` is the path of the bad part (``["body", "query", 3]``, ``["header", "authorization"]``);
    ``type_`` a short machine-readable tag (``queue_full``, ``timeout``, ``unencodable_text``).
    """

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

    def body(self) -> bytes:
        where = where_of(self.loc)
        message = f"{where}: {self.msg}" if where else self.msg
        return error_body(message, [{"loc": self.loc, "msg": self.msg, "type": self.type}])

    def response(self) -> Response:
        return Response(
            self.body(), status_code=self.status, media_type=JSON_TYPE, headers=self.headers
        )


def error_body(message: str, items: list[dict[str, Any]]) -> bytes:
    """``{"message", "detail"}`` as strict JSON bytes (anything odd in ``items`` via ``str``)."""
    return json.dumps({"message": message, "detail": items}, default=str, allow_nan=False).encode()


def where_of(loc: list[str | int]) -> str:
    """``["body", "query", 3]`` → ``"query.3"`` (the part of the message that names the field)."""
    return ".".join(str(p) for p in loc if p != "body")


def internal_error(exc: BaseException) -> ApiError:
    """The 500 answered for a bug (an exception nothing expected)."""
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", [], "internal_error")


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """Answer ``status`` with the JSON ``body`` straight on the ASGI channel (the headers a
    ``Response(body, status, media_type=JSON_TYPE, headers=headers)`` sends)."""
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON_TYPE_BYTES)]
    if headers:
        raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ApiError) -> None:
    """Answer ``error`` straight on the ASGI channel (the guard, before the app runs; the
    fast path of ``/get_reward``)."""
    await send_json(send, error.status, error.body(), error.headers)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    if cause is None:
        return ""
    if isinstance(cause, RecursionError):
        return "nested too deeply to parse"
    return f"{type(cause).__name__}: {cause}"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for the OpenAPI docs: each status with ``ErrorResponse``."""
    what = {
        400: "The body is not parseable JSON (not UTF-8, nested too deeply, numbers too long).",
        401: "Missing or wrong API key.",
        408: "The request body did not arrive within body_timeout_s.",
        413: "Body, sample count or an image over the limits (max_body_bytes, "
        "max_request_samples, max_images_per_row, max_image_bytes, max_image_pixels); the "
        "message names the row and the image.",
        422: "A bad field or row (its path in 'loc'): wrong type, missing field, text that "
        "cannot be encoded, a row the reward rejects.",
        500: "A bug in the server or a verifier (the message says which).",
        503: "Queue full or shutting down (Retry-After says when to retry); from /health: a "
        "batch has run longer than stuck_batch_s.",
        504: "No result within request_timeout_s.",
    }
    return {c: {"model": ErrorResponse, "description": what[c]} for c in codes}


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's and Starlette's errors, and ``ApiError``, into the one format."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        items: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = items[0] if items else {"loc": [], "msg": "invalid request"}
        message = f"{where_of(list(first['loc'])) or 'body'}: {first['msg']}"
        if len(items) > 1:
            message += f" (and {len(items) - 1} more)"
        return Response(error_body(message, items), status_code=422, media_type=JSON_TYPE)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's "There was an error parsing the body" hides the reason; its cause has it
            # (UnicodeDecodeError, RecursionError, the int max-digits ValueError).
            why = _cause(exc) or str(exc.detail)
            error = ApiError(
                400, f"the body is not parseable JSON: {why}", ["body"], "invalid_body"
            )
        else:
            error = ApiError(exc.status_code, str(exc.detail), [], "http_error")
        error.headers.update(dict(exc.headers or {}))
        return error.response()

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> Response:
        # Runs in Starlette's outermost layer, which re-raises afterwards (so it is logged).
        return internal_error(exc).response()
