"""The ``safeladder`` command line: ``score``, ``check``, ``verifiers``.

Exit codes: 0 ok; 1 the run failed (a bad row under ``--fail-on-error``, a reward that raised);
2 usage or config error (nothing was scored); 130 interrupted (Ctrl-C). Expected errors print
one message on stderr, without a traceback.

Examples::

    safeladder score rewards.yaml --input rollouts.jsonl --output scored.jsonl
    safeladder score --input rollouts.parquet --output scored.jsonl --resume
    safeladder check rewards.yaml --set terms.0.weight=0.5
    safeladder verifiers math_answer
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from safeladder.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from safeladder.errors import ConfigError, SafeladderError

app = typer.Typer(
    name="safeladder",
    help="Verifiers and rewards for RL post-training: score files, check configs, list verifiers.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class InputFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    parquet = "parquet"
    hf = "hf"


@app.callback()
def _global_options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show the libraries' own progress bars, log lines and deprecation warnings "
            "(hidden by default), and where each warning came from.",
        ),
    ] = False,
) -> None:
    """Verifiers and rewards for RL post-training: score files, check configs, list verifiers."""
    from safeladder.cli.output import cli_output

    # Entered for the whole command and undone when it ends (safeladder.cli.output).
    ctx.with_resource(cli_output(verbose))


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


@contextmanager
def _cli_errors(interrupt_hint: str = "") -> Iterator[None]:
    """Turn expected exceptions into a message on stderr and the command's exit code."""
    try:
        yield
    except CliError as exc:
        _err(str(exc))
        if exc.show_cause and exc.__cause__ is not None:
            cause = exc.__cause__
            typer.echo(
                "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)),
                err=True,
            )
        raise typer.Exit(exc.exit_code) from None
    except ConfigError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except SafeladderError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        _err(f"interrupted{interrupt_hint}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


# Shared by every command that takes a reward config: one definition, one help text.
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value (the value is YAML, e.g. terms.0.weight=0.5); repeatable.",
    ),
]


@app.command()
def score(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output JSONL; OUT.errors.jsonl, OUT.summary.json and OUT.progress.json "
            "are written next to it.",
        ),
    ],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            metavar="IN",
            help="Input rows: .jsonl[.gz], .json, .csv, .parquet or a saved HF dataset dir "
            "(default: the demo rows shipped in the package).",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Argument(
            metavar="CONFIG",
            help="Reward config YAML, or the name of a shipped reward preset "
            "(default: the shipped default reward).",
        ),
    ] = None,
    overrides: Overrides = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(metavar="FIELD", help="Input field holding the prompt (default: prompt)."),
    ] = None,
    completion_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Input field holding the completion (default: completion, else response).",
        ),
    ] = None,
    reference_field: Annotated[
        str | None,
        typer.Option(
            metavar="FIELD",
            help="Input field holding the reference (default: reference, else answer).",
        ),
    ] = None,
    allow_missing_prompt: Annotated[
        bool,
        typer.Option(
            "--allow-missing-prompt",
            help="Score rows without a prompt (or with a null one) with an empty prompt "
            "instead of reporting them as bad rows.",
        ),
    ] = False,
    format: Annotated[
        InputFormat | None,
        typer.Option("--format", help="Input format (default: from the file name)."),
    ] = None,
    json_columns: Annotated[
        list[str] | None,
        typer.Option(
            "--json-column",
            metavar="COLUMN",
            help="CSV: a column whose cells hold JSON (e.g. chat prompts); repeatable.",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="HF dataset dir holding several splits: the split to score."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Input rows per Reward.score call.")] = 256,
    fail_on_error: Annotated[
        bool,
        typer.Option(
            "--fail-on-error",
            help="Stop at the first malformed row (exit 1) instead of logging it.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run of the same command from its checkpoint."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT (and its side files).")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Read at most N input rows (good and bad)."),
    ] = None,
    checkpoint_every: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Time between checkpoints for --resume (0: after every batch); "
            "a kill loses at most this much work.",
        ),
    ] = 1.0,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Hide the progress bar.")
    ] = False,
    # --- scaling out (safeladder.cli.ray_engine) ---
    engine: Annotated[
        Engine,
        typer.Option(
            help="'local' scores in this process; 'ray' spreads the chunks over a Ray actor "
            "pool ($RAY_ADDRESS, else a local Ray), with the same output files "
            "(needs pip install 'safeladder[ray]').",
        ),
    ] = Engine.local,
    num_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="--engine ray: scoring actors, each building the reward once (default: one "
            "per --gpus-per-worker GPUs of the cluster, else one per CPU).",
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="G",
            help="--engine ray: GPUs each actor reserves (fractions share a GPU, e.g. 0.5).",
        ),
    ] = 0.0,
) -> None:
    """Score every row of a file with a reward; write one JSON line per row and a summary."""
    from safeladder.cli.score import ScoreJob, run_score
    from safeladder.cli.summary import format_summary
    from safeladder.data import FieldMap

    if input is None:
        input = Path(str(resources.files("safeladder") / "defaults" / "demo.jsonl"))
    job = ScoreJob(
        input=input,
        output=output,
        config=config,
        overrides=tuple(overrides or ()),
        fields=FieldMap.from_flags(
            prompt_field, completion_field, reference_field, allow_missing_prompt
        ),
        format=format.value if format is not None else None,
        json_columns=tuple(json_columns or ()),
        split=split,
        batch_size=batch_size,
        fail_on_error=fail_on_error,
        resume=resume,
        overwrite=overwrite,
        limit=limit,
        progress=not no_progress,
        checkpoint_every_s=checkpoint_every,
        engine=engine.value,
        num_workers=num_workers,
        gpus_per_worker=gpus_per_worker,
    )
    with _cli_errors("; rerun the same command with --resume to continue"):
        summary = run_score(job)
    typer.echo(format_summary(summary))
    if summary["rows_scored"] == 0:
        # Nothing scored (an empty input, or every row bad) is a failed run, not a table of dashes.
        first = summary.get("first_errors") or []
        shown = "".join(f"\n  line {e['line']}: {e['error']}" for e in first)
        what = "the input has no rows" if summary["bad_rows"] == 0 else "every row was bad"
        typer.echo(f"error: no row was scored: {what}{shown}", err=True)
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def check(
    config: Annotated[
        str,
        typer.Argument(
            metavar="CONFIG", help="Reward config YAML (or a shipped reward preset name)."
        ),
    ],
    overrides: Overrides = None,
    build: Annotated[
        bool,
        typer.Option(
            "--build", help="Also build the verifiers (imports custom targets, loads models)."
        ),
    ] = False,
) -> None:
    """Validate a reward config without scoring anything (exit 2 naming the bad key)."""
    from safeladder.rewards import Reward, parse_reward_config

    with _cli_errors():
        cfg = parse_reward_config(config, tuple(overrides or ()))
        if build:
            Reward(cfg).close()
    terms = ", ".join(
        f"{t.name} (weight {t.weight:g}{', gate' if t.gate is not None else ''})" for t in cfg.terms
    )
    routes = f"; routes on meta[{cfg.routes.key!r}]" if cfg.routes is not None else ""
    typer.echo(f"OK {config}: reward {cfg.name!r}, {len(cfg.terms)} terms: {terms}{routes}")


