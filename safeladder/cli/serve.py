"""``safeladder serve [CONFIG]``: the reward server (``safeladder.serving``) over HTTP, or on Ray
Serve with ``--ray``.

Knob help comes from ``ServeSettings``' field descriptions, so it is written once; flags
override ``--settings YAML``, which overrides the defaults.

Examples::

    safeladder serve rewards.yaml --port 8000
    safeladder serve --settings configs/serve/openrlhf.yaml --meta task=math
    safeladder serve rewards.yaml --ray --gpus-per-replica 1
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeladder.cli.base import Overrides, RewardConfig, app, cli_errors
from safeladder.cli.errors import EXIT_USAGE, CliError


class Batching(StrEnum):
    on = "on"
    off = "off"


class MissingPrompts(StrEnum):
    reject = "reject"
    query_is_completion = "query_is_completion"


class LogMissingAs(StrEnum):
    null = "null"
    nan = "nan"


def _serve_help(field: str) -> str:
    from safeladder.serving.settings import ServeSettings

    return ServeSettings.model_fields[field].description or ""


def _serve_default(field: str) -> str:
    from safeladder.serving.settings import ServeSettings

    value = ServeSettings.model_fields[field].default
    return "null" if value is None else str(value)


@app.command()
def serve(
    config: RewardConfig = None,
    settings_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            metavar="YAML",
            help="Server settings as YAML (the ServeSettings fields, e.g. configs/serve/"
            "openrlhf.yaml); flags given on the command line override them.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help=_serve_help("host"), show_default=_serve_default("host"))
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help=_serve_help("port"), show_default=_serve_default("port")
        ),
    ] = None,
    overrides: Overrides = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="ROWS",
            help=_serve_help("max_batch_size"),
            show_default=_serve_default("max_batch_size"),
        ),
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="MS",
            help=_serve_help("max_wait_ms"),
            show_default=_serve_default("max_wait_ms"),
        ),
    ] = None,
    batching: Annotated[
        Batching,
        typer.Option(help="'off' scores every request alone (max_batch_size 1), for comparison."),
    ] = Batching.on,
    scoring_process: Annotated[
        bool,
        typer.Option(
            "--scoring-process",
            help=_serve_help("scoring_process"),
        ),
    ] = False,
    max_queue: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="ROWS",
            help=_serve_help("max_queue"),
            show_default=_serve_default("max_queue"),
        ),
    ] = None,
    max_request_samples: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help=_serve_help("max_request_samples"),
            show_default=_serve_default("max_request_samples"),
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            min=1024,
            metavar="BYTES",
            help=_serve_help("max_body_bytes"),
            show_default=_serve_default("max_body_bytes"),
        ),
    ] = None,
    request_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help=_serve_help("request_timeout_s"),
            show_default=_serve_default("request_timeout_s"),
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="File whose first line is the API key (else $SAFELADDER_API_KEY; neither: "
            "no key required). The key is never logged.",
        ),
    ] = None,
    missing_prompts: Annotated[
        MissingPrompts | None,
        typer.Option(
            help=_serve_help("missing_prompts"),
            show_default=_serve_default("missing_prompts"),
        ),
    ] = None,
    unscorable_reward: Annotated[
        float | None,
        typer.Option(
            metavar="VALUE",
            help=_serve_help("unscorable_reward"),
            show_default=_serve_default("unscorable_reward"),
        ),
    ] = None,
    log_missing_as: Annotated[
        LogMissingAs | None,
        typer.Option(
            help=_serve_help("log_missing_as"),
            show_default=_serve_default("log_missing_as"),
        ),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help=_serve_help("body_timeout_s"),
            show_default=_serve_default("body_timeout_s"),
        ),
    ] = None,
    keep_alive_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help=_serve_help("keep_alive_timeout_s"),
            show_default=_serve_default("keep_alive_timeout_s"),
        ),
    ] = None,
    stuck_batch: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            help=_serve_help("stuck_batch_s"),
            show_default=_serve_default("stuck_batch_s"),
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help=_serve_help("image_root"),
            show_default=_serve_default("image_root"),
        ),
    ] = None,
    max_images_per_row: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help=_serve_help("max_images_per_row"),
            show_default=_serve_default("max_images_per_row"),
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta",
            metavar="KEY=VALUE",
            help="meta given to every /get_reward row (OpenRLHF sends none), e.g. --meta "
            "task=math for a routed reward; repeatable.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line per request (off by default: /metrics counts requests, and a "
            "line per one-sample request costs CPU).",
        ),
    ] = False,
    # --- scaling out (safeladder.serving.ray_serve) ---
    on_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Deploy on Ray Serve ($RAY_ADDRESS, else a local Ray): replicas, each with its "
            "own reward and batcher, behind Ray's HTTP proxy on --host/--port (needs pip "
            "install 'safeladder[ray]').",
        ),
    ] = False,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="--ray: replicas (default: one per --gpus-per-replica GPUs of the cluster, "
            "else 1).",
        ),
    ] = None,
    gpus_per_replica: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="G",
            help="--ray: GPUs each replica reserves (1: one replica per GPU; default 0).",
        ),
    ] = None,
) -> None:
    """Serve a reward over HTTP: POST /get_reward (OpenRLHF), POST /score, GET /health, /metrics."""
    from safeladder.config import apply_overrides, load_yaml, validate
    from safeladder.rewards import load_reward
    from safeladder.serving.settings import ServeSettings, resolve_api_key

    with cli_errors():
        try:
            import uvicorn

            from safeladder.serving.app import create_app
        except ImportError as exc:
            raise CliError(
                f"safeladder serve needs FastAPI and uvicorn ({exc}); install them with: "
                "pip install 'safeladder[serve]'",
                EXIT_USAGE,
            ) from None
        knobs: dict[str, Any] = load_yaml(settings_file) if settings_file is not None else {}
        given = {
            "host": host,
            "port": port,
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "max_queue": max_queue,
            "scoring_process": True if scoring_process else None,
            "max_request_samples": max_request_samples,
            "max_body_bytes": max_body_bytes,
            "request_timeout_s": request_timeout,
            "missing_prompts": missing_prompts.value if missing_prompts is not None else None,
            "unscorable_reward": unscorable_reward,
            "log_missing_as": log_missing_as.value if log_missing_as is not None else None,
            "body_timeout_s": body_timeout,
            "keep_alive_timeout_s": keep_alive_timeout,
            "stuck_batch_s": stuck_batch,
            "image_root": str(image_root) if image_root is not None else None,
            "max_images_per_row": max_images_per_row,
        }
        knobs.update({k: v for k, v in given.items() if v is not None})
        if batching is Batching.off:
            if max_batch_size not in (None, 1):
                raise CliError(
                    f"--batching off means one request per call; drop --max-batch-size "
                    f"{max_batch_size}",
                    EXIT_USAGE,
                )
            knobs["max_batch_size"] = 1
        if meta:
            knobs["default_meta"] = apply_overrides(knobs.get("default_meta") or {}, meta)
        key = resolve_api_key(api_key_file)
        if key is not None or "api_key" not in knobs:
            knobs["api_key"] = key
        source = str(settings_file) if settings_file is not None else "serve options"
        settings: ServeSettings = validate(ServeSettings, knobs, source)
        if on_ray:
            _serve_on_ray(config, tuple(overrides or ()), settings, replicas, gpus_per_replica)
            return
        if replicas is not None or gpus_per_replica is not None:
            raise CliError("--replicas and --gpus-per-replica apply to --ray only", EXIT_USAGE)
        reward = load_reward(config, tuple(overrides or ()))
        try:
            application = create_app(reward, settings, close_reward=True)
            if settings.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
                typer.echo(
                    f"warning: serving on {settings.host} without an API key; anyone who can "
                    "reach the port can use it (set $SAFELADDER_API_KEY or --api-key-file)",
                    err=True,
                )
            uvicorn.run(
                application,
                host=settings.host,
                port=settings.port,
                log_level=log_level,
                access_log=access_log,
                # In-flight requests finish (the batcher drains) before the process exits.
                timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
                timeout_keep_alive=max(1, math.ceil(settings.keep_alive_timeout_s)),
            )
        finally:
            reward.close()  # idempotent; the app's shutdown already closed it on SIGTERM / Ctrl-C


def _serve_on_ray(
    config: str | None,
    overrides: tuple[str, ...],
    settings: Any,
    replicas: int | None,
    gpus_per_replica: float | None,
) -> None:
    """``serve --ray``: deploy, hold the deployment until Ctrl-C / SIGTERM, then tear it down."""
    import signal
    import time

    from safeladder.config import validate
    from safeladder.rewards import parse_reward_config
    from safeladder.scoring.ray_cluster import RaySession
    from safeladder.serving.ray_serve import (
        RayServeOptions,
        import_serve,
        plan_replicas,
        start_ray_serve,
        stop_ray_serve,
    )

    cfg = parse_reward_config(config, overrides)  # a bad config fails here, not in replicas
    import_serve()  # a missing / too old Ray fails before a cluster starts
    if settings.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: serving on {settings.host} without an API key; anyone who can reach the "
            "port can use it (set $SAFELADDER_API_KEY or --api-key-file)",
            err=True,
        )
    session = RaySession("safeladder serve --ray", submodules=("serve",))
    ray = session.start()
    started = False
    try:
        gpus = gpus_per_replica or 0.0
        n = plan_replicas(float(ray.cluster_resources().get("GPU", 0.0)), replicas, gpus)
        options: RayServeOptions = validate(
            RayServeOptions, {"replicas": n, "gpus_per_replica": gpus}, "serve --ray options"
        )
        url = start_ray_serve(cfg, settings, options)
        started = True
        typer.echo(
            f"serving reward {cfg.name!r} at {url} with {n} Ray Serve replica(s)"
            f"{f' x {gpus:g} GPU' if gpus else ''}; Ctrl-C to stop",
            err=True,
        )

        def _stop(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopping: replicas finish their in-flight requests", err=True)
    finally:
        try:
            if started:
                # Serve itself stays up on a shared cluster; only our app goes.
                stop_ray_serve(options.app_name, shutdown=session.private)
        finally:
            session.close()


__all__ = ["serve"]
