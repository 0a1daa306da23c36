"""Image-bearing rows in a reward: ``routes.with_images`` adds terms to them, and rows whose
images no applied term looks at are flagged ``images_unread`` (issue 12).

The terms are custom verifiers; ``total_width`` (tests.data.fixtures_images) reads the decoded
images, ``meta_score`` reads only meta, so which term ran on which row shows in the totals.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeladder import ConfigError, Sample, load_reward
from safeladder.errors import SafeladderWarning
from safeladder.images import load_image, prompt_images
from safeladder.rewards import parse_reward_config
from safeladder.scoring.summary import format_summary, summarize_output

FX = "tests.rewards.fixture_verifiers"


def all_widths(sample: Sample) -> float | None:
    """Sum of the widths of the row's images and its chat prompt's images; None without any."""
    refs = [*sample.images, *prompt_images(sample.prompt)]
    return float(sum(load_image(r).size[0] for r in refs)) if refs else None


def png(width: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def text_term(name: str = "text", weight: float = 1.0) -> dict:  # type: ignore[type-arg]
    return {
        "name": name,
        "verifier": {
            "type": "custom",
            "target": f"{FX}:meta_score",
            "kwargs": {"key": "s"},
            "reads_reference": False,
            "reads_images": False,
        },
        "weight": weight,
    }


def width_term(weight: float = 0.01) -> dict:  # type: ignore[type-arg]
    return {
        "name": "width",
        "verifier": {
            "type": "custom",
            "target": "tests.rewards.test_reward_images:all_widths",
            "reads_reference": False,
        },
        "weight": weight,
    }


ROUTED = {
    "terms": [text_term(), width_term()],
    "routes": {
        "key": "task",
        "recipes": {"chat": ["text"]},
        "default": "chat",
        "with_images": ["width"],
    },
}


def chat_with_image(ref: object) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": ref}, {"type": "text", "text": "what is it?"}],
        }
    ]


def test_with_images_adds_its_terms_to_image_bearing_rows_only() -> None:
    res = load_reward(ROUTED).score(
        [
            Sample(prompt="p", completion="c", meta={"s": 1.0}),
            Sample(prompt="p", completion="c", meta={"s": 1.0}, images=[png(10)]),
            Sample(prompt=chat_with_image(png(30)), completion="c", meta={"s": 1.0}),
        ]
    )
    # Row 0: text only. Row 1: 1 + 0.01·10. Row 2 (image in a chat part): 1 + 0.01·30.
    np.testing.assert_allclose(res.total, [1.0, 1.1, 1.3], rtol=1e-6)
    assert res.terms["width"].status.tolist() == ["skipped", "ok", "ok"]
    assert res.route == ["chat", "chat", "chat"]
    assert not res.images_unread.any()


def test_a_placeholder_image_part_without_a_payload_is_not_an_image() -> None:
    # TRL's {"type": "image"} placeholder: the picture lives in the row's images, here none.
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    res = load_reward(ROUTED).score([Sample(prompt=prompt, completion="c", meta={"s": 0.5})])
    assert res.terms["width"].status.tolist() == ["skipped"]
    assert res.total.tolist() == [0.5]


def test_with_images_terms_are_validated_and_count_as_used() -> None:
    bad = {**ROUTED, "routes": {**ROUTED["routes"], "with_images": ["nope"]}}
    with pytest.raises(ConfigError, match=r"routes.with_images: unknown terms \['nope'\]"):
        parse_reward_config(bad)
    # 'width' appears in no recipe; with_images alone makes it a used term.
    parse_reward_config(ROUTED)
    unused = {**ROUTED, "routes": {**ROUTED["routes"], "with_images": []}}
    with pytest.raises(ConfigError, match="nor routes.with_images"):
        parse_reward_config(unused)


def test_rows_whose_images_no_term_looks_at_are_flagged_and_warned_once() -> None:
    reward = load_reward({"terms": [text_term()]})
    rows = [
        Sample(prompt="p", completion="c", meta={"s": 1.0}, images=[png(8)]),
        Sample(prompt="p", completion="c", meta={"s": 1.0}),
        Sample(
            prompt=chat_with_image("data:image/png;base64,AAAA"), completion="c", meta={"s": 1.0}
        ),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = reward.score(rows)
        reward.score(rows)
    assert res.images_unread.tolist() == [True, False, True]
    recs = res.to_records()
    assert recs[0]["images_unread"] is True and "images_unread" not in recs[1]
    assert res.log_dict()["reward/images_unread_rate"] == pytest.approx(2 / 3)
    mine = [str(w.message) for w in caught if issubclass(w.category, SafeladderWarning)]
    assert len(mine) == 1
    assert "2 of 3 rows carry images that no term looks at, e.g. row 0" in mine[0]


def test_a_term_that_reads_images_clears_the_flag() -> None:
    reward = load_reward({"terms": [text_term(), width_term()]})
    res = reward.score([Sample(prompt="p", completion="c", meta={"s": 1.0}, images=[png(5)])])
    assert res.images_unread.tolist() == [False]
    assert reward.verifier("width").reads_images and not reward.verifier("text").reads_images


def test_image_safety_reads_images() -> None:
    reward = load_reward({"terms": [{"name": "img", "verifier": {"type": "image_safety"}}]})
    assert reward.verifier("img").reads_images


def test_step_scorer_prefixes_keep_the_rows_images() -> None:
    # Two rows identical but for their image: each prefix is scored with its own row's image.
    cfg = {
        "terms": [
            {
                "name": "steps",
                "verifier": {
                    "type": "step_scorer",
                    "verifier": {
                        "type": "custom",
                        "target": "tests.data.fixtures_images:total_width",
                    },
                    "aggregate": "min",
                },
            }
        ]
    }
    reward = load_reward(cfg)
    res = reward.score(
        [
            Sample(prompt="p", completion="a.\n\nb.", images=[png(3)]),
            Sample(prompt="p", completion="a.\n\nb.", images=[png(7)]),
        ]
    )
    assert res.total.tolist() == [3.0, 7.0]
    assert reward.verifier("steps").reads_images


def test_score_summary_counts_images_unread_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows = [
        {"reward": 1.0, "status/text": "ok", "images_unread": True},
        {"reward": 1.0, "status/text": "ok"},
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize_output(out, tmp_path / "none.jsonl", ["text"], {"text": 1.0})
    assert summary["images_unread_rows"] == 1
    assert "1 scored rows carry images that no term looked at" in format_summary(summary)
