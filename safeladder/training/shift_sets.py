"""The shared safety sources as labelled test columns: the train-on-A / test-on-B sets.

One verifier's F1 on one data set says little about the next one. This module turns the shared
safety sources (``../shared/data``) into fixed, seeded test sets (**columns**), a benign set for
the false-flag rate, and for each source the training pool the rest of it leaves
(``benchmarks/bench_safety_matrix.py`` trains on those; ``safeladder eval --metrics matrix``
scores a verifier on the columns). Label 1 = unsafe throughout.

Columns (``COLUMNS``):

- ``gptfuzz``: GPTFuzz's upstream ``evaluate`` split (its 20 questions are not in ``train``);
- ``jbb-<attack>``: JailbreakBench artifacts of one attack (GCG, PAIR, JBC, random search
  ``RS``, DSN), restricted to the ``JBB_TEST_FRACTION`` of behaviours (goals) held out, so the
  pool holds no test goal under any attack;
- ``advbench`` / ``strongreject``: each prompt turned into one refusal (safe) and two compliant
  replies (unsafe) by ``augment.harmful_prompt_responses``; the ``TEST_FRACTION`` of prompts;
- ``toxigen``: ToxiGen's human-written hateful (1) / neutral (0) sentences, as the response to
  an empty prompt; ``TEST_FRACTION`` of them.

Benign answers (the false-flag set, every row label 0): the hand-written scary-sounding
questions (``configs/train/data/safety_benign_scary.jsonl``, tag ``scary``), TruthfulQA correct
answers (``truthfulqa``, rows ``BENIGN_TRUTHFULQA``) and GSM8K solutions (``gsm8k``, rows
``BENIGN_GSM8K``), through ``augment.benign_answers``, answered rows only. The row ranges start
where the shipped recipes' ``limit`` ends, so those recipes never trained on them. Two held-out
hand-written sets of this checkout (``benchmarks/data``) add helpful answers of the kind an RL
policy writes: ``everyday`` (answers to everyday requests: cooking, pets, code, money) and
``lookalike`` (answers to harmless requests that sound dangerous: killing processes, poison
control, hunting, chemicals). Their training halves are in the shipped recipes; these halves
are in none.

Splits are grouped (``split.grouped_split``) by normalised prompt or goal and seeded from
``SEED`` and a name, so the same files always give the same sets; ``test_limit`` /
``benign_limit`` keep a seeded sample of each column / benign subset (the same sample for the
same limit).

>>> COLUMNS[:3]
('gptfuzz', 'jbb-GCG', 'jbb-PAIR')
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from safeladder.errors import InputError

SEED = 0
DEV_FRACTION = 0.15  # share of a source pool's groups held out as its dev split
TEST_FRACTION = 0.3  # share of groups held out as the test set (AdvBench, StrongREJECT, ToxiGen)
JBB_TEST_FRACTION = 0.4  # share of JailbreakBench behaviours (goals) held out for the tests
BENIGN_TRUTHFULQA = (600, 1000)  # TruthfulQA correct answers [start, stop): recipes use 600
BENIGN_GSM8K = (300, 600)  # GSM8K solutions [start, stop): the recipes train on the first 300

#: JailbreakBench ``attack`` field → column suffix.
JBB_ATTACKS = {
    "GCG": "GCG",
    "PAIR": "PAIR",
    "JBC": "JBC",
    "prompt_with_random_search": "RS",
    "DSN": "DSN",
}
SOURCES = ("gptfuzz", "jbb", "advbench", "strongreject", "toxigen")
COLUMNS = (
    "gptfuzz",
    *(f"jbb-{a}" for a in JBB_ATTACKS.values()),
    "advbench",
    "strongreject",
    "toxigen",
)
#: Benign subsets (the false-flag set), in order.
BENIGN_TAGS = ("scary", "truthfulqa", "gsm8k", "everyday", "lookalike")
#: File names in the shared data directory, by source / benign subset.
FILES = {
    "gptfuzz": "gptfuzz_labeled_responses.jsonl.gz",
    "jbb": "jailbreakbench_artifacts.jsonl.gz",
    "advbench": "advbench_harmful_behaviors.jsonl",
    "strongreject": "strongreject_prompts.jsonl",
    "toxigen": "toxigen_demonstrations.jsonl",
    "truthfulqa": "truthfulqa_answers.jsonl",
    "gsm8k": "gsm8k_train.jsonl.gz",
}
SCARY_FILE = "safety_benign_scary.jsonl"
#: The training pools ``scripts/write_shift_pools.py`` writes from a source: every row of it
#: but the matrix's test rows (and, for JailbreakBench, but PAIR's).
POOL_FILES = {"jbb": "jbb_pool.jsonl", "toxigen": "toxigen_pool.jsonl"}
#: The scary set of this checkout (the shipped safety recipes train on it; not packaged).
DEFAULT_SCARY = Path(__file__).resolve().parents[2] / "configs" / "train" / "data" / SCARY_FILE
#: The held-out benign answer sets of this checkout, by tag (no recipe trains on them; not
#: packaged). Their names differ from the training halves' (``everyday_answers.jsonl``,
#: ``safety_benign_lookalike.jsonl``), so ``training_overlap`` tells them apart.
HELDOUT_FILES = {
    "everyday": "everyday_answers_heldout.jsonl",
    "lookalike": "benign_lookalike_heldout.jsonl",
}
HELDOUT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "data"


@dataclass(frozen=True)
class ColumnSpec:
    """Which rows of which file a column (or benign subset) holds, to compare with a training
    source: rows of ``file`` whose fields equal ``where``, and of those (``rows``) the
    ``[start, stop)`` range (None: all)."""

    file: str
    where: Mapping[str, Any] = field(default_factory=dict)
    rows: tuple[int, int] | None = None


#: The file and row filter behind each column and benign subset.
SPECS: dict[str, ColumnSpec] = {
    "gptfuzz": ColumnSpec(FILES["gptfuzz"], {"split": "evaluate"}),
    **{
        f"jbb-{short}": ColumnSpec(FILES["jbb"], {"attack": attack})
        for attack, short in JBB_ATTACKS.items()
    },
    "advbench": ColumnSpec(FILES["advbench"]),
    "strongreject": ColumnSpec(FILES["strongreject"]),
    "toxigen": ColumnSpec(FILES["toxigen"]),
    "scary": ColumnSpec(SCARY_FILE),
    "truthfulqa": ColumnSpec(FILES["truthfulqa"], {"label": 1}, BENIGN_TRUTHFULQA),
    "gsm8k": ColumnSpec(FILES["gsm8k"], {}, BENIGN_GSM8K),
    **{tag: ColumnSpec(name) for tag, name in HELDOUT_FILES.items()},
}


@dataclass(frozen=True)
class Row:
    """One labelled (prompt, response); ``keys``: normalised prompt / goal, for leak checks;
    ``tag``: the JBB attack (column suffix) or the benign subset."""

    uid: str
    prompt: str
    response: str
    label: int
    group: str
    keys: frozenset[str]
    tag: str = ""


@dataclass
class Source:
    """A training source: its pool split into train / dev, and its test part(s)."""

    train: list[Row]
    dev: list[Row]
    tests: dict[str, list[Row]] = field(default_factory=dict)


@dataclass
class ShiftSets:
    """Every column's rows (``tests``, in ``COLUMNS`` order), the benign answers and the
    sources' training pools."""

    tests: dict[str, list[Row]]
    benign: list[Row]
    sources: dict[str, Source]

    def rows(self) -> list[Row]:
        """All rows scored by a matrix: the columns in order, then the benign answers."""
        return [*(r for c in COLUMNS for r in self.tests[c]), *self.benign]


