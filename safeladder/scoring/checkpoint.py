"""The checkpoint that makes resuming exact: ``OUT.progress.json`` and the checks around it.

A checkpoint records ``{next input line, byte sizes of OUT and the errors file, fingerprints}``
at a chunk boundary, and is written (atomically) only after both files were fsync'ed, so it
always names bytes that are on disk. Resuming checks the fingerprints, cuts both files back to
the recorded sizes (``rewind``) and reads on from the recorded line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeladder.data import truncate, write_json_atomic
from safeladder.errors import ScoringError, ScoringJobError
from safeladder.scoring.job import ScoreJob, SidePaths

PROGRESS_VERSION = 1


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time of the input (every file of a dataset directory)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        entries = [
            [str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files
        ]
        return {"kind": "dir", "files": _sha(entries)}
    st = path.stat()
    return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Progress:
    """The checkpoint stored in ``OUT.progress.json``."""

    input: str
    input_fingerprint: dict[str, Any]
    settings_fingerprint: str
    reward_fingerprint: str
    next_line: int = 1
    rows_read: int = 0
    output_bytes: int = 0
    errors_bytes: int = 0
    elapsed_s: float = 0.0
    runs: int = 0
    status: str = "running"
    version: int = PROGRESS_VERSION

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.__dict__, indent=None)

    @classmethod
    def load(cls, path: Path) -> Progress:
        """Read a checkpoint; ``ScoringJobError`` when it is unreadable or of another version."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != PROGRESS_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {PROGRESS_VERSION}")
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ScoringJobError(f"cannot resume: {path} is unreadable: {exc}") from exc


def settings_fingerprint(job: ScoreJob, fmt: str, config_dump: Any) -> str:
    """A hash of everything that changes what a row's output line is.

    Batch size, limit and progress display do not, so a run may resume with other values.
    """
    return _sha(
        {
            "config": config_dump,
            "fields": job.fields.describe(),
            "format": fmt,
            "json_columns": sorted(job.json_columns),
            "split": job.split,
        }
    )


def check_resume(job: ScoreJob, prog: Progress, fingerprints: dict[str, Any]) -> None:
    """Refuse (``ScoringJobError``) to resume when the input or the settings changed since
    ``prog`` was written; ``fingerprints`` holds the current ``input``, ``input_fingerprint``
    and ``settings_fingerprint``."""
    changed = [
        what
        for what, key in (
            ("the input path", "input"),
            ("the input file (size or modification time)", "input_fingerprint"),
            ("the reward config or the field / format options", "settings_fingerprint"),
        )
        if getattr(prog, key) != fingerprints[key]
    ]
    if changed:
        raise ScoringJobError(
            f"cannot resume {job.output}: {' and '.join(changed)} changed since the interrupted "
            "run; start over with --overwrite (or restore the original input and options)"
        )


def rewind(paths: SidePaths, prog: Progress) -> None:
    """Cut both output files back to the checkpoint (drops a half-written chunk)."""
    for path, size in ((paths.output, prog.output_bytes), (paths.errors, prog.errors_bytes)):
        actual = path.stat().st_size if path.exists() else 0
        if actual < size:
            raise ScoringError(
                f"cannot resume: {path} holds {actual} bytes but the checkpoint records "
                f"{size}; it was modified after the run; start over with --overwrite"
            )
        truncate(path, size)


__all__ = [
    "PROGRESS_VERSION",
    "Progress",
    "check_resume",
    "input_fingerprint",
    "rewind",
    "settings_fingerprint",
]
