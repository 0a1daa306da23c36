"""A tiny trained policy to try guidance with: ``safeladder generate --demo``.

No pretrained causal LM ships with safeladder (nor can one be fetched offline), so the demo
trains one: a byte-level BPE tokenizer (digits split) and a 3-layer Qwen2 (~0.4 M parameters)
taught synthetic arithmetic word problems in GSM8K's answer format (steps separated by blank
lines, then ``#### n``). A short run makes it right only sometimes, which is what guidance is
for. ``benchmarks/bench_guidance.py`` measures best-of-N / guided search / voting with the same
recipe (more steps).

- ``demo_policy()`` returns the model directory: trained on first use (about 30 s on one CPU
  thread), then loaded from the cache (``$SAFELADDER_CACHE``, else ``$XDG_CACHE_HOME/safeladder``,
  else ``~/.cache/safeladder``), keyed by the recipe.
- ``arith_check`` is the demo's process reward (a ``custom`` verifier target): it never sees the
  reference, only whether each written equation is right and grounded in the problem.
- ``DEMO_CONFIG`` (guided search with that reward) and ``DEMO_PROMPTS`` (held-out problems with
  their answers) are shipped in the package.

Example::

    from safeladder.guidance import HFGenerator
    from safeladder.guidance.demo_policy import demo_policy

    gen = HFGenerator(str(demo_policy()))
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from safeladder.errors import SafeladderError

EOS = "<|endoftext|>"
#: Written last into a finished model directory: the recipe it was trained with.
RECIPE_FILE = "safeladder_demo_policy.json"
#: The shipped generate config of ``safeladder generate --demo`` (model.path is filled in).
DEMO_CONFIG = Path(str(resources.files("safeladder") / "presets" / "generate" / "demo.yaml"))
#: Held-out problems (another seed than the training corpus) with their answers.
DEMO_PROMPTS = Path(str(resources.files("safeladder") / "defaults" / "demo_prompts.jsonl"))

_NAMES = ["Tom", "Ann", "Bo", "Mia", "Sam", "Eve", "Liz", "Max"]
_ITEMS = ["apples", "pens", "cards", "coins", "books", "shells"]


@dataclass(frozen=True)
class Recipe:
    """How the demo policy is trained; its hash names the cache entry."""

    steps: int = 120  # AdamW steps (~30 s on one CPU); the benchmark trains 450: more answers right
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0
    corpus: int = 4000  # synthetic problems the batches are drawn from
    model: dict[str, int] = field(
        default_factory=lambda: {
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
        }
    )

    def key(self) -> str:
        """A short stable hash of the recipe."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- problems


