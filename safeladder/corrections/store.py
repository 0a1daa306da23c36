"""``CorrectionStore``: corrections of chain-of-thought in one SQLite file, searchable by prompt.

Storage: one SQLite file (standard library ``sqlite3``) in WAL mode with a busy timeout, so
several processes can add and search at once (readers never block the writer; writers queue
for up to ``busy_timeout_ms``). Every write is one ``BEGIN IMMEDIATE`` transaction.

Embeddings: the prompt, the wrong and the corrected text of each row are embedded with the
store's sentence encoder (default the packaged all-MiniLM-L6-v2, the encoder of
``embedding_head``) and kept in the database as float32 blobs (L2-normalised, so a dot product
is the cosine). The store records the encoder's name and fingerprint (a hash of its files); a
store opened with another encoder is refused (``ConfigError``), since its vectors would not be
comparable.

Search is exact: the prompt embeddings are loaded into one numpy matrix (reloaded only when a
write, from any process, bumped the store's revision) and ranked by one matrix product. That is
fast enough below ~50k records (``benchmarks/bench_corrections.py`` reports the latency at 100k);
no ANN library is used because hnswlib ships only a source distribution here (a compiler would
be needed) and exact results keep retrieval deterministic.

Example::

    store = CorrectionStore("corrections.db")                 # created if missing
    store.add({"prompt": "7 bags of 8 pens?", "wrong": "7 * 8 = 54", "corrected": "7 * 8 = 56"})
    hits = store.search(["6 bags of 8 coins?"], k=2, min_similarity=0.5)[0]
    [(h.correction.id, round(h.similarity, 3)) for h in hits]
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from safeladder.corrections.records import Correction, CorrectionHit, NewCorrection
from safeladder.errors import ConfigError, InputError

#: Version of the table layout, stored in the file; a store of another version is refused.
SCHEMA_VERSION = 1
_COLUMNS = "id, prompt, wrong, corrected, note, tags, author, created_at"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS corrections (
    id TEXT PRIMARY KEY,
    prompt TEXT NOT NULL,
    wrong TEXT NOT NULL,
    corrected TEXT NOT NULL,
    note TEXT NOT NULL,
    tags TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prompt_emb BLOB NOT NULL,
    wrong_emb BLOB NOT NULL,
    corrected_emb BLOB NOT NULL
);
"""


class TextEncoder(Protocol):
    """What the store needs from an encoder (``safeladder.neural.encoder.Embedder`` has it)."""

    encoder: str
    encoder_name: str

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str], normalize: bool) -> tuple[np.ndarray, np.ndarray]: ...


def _default_encoder(encoder: str | None, runtime: Any) -> TextEncoder:
    from safeladder.neural.encoder import PACKAGED_MINILM, Embedder

    return Embedder(encoder or PACKAGED_MINILM, runtime)


