"""The reward server (``safeladder serve``): FastAPI + uvicorn with cross-request batching.

``ServeSettings`` imports without FastAPI; ``create_app`` needs the ``serve`` extra
(``pip install 'safeladder[serve]'``). Modules: ``app`` (wiring and endpoints), ``guard``
(API key, early 503, body limits and timeouts), ``batcher`` (cross-request batching),
``errors`` (the one error format), ``wire`` (strict-JSON rows), ``metrics``, ``docs``
(offline Swagger UI / ReDoc), ``settings``, ``schemas``, ``ray_serve``.

Layer: imports the layers below (types … rewards) and ``integrations.openrlhf``'s query split;
never the CLI or the package root.

>>> from safeladder.serving import ServeSettings
>>> ServeSettings().host
'127.0.0.1'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeladder.serving.settings import API_KEY_ENV, ServeSettings, resolve_api_key

if TYPE_CHECKING:
    from safeladder.serving.app import create_app

__all__ = ["API_KEY_ENV", "ServeSettings", "create_app", "resolve_api_key"]


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra: import the app only when it is asked for.
    if name == "create_app":
        from safeladder.serving.app import create_app

        return create_app
    raise AttributeError(f"module 'safeladder.serving' has no attribute {name!r}")