def make_problem(rng: random.Random) -> dict[str, Any]:
    """One word problem: ``prompt``, ``solution`` (steps, blank lines, ``#### n``),
    ``reference`` (the answer as a string) and ``kind``."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.choice(["add", "sub", "mul", "add_sub"])
    if kind == "add":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        q = f"{name} has {a} {item}. {name} gets {b} more. How many {item} now?"
        steps, ans = [f"{a} + {b} = {a + b}"], a + b
    elif kind == "sub":
        a = rng.randint(5, 30)
        b = rng.randint(1, a - 1)
        q = f"{name} has {a} {item}. {name} gives away {b}. How many {item} are left?"
        steps, ans = [f"{a} - {b} = {a - b}"], a - b
    elif kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = f"{name} has {a} bags with {b} {item} each. How many {item} in all?"
        steps, ans = [f"{a} * {b} = {a * b}"], a * b
    else:
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        c = rng.randint(1, a + b - 1)
        q = (
            f"{name} has {a} {item}. {name} gets {b} more, then gives away {c}. "
            f"How many {item} are left?"
        )
        steps, ans = [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c
    solution = "\n\n".join(steps) + f"\n\n#### {ans}"
    return {"prompt": f"Q: {q}\nA: ", "solution": solution, "reference": str(ans), "kind": kind}


# --------------------------------------------------------------------------- process reward

_EQ = re.compile(r"(\d+) ?([-+*]) ?(\d+) ?= ?(\d+)")
_FINAL = re.compile(r"####\s*(-?\d+)")


def arith_check(sample: Any) -> float | None:
    """Share of passed checks in [0, 1]; None (abstain) when nothing is checkable yet.

    Checks: each equation ``a op b = c`` is right and its operands come from the problem or
    earlier results; once ``#### n`` is written, n repeats the last result and every number of
    the problem was used. The reference is never read.
    """
    text = sample.completion
    prompt = sample.prompt if isinstance(sample.prompt, str) else str(sample.prompt)
    given = re.findall(r"\d+", prompt)
    known = set(given)
    checks: list[bool] = []
    last: str | None = None
    used: set[str] = set()
    for a, op, b, c in _EQ.findall(text):
        x, y = int(a), int(b)
        value = x + y if op == "+" else x - y if op == "-" else x * y
        checks.append(value == int(c) and a in known and b in known)
        used.update((a, b))
        known.add(c)
        last = c
    final = _FINAL.search(text)
    if final is not None:
        checks.append(last is not None and final.group(1) == last)
        checks.append(all(g in used for g in given))
    if not checks:
        return None
    return sum(checks) / len(checks)


# --------------------------------------------------------------------------- training


def train_demo_policy(
    out: str | Path,
    recipe: Recipe | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the tokenizer and the tiny Qwen2 of ``recipe``; save both to ``out``.

    Returns ``{"train_steps", "train_seconds", "final_loss", "params"}`` (loss: mean token
    cross-entropy of the answer over the last 50 steps).
    """
    import time

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    r = recipe or Recipe()
    rng = random.Random(r.seed)
    corpus = [make_problem(rng) for _ in range(r.corpus)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([p["prompt"] + p["solution"] for p in corpus], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.save_pretrained(str(out))
    eos_id = fast.eos_token_id
    cfg = Qwen2Config(
        vocab_size=len(fast),
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=eos_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
        hidden_size=r.model["hidden_size"],
        intermediate_size=r.model["intermediate_size"],
        num_hidden_layers=r.model["num_hidden_layers"],
        num_attention_heads=r.model["num_attention_heads"],
    )
    torch.manual_seed(r.seed)
    model = Qwen2ForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=r.lr, total_steps=r.steps, pct_start=0.1
    )
    encoded = []
    for p in corpus:
        prompt_ids = fast(p["prompt"])["input_ids"]
        answer_ids = fast(p["solution"])["input_ids"] + [eos_id]
        encoded.append((prompt_ids + answer_ids, len(prompt_ids)))
    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    for step in range(r.steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(r.batch)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), eos_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])  # loss on the answer
            mask[i, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log is not None and (step + 1) % 100 == 0:
            log(f"  train step {step + 1}/{r.steps}: loss {sum(losses[-100:]) / 100:.3f}")
    model.eval()
    model.save_pretrained(str(out))
    return {
        "train_steps": r.steps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": round(sum(losses[-50:]) / min(50, len(losses)), 4),
        "params": sum(p.numel() for p in model.parameters()),
    }


def cache_root() -> Path:
    """``$SAFELADDER_CACHE``, else ``$XDG_CACHE_HOME/safeladder``, else ``~/.cache/safeladder``."""
    explicit = os.environ.get("SAFELADDER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "safeladder"


def demo_policy(
    cache_dir: str | Path | None = None,
    recipe: Recipe | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The demo policy's model directory: cached, else trained now and cached.

    Args:
        cache_dir: where cached models live (default ``cache_root()``); the model is in
            ``demo_policy-<recipe hash>`` under it.
        recipe: the training recipe (default ``Recipe()``).
        log: called with progress lines (training only).

    Raises:
        SafeladderError: the cache directory cannot be written.
    """
    r = recipe or Recipe()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / f"demo_policy-{r.key()}"
    if (target / RECIPE_FILE).is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".demo_policy-", dir=root))
    except OSError as exc:
        raise SafeladderError(
            f"cannot write the demo policy's cache in {root}: {exc}; set $SAFELADDER_CACHE to a "
            "writable directory"
        ) from exc
    try:
        if log is not None:
            log(f"training the demo policy ({r.steps} steps, once; cached in {target})")
        info = train_demo_policy(tmp, r, log)
        (tmp / RECIPE_FILE).write_text(
            json.dumps({"recipe": asdict(r), **info}, indent=2) + "\n", encoding="utf-8"
        )
        try:
            tmp.rename(target)  # atomic: a concurrent run sees no half-written model
        except OSError:
            if not (target / RECIPE_FILE).is_file():  # not another run's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_demo_prompts(path: str | Path, n: int = 4, seed: int = 1) -> None:
    """Write ``n`` held-out problems (seed 1; training draws seed 0) as prompt rows with their
    reference and kind: how ``DEMO_PROMPTS`` was made."""
    rng = random.Random(seed)
    with Path(path).open("w", encoding="utf-8") as fh:
        for _ in range(n):
            p = make_problem(rng)
            row = {"prompt": p["prompt"], "reference": p["reference"], "meta": {"kind": p["kind"]}}
            fh.write(json.dumps(row) + "\n")


__all__ = [
    "DEMO_CONFIG",
    "DEMO_PROMPTS",
    "Recipe",
    "arith_check",
    "cache_root",
    "demo_policy",
    "make_problem",
    "train_demo_policy",
    "write_demo_prompts",
]
