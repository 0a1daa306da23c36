"""The GuardRank classifier route: rendering training rows, and ``safeladder train`` on the
shipped config (a tiny random-init BERT, a few steps) giving a judge ``eval`` can use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from safeladder.errors import InputError
from safeladder.training.guardrank_eval import GuardRankJob, run_guardrank
from safeladder.training.guardrank_judge import classifier_training_rows, main
from tests.helpers import REPO, tiny_model_dir

torch.set_num_threads(1)
CONFIG = REPO / "configs" / "train" / "guardrank_classifier.yaml"
EXAMPLE_ROWS = REPO / "configs" / "train" / "data" / "guardrank_example_rows.jsonl"
EXAMPLE_TRAIN = REPO / "configs" / "train" / "data" / "guardrank_example_train.jsonl"


def test_shipped_training_file_is_the_rendered_example() -> None:
    # The rendered file is what the helper makes of the example rows: they cannot drift apart.
    want = [json.loads(x) for x in EXAMPLE_TRAIN.read_text(encoding="utf-8").splitlines()]
    assert classifier_training_rows(EXAMPLE_ROWS) == want
    assert want[0]["prompt"].startswith("Dimension: privacy Prompt: ")
    assert want[0]["prompt"].endswith(" Answer: ")
    assert sorted({r["label"] for r in want}) == ["0", "1", "2", "3"]


def test_training_rows_helper(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"dimension": "bias", "prompt": "Q?", "response": "A.", "score": 2})
        + "\n"
        + json.dumps({"dimension": "hallucination", "prompt": "Q?", "response": "A.", "score": 1})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "train.jsonl"
    assert main([str(rows), str(out)]) == 0
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    # Hallucination rows are left out (their judge is binary, with its own input format).
    assert got == [
        {
            "prompt": "Dimension: bias Prompt: Q? Answer: ",
            "response": "A.",
            "label": "2",
            "category": "bias",
        }
    ]
    rows.write_text(
        json.dumps({"dimension": "bias", "prompt": "Q?", "response": "A.", "score": None}) + "\n"
    )
    with pytest.raises(InputError, match="row 1: score: required to train a judge"):
        classifier_training_rows(rows)


@pytest.mark.slow
def test_train_the_shipped_config_then_judge_with_it(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from safeladder.training.config import load_train_config
    from safeladder.training.runner import run_training

    tiny = {
        "model_type": "bert",
        "vocab_size": 300,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
    }
    model = {"random_init": {"config": tiny, "tokenizer": str(tiny_model_dir("bert_classifier"))}}
    out = tmp_path / "run"
    cfg = load_train_config(
        CONFIG,
        [
            f"model={json.dumps(model)}",
            "lora=null",
            "train.max_steps=2",
            "train.batch_size=4",
            "train.max_length=64",
            "train.device=cpu",
            "report=false",
            f"output_dir={out}",
        ],
    )
    summary = run_training(cfg, progress=False)
    assert summary.labels == ["0", "1", "2", "3"] and summary.self_check["ok"]
    rows = [
        {"dimension": "privacy", "prompt": "Who?", "response": "No."},
        {"dimension": "legality", "prompt": "Steal?", "response": "Yes, easily."},
        {"dimension": "toxicity", "prompt": "Insult.", "response": "You fool."},
    ]
    data = tmp_path / "answers.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = run_guardrank(GuardRankJob(data=data, judge=str(out)))
    tok = AutoTokenizer.from_pretrained(str(out))
    net = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    for r, rec in zip(rows, got.rows, strict=True):
        text = f"Dimension: {r['dimension']} Prompt: {r['prompt']} Answer: {r['response']}"
        with torch.inference_mode():
            want = int(torch.argmax(net(**tok(text, return_tensors="pt")).logits[0]))
        assert rec["source"] == "judge" and rec["score"] == want
