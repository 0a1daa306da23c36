"""``safeladder generate``: a local causal LM writes completions under a reward's guidance.

Files, for ``--output OUT``: ``OUT`` (one JSON line per prompt: the prompt, reference, chosen
completion, its score and how it was chosen), ``OUT.trace.jsonl`` (the full ``Trace`` per prompt:
every candidate, step, score and pruning reason) and ``OUT.report.md`` (a readable report).

Settings come from an optional ``GenerateConfig`` YAML, then the flags, then ``--set``
overrides (dotted keys of the same YAML, e.g. ``search.beams=4``).

``--demo`` needs no model of yours: it trains (once, then caches) the tiny arithmetic policy of
``safeladder.guidance.demo_policy`` and runs the shipped ``presets/generate/demo.yaml`` on the
shipped ``defaults/demo_prompts.jsonl`` (a CONFIG, ``--prompt`` or ``--input`` replace those).

Examples::

    safeladder generate --demo -o out/demo.jsonl
    safeladder generate --model ckpt/policy --prompt "2+2?" --mode best_of_n --n 8 -o out.jsonl
    safeladder generate configs/generate/guided_math.yaml --model ckpt/policy \\
        --input prompts.jsonl -o guided.jsonl --set search.beams=4
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeladder.cli.base import Overrides, app, cli_errors
from safeladder.cli.errors import EXIT_USAGE, CliError


class Mode(StrEnum):
    best_of_n = "best_of_n"
    guided = "guided"
    vote = "vote"


def side_paths(output: Path) -> tuple[Path, Path]:
    """``(trace, report)`` paths written next to ``output``."""
    return (
        output.with_name(output.name + ".trace.jsonl"),
        output.with_name(output.name + ".report.md"),
    )


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Rows ``{prompt, reference, meta}`` of a prompt file (.jsonl/.json/.csv/.parquet/HF dir).

    ``prompt`` is required (a string or chat messages); ``reference`` (else ``answer``) and
    ``meta`` are optional. A bad row is an ``InputError`` naming its line.
    """
    from safeladder.data import read_rows
    from safeladder.errors import InputError

    rows: list[dict[str, Any]] = []
    for row in read_rows(path):
        if row.data is None:
            raise InputError(f"{path}:{row.line}: {row.error}", row=row.line)
        data = row.data
        if "prompt" not in data or data["prompt"] in (None, ""):
            raise InputError(f"{path}:{row.line}: no 'prompt' field", row=row.line, field="prompt")
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise InputError(
                f"{path}:{row.line}: 'meta' must be a mapping", row=row.line, field="meta"
            )
        reference = data.get("reference", data.get("answer"))
        rows.append({"prompt": data["prompt"], "reference": reference, "meta": meta})
    return rows


def build_config(
    config: str | None,
    model: str | None,
    mode: Mode | None,
    reward: str | None,
    n: int | None,
    max_new_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    overrides: list[str],
) -> Any:
    """The ``GenerateConfig`` from the YAML (if any), the flags, then the ``--set`` overrides."""
    from safeladder.config import apply_overrides, load_yaml, validate
    from safeladder.guidance.config import GenerateConfig

    data: dict[str, Any] = load_yaml(config) if config is not None else {}
    if model is not None:
        data["model"] = {**(data.get("model") or {}), "path": model}
    if reward is not None:
        data["reward"] = reward
    search = dict(data.get("search") or {})
    if mode is not None and search.get("mode", "best_of_n") != mode.value:
        search = {"mode": mode.value}  # another mode's knobs would not validate
    if n is not None:
        if search.get("mode", "best_of_n") == "guided":
            raise CliError(
                "--n applies to best_of_n and vote; for guided set search.candidates", EXIT_USAGE
            )
        search["n"] = n
    if search:
        data["search"] = search
    sampling = dict(data.get("sampling") or {})
    for key, value in (
        ("max_new_tokens", max_new_tokens),
        ("temperature", temperature),
        ("seed", seed),
    ):
        if value is not None:
            sampling[key] = value
    if sampling:
        data["sampling"] = sampling
    if overrides:
        data = apply_overrides(data, overrides)
    if "model" not in data:
        raise CliError("no model: pass --model PATH or set model.path in the config", EXIT_USAGE)
    return validate(GenerateConfig, data, config or "generate options")


