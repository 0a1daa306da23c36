"""``classifier`` and ``reward_model`` over vision-language checkpoints with a score head.

The checkpoint format is ``safeladder.neural.vision_head``'s: the tiny VLM plus
``safeladder_score_head.safetensors``. Expectations are computed here without the verifier:
the row rendered with the processor's chat template (prompt + image parts, completion as the
assistant turn), one unpadded backbone forward, the last token's hidden state times the head
written out (``W h + b``), then softmax / sigmoid by hand.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.errors import SafeladderWarning, VerifierError
from safeladder.images import load_image
from safeladder.neural.vision_head import SCORE_HEAD_FILE, save_vision_score_head
from safeladder.verifiers import build_verifier
from tests.helpers import assert_batch_equals_rows, assert_in_range_or_nan
from tests.neural.tiny_vlm import (
    png_bytes,
    qwen2_vl_processor_without_torchvision,
    tiny_vlm_dir,
)

torch.set_num_threads(1)
CPU = {"device": "cpu", "dtype": "float32", "cpu_max_padding": 0.9}
GREEN, RED = png_bytes((10, 200, 30)), png_bytes((200, 10, 30))
FAMILIES = ["qwen2_vl", "llava", "idefics3"]
RNG = np.random.default_rng(7)
HEAD_W, HEAD_B = RNG.normal(0, 1, (2, 32)), RNG.normal(0, 1, 2)
RM_W = RNG.normal(0, 1, (1, 32))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("vlm_clf")
    with qwen2_vl_processor_without_torchvision():
        out = {}
        for family in FAMILIES:
            clf, rm = root / f"{family}_clf", root / f"{family}_rm"
            shutil.copytree(tiny_vlm_dir(family), clf)
            shutil.copytree(clf, rm)
            save_vision_score_head(clf, HEAD_W, HEAD_B, id2label={0: "unsafe", 1: "safe"})
            save_vision_score_head(rm, RM_W)
            out[family], out[f"{family}_rm"] = clf, rm
        yield out


def samples() -> list[Sample]:
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    return [
        Sample(prompt="Describe it", completion="A green field.", images=(GREEN,)),
        Sample(prompt="Describe it", completion="A green field.", images=(RED,)),
        Sample(prompt="Text only, a longer question than the others", completion="Sure."),
        Sample(prompt=chat, completion="Two pictures.", images=(GREEN, RED)),
    ]


def head_logits(v: Any, s: Sample, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """W h + b for the last token's final hidden state of one unpadded backbone forward."""
    proc, backbone = v.loaded.processor, v.loaded.replicas[0].backbone
    if isinstance(s.prompt, list):
        # The chat has one image placeholder; the row's other image leads the user turn.
        (user,) = s.prompt
        prompt = [{**user, "content": [{"type": "image"}, *user["content"]]}]
    else:
        parts = [{"type": "image"} for _ in s.images] + [{"type": "text", "text": s.prompt}]
        prompt = [{"role": "user", "content": parts}]
    msgs = [*prompt, {"role": "assistant", "content": [{"type": "text", "text": s.completion}]}]
    text = proc.apply_chat_template(msgs, tokenize=False)
    enc = proc(text=[text], images=[load_image(x) for x in s.images] or None, return_tensors="pt")
    with torch.inference_mode():
        h = backbone(**enc).last_hidden_state[0, -1].double().numpy()
    return w @ h + (b if b is not None else 0.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_classifier_scores_equal_head_by_hand_and_rows(dirs: dict[str, Path], family: str) -> None:
    cfg = {"type": "classifier", "path": str(dirs[family]), "good_label": "safe", "runtime": CPU}
    v: Any = build_verifier(cfg)
    assert v.reads_images and v.labels == ["unsafe", "safe"]
    rows = samples()
    got = assert_batch_equals_rows(v, rows, atol=1e-5)
    assert_in_range_or_nan(v, got)
    for i, s in enumerate(rows):
        z = head_logits(v, s, HEAD_W, HEAD_B)
        p_safe = np.exp(z[1]) / np.exp(z).sum()
        assert abs(float(got.scores[i]) - p_safe) <= 1e-5, i
    assert got.scores[0] != got.scores[1]  # same text, different image


@pytest.mark.parametrize("family", FAMILIES)
def test_reward_model_is_the_raw_head(dirs: dict[str, Path], family: str) -> None:
    v = build_verifier({"type": "reward_model", "path": str(dirs[f"{family}_rm"]), "runtime": CPU})
    rows = samples()
    got = assert_batch_equals_rows(v, rows, atol=1e-5)
    for i, s in enumerate(rows):
        assert abs(float(got.scores[i]) - float(head_logits(v, s, RM_W, None)[0])) <= 1e-5


def test_row_errors_are_isolated(dirs: dict[str, Path]) -> None:
    bad = Sample(prompt="Describe", completion="x", images=("data:image/png;base64,AAAA",))
    rows = [samples()[0], bad, samples()[2]]
    cfg = {
        "type": "classifier",
        "path": str(dirs["qwen2_vl"]),
        "good_label": "safe",
        "runtime": CPU,
    }
    got = build_verifier({**cfg, "on_error": "abstain"}).score(SampleBatch.from_samples(rows))
    assert list(got.status) == ["ok", "error", "ok"]
    assert "row 1: image 0" in got.details[1]["reason"]
    with pytest.raises(VerifierError, match="row 1"):
        build_verifier(cfg).score(SampleBatch.from_samples(rows))
    # Images (and the template) that alone exceed max_length: that row's error.
    tiny = {**cfg, "render": {"max_length": 8}, "on_error": "abstain"}
    got = build_verifier(tiny).score(SampleBatch.from_samples(rows[:1]))
    assert got.status[0] == "error" and "max_length=8" in got.details[0]["reason"]


@pytest.mark.parametrize("family", FAMILIES)
def test_long_text_is_cut_around_the_images(dirs: dict[str, Path], family: str) -> None:
    cfg = {"type": "classifier", "path": str(dirs[family]), "good_label": "safe", "runtime": CPU}
    v: Any = build_verifier({**cfg, "render": {"max_length": 120}})
    long_prompt = Sample(
        prompt="START " + "word " * 300 + "END?", completion="Fine.", images=(GREEN,)
    )
    long_answer = Sample(prompt="Q?", completion="BEGIN " + "so " * 300 + "DONE.", images=(RED,))
    batch = SampleBatch.from_samples([long_prompt, long_answer])
    prep = v._prepare(batch)
    assert prep.truncated.tolist() == [True, True]
    image_id = v.loaded.processor.image_token_id
    for row in prep.inputs:
        # Every image token kept: Qwen2-VL grid t*h*w / 2**2, the others 4 per image.
        grid = row.images.get("image_grid_thw")
        n_image = int(grid.prod()) // 4 if grid is not None else 4
        assert len(row) <= 120 and row.ids.count(image_id) == n_image
    first, second = (v.loaded.tokenizer.decode(list(r.ids)) for r in prep.inputs)
    assert "END?" in first and "START" not in first and "Fine." in first  # prompt end kept
    assert "DONE." in second and "BEGIN" not in second and "Q?" not in second  # answer end kept
    with pytest.warns(SafeladderWarning, match="truncated"):
        got = v.score(batch)
    assert list(got.status) == ["ok", "ok"] and got.details[0]["truncated"] is True


def test_checkpoint_format_is_checked(dirs: dict[str, Path], tmp_path: Path) -> None:
    plain = tmp_path / "no_head"
    shutil.copytree(dirs["llava"], plain)
    (plain / SCORE_HEAD_FILE).unlink()
    cfg = {"type": "classifier", "path": str(plain), "good_label": "safe", "runtime": CPU}
    with pytest.raises(ConfigError, match=SCORE_HEAD_FILE):
        build_verifier(cfg)
    # Labels in config.json and head rows must agree.
    save_vision_score_head(plain, HEAD_W, HEAD_B, id2label={0: "unsafe", 1: "safe"})
    data = json.loads((plain / "config.json").read_text())
    data["id2label"] = {"0": "only"}
    (plain / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="2 outputs but config.json has 1"):
        build_verifier({**cfg, "good_label": None})
    with pytest.raises(ConfigError, match="'plain'"):
        build_verifier({**cfg, "path": str(dirs["llava"]), "render": {"template": "plain"}})


def test_placeholder_without_an_image_is_that_rows_error(dirs: dict[str, Path]) -> None:
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Safe?"}]}]
    rows = [samples()[0], Sample(prompt=chat, completion="Yes.")]
    cfg = {"type": "classifier", "path": str(dirs["llava"]), "good_label": "safe", "runtime": CPU}
    got = build_verifier({**cfg, "on_error": "abstain"}).score(SampleBatch.from_samples(rows))
    assert list(got.status) == ["ok", "error"]
    assert "row 1: the prompt has more image placeholders" in got.details[1]["reason"]
