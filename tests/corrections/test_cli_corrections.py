"""``safeladder corrections`` end to end (typer's CliRunner), on the packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.support import invoke, write_jsonl
from tests.corrections.fakes import ROWS


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by ``import`` (then shared by the read-only tests)."""
    folder = tmp_path_factory.mktemp("cli")
    src = write_jsonl(folder / "in.jsonl", ROWS[1:])
    res = invoke("corrections", "import", src, "--store", folder / "s.db")
    assert res.exit_code == 0, res.output
    assert "imported 2 correction(s)" in res.stdout
    return folder / "s.db"


def test_add_prints_the_id_and_a_second_add_is_refused(store: Path) -> None:
    r = ROWS[0]
    args = ["--prompt", r["prompt"], "--wrong", r["wrong"], "--corrected", r["corrected"]]
    res = invoke("corrections", "add", "--store", store, *args, "--tag", "mul", "--id", r["id"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "mul-by-adding"
    again = invoke("corrections", "add", "--store", store, *args, "--id", r["id"])
    assert again.exit_code == 1 and "already stored" in again.stderr


def test_list_and_search(store: Path) -> None:
    res = invoke("corrections", "list", "--store", store, "--json", "--tag", "geo")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in res.stdout.splitlines()] == ["capital-au"]
    text = invoke("corrections", "list", "--store", store)
    assert "encoder all-MiniLM-L6-v2" in text.stdout and "two-plus-two" in text.stdout
    hit = invoke(
        "corrections", "search", "Which city is the capital of Australia?", "--store", store,
        "-k", "1", "--json",
    )  # fmt: skip
    assert hit.exit_code == 0, hit.output
    (line,) = hit.stdout.splitlines()
    assert json.loads(line)["id"] == "capital-au" and json.loads(line)["similarity"] > 0.6
    none = invoke(
        "corrections", "search", "Write a haiku", "--store", store, "--min-similarity", "0.9"
    )
    assert none.exit_code == 0 and "no stored correction is near enough" in none.stderr


def test_export_import_remove_round_trip(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.jsonl"
    res = invoke("corrections", "export", out, "--store", store)
    assert res.exit_code == 0, res.output
    exported = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    copy = tmp_path / "copy.db"
    assert invoke("corrections", "import", out, "--store", copy).exit_code == 0
    listed = invoke("corrections", "list", "--store", copy, "--json")
    assert [json.loads(x) for x in listed.stdout.splitlines()] == exported
    gone = invoke("corrections", "remove", "capital-au", "nope", "--store", copy)
    assert gone.exit_code == 1 and "not in" in gone.stderr and "nope" in gone.stderr
    assert "removed 1 correction(s)" in gone.stdout
    left = invoke("corrections", "list", "--store", copy, "--json")
    assert "capital-au" not in left.stdout and len(left.stdout.splitlines()) == len(exported) - 1


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"\x00garbage" * 500)
    res = invoke("corrections", "list", "--store", broken)
    assert res.exit_code == 1 and "broken.db: not a readable correction store" in res.stderr
    missing = invoke("corrections", "list", "--store", tmp_path / "none.db")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "p", "wrong": "w"}])
    res = invoke("corrections", "import", bad, "--store", tmp_path / "new.db")
    assert res.exit_code == 1 and "bad.jsonl:2: corrected: Field required" in res.stderr
    assert not (tmp_path / "new.db").exists()  # validated before the store is created


def test_a_store_of_another_encoder_is_refused(store: Path, tmp_path: Path) -> None:
    import shutil
    import sqlite3

    other = tmp_path / "other.db"
    shutil.copy(store, other)
    con = sqlite3.connect(other)
    with con:  # as if written by another encoder: another fingerprint of its files
        con.execute("UPDATE meta SET value = '0123456789abcdef' WHERE key = 'fingerprint'")
    con.close()
    res = invoke("corrections", "search", "capital of Australia", "--store", other)
    assert res.exit_code == 2
    assert "fingerprint 0123456789abcdef" in res.stderr and "not comparable" in res.stderr