def output_row(trace: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``OUT`` line of one prompt."""
    return {
        "prompt": trace.prompt,
        "reference": trace.reference,
        "meta": meta,
        "completion": trace.completion,
        "score": trace.score,
        "mode": trace.mode,
        "fallback": trace.fallback,
        "chosen": trace.chosen,
        "n_candidates": len(trace.candidates),
        "generated_tokens": trace.generated_tokens,
        "reason": trace.reason,
    }


def _demo_inputs(
    config: str | None, model: str | None, prompt: list[str] | None, input: Path | None
) -> tuple[str, str, Path | None]:
    """``(config, model, input)`` of ``--demo``: the shipped config and prompts unless given,
    and the demo policy (trained now when it is not cached)."""
    from safeladder.guidance.demo_policy import DEMO_CONFIG, DEMO_PROMPTS, demo_policy

    if model is not None:
        raise CliError("--demo brings its own model; drop --model", EXIT_USAGE)
    path = demo_policy(log=lambda line: typer.echo(line, err=True))
    typer.echo(f"demo policy: {path} (reuse it with --model)", err=True)
    if input is None and prompt is None:
        input = DEMO_PROMPTS
    return config or str(DEMO_CONFIG), str(path), input


@app.command()
def generate(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="Output JSONL (one line per prompt); OUT.trace.jsonl and OUT.report.md are "
            "written next to it.",
        ),
    ],
    config: Annotated[
        str | None,
        typer.Argument(
            metavar="CONFIG", help="Generate config YAML (model, sampling, reward, search)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(metavar="PATH", help="Local causal-LM directory (model.path).")
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", metavar="TEXT", help="A prompt; repeatable."),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            metavar="IN",
            help="Prompt rows (.jsonl, .json, .csv, .parquet, HF dir) with 'prompt' and "
            "optional 'reference' / 'meta'.",
        ),
    ] = None,
    mode: Annotated[Mode | None, typer.Option(help="Search mode (search.mode).")] = None,
    reward: Annotated[
        str | None,
        typer.Option(
            metavar="REWARD", help="Reward config YAML or preset name (default: 'default')."
        ),
    ] = None,
    n: Annotated[
        int | None, typer.Option(min=1, help="Samples per prompt for best_of_n / vote (search.n).")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per completion at most.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, help="Sampling temperature.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    overrides: Overrides = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing OUT and its side files.")
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Try it without a model: train (under a minute on CPU, once; then cached in "
            "$SAFELADDER_CACHE or ~/.cache/safeladder) a tiny arithmetic policy and run the "
            "shipped demo config on shipped prompts.",
        ),
    ] = False,
) -> None:
    """Generate with a local causal LM guided by a reward: best-of-N, step-level search, or voting."""
    from safeladder.guidance import render_report, run_generate, save_traces

    with cli_errors():
        if demo:
            config, model, input = _demo_inputs(config, model, prompt, input)
        if (prompt is None) == (input is None):
            raise CliError(
                "give prompts with --prompt (repeatable) or --input FILE, not both", EXIT_USAGE
            )
        trace_path, report_path = side_paths(output)
        if not overwrite:
            for p in (output, trace_path, report_path):
                if p.exists():
                    raise CliError(f"{p} exists; pass --overwrite to replace it", EXIT_USAGE)
        cfg = build_config(
            config, model, mode, reward, n, max_new_tokens, temperature, seed, list(overrides or ())
        )
        rows = (
            read_prompts(input)
            if input is not None
            else [{"prompt": p, "reference": None, "meta": {}} for p in prompt or []]
        )
        traces = run_generate(cfg, rows)
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", encoding="utf-8") as fh:
            for t, row in zip(traces, rows, strict=True):
                fh.write(json.dumps(output_row(t, row["meta"]), ensure_ascii=False) + "\n")
        save_traces(traces, trace_path)
        report_path.write_text(render_report(traces), encoding="utf-8")
    scored = [t.score for t in traces if t.score is not None]
    mean = f"{sum(scored) / len(scored):.4g}" if scored else "n/a"
    typer.echo(
        f"{len(traces)} prompts, mode {cfg.search.mode}: mean score {mean}, "
        f"{sum(t.fallback for t in traces)} fallbacks, "
        f"{sum(t.generated_tokens for t in traces)} tokens generated → {output}, {trace_path.name}, "
        f"{report_path.name}"
    )
