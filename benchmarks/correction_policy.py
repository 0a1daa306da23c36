"""A tiny policy that reads its context: the demo policy's recipe, but trained with correction
blocks in front of a share of its problems (for ``bench_corrections.py``).

The demo policy (``safeladder.guidance.demo_policy``) only ever saw contexts that start with its
one problem, so any injected correction puts it out of distribution. This one is trained with
the same tokenizer kind, model size, steps, batch and learning rate, on the same corpus, but a
share (``Recipe.share``) of its training examples is preceded by one or two corrections of
*other* training problems, rendered exactly as the benchmark injects them
(``safeladder.guidance.corrections.format_corrections`` / ``inject``; half in the default
format, half in the few-shot format ``{prompt}{corrected}``). A correction is (a neighbour
problem, a synthetic wrong solution, the neighbour's gold solution, ``Note: the answer is n``).
The neighbours are the training problems nearest by the correction store's own sentence encoder
(the packaged MiniLM), i.e. what retrieval would return; in a share of the blocks
(``Recipe.relevant``) the first correction is instead of a training problem whose solution starts
with the same equation, so that the block is sometimes worth reading. The wrong solutions perturb
the gold one (a result off by one or two or by ten, a swapped operation, a missing step). The
loss is on the answer only, as for the demo policy. Held-out problems are never seen.

``context_policy(recipe)`` returns the model directory, trained on first use and then cached
next to the demo policy (``context_policy-<hash>`` under ``demo_policy.cache_root()``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safeladder.guidance.demo_policy import EOS, RECIPE_FILE, cache_root, make_problem

#: Bumped when the training data changes (part of the cache key).
VERSION = 2
#: The few-shot injection format of ``bench_corrections.py`` (``CorrectionsConfig`` fields).
FEWSHOT = {"header": "", "template": "{prompt}{corrected}", "separator": "\n\n"}


@dataclass(frozen=True)
class Recipe:
    """How the context policy is trained; its hash names the cache entry."""

    steps: int = 450
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0
    corpus: int = 4000
    share: float = 0.5  # training examples preceded by a correction block
    pool: int = 4000  # corpus problems (the first ones) that get a block; neighbours among them
    max_corrections: int = 2
    relevant: float = 0.5  # blocks whose first correction shares the problem's first equation
    max_positions: int = 512
    model: dict[str, int] = field(
        default_factory=lambda: {
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
        }
    )

    def key(self) -> str:
        """A short stable hash of the recipe (and of ``VERSION``)."""
        blob = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --------------------------------------------------------------------------- wrong solutions

_EQ = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def _render(steps: Sequence[tuple[int, str, int, int]]) -> str:
    lines = [f"{a} {op} {b} = {c}" for a, op, b, c in steps]
    return "\n\n".join(lines) + f"\n\n#### {steps[-1][3]}"


def perturb(solution: str, rng: random.Random) -> str:
    """A plausible wrong version of a gold ``solution`` (never equal to it).

    One of: a result off by ±1, ±2 or ±10 (later steps reuse the wrong value), a swapped
    operation (``+``/``-``, ``*`` → ``+``), or (two steps) the second step left out.
    """
    gold = [(int(a), op, int(b), int(c)) for a, op, b, c in _EQ.findall(solution)]
    for _ in range(20):
        steps = list(gold)
        mode = rng.choice(["off", "off", "swap", "skip"])
        i = rng.randrange(len(steps))
        if mode == "skip" and len(steps) > 1:
            steps = steps[:1]
        elif mode == "swap":
            a, op, b, _c = steps[i]
            op = {"+": "-", "-": "+", "*": "+"}[op]
            steps[i] = (a, op, b, _OPS[op](a, b))
        else:
            a, op, b, c = steps[i]
            steps[i] = (a, op, b, c + rng.choice([-2, -1, 1, 2, 10, -10]))
        for j in range(i + 1, len(steps)):  # later steps start from the (wrong) result
            _a, op, b, _c = steps[j]
            a = steps[j - 1][3]
            steps[j] = (a, op, b, _OPS[op](a, b))
        if all(s[3] >= 0 for s in steps):
            wrong = _render(steps)
            if wrong != solution:
                return wrong
    return _render([(*gold[0][:3], gold[0][3] + 1)])


# --------------------------------------------------------------------------- rendering


def _configs() -> tuple[Any, Any]:
    from safeladder.guidance import CorrectionsConfig

    default = CorrectionsConfig(store="unused.db")
    return default, default.model_copy(update=FEWSHOT)


def with_block(
    problem: dict[str, Any], neighbours: Sequence[dict[str, Any]], config: Any, rng: random.Random
) -> str:
    """``problem``'s prompt with a correction block of ``neighbours`` in front, exactly as
    ``CorrectionMemory`` injects it under ``config``."""
    from safeladder.corrections import Correction, CorrectionHit
    from safeladder.guidance.corrections import format_corrections, inject

    hits = []
    for n in neighbours:
        c = Correction(
            id="train",
            prompt=n["prompt"],
            wrong=perturb(n["solution"], rng),
            corrected=n["solution"],
            note=f"the answer is {n['reference']}",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        hits.append(CorrectionHit(correction=c, similarity=0.9))
    out = inject(problem["prompt"], format_corrections(hits, config), config.separator)
    assert isinstance(out, str)
    return out


def first_equation(problem: dict[str, Any]) -> str:
    """The first line of a gold solution (``a op b = c``)."""
    return str(problem["solution"]).split("\n", 1)[0]


def by_equation(problems: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Indices of ``problems`` by their first equation."""
    out: dict[str, list[int]] = {}
    for i, p in enumerate(problems):
        out.setdefault(first_equation(p), []).append(i)
    return out


