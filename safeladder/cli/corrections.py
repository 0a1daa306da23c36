"""``safeladder corrections``: keep a memory of corrected chain-of-thought (add, import, list,
search, export, remove), stored in one SQLite file (``safeladder.corrections.CorrectionStore``).

The store file comes from ``--store`` (or ``$SAFELADDER_CORRECTIONS``); ``add`` and ``import``
create it, with the packaged MiniLM encoder unless ``--encoder`` names another one.

Examples::

    safeladder corrections add --store fixes.db --prompt "Q: 7 bags of 8 pens?" \\
        --wrong "7 * 8 = 54" --corrected "7 * 8 = 56" --note "7 x 8 is 56" --tag mul
    safeladder corrections import fixes.jsonl --store fixes.db
    safeladder corrections search "Q: 7 bags with 9 cards each?" --store fixes.db -k 3
    safeladder corrections list --store fixes.db --tag mul --json
    safeladder corrections export fixes_backup.jsonl --store fixes.db
    safeladder corrections remove 3f2a9c0d1e4b5a67 --store fixes.db
"""

from __future__ import annotations

import getpass
import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from safeladder.cli.base import app, cli_errors
from safeladder.cli.errors import EXIT_FAILURE, CliError

corrections_app = typer.Typer(
    name="corrections",
    help="A memory of corrected chain-of-thought: add, import, list, search, export, remove.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(corrections_app, name="corrections")

Store = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="SAFELADDER_CORRECTIONS",
        help="The correction store (an SQLite file; add / import create it).",
    ),
]
Encoder = Annotated[
    str | None,
    typer.Option(
        "--encoder",
        help="Sentence encoder of a new store (default: the packaged all-MiniLM-L6-v2); an "
        "existing store refuses any other than its own.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of text.")]


class OnDuplicate(StrEnum):
    skip = "skip"
    error = "error"


def _open(store: Path, encoder: str | None = None, create: bool = False) -> Any:
    from safeladder.corrections import CorrectionStore

    return CorrectionStore(store, encoder, create=create)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a container
        return ""


def _short(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _line(c: Any) -> str:
    tags = f" [{', '.join(c.tags)}]" if c.tags else ""
    return f"{c.id}  {_short(c.prompt, 60)}{tags}\n    wrong: {_short(c.wrong)}\n    corrected: {_short(c.corrected)}"


@corrections_app.command()
def add(
    store: Store,
    prompt: Annotated[str, typer.Option("--prompt", help="The question the model got wrong.")],
    wrong: Annotated[str, typer.Option("--wrong", help="The wrong reasoning or answer.")],
    corrected: Annotated[str, typer.Option("--corrected", help="The corrected reasoning.")],
    note: Annotated[str, typer.Option("--note", help="Why it was wrong.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A label; repeatable.")] = None,
    author: Annotated[
        str | None, typer.Option("--author", help="Who corrected it (default: login name).")
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="Id (default: a hash of the three texts).")
    ] = None,
    encoder: Encoder = None,
) -> None:
    """Add one correction; prints its id."""
    with cli_errors(), _open(store, encoder, create=True) as s:
        row = {
            "id": id,
            "prompt": prompt,
            "wrong": wrong,
            "corrected": corrected,
            "note": note,
            "tags": tuple(tag or ()),
            "author": _user() if author is None else author,
        }
        typer.echo(s.add(row).id)


@corrections_app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="JSONL file, one correction per line.")],
    store: Store,
    on_duplicate: Annotated[
        OnDuplicate,
        typer.Option("--on-duplicate", help="An id already stored: skip it, or stop (error)."),
    ] = OnDuplicate.skip,
    encoder: Encoder = None,
) -> None:
    """Add the corrections of a JSONL file (validated whole before anything is written)."""
    from safeladder.corrections import read_corrections_jsonl

    with cli_errors():
        rows = read_corrections_jsonl(source)  # before the store exists: a bad file adds nothing
        with _open(store, encoder, create=True) as s:
            added, skipped = s.add_many(rows, on_duplicate=on_duplicate.value)
            typer.echo(
                f"imported {len(added)} correction(s) from {source} into {store}"
                + (f"; skipped {len(skipped)} already stored" if skipped else "")
            )


@corrections_app.command("list")
def list_(
    store: Store,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Only corrections with this tag.")
    ] = None,
    author: Annotated[str | None, typer.Option("--author", help="Only by this author.")] = None,
    json_out: Json = False,
) -> None:
    """List stored corrections (oldest first), with the store's encoder on the first line."""
    with cli_errors(), _open(store) as s:
        rows = list(s.iter(tag=tag, author=author))
        if json_out:
            for c in rows:
                typer.echo(c.model_dump_json())
            return
        info = s.info()
        typer.echo(
            f"{store}: {info['count']} correction(s), encoder {info['encoder_name']} "
            f"(fingerprint {info['fingerprint']}); showing {len(rows)}"
        )
        for c in rows:
            typer.echo(_line(c))


@corrections_app.command()
def search(
    query: Annotated[str, typer.Argument(help="A prompt; the nearest stored prompts are shown.")],
    store: Store,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Results at most.")] = 3,
    min_similarity: Annotated[
        float, typer.Option("--min-similarity", help="Cosine similarity a result needs.")
    ] = -1.0,
    json_out: Json = False,
) -> None:
    """The stored corrections whose prompts are nearest QUERY (cosine of the embeddings)."""
    with cli_errors(), _open(store) as s:
        hits = s.search([query], k, min_similarity)[0]
        for h in hits:
            if json_out:
                data = {"similarity": h.similarity, **h.correction.model_dump(mode="json")}
                typer.echo(json.dumps(data, ensure_ascii=False))
            else:
                typer.echo(f"{h.similarity:.3f}  {_line(h.correction)}")
        if not hits and not json_out:
            typer.echo("no stored correction is near enough", err=True)


@corrections_app.command()
def export(
    output: Annotated[Path, typer.Argument(help="JSONL file to write (the import format).")],
    store: Store,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Only corrections with this tag.")
    ] = None,
) -> None:
    """Write the stored corrections as JSONL (ids and times kept; `import` reads it back)."""
    with cli_errors():
        with _open(store) as s:
            n = s.export_jsonl(output, tag=tag)
        typer.echo(f"exported {n} correction(s) to {output}")


@corrections_app.command()
def remove(
    ids: Annotated[list[str], typer.Argument(help="Ids of the corrections to remove.")],
    store: Store,
) -> None:
    """Remove corrections by id; exit code 1 when an id is not stored (the others are removed)."""
    with cli_errors():
        with _open(store) as s:
            missing = s.remove(ids)
        typer.echo(f"removed {len(ids) - len(missing)} correction(s)")
        if missing:
            raise CliError(f"not in {store}: {', '.join(missing)}", EXIT_FAILURE)


__all__ = ["corrections_app"]
