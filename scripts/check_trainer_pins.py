#!/usr/bin/env python
"""Does safeladder resolve inside each trainer's pinned environment?

Users install safeladder into the environment their trainer already has, so safeladder's
dependency ranges must accept the trainers' pins. For each pin set below this script asks pip
to resolve ``safeladder[serve,ray]`` (from this checkout) together with the pins, in a scratch
virtualenv, without installing anything::

    pip install --dry-run --ignore-installed --report REPORT.json "safeladder[serve,ray] @ file://REPO" PINS...

and prints one table row per set: resolved or not, and the versions pip chose for the packages
that matter (transformers, trl, the antlr runtime math-verify parses LaTeX with, ...). A set
that does not resolve prints pip's conflict message.

Pin sets (knobs below; measured from the trainers' own metadata):

- ``verl-0.9.1``: ``verl==0.9.1`` itself (it installs on CPU; it pins transformers
  ``>=5.5.3,<5.11,!=5.6.0`` and, through omegaconf / hydra-core, ``antlr4-python3-runtime==4.9.*``).
- ``openrlhf-0.11.2``: OpenRLHF 0.11.2's requirements (``transformers==5.15.0``,
  ``ray[default]==2.55.0``, ...) without ``deepspeed`` and ``flash-attn``, whose source builds
  need a CUDA toolchain; openrlhf itself cannot be resolved on a machine without one.

- ``verl-0.9.1-gpu``: ``verl[vllm]==0.9.1`` (vLLM 0.24, ``transformers==5.9.0``,
  ``torch==2.11.0``) plus ``trl==0.27.0`` from its ``fsdp`` extra (whose flash-attn build needs
  CUDA): what a GPU install of verl pins. Slow (about 3 minutes: vLLM's tree).

The first two add ``torch==2.13.0`` (the CPU wheel of this project's machines; torch is a
trainer choice, not safeladder's). All three take about 6 minutes with a cold pip cache.

Usage::

    python scripts/check_trainer_pins.py                 # every set, table on stdout
    python scripts/check_trainer_pins.py --set verl-0.9.1 --json out.json

Exit status: 0 every set resolved; 1 a set did not; 3 the package index is unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXTRAS = "serve,ray"
TORCH = "torch==2.13.0"

# Pin sets: name -> requirement strings added next to safeladder.
PIN_SETS: dict[str, list[str]] = {
    "verl-0.9.1": ["verl==0.9.1", TORCH],
    "openrlhf-0.11.2": [
        # openrlhf 0.11.2 Requires-Dist, minus deepspeed==0.19.6 and flash-attn==2.8.3 (CUDA builds)
        "transformers==5.15.0",
        "ray[default]==2.55.0",
        "accelerate",
        "aiohttp",
        "bitsandbytes",
        "datasets",
        "einops",
        "grpcio>=1.74.0",
        "huggingface-hub>=1.0.0",
        "jsonlines",
        "loralib",
        "optimum",
        "optree>=0.15.0",
        "peft",
        "pylatexenc",
        "sympy",
        "tensorboard",
        "torchdata",
        "torchmetrics",
        "transformers-stream-generator",
        "wandb",
        TORCH,
    ],
    "verl-0.9.1-gpu": ["verl[vllm]==0.9.1", "trl==0.27.0"],
}

# Packages whose chosen versions the table shows.
SHOWN = [
    "transformers",
    "trl",
    "torch",
    "math-verify",
    "latex2sympy2-extended",
    "antlr4-python3-runtime",
    "datasets",
    "sentence-transformers",
    "numpy",
    "pydantic",
    "ray",
    "fastapi",
    "verl",
]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def index_reachable(pip: str, timeout_s: float = 10.0) -> bool:
    """True when pip's index (``pip config`` ``global.index-url``, default PyPI) answers."""
    url = "https://pypi.org/simple/"
    try:
        out = subprocess.run(
            [pip, "config", "get", "global.index-url"], capture_output=True, text=True, timeout=30
        )
        if out.returncode == 0 and out.stdout.strip():
            url = out.stdout.strip().rstrip("/") + "/"
    except (OSError, subprocess.SubprocessError):
        pass
    if url.startswith("file:"):
        return True
    try:
        with urllib.request.urlopen(url + "pip/", timeout=timeout_s) as resp:
            return bool(resp.status < 500)
    except OSError:
        return False


def make_venv(python: str, where: Path) -> str:
    subprocess.run([python, "-m", "venv", str(where)], check=True, capture_output=True)
    return str(where / "bin" / "pip")


def resolve(pip: str, name: str, pins: list[str], workdir: Path) -> dict[str, Any]:
    """Dry-run resolution of safeladder + ``pins``; returns a row for the table."""
    report = workdir / f"{name}.json"
    spec = f"safeladder[{EXTRAS}] @ {REPO.as_uri()}"
    cmd = [
        pip,
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        spec,
        *pins,
    ]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    row: dict[str, Any] = {"set": name, "pins": pins, "resolved": proc.returncode == 0}
    if proc.returncode != 0:
        lines = [
            ln
            for ln in (proc.stderr + proc.stdout).splitlines()
            if ln.strip() and not ln.startswith("WARNING: Location")
        ]
        row["error"] = "\n".join(lines[-25:])
        return row
    data = json.loads(report.read_text())
    versions = {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in data["install"]}
    row["versions"] = {p: versions.get(_norm(p)) for p in SHOWN}
    row["packages"] = len(versions)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["set", "resolved", *SHOWN]
    cells = [
        [
            r["set"],
            "yes" if r["resolved"] else "NO",
            *[(r.get("versions") or {}).get(p) or "-" for p in SHOWN],
        ]
        for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*cols), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*row) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--set",
        action="append",
        choices=sorted(PIN_SETS),
        help="pin set(s) to check (default: all)",
    )
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the scratch venv")
    args = ap.parse_args(argv)
    names = args.set or list(PIN_SETS)
    with tempfile.TemporaryDirectory(prefix="safeladder-pins-") as tmp:
        work = Path(tmp)
        pip = make_venv(args.python, work / "venv")
        if not index_reachable(pip):
            print("package index unreachable: cannot check the trainer pins", file=sys.stderr)
            return 3
        rows = [resolve(pip, n, PIN_SETS[n], work) for n in names]
    print(table(rows))
    for r in rows:
        if not r["resolved"]:
            print(f"\n{r['set']}: pip could not resolve safeladder with {r['pins']}:\n{r['error']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["resolved"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
