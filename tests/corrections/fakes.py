"""Helpers of the correction tests (a fixture module, not tests).

``BagOfWords`` is a cheap deterministic stand-in for the sentence encoder (hashed word counts,
L2-normalised) for tests about SQLite (concurrency, files) where MiniLM's load time buys
nothing; ``writer`` is the body of one concurrent writer process.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


class BagOfWords:
    """Hashed bag-of-words embeddings of width ``dim`` (same words → same vector)."""

    encoder = "test:bag-of-words"
    encoder_name = "bag-of-words"

    def __init__(self, dim: int = 32, salt: str = ""):
        self.dim = dim
        self.salt = salt

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"bow{self.dim}{self.salt}".encode()).hexdigest()[:16]

    def encode(self, texts: Sequence[str], normalize: bool) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int(hashlib.md5((self.salt + w).encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if normalize:
            out = (out / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return out.astype(np.float32), np.zeros(len(texts), dtype=bool)


def writer(path: str, worker: int, n: int) -> int:
    """Add ``n`` corrections from one process, one transaction each; returns how many."""
    from safeladder.corrections import CorrectionStore

    with CorrectionStore(path, embedder=BagOfWords()) as store:
        for j in range(n):
            store.add(
                {
                    "prompt": f"worker {worker} problem {j}",
                    "wrong": f"wrong {worker} {j}",
                    "corrected": f"right {worker} {j}",
                    "author": f"w{worker}",
                }
            )
    return n


#: Hand-made corrections with their expected behaviour (used by the verifier tests and the
#: verifier contract test): a multiplication problem solved by adding, and a capital mix-up.
ROWS: list[dict[str, Any]] = [
    {
        "id": "mul-by-adding",
        "prompt": "Q: Tom has 7 bags with 8 pens in each bag. How many pens does Tom have?",
        "wrong": "Tom has 7 and 8, so I add them: 7 + 8 = 15. The answer is 15.",
        "corrected": "Each of the 7 bags holds 8 pens, so multiply: 7 * 8 = 56. The answer is 56.",
        "note": "bags of equal size: multiply, do not add",
        "tags": ["mul"],
        "author": "tests",
    },
    {
        "id": "capital-au",
        "prompt": "What is the capital of Australia?",
        "wrong": "The capital of Australia is Sydney, its largest city.",
        "corrected": "The capital of Australia is Canberra, not Sydney.",
        "tags": ["geo"],
        "author": "tests",
    },
    {
        "id": "two-plus-two",
        "prompt": "2+2?",
        "wrong": "The answer is \\boxed{5}.",
        "corrected": "2 + 2 = 4, so the answer is \\boxed{4}.",
        "author": "tests",
    },
]


def minilm_store(path: str | Path) -> Path:
    """A correction store of ``ROWS`` with the packaged MiniLM at ``path`` (made once)."""
    from safeladder.corrections import CorrectionStore

    p = Path(path)
    if not p.exists():
        with CorrectionStore(p) as store:
            store.add_many(ROWS)
    return p


def shared_minilm_store() -> Path:
    """``minilm_store`` in a per-process temporary folder (for configs built by lambdas)."""
    global _SHARED
    if _SHARED is None:
        folder = tempfile.mkdtemp(prefix="safeladder-corrections-")
        atexit.register(shutil.rmtree, folder, True)
        _SHARED = Path(folder) / "store.db"
    return minilm_store(_SHARED)


_SHARED: Path | None = None