def normalize(text: str) -> str:
    """The grouping key of a prompt (``training.data.normalize_group``)."""
    from safeladder.training.data import normalize_group

    return normalize_group(text)


def make_row(uid: str, prompt: str, response: str, label: int, group: str, *extra: str) -> Row:
    """A ``Row`` whose keys are the normalised prompt, the group and ``extra`` texts."""
    keys = frozenset(k for k in (normalize(prompt), group, *map(normalize, extra)) if k)
    return Row(uid, prompt, response, int(label), group, keys)


def _read(path: Path) -> list[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _records(path: Path, augment: str, keep_label: int | None = None, **source: Any) -> list[Row]:
    """Rows of one file through the project's loader and row generator (as a recipe reads)."""
    from safeladder.training.common import DataSource, PointRecord
    from safeladder.training.data import load_records

    src = DataSource(path=str(path), augment=augment, **source)
    recs = load_records([src], pairwise=False, labels=["0", "1"]).records
    out = []
    for r in recs:
        assert isinstance(r, PointRecord) and isinstance(r.label, int)
        if keep_label is not None and r.label != keep_label:
            continue
        out.append(
            make_row(f"{path.name}:{r.row}", r.prompt, r.response or "", int(r.label), r.group)
        )
    return out


def seed_of(salt: str) -> int:
    """The seed of one split or sample: ``SEED`` and a name."""
    return SEED * 1_000_003 + int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)


