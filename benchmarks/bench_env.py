"""What every benchmark JSON line records about the run: versions, git state, machine."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def package_version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def environment(packages: Iterable[str] = ()) -> dict[str, Any]:
    """``versions`` (python, safeladder and ``packages``), ``git_sha``, ``git_dirty``, machine."""
    status = _git("status", "--porcelain")
    return {
        "versions": {
            "python": platform.python_version(),
            "safeladder": package_version("safeladder"),
            **{p: package_version(p) for p in packages},
        },
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


SHARED_DATA = REPO.parent / "shared" / "data"


def answered_rows(file: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a gzipped JSONL file of ``../shared/data`` (a name there, or a path) whose
    ``answer`` is not empty, the first ``limit`` of them."""
    import gzip
    import json

    rows: list[dict[str, Any]] = []
    with gzip.open(SHARED_DATA / file, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["answer"]:
                rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    return rows
