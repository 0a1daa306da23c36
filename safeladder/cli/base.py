"""What every ``safeladder`` command shares: the typer ``app`` they register on, the global
``--verbose`` option, the mapping of exceptions to messages and exit codes, shared options.

The command modules (``score``, ``serve``, ``configs``, ``eval``, ``train``, ``generate``)
register on ``app`` here, not in ``safeladder.cli.app``: run as ``python -m
safeladder.cli.app``, that module is ``__main__``, a second copy that commands would miss.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import typer

from safeladder.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CliError
from safeladder.errors import ConfigError, SafeladderError, ScoringError, ScoringJobError

app = typer.Typer(
    name="safeladder",
    help="Verifiers and rewards for RL post-training: score files, check configs, list verifiers.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


def print_error(message: str) -> None:
    """``error: <message>`` on stderr."""
    typer.echo(f"error: {message}", err=True)


def _print_cause(exc: BaseException) -> None:
    cause = exc.__cause__
    if cause is not None:
        typer.echo(
            "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)),
            err=True,
        )


@contextmanager
def cli_errors(interrupt_hint: str = "") -> Iterator[None]:
    """Turn expected exceptions into a message on stderr and the command's exit code: 2 for a
    usage / config / scoring-job error, 1 for a failed run, 130 for Ctrl-C."""
    try:
        yield
    except CliError as exc:
        print_error(str(exc))
        if exc.show_cause:
            _print_cause(exc)
        raise typer.Exit(exc.exit_code) from None
    except ScoringError as exc:
        print_error(str(exc))
        if exc.show_cause:
            _print_cause(exc)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, ScoringJobError) else EXIT_FAILURE) from None
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except SafeladderError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        print_error(f"interrupted{interrupt_hint}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


# Shared by the commands that take a reward config: one definition, one help text.
RewardConfig = Annotated[
    str | None,
    typer.Argument(
        metavar="CONFIG",
        help="Reward config YAML, or the name of a shipped reward preset "
        "(default: the shipped default reward).",
    ),
]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value (the value is YAML, e.g. terms.0.weight=0.5); repeatable.",
    ),
]

__all__ = ["InputFormat", "Overrides", "RewardConfig", "app", "cli_errors", "print_error"]