class CorrectionStore:
    """A correction store in one SQLite file (see the module docstring).

    Args:
        path: the database file; created (with its folder) when missing and ``create``.
        encoder: the sentence encoder setting (``"packaged:all-MiniLM-L6-v2"`` or a local
            sentence-transformers directory). None: the one the store was created with (the
            packaged MiniLM for a new store).
        embedder: an already built encoder (overrides ``encoder``; tests pass a fake one).
        create: create a missing file (False: a missing file is a ``ConfigError``).
        busy_timeout_ms: how long a write waits for another process's write to finish.
        runtime: the encoder's ``RuntimeConfig`` (device, threads, embedding cache size).

    Raises:
        ConfigError: missing file with ``create=False``; the store was written with another
            encoder (fingerprints differ) or another schema version.
        InputError: the file is not a readable correction store (corrupt, or another database).
    """

    def __init__(
        self,
        path: str | Path,
        encoder: str | None = None,
        *,
        embedder: TextEncoder | None = None,
        create: bool = True,
        busy_timeout_ms: int = 30_000,
        runtime: Any = None,
    ):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise ConfigError(
                    f"store: {str(self.path)!r} does not exist; create it with `safeladder "
                    "corrections add` / `import`, or CorrectionStore(path)"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._matrix: tuple[int, list[str], np.ndarray] | None = None
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
        except sqlite3.Error as exc:
            raise InputError(f"{self.path}: cannot open the correction store: {exc}") from exc
        self._busy_s = busy_timeout_ms / 1000
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._init_schema()
            meta = self._meta()
        except sqlite3.OperationalError as exc:
            self._conn.close()
            if not _is_locked(exc):
                raise InputError(f"{self.path}: cannot open the correction store: {exc}") from exc
            raise InputError(
                f"{self.path}: the correction store stayed locked by another process for "
                f"{busy_timeout_ms} ms while opening it ({exc}); retry, or raise busy_timeout_ms"
            ) from exc
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise InputError(
                f"{self.path}: not a readable correction store ({exc}); the file is corrupt or "
                "not SQLite: restore it from an export (`safeladder corrections export`) or use "
                "another path"
            ) from exc
        except Exception:
            self._conn.close()
            raise
        self._check_meta(meta, encoder, embedder, runtime)

    # ----------------------------------------------------------------------- opening

    def _init_schema(self) -> None:
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if tables and not {"meta", "corrections"} <= tables:
            raise InputError(
                f"{self.path}: an SQLite database, but not a correction store (tables: "
                f"{', '.join(sorted(tables))}); use another path"
            )
        # WAL: readers and one writer at a time, across processes; the mode is stored in the file.
        mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = self._switch_to_wal()
        if str(mode).lower() != "wal":
            raise InputError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        if not tables:
            with self._write() as conn:  # IF NOT EXISTS: two processes may create it at once
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    def _switch_to_wal(self) -> str:
        """Set WAL mode, retrying while another process holds the file: SQLite answers BUSY
        to this pragma at once, without calling the busy handler, when several processes
        create the same store together."""
        deadline = time.monotonic() + self._busy_s
        pause = 0.005
        while True:
            try:
                return str(self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(
        self,
        meta: dict[str, str],
        encoder: str | None,
        embedder: TextEncoder | None,
        runtime: Any,
    ) -> None:
        version = meta.get("schema_version")
        if version is not None and version != str(SCHEMA_VERSION):
            self.close()
            raise ConfigError(
                f"{self.path}: schema version {version}, this safeladder reads {SCHEMA_VERSION}"
            )
        stored_encoder = meta.get("encoder")
        try:
            self.embedder = embedder or _default_encoder(encoder or stored_encoder, runtime)
        except Exception:
            self.close()
            raise
        fp = self.embedder.fingerprint
        if stored_encoder is None:
            self._write_meta(
                {
                    "schema_version": str(SCHEMA_VERSION),
                    "encoder": self.embedder.encoder,
                    "encoder_name": self.embedder.encoder_name,
                    "fingerprint": fp,
                    "revision": "0",
                }
            )
            meta = self._meta()
        if meta["fingerprint"] != fp:
            self.close()
            raise ConfigError(
                f"{self.path}: the store was written with encoder {meta['encoder']!r} "
                f"({meta.get('encoder_name')}, fingerprint {meta['fingerprint']}), but it is "
                f"opened with {self.embedder.encoder!r} (fingerprint {fp}); their embeddings are "
                "not comparable. Open it with the store's encoder, or export it and import the "
                "file into a new store"
            )
        self.encoder = meta["encoder"]
        self.fingerprint = fp

    def _write_meta(self, values: Mapping[str, str]) -> None:
        with self._write():
            for k, v in values.items():  # first writer wins when two processes create at once
                self._conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (k, v))

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front, so two
        writers queue on busy_timeout instead of failing on a read-to-write upgrade."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ----------------------------------------------------------------------- writing

    def add(self, correction: NewCorrection | Mapping[str, Any]) -> Correction:
        """Add one correction; returns it as stored. A duplicate id is an ``InputError``."""
        added, _ = self.add_many([correction], on_duplicate="error")
        return added[0]

    def add_many(
        self,
        corrections: Iterable[NewCorrection | Mapping[str, Any]],
        *,
        on_duplicate: str = "error",
        batch_size: int = 256,
    ) -> tuple[list[Correction], list[str]]:
        """Add corrections (embedded in batches of ``batch_size``, each batch one transaction).

        Args:
            on_duplicate: ``"error"`` (an id already stored, or twice in the input, is an
                ``InputError`` naming it; nothing of that batch is written) or ``"skip"``.

        Returns:
            ``(added, skipped ids)``.
        """
        if on_duplicate not in ("error", "skip"):
            raise ValueError(f"on_duplicate: {on_duplicate!r}; use 'error' or 'skip'")
        rows = [self._coerce(c, i) for i, c in enumerate(corrections)]
        added: list[Correction] = []
        skipped: list[str] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            texts = [t for c in chunk for t in (c.prompt, c.wrong, c.corrected)]
            emb, _ = self.embedder.encode(texts, True)
            emb = np.ascontiguousarray(emb, dtype=np.float32)
            with self._lock, self._write() as conn:
                seen: set[str] = set()
                for j, c in enumerate(chunk):
                    exists = (
                        c.id in seen
                        or conn.execute(
                            "SELECT 1 FROM corrections WHERE id = ?", (c.id,)
                        ).fetchone()
                    )
                    if exists:
                        if on_duplicate == "skip":
                            skipped.append(c.id)
                            continue
                        raise InputError(
                            f"{self.path}: a correction with id {c.id!r} is already stored "
                            "(remove it first, or import with on_duplicate='skip')",
                            field="id",
                        )
                    seen.add(c.id)
                    p, w, k = emb[3 * j], emb[3 * j + 1], emb[3 * j + 2]
                    conn.execute(
                        f"INSERT INTO corrections({_COLUMNS}, prompt_emb, wrong_emb, "
                        "corrected_emb) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*_row_values(c), p.tobytes(), w.tobytes(), k.tobytes()),
                    )
                    added.append(c)
                if seen:
                    self._bump(conn, dim=int(emb.shape[1]))
        return added, skipped

    def _coerce(self, c: NewCorrection | Mapping[str, Any], index: int) -> Correction:
        try:
            new = c if isinstance(c, NewCorrection) else NewCorrection.model_validate(dict(c))
        except ValidationError as exc:
            raise InputError(f"correction {index}: {_first_error(exc)}", row=index) from exc
        return Correction(
            **{
                **new.model_dump(),
                "id": new.resolved_id(),
                "created_at": new.created_at or datetime.now(UTC),
            }
        )

    def _bump(self, conn: sqlite3.Connection, dim: int | None = None) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
        if dim is not None:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
            stored = conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()[0]
            if int(stored) != dim:
                raise ConfigError(
                    f"{self.path}: embeddings of width {dim}, the store holds width {stored}"
                )

    def remove(self, ids: str | Sequence[str]) -> list[str]:
        """Remove corrections by id; returns the ids that were not found (nothing to remove)."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        missing: list[str] = []
        with self._lock, self._write() as conn:
            for i in ids:
                if conn.execute("DELETE FROM corrections WHERE id = ?", (i,)).rowcount == 0:
                    missing.append(i)
            if len(missing) < len(ids):
                self._bump(conn)
        return missing

    # ----------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM corrections").fetchone()[0])

    def revision(self) -> int:
        """Bumped by every write (any process): cached search matrices are reloaded on change."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        return int(row[0])

    def get(self, id: str) -> Correction:
        """The correction with this id (``KeyError`` naming it when absent)."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM corrections WHERE id = ?", (id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no correction with id {id!r} in {self.path}")
        return _from_row(row)

    def iter(self, *, tag: str | None = None, author: str | None = None) -> Iterator[Correction]:
        """Stored corrections in insertion order, optionally those with ``tag`` / by ``author``."""
        for row in self._conn.execute(f"SELECT {_COLUMNS} FROM corrections ORDER BY rowid"):
            c = _from_row(row)
            if (tag is None or tag in c.tags) and (author is None or c.author == author):
                yield c

    def info(self) -> dict[str, Any]:
        """Path, encoder, fingerprint, embedding width, count and revision."""
        meta = self._meta()
        return {
            "path": str(self.path),
            "encoder": meta.get("encoder"),
            "encoder_name": meta.get("encoder_name"),
            "fingerprint": meta.get("fingerprint"),
            "dim": int(meta["dim"]) if "dim" in meta else None,
            "count": len(self),
            "revision": int(meta.get("revision", 0)),
        }

    def _prompt_matrix(self) -> tuple[list[str], np.ndarray]:
        """``(ids, prompt embeddings (n, dim) float32)``, cached until the revision changes."""
        rev = self.revision()
        with self._lock:
            if self._matrix is None or self._matrix[0] != rev:
                rows = self._conn.execute(
                    "SELECT id, prompt_emb FROM corrections ORDER BY rowid"
                ).fetchall()
                ids = [r[0] for r in rows]
                if rows:
                    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                    mat = mat.reshape(len(rows), -1)
                else:
                    mat = np.zeros((0, 0), dtype=np.float32)
                self._matrix = (rev, ids, mat)
            return self._matrix[1], self._matrix[2]

    def search_vectors(
        self, queries: np.ndarray, k: int, min_similarity: float = -1.0
    ) -> list[list[tuple[str, float]]]:
        """Exact top-``k`` by cosine: ``queries`` ``(m, dim)`` L2-normalised float32 →
        per query up to ``k`` ``(id, similarity)``, best first (ties: the earlier stored row),
        those below ``min_similarity`` dropped."""
        ids, mat = self._prompt_matrix()
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2:
            raise ValueError(f"queries must be (m, dim), got shape {q.shape}")
        if not ids or k < 1:
            return [[] for _ in range(len(q))]
        if q.shape[1] != mat.shape[1]:
            raise ConfigError(f"{self.path}: queries of width {q.shape[1]}, store {mat.shape[1]}")
        sims = q @ mat.T  # (m, n)
        take = min(k, len(ids))
        out: list[list[tuple[str, float]]] = []
        for row in sims:
            part = (
                np.argpartition(-row, take - 1)[:take] if take < len(ids) else np.arange(len(ids))
            )
            order = part[np.lexsort((part, -row[part]))]
            out.append([(ids[i], float(row[i])) for i in order if row[i] >= min_similarity])
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings ``(len(texts), dim)`` float32 from the store's encoder."""
        emb, _ = self.embedder.encode(list(texts), True)
        return np.asarray(emb, dtype=np.float32)

    def search(
        self, queries: Sequence[str], k: int = 3, min_similarity: float = -1.0
    ) -> list[list[CorrectionHit]]:
        """The ``k`` stored corrections whose prompts are nearest each query text (cosine of
        the encoder's embeddings), best first, at least ``min_similarity``."""
        if not queries:
            return []
        found = self.search_vectors(self.embed(queries), k, min_similarity)
        return [[CorrectionHit(correction=self.get(i), similarity=s) for i, s in f] for f in found]

    def reasoning_vectors(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(wrong, corrected)`` embeddings of the given ids, each ``(len(ids), dim)`` float32."""
        wrong, corrected = [], []
        for i in ids:
            row = self._conn.execute(
                "SELECT wrong_emb, corrected_emb FROM corrections WHERE id = ?", (i,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no correction with id {i!r} in {self.path}")
            wrong.append(np.frombuffer(row[0], dtype=np.float32))
            corrected.append(np.frombuffer(row[1], dtype=np.float32))
        if not ids:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        return np.stack(wrong), np.stack(corrected)

    # ----------------------------------------------------------------------- files

    def import_jsonl(self, path: str | Path, *, on_duplicate: str = "skip") -> tuple[int, int]:
        """Add every line of a JSONL file of ``NewCorrection`` rows; returns ``(added, skipped)``.

        The whole file is validated before anything is written; a bad line is an
        ``InputError`` naming ``file:line`` and the field.
        """
        rows = read_corrections_jsonl(path)
        added, skipped = self.add_many(rows, on_duplicate=on_duplicate)
        return len(added), len(skipped)

    def export_jsonl(self, path: str | Path, *, tag: str | None = None) -> int:
        """Write the stored corrections as JSONL (the import format); returns the row count."""
        n = 0
        with Path(path).open("w", encoding="utf-8") as fh:
            for c in self.iter(tag=tag):
                fh.write(c.model_dump_json() + "\n")
                n += 1
        return n

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> CorrectionStore:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def read_corrections_jsonl(path: str | Path) -> list[NewCorrection]:
    """``NewCorrection`` rows of a JSONL file; a bad line is an ``InputError`` naming it."""
    out: list[NewCorrection] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(NewCorrection.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{line_no}: not JSON: {exc}", row=line_no) from exc
        except ValidationError as exc:
            raise InputError(f"{path}:{line_no}: {_first_error(exc)}", row=line_no) from exc
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "row"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


def _row_values(c: Correction) -> tuple[Any, ...]:
    return (
        c.id,
        c.prompt,
        c.wrong,
        c.corrected,
        c.note,
        json.dumps(list(c.tags)),
        c.author,
        c.created_at.isoformat(),
    )


def _from_row(row: Sequence[Any]) -> Correction:
    i, prompt, wrong, corrected, note, tags, author, created = row
    return Correction(
        id=i,
        prompt=prompt,
        wrong=wrong,
        corrected=corrected,
        note=note,
        tags=tuple(json.loads(tags)),
        author=author,
        created_at=datetime.fromisoformat(created),
    )


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    """True for SQLite's BUSY / LOCKED answers, which mean "wait", not "broken"."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


__all__ = ["SCHEMA_VERSION", "CorrectionStore", "TextEncoder", "read_corrections_jsonl"]
