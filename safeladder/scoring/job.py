"""What a scoring run is asked to do (``ScoreJob``) and the files it writes (``SidePaths``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeladder.data import FieldMap


@dataclass(frozen=True)
class ScoreJob:
    """Everything ``safeladder score`` was asked to do (the CLI flags, one field each)."""

    input: Path
    output: Path
    config: str | Path | Mapping[str, Any] | None = None
    overrides: tuple[str, ...] = ()
    fields: FieldMap = field(default_factory=FieldMap)
    format: str | None = None
    json_columns: tuple[str, ...] = ()
    split: str | None = None
    batch_size: int = 256
    fail_on_error: bool = False
    resume: bool = False
    overwrite: bool = False
    limit: int | None = None
    progress: bool = True
    checkpoint_every_s: float = 1.0
    # engine "ray" (safeladder.scoring.ray_engine); the local engine refuses the Ray knobs.
    engine: str = "local"
    num_workers: int | None = None
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class SidePaths:
    """The files written next to ``OUT``."""

    output: Path
    errors: Path
    progress: Path
    summary: Path

    @classmethod
    def of(cls, output: Path) -> SidePaths:
        return cls(
            output=output,
            errors=output.with_name(output.name + ".errors.jsonl"),
            progress=output.with_name(output.name + ".progress.json"),
            summary=output.with_name(output.name + ".summary.json"),
        )


__all__ = ["ScoreJob", "SidePaths"]