def split_rows(rows: list[Row], fraction: float, salt: str) -> tuple[list[Row], list[Row]]:
    """(rest, held out): a seeded split by group (``split.grouped_split``, the runner's)."""
    from safeladder.training.split import grouped_split

    s = grouped_split(rows, fraction, seed=seed_of(salt))  # type: ignore[arg-type]
    return list(s.train), list(s.dev)


def sample_rows(rows: list[Row], k: int | None, salt: str) -> list[Row]:
    """A seeded sample of ``k`` rows in their order (all of them when ``k`` is None or more)."""
    if k is None or len(rows) <= k:
        return rows
    idx = sorted(random.Random(seed_of(salt)).sample(range(len(rows)), k))
    return [rows[i] for i in idx]


def check_files(shared: Path, scary: Path, heldout: Path = HELDOUT_DIR) -> None:
    """Raise ``InputError`` naming every source file the sets need that is missing."""
    if not shared.is_dir():
        raise InputError(
            f"{shared}: the shared data directory is missing (it holds {', '.join(FILES.values())})"
        )
    missing = [str(shared / name) for name in FILES.values() if not (shared / name).is_file()]
    if not scary.is_file():
        missing.append(
            f"{scary} (the benign scary-sounding answers: a checkout's {SCARY_FILE} under "
            "configs/train/data)"
        )
    missing += [
        f"{heldout / name} (held-out benign answers: a checkout's benchmarks/data)"
        for name in HELDOUT_FILES.values()
        if not (heldout / name).is_file()
    ]
    if missing:
        raise InputError(
            "the safety shift sets need these files, missing: " + "; ".join(missing), field="path"
        )


def load_shift_sets(
    shared: Path,
    scary: Path = DEFAULT_SCARY,
    *,
    pool_limit: int | None = None,
    test_limit: int | None = None,
    benign_limit: int | None = None,
    heldout: Path = HELDOUT_DIR,
) -> ShiftSets:
    """Read the sources of ``shared`` into the columns, the benign answers and the pools.

    Args:
        shared: the shared data directory (``FILES``).
        scary: the benign scary-sounding answers (JSONL: prompt, response).
        pool_limit: keep a seeded sample of this many rows of each training pool.
        test_limit: keep a seeded sample of this many rows of each column.
        benign_limit: keep a seeded sample of this many rows of each benign subset.
        heldout: the directory of the held-out benign answer sets (``HELDOUT_FILES``).

    Raises:
        InputError: a file is missing (naming it).
    """
    check_files(shared, scary, heldout)
    sources: dict[str, Source] = {}
    tests: dict[str, list[Row]] = {}

    def add(name: str, pool: list[Row], test_parts: dict[str, list[Row]]) -> None:
        pool = sample_rows(pool, pool_limit, f"pool:{name}")
        train, dev = split_rows(pool, DEV_FRACTION, f"dev:{name}")
        parts = {k: sample_rows(v, test_limit, f"test:{k}") for k, v in test_parts.items()}
        sources[name] = Source(train, dev, parts)
        tests.update(parts)

    g = _read(shared / FILES["gptfuzz"])
    gf = {
        s: [
            make_row(f"gptfuzz:{i}", r["prompt"], r["response"], r["label"], normalize(r["prompt"]))
            for i, r in enumerate(g)
            if r["split"] == s
        ]
        for s in ("train", "evaluate")
    }
    add("gptfuzz", gf["train"], {"gptfuzz": gf["evaluate"]})

    jbb = [
        replace(
            make_row(f"jbb:{i}", r["prompt"], r["response"], r["label"], normalize(r["goal"])),
            tag=JBB_ATTACKS[r["attack"]],
        )
        for i, r in enumerate(_read(shared / FILES["jbb"]))
    ]
    jpool, jtest = split_rows(jbb, JBB_TEST_FRACTION, "test:jbb")
    add("jbb", jpool, {f"jbb-{a}": [r for r in jtest if r.tag == a] for a in JBB_ATTACKS.values()})

    for name in ("advbench", "strongreject"):
        rows = _records(shared / FILES[name], "harmful_prompt_responses")
        pool, test = split_rows(rows, TEST_FRACTION, f"test:{name}")
        add(name, pool, {name: test})

    tox = [
        make_row(f"toxigen:{i}", "", r["prompt"], r["label"], normalize(r["prompt"]), r["prompt"])
        for i, r in enumerate(_read(shared / FILES["toxigen"]))
    ]
    pool, test = split_rows(tox, TEST_FRACTION, "test:toxigen")
    add("toxigen", pool, {"toxigen": test})
    return ShiftSets(tests, benign_answers(shared, scary, benign_limit, heldout), sources)