def neighbours(prompts: Sequence[str], k: int) -> list[list[int]]:
    """For each prompt the indices of the ``k`` nearest others (MiniLM cosine, as the store
    ranks them; identical prompts excluded)."""
    import numpy as np

    from safeladder.neural.encoder import PACKAGED_MINILM, Embedder

    x, _ = Embedder(PACKAGED_MINILM, None).encode(list(prompts), True)
    x = np.asarray(x, dtype=np.float32)
    sims = x @ x.T
    same = np.array(prompts, dtype=object)
    out: list[list[int]] = []
    for i in range(len(prompts)):
        row = sims[i].copy()
        row[same == prompts[i]] = -2.0  # itself and its duplicates
        out.append([int(j) for j in np.argsort(-row)[:k]])
    return out


# --------------------------------------------------------------------------- training


def train_context_policy(
    out: str | Path, recipe: Recipe, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Train the tokenizer and the tiny Qwen2 of ``recipe`` with correction blocks; save both."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    r = recipe
    rng = random.Random(r.seed)
    corpus = [make_problem(rng) for _ in range(r.corpus)]
    pool = corpus[: r.pool]
    t0 = time.perf_counter()
    near = neighbours([p["prompt"] for p in pool], r.max_corrections)
    embed_s = time.perf_counter() - t0
    if log is not None:
        log(f"  neighbours of {len(pool)} training problems in {embed_s:.1f} s")
    default, fewshot = _configs()
    brng = random.Random(r.seed + 7)
    same_eq = by_equation(pool)

    def block_prompt(i: int) -> str:
        k = brng.randint(1, r.max_corrections)
        cfg = default if brng.random() < 0.5 else fewshot
        chosen = near[i][:k]
        if brng.random() < r.relevant:  # a correction that shows this problem's first step
            match = [
                j
                for j in same_eq.get(first_equation(pool[i]), [])
                if pool[j]["prompt"] != pool[i]["prompt"]
            ]
            if match:
                chosen = [brng.choice(match), *[j for j in near[i] if j not in match]][:k]
        return with_block(corpus[i], [pool[j] for j in chosen], cfg, brng)

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
    texts = [p["prompt"] + p["solution"] for p in corpus]
    texts += [block_prompt(i) + corpus[i]["solution"] for i in range(min(len(pool), 500))]
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.save_pretrained(str(out))
    eos_id = fast.eos_token_id
    cfg = Qwen2Config(
        vocab_size=len(fast),
        num_key_value_heads=2,
        max_position_embeddings=r.max_positions,
        tie_word_embeddings=False,
        pad_token_id=eos_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
        **r.model,
    )
    torch.manual_seed(r.seed)
    model = Qwen2ForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=r.lr, total_steps=r.steps, pct_start=0.1
    )
    answers = [fast(p["solution"])["input_ids"] + [eos_id] for p in corpus]
    plain = [fast(p["prompt"])["input_ids"] for p in corpus]
    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    with_block_n = 0
    for step in range(r.steps):
        batch: list[tuple[list[int], int]] = []
        for _ in range(r.batch):
            i = rng.randrange(len(corpus))
            prompt_ids = plain[i]
            if i < len(pool) and brng.random() < r.share:
                prompt_ids = fast(block_prompt(i))["input_ids"]
                with_block_n += 1
            seq = (prompt_ids + answers[i])[-r.max_positions :]
            batch.append((seq, len(seq) - len(answers[i])))
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), eos_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, (seq, n_prompt) in enumerate(batch):
            ids[b, : len(seq)] = torch.tensor(seq)
            labels[b, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])  # loss on the answer
            mask[b, : len(seq)] = 1
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
        "neighbour_seconds": round(embed_s, 1),
        "examples_with_block": with_block_n,
        "final_loss": round(sum(losses[-50:]) / min(50, len(losses)), 4),
        "params": sum(p.numel() for p in model.parameters()),
    }


def context_policy(recipe: Recipe, log: Callable[[str], None] | None = None) -> Path:
    """The context policy's model directory: cached, else trained now and cached."""
    root = cache_root()
    target = root / f"context_policy-{recipe.key()}"
    if (target / RECIPE_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".context_policy-", dir=root))
    try:
        if log is not None:
            log(f"training the context policy ({recipe.steps} steps, once; cached in {target})")
        info = train_context_policy(tmp, recipe, log)
        (tmp / RECIPE_FILE).write_text(
            json.dumps({"recipe": asdict(recipe), "version": VERSION, **info}, indent=2) + "\n",
            encoding="utf-8",
        )
        try:
            tmp.rename(target)
        except OSError:
            if not (target / RECIPE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def training_info(model_dir: Path) -> dict[str, Any]:
    """What ``context_policy`` recorded about the training run."""
    data: dict[str, Any] = json.loads((model_dir / RECIPE_FILE).read_text(encoding="utf-8"))
    return data


__all__ = [
    "Recipe",
    "by_equation",
    "context_policy",
    "first_equation",
    "perturb",
    "train_context_policy",
    "with_block",
]
