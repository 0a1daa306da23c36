"""``safeladder train`` with ``kind: classifier`` over a vision-language base (tiny LLaVA).

The rows are generated here: solid red-ish images labelled 0 and blue-ish ones labelled 1 (the
colour is the only signal; the prompt and the reply are the same on every image row), plus two
text-only rows. A frozen random-init backbone's last-token state still differs between the
two colours, so a linear head separates them in a few dozen CPU steps. Expectations are stated
without the training code: the verifier rebuilt from the output ranks fresh blue images above
fresh red ones, and its score of a row equals ``softmax(W h + b)`` computed here from the saved
head and one unpadded backbone forward of the row rendered by the processor's chat template.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from safeladder import Sample
from safeladder.cli.app import app
from safeladder.errors import ConfigError, InputError
from safeladder.images import load_image
from safeladder.neural.vision_head import SCORE_HEAD_FILE
from safeladder.training.config import parse_train_config
from safeladder.training.data import ImagePointRecord
from safeladder.training.runner import prepare_data, run_training, verifier_config
from safeladder.verifiers import build_verifier
from tests.neural.tiny_vlm import (
    png_bytes,
    qwen2_vl_processor_without_torchvision,
    tiny_vlm_dir,
)

torch.set_num_threads(1)
PROMPT, REPLY = "What colour is this picture?", "It is a picture."
CPU = {"device": "cpu", "dtype": "float32"}


def red(i: int) -> tuple[int, int, int]:
    return (200 + i % 50, 10 + 3 * i, 20)


def blue(i: int) -> tuple[int, int, int]:
    return (20, 10 + 3 * i, 200 + i % 50)


def write_rows(
    root: Path,
    n: int = 12,
    extra: list[dict[str, Any]] | None = None,
    *,
    name: str = "rows.jsonl",
    first: int = 0,
    text_rows: bool = True,
) -> Path:
    """``name`` in ``root``: ``n`` red (label 0) and ``n`` blue (label 1) image rows (shades
    ``first..first+n-1``) with paths relative to the file, two text-only rows, then ``extra``."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i in range(first, first + n):
        for label, colour in ((0, red(i)), (1, blue(i))):
            image = f"img/{label}_{i}.png"
            (root / image).write_bytes(png_bytes(colour))
            rows.append({"prompt": PROMPT, "response": REPLY, "images": [image], "label": label})
    if text_rows:
        rows.append({"prompt": "A question without a picture", "response": "Sure.", "label": 0})
        rows.append({"prompt": "Another one, no picture", "response": "No.", "label": 1})
    rows.extend(extra or [])
    f = root / name
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return f


