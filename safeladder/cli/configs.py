"""``safeladder check CONFIG`` and ``safeladder verifiers [TYPE]``: look at reward configs and
verifier types without scoring anything.

Examples::

    safeladder check rewards.yaml --set terms.0.weight=0.5
    safeladder verifiers math_answer
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from safeladder.cli.base import Overrides, app, cli_errors
from safeladder.cli.errors import EXIT_USAGE, CliError


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

    with cli_errors():
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
    with cli_errors():
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


__all__ = ["check", "verifiers"]