def benign_answers(
    shared: Path, scary: Path, limit: int | None = None, heldout: Path = HELDOUT_DIR
) -> list[Row]:
    """The false-flag set: answered benign rows (label 0), tagged by subset (``BENIGN_TAGS``)."""
    subsets: dict[str, Sequence[Row]] = {
        "scary": _records(scary, "benign_answers", 0),
        "truthfulqa": _records(
            shared / FILES["truthfulqa"],
            "benign_answers",
            0,
            fields={"prompt": "question", "response": "answer"},
            where={"label": 1},
            limit=BENIGN_TRUTHFULQA[1],
        )[BENIGN_TRUTHFULQA[0] :],
        "gsm8k": _records(
            shared / FILES["gsm8k"],
            "benign_answers",
            0,
            fields={"prompt": "question", "response": "solution", "category": None},
            limit=BENIGN_GSM8K[1],
        )[BENIGN_GSM8K[0] :],
        **{
            tag: _records(heldout / name, "benign_answers", 0)
            for tag, name in HELDOUT_FILES.items()
        },
    }
    out: list[Row] = []
    for tag in BENIGN_TAGS:
        rows = list(subsets[tag])
        out += [replace(r, tag=tag) for r in sample_rows(rows, limit, f"benign:{tag}")]
    return out


# --------------------------------------------------------------------------- training overlap


def training_overlap(spec: ColumnSpec, train_sources: Sequence[Mapping[str, Any]]) -> str | None:
    """Whether a verifier's training data held a column's rows.

    ``train_sources`` are the ``data.train`` entries of a run record (``safeladder_run.json``:
    ``path``, ``where``, ``limit``). Returns ``"seen"`` when some source reads the column's file
    with filters that can select the column's rows (the matrix holds out goals and prompts, a
    recipe's ``where`` cannot, so such a source saw the test rows themselves, or could have),
    ``"source"`` when sources read only other rows of that file (another ``split`` or
    ``attack``; a ``limit`` ending where the column's row range starts; a pool of
    ``POOL_FILES``, which holds the file's rows but the test rows), else None.

    >>> training_overlap(SPECS["gptfuzz"], [{"path": "/d/" + FILES["gptfuzz"],
    ...                                      "where": {"split": "train"}}])
    'source'
    >>> training_overlap(SPECS["jbb-GCG"], [{"path": FILES["jbb"], "where": {"attack": "GCG"}}])
    'seen'
    >>> training_overlap(SPECS["jbb-PAIR"], [{"path": "out/" + POOL_FILES["jbb"]}])
    'source'
    """
    pools = {POOL_FILES[k] for k, f in FILES.items() if f == spec.file and k in POOL_FILES}
    found: str | None = None
    for src in train_sources:
        name = Path(str(src.get("path", ""))).name
        if name in pools:  # other rows of the column's file, its test rows held out
            found = "source"
            continue
        if name != spec.file:
            continue
        where = dict(src.get("where") or {})
        conflict = any(k in where and where[k] != v for k, v in spec.where.items())
        limit = src.get("limit")
        before = (
            spec.rows is not None
            and where == dict(spec.where)
            and isinstance(limit, int)
            and limit <= spec.rows[0]
        )
        if conflict or before:
            found = "source"
        else:
            return "seen"
    return found


__all__ = [
    "BENIGN_TAGS",
    "COLUMNS",
    "DEFAULT_SCARY",
    "FILES",
    "HELDOUT_DIR",
    "HELDOUT_FILES",
    "JBB_ATTACKS",
    "POOL_FILES",
    "SCARY_FILE",
    "SOURCES",
    "SPECS",
    "ColumnSpec",
    "Row",
    "ShiftSets",
    "Source",
    "benign_answers",
    "check_files",
    "load_shift_sets",
    "make_row",
    "normalize",
    "sample_rows",
    "seed_of",
    "split_rows",
    "training_overlap",
]
