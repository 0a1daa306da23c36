"""Does the default reward use the reference each trainer hands over? (issue 10, items 1-2)

Each trainer's exact call with the shipped default reward and no options, on real rows of
../shared/data: right answers (the dataset's own solution) against wrong ones (the same text
with another final answer), and the right solution against another ground truth ("gt read":
the score must depend on the reference). Counts rows where right > wrong, and what a math row
without a reference totals. Prints a table and appends one JSON line to
``benchmarks/results/trainer_defaults.jsonl``.

    python benchmarks/bench_trainer_defaults.py
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import REPO, environment

# --- knobs
GSM8K_ROWS = 40
MATH_ROWS = 40
OPENRLHF_ROWS = 32
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "trainer_defaults.jsonl"


def rows(name: str, n: int) -> list[dict[str, Any]]:
    out = []
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def gsm8k(n: int) -> list[tuple[str, str, str]]:
    return [
        (
            r["solution"],
            r["solution"].rsplit("####", 1)[0] + f"#### {int(r['answer'].replace(',', '')) + 1}",
            r["answer"],
        )
        for r in rows("gsm8k_train.jsonl.gz", n)
    ]


def math_rows(n: int) -> list[tuple[str, str, str]]:
    out = []
    for r in rows("math_train.jsonl.gz", 10 * n):
        if "\\boxed{" in r["solution"] and r["answer"] != "4242":
            wrong = re.sub(r"\\boxed\{.*\}", r"\\boxed{4242}", r["solution"], flags=re.S)
            out.append((r["solution"], wrong, r["answer"]))
        if len(out) == n:
            break
    return out


def verl(pairs: list[tuple[str, str, str]], source: str) -> dict[str, Any]:
    from safeladder.integrations.verl import compute_score

    better = by_truth = 0
    t0 = time.perf_counter()
    for right, wrong, gt in pairs:
        r = compute_score(data_source=source, solution_str=right, ground_truth=gt)["score"]
        w = compute_score(data_source=source, solution_str=wrong, ground_truth=gt)["score"]
        better += r > w
        # the same solution against another ground truth: a reward that reads it must drop
        other = compute_score(data_source=source, solution_str=right, ground_truth="4243")
        by_truth += r > other["score"]
    return {
        "rows": len(pairs),
        "right_beats_wrong": better,
        "right_truth_beats_other_truth": by_truth,
        "s": time.perf_counter() - t0,
    }


def openrlhf_server(pairs: list[tuple[str, str, str]]) -> dict[str, Any]:
    from safeladder import load_reward
    from safeladder.serving import ServeSettings, create_app

    reward = load_reward(None)
    app = create_app(reward, ServeSettings(), close_reward=True)

    async def main() -> tuple[list[float | None], Any]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            posts = []
            for i, (right, _, gt) in enumerate(pairs):
                prompt = f"<|im_start|>user\nQ{i}<|im_end|>\n<|im_start|>assistant\n"
                for label in (gt, "123456789"):  # the right label, then a wrong one
                    body = {"query": [prompt + right], "prompts": [prompt], "labels": [label]}
                    posts.append(c.post("/get_reward", json=body))
            got = [r.json()["rewards"][0] for r in await asyncio.gather(*posts)]
            one = await c.post(
                "/get_reward",
                json={"query": ["2+2? The answer is 4."], "prompts": ["2+2? "], "labels": ["4"]},
            )
            none = await c.post(
                "/get_reward",
                json={"query": ["2+2? The answer is 4."], "prompts": ["2+2? "], "labels": [None]},
            )
            return got, (one.json()["rewards"][0], none.json()["rewards"][0])

    got, (one, none) = asyncio.run(main())
    differ = sum(a != b for a, b in zip(got[::2], got[1::2], strict=True))
    better = sum(a > b for a, b in zip(got[::2], got[1::2], strict=True))
    return {
        "rows": len(pairs),
        "right_label_beats_wrong": better,
        "rows_that_differ": differ,
        "two_plus_two_with_label_4": one,
        "two_plus_two_without_label": none,
    }


def math_without_reference() -> dict[str, Any]:
    from safeladder import load_reward

    with load_reward(None) as reward:
        res = reward.score(
            [
                {"prompt": "q", "completion": "#### 72", "reference": ref, "meta": {"task": "math"}}
                for ref in (None, "", float("nan"))
            ]
        )
    return {
        "totals": [None if math.isnan(t) else float(t) for t in res.total],
        "reasons": res.unscorable_reason,
    }


def main() -> None:
    from safeladder.integrations._common import clear_shared_rewards

    record: dict[str, Any] = {
        "bench": "trainer_defaults",
        "verl_gsm8k": verl(gsm8k(GSM8K_ROWS), "openai/gsm8k"),
        "verl_math": verl(math_rows(MATH_ROWS), "lighteval/MATH"),
        "verl_unknown_source": verl(gsm8k(GSM8K_ROWS), "my/unlisted_dataset"),
        "openrlhf_server": openrlhf_server(gsm8k(OPENRLHF_ROWS)),
        "math_row_without_reference": math_without_reference(),
        **environment(["transformers", "torch", "math-verify"]),
    }
    clear_shared_rewards()
    print(f"{'call':<42} {'right > wrong':>14} {'gt read':>10}")
    for key in ("verl_gsm8k", "verl_math", "verl_unknown_source"):
        r = record[key]
        print(
            f"{key:<42} {r['right_beats_wrong']:>6} / {r['rows']:<6}"
            f" {r['right_truth_beats_other_truth']:>4} / {r['rows']}"
        )
    o = record["openrlhf_server"]
    print(
        f"{'openrlhf /get_reward (labels)':<42} {o['right_label_beats_wrong']:>6} / {o['rows']:<6}"
    )
    print(
        f"'2+2? The answer is 4.' label 4 → {o['two_plus_two_with_label_4']}, no label → "
        f"{o['two_plus_two_without_label']}"
    )
    m = record["math_row_without_reference"]
    print(f"math row with reference None / '' / NaN → totals {m['totals']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
