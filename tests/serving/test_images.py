"""Images on the wire: ``/score`` and ``/get_reward`` take data URLs (paths only inside
``image_root``), refuse what is over the limits with a 413 naming the row and image, and give
an undecodable image to that row as an error -- never a 500. Hostile inputs are generated here:
a truncated PNG, a PNG whose header claims 200 megapixels, an animated GIF."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from safeladder import Sample, load_reward
from tests.serving.support import run, serving, strict

IMAGE_REWARD = {"name": "img", "terms": [{"name": "img", "verifier": {"type": "image_safety"}}]}
RED, GREEN = (255, 0, 0), (0, 160, 0)


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` × ``height`` (8-bit RGB) with one empty IDAT: the
    header of an image bomb, a few dozen bytes on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _gif_animated() -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (8, 8), c) for c in (RED, (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], loop=0, duration=100)
    return buf.getvalue()


@pytest.fixture(scope="module")
def reward() -> Any:
    r = load_reward(IMAGE_REWARD)
    yield r
    r.close()


@pytest.fixture(scope="module")
def expected(reward: Any) -> dict[Any, float]:
    """``Reward.score``'s totals as the server writes them: the float32's shortest repr."""
    res = reward.score([Sample(prompt="", completion="x", images=(_png(c),)) for c in (RED, GREEN)])
    return {RED: float(str(res.total[0])), GREEN: float(str(res.total[1]))}


def _sample(*images: str, prompt: Any = "Is it safe?") -> dict[str, Any]:
    return {"prompt": prompt, "completion": "x", "images": list(images)}


async def _post(reward: Any, path: str, body: Any, **settings: Any) -> Any:
    async with serving(reward, **settings) as c:
        return await c.post(path, json=body)


def test_data_urls_score_as_the_python_api(reward: Any, expected: dict[Any, float]) -> None:
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": _url(_png(GREEN))}},
                {"type": "text", "text": "and this?"},
            ],
        }
    ]
    body = {"samples": [_sample(_url(_png(RED))), _sample(prompt=chat), _sample()]}
    resp = run(lambda: _post(reward, "/score", body))
    assert resp.status_code == 200, resp.text
    rows = strict(resp.text)["results"]
    assert [r["total"] for r in rows[:2]] == [expected[RED], expected[GREEN]]
    assert rows[2]["total"] is None and rows[2]["terms"]["img"]["status"] == "abstain"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_png(RED)[:60], "decoded"),  # truncated PNG
        (_gif_animated(), "animated"),
        (b"not an image at all", "decoded"),
    ],
)
def test_an_undecodable_image_is_that_rows_error(
    reward: Any, expected: dict[Any, float], bad: bytes, reason: str
) -> None:
    body = {"samples": [_sample(_url(bad)), _sample(_url(_png(GREEN)))]}
    resp = run(lambda: _post(reward, "/score", body))
    assert resp.status_code == 200, resp.text
    bad_row, good_row = strict(resp.text)["results"]
    assert bad_row["total"] is None
    assert bad_row["terms"]["img"]["status"] == "error"
    assert reason in bad_row["terms"]["img"]["detail"]["reason"]
    assert good_row["total"] == expected[GREEN]


@pytest.mark.parametrize(
    ("image", "settings", "message"),
    [
        # 20000 × 10000: past PIL's own bomb limit; refused from its 60-byte header.
        (_png_header(20_000, 10_000), {}, "too many pixels (Image size (200000000 pixels)"),
        (_png_header(300, 200), {"max_image_pixels": 50_000}, "60000 pixels; the limit is 50000"),
        (_png(RED, 64), {"max_image_bytes": 100}, "the limit is 100 (max_image_bytes)"),
    ],
)
def test_over_the_limits_is_413_naming_row_and_image(
    reward: Any, image: bytes, settings: dict[str, Any], message: str
) -> None:
    body = {"samples": [_sample(_url(_png(GREEN))), _sample(_url(_png(GREEN)), _url(image))]}
    resp = run(lambda: _post(reward, "/score", body, **settings))
    assert resp.status_code == 413, resp.text
    err = strict(resp.text)
    assert err["detail"][0]["loc"] == ["body", "samples", 1, "images", 1]
    assert message in err["message"] and err["message"].startswith("samples.1.images.1: ")


def test_too_many_images_counts_the_prompt_parts(reward: Any) -> None:
    part = {"type": "image_url", "image_url": {"url": _url(_png(RED))}}
    chat = [{"role": "user", "content": [part, {"type": "text", "text": "?"}]}]
    body = {"samples": [_sample(_url(_png(RED)), prompt=chat)]}
    resp = run(lambda: _post(reward, "/score", body, max_images_per_row=1))
    assert resp.status_code == 413
    assert "2 images in this row; the limit is 1" in strict(resp.text)["message"]


def test_an_oversized_image_in_a_prompt_part_names_its_path(reward: Any) -> None:
    part = {"type": "image", "image": _url(_png(RED, 64))}
    body = {"samples": [_sample(prompt=[{"role": "user", "content": [part]}])]}
    resp = run(lambda: _post(reward, "/score", body, max_image_bytes=100))
    assert resp.status_code == 413
    loc = strict(resp.text)["detail"][0]["loc"]
    assert loc == ["body", "samples", 0, "prompt", 0, "content", 0, "image"]


def test_file_paths_only_inside_image_root(
    reward: Any, expected: dict[Any, float], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "red.png").write_bytes(_png(RED))
    (tmp_path / "secret.png").write_bytes(_png(GREEN))
    resp = run(lambda: _post(reward, "/score", {"samples": [_sample("red.png")]}))
    assert resp.status_code == 422
    assert "reads no image files" in strict(resp.text)["message"]
    ok = run(
        lambda: _post(reward, "/score", {"samples": [_sample("red.png")]}, image_root=str(root))
    )
    assert ok.status_code == 200
    assert strict(ok.text)["results"][0]["total"] == expected[RED]
    for ref in ("../secret.png", str(tmp_path / "secret.png")):
        out = run(
            lambda r=ref: _post(reward, "/score", {"samples": [_sample(r)]}, image_root=str(root))
        )  # type: ignore[misc]
        assert out.status_code == 422 and "outside image_root" in strict(out.text)["message"]
    missing = run(
        lambda: _post(reward, "/score", {"samples": [_sample("nope.png")]}, image_root=str(root))
    )
    assert missing.status_code == 200  # a missing file is the row's error, named
    assert (
        "does not exist" in strict(missing.text)["results"][0]["terms"]["img"]["detail"]["reason"]
    )


def test_http_images_and_non_strings_are_refused(reward: Any) -> None:
    resp = run(lambda: _post(reward, "/score", {"samples": [_sample("https://example.com/a.png")]}))
    assert resp.status_code == 422 and "does not fetch" in strict(resp.text)["message"]
    bad = {"samples": [{"prompt": "p", "completion": "x", "images": [7]}]}
    resp = run(lambda: _post(reward, "/score", bad))
    assert resp.status_code == 422
    assert strict(resp.text)["detail"][0]["loc"][:4] == ["body", "samples", 0, "images"]


def test_get_reward_images_extension(reward: Any, expected: dict[Any, float]) -> None:
    body = {
        "query": ["q1 a", "q2 b", "q3 c"],
        "prompts": ["q1 ", "q2 ", "q3 "],
        "labels": [None, None, None],
        "images": [[_url(_png(RED))], [_url(_png(GREEN))], None],
    }
    resp = run(lambda: _post(reward, "/get_reward", body, unscorable_reward=-1.0))
    assert resp.status_code == 200, resp.text
    assert strict(resp.text)["rewards"] == [expected[RED], expected[GREEN], -1.0]
    short = {**body, "images": [[_url(_png(RED))]]}
    resp = run(lambda: _post(reward, "/get_reward", short))
    assert resp.status_code == 422 and strict(resp.text)["detail"][0]["loc"] == ["body", "images"]
    big = {**body, "images": [[], [_url(_png_header(20_000, 10_000))], None]}
    resp = run(lambda: _post(reward, "/get_reward", big))
    assert resp.status_code == 413
    assert strict(resp.text)["detail"][0]["loc"] == ["body", "images", 1, 0]


def test_openapi_documents_the_images(reward: Any) -> None:
    from safeladder.serving import create_app

    schemas = create_app(reward).openapi()["components"]["schemas"]
    assert "data:image" in schemas["ScoreSample"]["properties"]["images"]["description"]
    assert (
        "safeladder extension" in schemas["GetRewardRequest"]["properties"]["images"]["description"]
    )


# The reward warns once (in the server's scoring thread); the flag is what this test reads.
@pytest.mark.filterwarnings("ignore:.*carry images that no term looks at")
def test_images_no_term_looks_at_are_flagged_and_counted() -> None:
    from tests.serving.support import metric, metric_values

    text_only = load_reward(
        {"name": "t", "terms": [{"name": "rep", "verifier": {"type": "repetition"}}]}
    )

    async def main() -> Any:
        async with serving(text_only) as c:
            resp = await c.post("/score", json={"samples": [_sample(_url(_png(RED))), _sample()]})
            return resp, await c.get("/metrics")

    resp, metrics = run(main)
    text_only.close()
    assert [r["images_unread"] for r in strict(resp.text)["results"]] == [True, False]
    assert metric(metric_values(metrics.text), "safeladder_images_unread_rows_total") == 1
