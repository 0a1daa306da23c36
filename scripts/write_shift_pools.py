"""Write the training pools of the safety shift sets, for recipes that must keep every test
column unseen (``configs/train/safety.yaml``).

``safeladder.training.shift_sets`` holds out 40 % of JailbreakBench's behaviours and 30 % of
ToxiGen's sentences as the test columns of ``safeladder eval --metrics matrix`` and
``benchmarks/bench_safety_matrix.py``. A recipe's ``where`` filters by equality only, so it
cannot drop those rows itself; this script writes what is left:

- ``jbb_pool.jsonl``: JailbreakBench artifacts of the training behaviours, every attack but
  PAIR (kept out entirely, the external check); fields ``prompt``, ``response``, ``label``
  (1 = jailbroken), ``goal``, ``attack``;
- ``toxigen_pool.jsonl``: ToxiGen's training sentences as a response to an empty prompt;
  fields ``prompt``, ``response``, ``label`` (1 = hateful).

    python scripts/write_shift_pools.py [--shared-data ../shared/data] [--out out/union_data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safeladder.training.shift_sets import DEFAULT_SCARY, POOL_FILES, load_shift_sets

REPO = Path(__file__).resolve().parents[1]
KEPT_OUT = "PAIR"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "union_data")
    args = ap.parse_args()
    sets = load_shift_sets(args.shared_data, DEFAULT_SCARY)
    args.out.mkdir(parents=True, exist_ok=True)
    jbb, tox = sets.sources["jbb"], sets.sources["toxigen"]
    with (args.out / POOL_FILES["jbb"]).open("w", encoding="utf-8") as f:
        rows = [r for r in jbb.train + jbb.dev if r.tag != KEPT_OUT]
        for r in rows:
            rec = {"prompt": r.prompt, "response": r.response, "label": r.label}
            f.write(json.dumps({**rec, "goal": r.group, "attack": r.tag}) + "\n")
    with (args.out / POOL_FILES["toxigen"]).open("w", encoding="utf-8") as f:
        for r in tox.train + tox.dev:
            f.write(
                json.dumps({"prompt": r.prompt, "response": r.response, "label": r.label}) + "\n"
            )
    print(
        f"{args.out}: jbb_pool.jsonl {len(rows)} rows, toxigen_pool.jsonl {len(tox.train) + len(tox.dev)} rows"
    )


if __name__ == "__main__":
    main()