def config(root: Path, rows: Path, dev: Path | None = None, **over: Any) -> dict[str, Any]:
    """A head-only run on the tiny LLaVA: 30 steps, a dev evaluation every 10."""
    data: dict[str, Any] = {"train": [{"path": str(rows)}], "dev_fraction": 0.3}
    if dev is not None:
        data["dev"] = [{"path": str(dev)}]
    return {
        "kind": "classifier",
        "model": {"path": str(tiny_vlm_dir("llava"))},
        "data": data,
        "train": {
            "max_steps": 30,
            "batch_size": 8,
            "eval_batch_size": 8,
            "max_length": 64,
            "learning_rate": 0.05,
            "eval_steps": 10,
            "device": "cpu",
        },
        "good_label": "1",
        "output_dir": str(root / "out"),
        **over,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One head-only run through ``safeladder train CONFIG``; the output directory."""
    root = tmp_path_factory.mktemp("vlm_train")
    dev = write_rows(root, 4, name="dev.jsonl", first=20, text_rows=False)
    cfg = config(root, write_rows(root), dev)
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output
    yield root / "out"
    shutil.rmtree(root, ignore_errors=True)


def scorer(out: Path, **over: Any) -> Any:
    return build_verifier({**verifier_config(out), "runtime": CPU, **over})


def test_the_output_is_the_vlm_classifier_format(trained: Path) -> None:
    cfg = json.loads((trained / "config.json").read_text())
    assert "vision_config" in cfg and cfg["id2label"] == {"0": "0", "1": "1"}
    assert cfg["problem_type"] == "single_label_classification"
    head = load_file(str(trained / SCORE_HEAD_FILE))
    assert head["weight"].shape == (2, 32) and head["bias"].shape == (2,)
    for f in ("processor_config.json", "tokenizer.json", "safeladder_calibration.json"):
        assert (trained / f).is_file(), f
    assert not (trained / "checkpoints").exists()
    vcfg = yaml.safe_load((trained / "safeladder_verifier.yaml").read_text())
    assert vcfg["type"] == "classifier" and vcfg["good_label"] == "1"


def test_training_loss_falls_and_dev_rows_separate(trained: Path) -> None:
    m = json.loads((trained / "metrics.json").read_text())
    losses = [h["loss"] for h in m["history"] if "loss" in h]
    assert len(losses) == 3 and losses[-1] < losses[0] / 5
    assert m["metrics"]["auroc"] == 1.0
    # The saved verifier, reloaded, scored the dev rows with their images as training did.
    assert m["self_check"]["ok"] and m["self_check"]["max_abs_diff"] < 1e-4
    assert m["split"] == {"train": 26, "dev": 8, "train_groups": 26, "dev_groups": 8}


def test_the_verifier_ranks_unseen_blue_above_red(trained: Path) -> None:
    v = scorer(trained)
    fresh = range(40, 46)  # shades not in the training data
    rows = [Sample(prompt=PROMPT, completion=REPLY, images=(png_bytes(red(i)),)) for i in fresh]
    rows += [Sample(prompt=PROMPT, completion=REPLY, images=(png_bytes(blue(i)),)) for i in fresh]
    rows.append(Sample(prompt="A question without a picture", completion="Sure."))
    got = v.score(rows)
    assert list(got.status) == ["ok"] * len(rows)
    s = np.asarray(got.scores)
    assert s[6:12].min() > s[:6].max()
    assert 0.0 <= s[12] <= 1.0  # a text-only row scores too


def test_the_score_is_the_saved_head_over_the_backbone(trained: Path) -> None:
    v = scorer(trained, calibration="none")
    proc, backbone = v.loaded.processor, v.loaded.replicas[0].backbone
    head = load_file(str(trained / SCORE_HEAD_FILE))
    image = png_bytes(blue(3))
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]},
        {"role": "assistant", "content": [{"type": "text", "text": REPLY}]},
    ]
    text = proc.apply_chat_template(msgs, tokenize=False)
    enc = proc(text=[text], images=[load_image(image)], return_tensors="pt")
    with torch.no_grad():
        h = backbone(**enc).last_hidden_state[0, -1].double()
    z = (head["weight"].double() @ h + head["bias"].double()).numpy()
    p_good = float(np.exp(z[1]) / np.exp(z).sum())
    got = v.score([Sample(prompt=PROMPT, completion=REPLY, images=(image,))])
    assert got.scores[0] == pytest.approx(p_good, abs=1e-5)


def test_rows_carry_their_images(tmp_path: Path) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes(red(1))).decode()
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]}]
    extra = [{"prompt": chat, "response": "That one.", "images": [url], "label": 1}]
    rows = write_rows(tmp_path, n=2, extra=extra)
    data, _, _ = prepare_data(parse_train_config(config(tmp_path, rows)))
    recs = [*data.train, *data.dev]
    assert len(recs) == 7 and all(isinstance(r, ImagePointRecord) for r in recs)
    files = [r for r in recs if isinstance(r, ImagePointRecord) and r.prompt == PROMPT]
    # Paths relative to the data file resolve against its folder.
    want = {str(tmp_path / f"img/{k}_{i}.png") for k in (0, 1) for i in (0, 1)}
    assert {r.images for r in files} == {(w,) for w in want}
    # One prompt, four images: four groups, so the split can hold image rows on both sides.
    assert len({r.group for r in files}) == 4
    (text,) = [r for r in recs if r.prompt == "A question without a picture"]
    assert isinstance(text, ImagePointRecord) and text.images == ()
    (in_chat,) = [r for r in recs if isinstance(r, ImagePointRecord) and r.chat == chat]
    assert in_chat.images == (url,) and in_chat.prompt == "Which?"


@pytest.mark.parametrize("bad", ["missing", "corrupt"])
def test_an_unreadable_image_names_the_row_and_the_file(tmp_path: Path, bad: str) -> None:
    if bad == "corrupt":
        (tmp_path / "img").mkdir()
        (tmp_path / "img/broken.png").write_bytes(b"this is not a PNG")
    extra = [{"prompt": PROMPT, "response": REPLY, "images": ["img/broken.png"], "label": 0}]
    rows = write_rows(tmp_path, n=2, extra=extra)
    cfg = parse_train_config(config(tmp_path, rows))
    with pytest.raises(InputError) as err:
        run_training(cfg, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{rows}: row 7: image 0: ")  # rows 1-4 images, 5-6 text, 7 the bad one
    assert str(tmp_path / "img/broken.png") in msg
    assert ("does not exist" if bad == "missing" else "could not be decoded") in msg


def test_lora_is_merged_into_the_language_model(tmp_path: Path) -> None:
    rows = write_rows(tmp_path, n=6)
    cfg = config(tmp_path, rows, lora={"r": 4, "alpha": 8})
    cfg["train"].update(max_steps=6, eval_steps=None)
    summary = run_training(parse_train_config(cfg), progress=False)
    assert summary.self_check["ok"]
    out = summary.output_dir
    base = load_file(str(tiny_vlm_dir("llava") / "model.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in saved)

    def weight(d: dict[str, torch.Tensor], tower: str) -> torch.Tensor:
        # Saved checkpoints keep transformers' legacy key layout (language_model.model....).
        (k,) = [k for k in d if k.startswith(tower) and k.endswith(".0.self_attn.v_proj.weight")]
        return d[k]

    # v_proj, not q_proj: the pooled last token of the tiny model is EOS = pad, whose embedding
    # is zero, so its query is zero and q_proj gets no gradient.
    lm, vt = "language_model", "vision_tower"
    assert not torch.equal(weight(base, lm), weight(saved, lm))  # adapted and merged
    assert torch.equal(weight(base, vt), weight(saved, vt))  # the vision tower is not
    assert build_verifier({**verifier_config(out), "runtime": CPU}).reads_images


def test_multi_label_heads_train(tmp_path: Path) -> None:
    rows = write_rows(tmp_path, n=6, text_rows=False)
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    for r in lines:  # [is red, is blue]
        r["label"] = [1, 0] if r["label"] == 0 else [0, 1]
    rows.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    cfg = config(tmp_path, rows, multi_label=True)
    cfg["data"]["labels"] = ["red", "blue"]
    cfg["train"].update(max_steps=6, eval_steps=None)
    del cfg["good_label"]
    summary = run_training(parse_train_config(cfg), progress=False)
    assert summary.self_check["ok"]  # per-label probabilities of the rebuilt verifier
    saved = json.loads((summary.output_dir / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    assert saved["id2label"] == {"0": "red", "1": "blue"}


def test_checkpoints_hold_the_head_and_resume_from_it(tmp_path: Path) -> None:
    from safeladder.training import classifier

    cfg = config(tmp_path, write_rows(tmp_path, n=6), keep_checkpoints=True)
    cfg["train"].update(max_steps=4, eval_steps=2)
    first = parse_train_config(cfg)
    data, _, _ = prepare_data(first)
    out = tmp_path / "out"
    classifier.train(first, data, out, progress=False)  # type: ignore[arg-type]
    ckpt = load_file(str(out / "checkpoints/checkpoint-4/model.safetensors"))
    assert sorted(ckpt) == ["score.bias", "score.weight"]  # not the frozen backbone
    again = parse_train_config({**cfg, "resume": True, "train": {**cfg["train"], "max_steps": 6}})
    res = classifier.train(again, data, out, progress=False)  # type: ignore[arg-type]
    assert Path(res.extra["resumed_from"]).name == "checkpoint-4" and res.extra["steps"] == 6


def test_qwen2_vl_trains_with_its_3d_positions(tmp_path: Path) -> None:
    # Qwen2-VL batches need the model's M-RoPE positions (vision.collate calls get_rope_index).
    with qwen2_vl_processor_without_torchvision():
        cfg = config(
            tmp_path, write_rows(tmp_path, n=4), model={"path": str(tiny_vlm_dir("qwen2_vl"))}
        )
        cfg["train"].update(max_steps=4, eval_steps=None)
        summary = run_training(parse_train_config(cfg), progress=False)
    assert summary.self_check["ok"] and summary.self_check["rows"] == summary.split["dev"]
    head = load_file(str(summary.output_dir / SCORE_HEAD_FILE))
    assert head["weight"].shape == (2, 32)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"template": "plain"}, "template: 'plain'"),
        ({"lora": {"r": 2}, "save": "adapter"}, "save: 'adapter'"),
    ],
)
def test_settings_a_vlm_cannot_use_are_refused(
    tmp_path: Path, over: dict[str, Any], match: str
) -> None:
    cfg = parse_train_config(config(tmp_path, write_rows(tmp_path, n=2), **over))
    with pytest.raises(ConfigError, match=match):
        run_training(cfg, progress=False)
