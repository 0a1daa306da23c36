"""A training run's output directory: the run record, the verifier YAML, JSON-safe metrics.

- ``prepare_output_dir``: refuse to overwrite a finished run or a directory that is not a
  safeladder run, check a resumed run's config, record the run in ``safeladder_run.json``;
- ``write_verifier_yaml`` / ``verifier_config``: write ``safeladder_verifier.yaml`` (``path: .``)
  and read it back with ``path`` resolved, so ``build_verifier(verifier_config(DIR))`` works
  from any working directory;
- ``jsonable``: what ``metrics.json`` holds (NaN → null).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safeladder.config import load_yaml
from safeladder.errors import ConfigError, SafeladderError
from safeladder.jsonsafe import jsonable
from safeladder.training.common import TrainConfigBase

RUN_FILE = "safeladder_run.json"
VERIFIER_FILE = "safeladder_verifier.yaml"
METRICS_FILE = "metrics.json"
STATS_FILE = "safeladder_reward_stats.json"  # = safeladder.verifiers.reward_model.STATS_FILE


def config_echo(cfg: TrainConfigBase) -> dict[str, Any]:
    """The config as JSON (YAML key names), as ``safeladder_run.json`` / ``metrics.json`` hold it."""
    return dict(cfg.model_dump(mode="json"))


def comparable(echo: dict[str, Any]) -> dict[str, Any]:
    """The part of a config echo a resumed run must share with the run it continues: all but
    where it writes, per data source ``made_by`` (how a missing file is explained, not what is
    read; runs recorded before it existed lack it), and the calibration targets of the threshold
    rules not in use (``target_fnr`` came later: a run recorded before it lacks the key)."""
    out = {k: v for k, v in echo.items() if k not in ("resume", "output_dir", "report")}
    cal = out.get("calibration")
    if isinstance(cal, dict):
        rule = cal.get("threshold")
        out["calibration"] = {
            k: v for k, v in cal.items() if not (k in ("target_fpr", "target_fnr") and rule != k)
        }
    data = out.get("data")
    if isinstance(data, dict):
        out["data"] = {
            k: [{f: x for f, x in src.items() if f != "made_by"} for src in v]
            if k in ("train", "dev") and isinstance(v, list)
            else v
            for k, v in data.items()
        }
    return out


def prepare_output_dir(cfg: TrainConfigBase, *, overwrite: bool = False) -> Path:
    """Check ``cfg.output_dir`` and record this run in it (``safeladder_run.json``).

    - missing or empty: created;
    - a finished run: refused unless ``overwrite`` (which deletes it first);
    - an unfinished run: refused unless ``cfg.resume`` (continue; the config must be the same
      but for ``resume``) or ``overwrite``;
    - any other non-empty directory: refused, whatever the flags (nothing of ours to replace).
    """
    out = Path(cfg.output_dir).expanduser()
    echo = config_echo(cfg)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir: {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        run_file = out / RUN_FILE
        if not run_file.is_file():
            raise ConfigError(
                f"output_dir: {str(out)!r} is not empty and holds no {RUN_FILE}; it is not a "
                "safeladder training run, so nothing there is replaced: choose another output_dir"
            )
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{run_file}: unreadable ({exc}); delete the directory") from exc
        status = run.get("status")
        if overwrite:
            shutil.rmtree(out)
        elif status == "finished":
            raise ConfigError(
                f"output_dir: {str(out)!r} holds a finished run; pass --overwrite to replace it "
                "(or set another output_dir)"
            )
        elif not cfg.resume:
            raise ConfigError(
                f"output_dir: {str(out)!r} holds an unfinished run (status {status!r}); pass "
                "--resume to continue it or --overwrite to start again"
            )
        elif comparable(run.get("config", {})) != comparable(echo):
            old, new = comparable(run.get("config", {})), comparable(echo)
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(
                f"resume: the config differs from the run in {str(out)!r} in {', '.join(keys)}; "
                "resume with the same config, or --overwrite to start again"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_run(out, "running", echo)
    return out


def write_run(out: Path, status: str, echo: dict[str, Any], **extra: Any) -> None:
    """Record the run's ``status`` (running | finished | self_check_failed) in ``RUN_FILE``."""
    from safeladder.data.writers import write_json_atomic

    write_json_atomic(out / RUN_FILE, {"status": status, "config": echo, **extra})


def verifier_config(output_dir: str | Path) -> dict[str, Any]:
    """The verifier config saved with a trained run, its ``path`` resolved to ``output_dir``.

    ``build_verifier(verifier_config(DIR))`` rebuilds the trained verifier from any working
    directory (the YAML stores ``path: .``, relative to its own directory).
    """
    d = Path(output_dir).expanduser()
    f = d / VERIFIER_FILE
    data = load_yaml(f)
    rel = Path(str(data.get("path", ".")))
    data["path"] = str(rel if rel.is_absolute() else (d / rel).resolve())
    return data


def write_verifier_yaml(out: Path, verifier: dict[str, Any]) -> Path:
    """Write ``VERIFIER_FILE``: the kind's verifier dict with ``path: .`` after its ``type``."""
    import yaml

    if "type" not in verifier:
        raise SafeladderError(f"the kind's verifier dict has no 'type': {verifier}")
    body = {
        "type": verifier["type"],
        "path": ".",
        **{k: v for k, v in verifier.items() if k != "type"},
    }
    head = (
        "# Written by safeladder train. `path: .` is this directory: build it with\n"
        "# safeladder.training.runner.verifier_config(DIR), or {type: ..., path: DIR}.\n"
    )
    path = out / VERIFIER_FILE
    path.write_text(head + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


__all__ = [
    "METRICS_FILE",
    "RUN_FILE",
    "STATS_FILE",
    "VERIFIER_FILE",
    "comparable",
    "config_echo",
    "jsonable",
    "prepare_output_dir",
    "verifier_config",
    "write_run",
    "write_verifier_yaml",
]
