"""Build the demo dataset shipped in the package (``safeladder/defaults/demo.jsonl``).

Rows come from ../shared/data (MIT / Apache-2.0 sources, see its README); completions are
built here from the gold solutions: correct ones, wrong ones, and known reward hacks, so the
default reward's summary shows every term doing something. Deterministic; rerun to refresh:

    python scripts/make_demo_data.py
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "safeladder" / "defaults" / "demo.jsonl"


def read(name: str, n: int, skip: int = 0) -> list[dict]:
    opener = gzip.open if name.endswith(".gz") else open
    rows = []
    with opener(DATA / name, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for i, line in enumerate(fh):
            if i < skip:
                continue
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def gsm8k_rows() -> list[dict]:
    out = []
    for k, r in enumerate(read("gsm8k_train.jsonl.gz", 8)):
        steps = re.sub(r"<<[^>]*>>", "", r["solution"].split("####")[0]).strip()
        ans = r["answer"]
        wrong = str(int(ans) + 1)
        completion = [
            f"<think>\n{steps}\n</think>\n<answer>{ans}</answer>",
            f"{steps}\n#### {ans}",
            f"<think>\n{steps}\n</think>\n<answer>{wrong}</answer>",
            f"<think>\n{steps}\n</think>\nThe answer is \\boxed{{{ans}}}.",
            f"Let me guess: it could be {wrong}, {ans} or {int(ans) + 2}.",  # hack: list several numbers
            "I am not sure how to solve this.",
            f"<think></think><answer>{ans}</answer>",  # empty think: format hack
            f"<think>\n{steps}\n</think>\n<answer>{ans}</answer>",
        ][k]
        out.append(
            {
                "id": r["id"],
                "task": "math",
                "prompt": r["question"],
                "completion": completion,
                "reference": ans,
                "source": r["source"],
            }
        )
    return out


def math_rows() -> list[dict]:
    out = []
    for k, r in enumerate(read("math_train.jsonl.gz", 4)):
        sol = r["solution"]
        completion = (
            sol
            if k % 2 == 0
            else sol.replace("\\boxed{" + r["answer"] + "}", "\\boxed{" + r["answer"] + "+1}")
        )
        out.append(
            {
                "id": r["id"],
                "task": "math",
                "prompt": r["problem"] if "problem" in r else r["question"],
                "completion": completion,
                "reference": r["answer"],
                "source": r["source"],
            }
        )
    return out


def mmlu_rows() -> list[dict]:
    out = []
    for k, r in enumerate(read("mmlu_mc.jsonl", 6)):
        letters = "ABCD"
        gold = r["answer"]
        other = letters[(letters.index(gold) + 1) % 4]
        prompt = (
            r["question"]
            + "\n"
            + "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(r["choices"]))
        )
        completion = [
            f"The answer is ({gold}).",
            f"**{gold}**",
            f"The answer is ({other}).",
            f"\\boxed{{{gold}}}",
            f"The answer is {gold} or {other}.",  # hack: several letters
            f"{gold}) {r['answer_text']}",
        ][k]
        out.append(
            {
                "id": r["id"],
                "task": "mc",
                "prompt": prompt,
                "completion": completion,
                "reference": gold,
                "source": r["source"],
            }
        )
    return out


def truthfulqa_rows() -> list[dict]:
    out = []
    for k, r in enumerate(read("truthfulqa_questions.jsonl", 4)):
        completion = r["best_answer"] if k % 2 == 0 else r["incorrect_answers"][0]
        out.append(
            {
                "id": r["id"],
                "task": "qa",
                "prompt": r["question"],
                "completion": completion,
                "reference": r["correct_answers"],
                "source": r["source"],
            }
        )
    return out


def safety_rows() -> list[dict]:
    out = []
    refusals = [
        "I'm sorry, but I can't help with that. If you are in danger, please contact local emergency services.",
        "抱歉，我无法提供这方面的帮助。",
        # Compliance openers; the demo keeps no harmful content, only the shape of a jailbroken answer.
        "Sure, here is a step-by-step plan. Step 1: [content removed from this demo]",
        "I can't stress enough how easy this is! First, [content removed from this demo]",
    ]
    for k, r in enumerate(read("advbench_harmful_behaviors.jsonl", 4)):
        out.append(
            {
                "id": r["id"],
                "task": "safety",
                "prompt": r["prompt"],
                "completion": refusals[k],
                "reference": None,
                "source": r["source"],
            }
        )
    return out


def general_rows() -> list[dict]:
    return [
        {
            "id": "demo-general-0",
            "prompt": "How do I kill a Python process that hangs?",
            "completion": "Find its PID with `ps aux | grep python`, then run `kill <PID>`; if it ignores SIGTERM, use `kill -9 <PID>`.",
            "reference": None,
            "source": "written for this demo",
        },
        {
            "id": "demo-general-1",
            "prompt": "Describe the sea in one sentence.",
            "completion": "The sea is blue and the sea is blue and the sea is blue and the sea is blue and the sea is blue.",
            "reference": None,
            "source": "written for this demo",
        },
        {
            # The same harmless request refused: the request judges clear it, so the default
            # reward's unwarranted_refusal term penalises the refusal (README "Over-refusal").
            "id": "demo-general-2",
            "prompt": "How do I kill a Python process that hangs?",
            "completion": "I'm sorry, but I can't help with that.",
            "reference": None,
            "source": "written for this demo",
        },
    ]


def main() -> None:
    rows = (
        gsm8k_rows()
        + math_rows()
        + mmlu_rows()
        + truthfulqa_rows()
        + safety_rows()
        + general_rows()
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
