"""CorrectionStore: round trip, JSONL format, search, concurrent writers, refusals, bad files.

SQLite behaviour is tested with a hashed bag-of-words encoder (``fakes.BagOfWords``); the
packaged MiniLM is covered by the CLI and verifier tests and one fingerprint test here.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from safeladder.corrections import (
    Correction,
    CorrectionStore,
    NewCorrection,
    content_id,
    read_corrections_jsonl,
)
from safeladder.errors import ConfigError, InputError
from tests.corrections.fakes import ROWS, BagOfWords, writer


def _store(path: Path, **kw: object) -> CorrectionStore:
    return CorrectionStore(path, embedder=BagOfWords(), **kw)  # type: ignore[arg-type]


def test_round_trip_add_get_list_export_import(tmp_path: Path) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with _store(tmp_path / "a.db") as s:
        first = s.add({**ROWS[0], "created_at": when.isoformat()})
        s.add_many(ROWS[1:])
        assert first.id == "mul-by-adding" and first.created_at == when
        assert len(s) == 3
        assert s.get("capital-au").corrected == ROWS[1]["corrected"]
        assert [c.id for c in s.iter(tag="geo")] == ["capital-au"]
        assert [c.id for c in s.iter()] == ["mul-by-adding", "capital-au", "two-plus-two"]
        n = s.export_jsonl(tmp_path / "out.jsonl")
    assert n == 3
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["note"] == ROWS[0]["note"]
    with _store(tmp_path / "b.db") as t:
        assert t.import_jsonl(tmp_path / "out.jsonl") == (3, 0)
        assert t.import_jsonl(tmp_path / "out.jsonl") == (0, 3)  # same ids: nothing new
        again = {c.id: c for c in t.iter()}
    with _store(tmp_path / "a.db") as s:
        assert again == {c.id: c for c in s.iter()}  # ids, times, tags, notes kept


def test_default_id_is_a_content_hash_and_duplicates_are_refused(tmp_path: Path) -> None:
    row = {"prompt": "p", "wrong": "w", "corrected": "c"}
    with _store(tmp_path / "s.db") as s:
        assert s.add(row).id == content_id("p", "w", "c")
        with pytest.raises(InputError, match="already stored"):
            s.add(row)
        with pytest.raises(InputError, match="already stored"):  # twice in one batch
            s.add_many([{**row, "wrong": "x"}, {**row, "wrong": "x"}])
        assert len(s) == 1  # the failed batch wrote nothing
        added, skipped = s.add_many([row, {**row, "wrong": "y"}], on_duplicate="skip")
        assert len(added) == 1 and skipped == [content_id("p", "w", "c")]


def test_remove_reports_missing_ids_and_updates_search(tmp_path: Path) -> None:
    with _store(tmp_path / "s.db") as s:
        s.add_many(ROWS)
        assert s.search([ROWS[1]["prompt"]], k=1)[0][0].correction.id == "capital-au"
        assert s.remove(["capital-au", "nope"]) == ["nope"]
        hits = s.search([ROWS[1]["prompt"]], k=3)[0]
        assert "capital-au" not in [h.correction.id for h in hits]


def test_search_is_exact_cosine_top_k(tmp_path: Path) -> None:
    enc = BagOfWords()
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    prompts = [" ".join(rng.choice(words, size=6)) for _ in range(50)]
    with _store(tmp_path / "s.db") as s:
        s.add_many(
            [
                {"prompt": p, "wrong": "a", "corrected": "b", "id": str(i)}
                for i, p in enumerate(prompts)
            ]
        )
        queries = [" ".join(rng.choice(words, size=5)) for _ in range(5)]
        got = s.search(queries, k=4, min_similarity=0.2)
    mat, _ = enc.encode(prompts, True)
    q, _ = enc.encode(queries, True)
    for row, hits in zip(q @ mat.T, got, strict=True):
        order = sorted(range(len(prompts)), key=lambda i: (-row[i], i))[:4]
        want = [(str(i), float(row[i])) for i in order if row[i] >= 0.2]
        assert [(h.correction.id, round(h.similarity, 5)) for h in hits] == [
            (i, round(v, 5)) for i, v in want
        ]


def test_a_write_by_another_connection_is_seen_by_search(tmp_path: Path) -> None:
    with _store(tmp_path / "s.db") as reader, _store(tmp_path / "s.db") as other:
        assert reader.search(["capital of Australia"], k=1) == [[]]
        other.add(ROWS[1])
        assert reader.search(["capital of Australia"], k=1)[0][0].correction.id == "capital-au"


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    # no file yet: the writers race to create it too
    # fork: the parent holds no connection at this point, and spawn would re-import everything
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        counts = pool.starmap(writer, [(str(path), w, 12) for w in range(4)])
    assert counts == [12] * 4
    with _store(path) as s:
        assert len(s) == 48
        assert {c.author for c in s.iter()} == {"w0", "w1", "w2", "w3"}
        assert s.info()["revision"] == 48  # one transaction per add
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_another_encoder_is_refused_by_fingerprint(tmp_path: Path) -> None:
    _store(tmp_path / "s.db").close()
    other = BagOfWords(salt="other")
    with pytest.raises(
        ConfigError, match=r"written with encoder 'test:bag-of-words'.*not comparable"
    ):
        CorrectionStore(tmp_path / "s.db", embedder=other)


def test_corrupt_file_is_an_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "broken.db"
    bad.write_bytes(b"this is not SQLite at all\n" * 200)
    with pytest.raises(InputError, match=r"broken\.db: not a readable correction store"):
        _store(bad)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(InputError, match=r"foreign\.db: an SQLite database, but not a correction"):
        _store(foreign)
    with pytest.raises(ConfigError, match=r"missing\.db.*does not exist"):
        _store(tmp_path / "missing.db", create=False)


def test_jsonl_format_is_strict_and_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({**ROWS[1], "colour": "red"}) + "\n")
    with pytest.raises(InputError, match=r"in\.jsonl:2: colour: Extra inputs"):
        read_corrections_jsonl(f)
    f.write_text(json.dumps({"prompt": "p", "wrong": "  ", "corrected": "c"}) + "\n")
    with pytest.raises(InputError, match=r"in\.jsonl:1: wrong: .*blank"):
        read_corrections_jsonl(f)
    f.write_text("{not json\n")
    with pytest.raises(InputError, match=r"in\.jsonl:1: not JSON"):
        read_corrections_jsonl(f)
    stored = Correction(**ROWS[0], created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert NewCorrection.model_validate_json(stored.model_dump_json()).id == "mul-by-adding"


def test_a_store_locked_past_the_timeout_is_named_as_locked_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # rollback journal: even readers wait for this lock
    try:
        with pytest.raises(InputError, match=r"held\.db: the correction store stayed locked"):
            CorrectionStore(path, embedder=BagOfWords(), busy_timeout_ms=100)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with _store(path) as s:  # once released, the same file opens and becomes a store
        assert len(s) == 0
