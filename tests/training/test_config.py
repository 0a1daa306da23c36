"""Training configs: the kind union, file errors naming key paths, overrides, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safeladder.errors import ConfigError
from safeladder.training.config import (
    KIND_CONFIGS,
    is_pairwise,
    load_train_config,
    parse_train_config,
)
from safeladder.training.embedding_head import EmbeddingHeadTrainConfig

BASE = {
    "kind": "embedding_head",
    "data": {"train": [{"path": "rows.jsonl"}]},
    "output_dir": "out",
}


def _write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_every_kind_is_registered() -> None:
    assert sorted(KIND_CONFIGS) == [
        "classifier",
        "embedding_head",
        "label_judge",
        "pairwise",
        "tfidf",
    ]


def test_loads_with_paths_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "configs"
    sub.mkdir()
    data = {
        **BASE,
        "data": {
            "train": [{"path": "rows.jsonl"}, {"path": "/abs/x.jsonl"}],
            "dev": [{"path": "../dev.jsonl"}],
        },
    }
    cfg = load_train_config(_write(sub, data))
    assert isinstance(cfg, EmbeddingHeadTrainConfig)
    assert cfg.data.train[0].path == str(sub / "rows.jsonl")
    assert cfg.data.train[1].path == "/abs/x.jsonl"
    assert cfg.data.dev is not None and cfg.data.dev[0].path == str(tmp_path / "dev.jsonl")
    assert cfg.model.packaged == "all-MiniLM-L6-v2"  # the default encoder
    assert not is_pairwise(cfg)
    assert is_pairwise(parse_train_config({**BASE, "mode": "pairwise"}))


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE)
    cfg = load_train_config(p, ["train.seed=7", "data.train.0.limit=5", "mode=pairwise"])
    assert cfg.train.seed == 7 and cfg.data.train[0].limit == 5
    with pytest.raises(
        ConfigError, match=r"cfg\.yaml: train\.seed: Input should be a valid integer"
    ):
        load_train_config(p, ["train.seed=abc"])


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"data": {"train": [{"path": "a", "limt": 3}]}}, r"data\.train\.0\.limt: unknown key"),
        (
            {"data": {"train": [{"path": "a", "limit": 0}]}},
            r"data\.train\.0\.limit: Input should be greater",
        ),
        ({"data": {"train": []}}, r"data\.train: List should have at least 1 item"),
        ({"train": {"epochs": -1}}, r"train\.epochs: Input should be greater than 0"),
        ({"calibration": {"method": "platt"}}, r"calibration\.method: Input should be"),
        ({"model": {"path": "a", "packaged": "all-MiniLM-L6-v2"}}, r"model: .*exactly one"),
        ({"output_dir": None}, r"output_dir: Input should be a valid string"),
        ({"calibration": {"method": "isotonic"}}, r"isotonic cannot be folded"),
        ({"mode": "pairwise", "head": "mlp"}, r"head: 'mlp' \(sklearn\) cannot train"),
        (
            {"model": {"random_init": {"config": {"model_type": "bert"}, "tokenizer": "t"}}},
            r"not random_init",
        ),
    ],
)
def test_errors_name_the_file_and_key_path(tmp_path: Path, patch: dict, message: str) -> None:
    p = _write(tmp_path, {**BASE, **patch})
    with pytest.raises(ConfigError, match=message) as e:
        load_train_config(p)
    assert str(e.value).startswith(str(p))


def test_kind_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kind: missing"):
        load_train_config(_write(tmp_path, {k: v for k, v in BASE.items() if k != "kind"}))
    with pytest.raises(ConfigError, match=r"unknown training kind 'regression'; known: classifier"):
        load_train_config(_write(tmp_path, {**BASE, "kind": "regression"}))
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "missing.yaml")


def test_other_kinds_validate_through_the_union() -> None:
    model = {"model": {"path": "/models/x"}}
    assert parse_train_config({**BASE, **model, "kind": "classifier"}).kind == "classifier"
    pw = parse_train_config({**BASE, **model, "kind": "pairwise"})
    assert pw.kind == "pairwise" and is_pairwise(pw)
    with pytest.raises(ConfigError, match=r"^model: Field required"):
        parse_train_config({**BASE, "kind": "classifier"})