@app.command()
def verifiers(
    type_: Annotated[
        str | None,
        typer.Argument(metavar="TYPE", help="Show only this verifier type (or shipped preset)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """List the verifier types with their config fields, and the shipped verifier presets."""
    from safeladder.cli.describe import describe_type, format_type
    from safeladder.config import load_yaml, preset_names, preset_path
    from safeladder.verifiers import REGISTRY

    presets: dict[str, Any] = {}
    with _cli_errors():
        for name in preset_names("verifiers"):
            path = preset_path("verifiers", name)
            presets[name] = load_yaml(path) if path is not None else {}
        if type_ is not None and type_ not in REGISTRY and type_ not in presets:
            known = ", ".join(sorted(set(REGISTRY) | set(presets)))
            raise CliError(f"unknown verifier type or preset {type_!r}; known: {known}", EXIT_USAGE)

    selected: dict[str, Any] = {}
    chosen_presets = presets
    if type_ is None:
        selected = dict(REGISTRY)
    elif type_ in presets:
        chosen_presets = {type_: presets[type_]}
        tag = presets[type_].get("type")
        if tag in REGISTRY:
            selected = {tag: REGISTRY[tag]}
    else:
        selected = {type_: REGISTRY[type_]}
        chosen_presets = {n: p for n, p in presets.items() if p.get("type") == type_}

    descs = [describe_type(tag, cls) for tag, cls in selected.items()]
    if as_json:
        typer.echo(
            json.dumps(
                {"verifiers": descs, "presets": chosen_presets},
                indent=2,
                ensure_ascii=False,
                default=str,
            )
        )
        return
    blocks = [format_type(d) for d in descs]
    if chosen_presets:
        lines = ["presets (safeladder/presets/verifiers):"]
        for name, data in chosen_presets.items():
            settings = ", ".join(f"{k}={v!r}" for k, v in data.items() if k != "type")
            lines.append(
                f"  {name}: type {data.get('type')!s}{'; ' + settings if settings else ''}"
            )
        blocks.append("\n".join(lines))
    typer.echo("\n\n".join(blocks))


# ----------------------------------------------------------------------------- serve
# The reward server (safeladder/serving). Knob help comes from ServeSettings' field
# descriptions, so it is written once.


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
    config: Annotated[
        str | None,
        typer.Argument(
            metavar="CONFIG",
            help="Reward config YAML, or the name of a shipped reward preset "
            "(default: the shipped default reward).",
        ),
    ] = None,
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

    with _cli_errors():
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
            "max_request_samples": max_request_samples,
            "max_body_bytes": max_body_bytes,
            "request_timeout_s": request_timeout,
            "missing_prompts": missing_prompts.value if missing_prompts is not None else None,
            "unscorable_reward": unscorable_reward,
            "log_missing_as": log_missing_as.value if log_missing_as is not None else None,
            "body_timeout_s": body_timeout,
            "keep_alive_timeout_s": keep_alive_timeout,
            "stuck_batch_s": stuck_batch,
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

    from safeladder.cli.ray_engine import RaySession
    from safeladder.config import validate
    from safeladder.rewards import parse_reward_config
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


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point (``safeladder = safeladder.cli.app:main``)."""
    return app(args=argv, prog_name="safeladder")


# Later commands (train, eval, serve) register on ``app`` with @app.command() in their own
# module, imported here.
import safeladder.cli.eval  # noqa: E402  (registers `safeladder eval`)
import safeladder.cli.generate  # noqa: E402  (registers `safeladder generate`)
import safeladder.cli.train  # noqa: E402,F401  (registers `safeladder train`)

if __name__ == "__main__":
    main()
