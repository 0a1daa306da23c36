"""safeladder.images: every refusal and conversion, on images the tests generate."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from safeladder.errors import InputError
from safeladder.images import (
    ImageLimits,
    image_key,
    load_image,
    load_row_images,
    prompt_images,
)


def png_bytes(im: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width × height`` 8-bit RGB pixels, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


RED = Image.new("RGB", (3, 2), (255, 0, 0))


def test_rgb_png_from_bytes_path_and_data_url_decode_alike(tmp_path: Path) -> None:
    data = png_bytes(RED)
    (tmp_path / "red.png").write_bytes(data)
    for ref in (data, str(tmp_path / "red.png"), data_url(data)):
        im = load_image(ref)
        assert im.mode == "RGB" and im.size == (3, 2)
        assert im.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("im", "pixel"),
    [
        (Image.new("L", (2, 2), 128), (128, 128, 128)),
        (Image.new("1", (2, 2), 1), (255, 255, 255)),
        # fully transparent black becomes white: alpha is composited on white
        (Image.new("RGBA", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("RGBA", (2, 2), (0, 0, 255, 255)), (0, 0, 255)),
        (Image.new("LA", (2, 2), (0, 0)), (255, 255, 255)),
    ],
)
def test_safe_modes_convert_to_rgb(im: Image.Image, pixel: tuple[int, int, int]) -> None:
    for ref in (im, png_bytes(im)):
        out = load_image(ref)
        assert out.mode == "RGB" and out.getpixel((1, 1)) == pixel


def test_palette_with_transparency_composites_on_white() -> None:
    p = Image.new("P", (2, 2), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    assert load_image(png_bytes(p, transparency=0)).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg_is_converted() -> None:
    # CMYK (0, 0, 0, 0) is no ink: white paper.
    jpg = png_bytes(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", quality=100)
    assert Image.open(io.BytesIO(jpg)).mode == "CMYK"
    out = load_image(jpg)
    pixel = out.getpixel((4, 4))
    assert out.mode == "RGB" and isinstance(pixel, tuple) and min(pixel) >= 250


def test_16_bit_png_is_refused() -> None:
    data = png_bytes(Image.new("I;16", (4, 4), 40000))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    with pytest.raises(InputError, match="cannot be converted to RGB safely"):
        load_image(data)
    with pytest.raises(InputError, match="mode 'F'"):
        load_image(Image.new("F", (2, 2), 0.5))


def test_animated_gif_is_refused_single_frame_gif_is_not() -> None:
    frames = [Image.new("RGB", (4, 4), (80 * i, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="animated"):
        load_image(buf.getvalue())
    assert load_image(png_bytes(frames[0], "GIF")).mode == "RGB"


def test_truncated_and_garbage_bytes_are_refused() -> None:
    noise = Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48)
    data = png_bytes(noise)
    with pytest.raises(InputError, match="could not be decoded"):
        load_image(data[: len(data) // 2])
    with pytest.raises(InputError, match="could not be decoded"):
        load_image(b"not an image at all")


def test_zero_size_is_refused() -> None:
    with pytest.raises(InputError, match="zero size"):
        load_image(Image.new("RGB", (0, 3)))
    with pytest.raises(InputError, match="zero size|could not be decoded"):
        load_image(png_header_only(0, 3))


def test_pixel_limit_is_read_from_the_header_before_decoding() -> None:
    # 50 megapixels claimed by a 60-byte file: refused by its header, nothing is decoded.
    with pytest.raises(InputError, match="10000x5000 = 50000000 pixels, over max_pixels=40000000"):
        load_image(png_header_only(10_000, 5_000))
    with pytest.raises(InputError, match="over max_pixels=5"):
        load_image(RED, ImageLimits(max_pixels=5))
    # 200 megapixels: past PIL's own bomb guard too; still a refusal, never a crash.
    with pytest.raises(InputError, match="pixels|bomb"):
        load_image(png_header_only(20_000, 10_000))


def test_byte_limit_applies_to_bytes_files_and_data_urls(tmp_path: Path) -> None:
    data = png_bytes(RED)
    small = ImageLimits(max_bytes=len(data) - 1)
    (tmp_path / "r.png").write_bytes(data)
    for ref in (data, str(tmp_path / "r.png"), data_url(data)):
        with pytest.raises(InputError, match="over max_bytes"):
            load_image(ref, small)


def test_bad_data_url_and_missing_file() -> None:
    with pytest.raises(InputError, match="not valid base64"):
        load_image("data:image/png;base64,@@@@")
    with pytest.raises(InputError, match="does not exist"):
        load_image("/no/such/image.png")


def test_root_confines_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(png_bytes(RED))
    (tmp_path / "outside.png").write_bytes(png_bytes(RED))
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    limits = ImageLimits(root=str(root))
    assert load_image("sub/a.png", limits).size == (3, 2)  # relative to root
    assert load_image(str(root / "sub" / "a.png"), limits).size == (3, 2)
    for ref in ("../outside.png", str(tmp_path / "outside.png"), "link.png"):
        with pytest.raises(InputError, match="outside the allowed root"):
            load_image(ref, limits)


def test_http_is_refused_unless_allowed() -> None:
    with pytest.raises(InputError, match="not fetched unless allow_http"):
        load_image("https://example.com/cat.png")
    with pytest.raises(InputError, match="not fetched unless allow_http"):
        image_key("HTTP://example.com/cat.png")


def test_row_limit_and_errors_name_row_and_index() -> None:
    assert len(load_row_images([RED, png_bytes(RED)], row=3)) == 2
    with pytest.raises(InputError, match="row 3: 3 images, over max_images_per_row=2") as info:
        load_row_images([RED] * 3, ImageLimits(max_images_per_row=2), row=3)
    assert info.value.row == 3 and info.value.field == "images"
    with pytest.raises(InputError, match="row 7: image 1: image could not be decoded") as info:
        load_row_images([RED, b"junk"], row=7)
    assert info.value.row == 7


def test_image_key_is_a_content_hash(tmp_path: Path) -> None:
    data = png_bytes(RED)
    (tmp_path / "a.png").write_bytes(data)
    keys = {image_key(data), image_key(str(tmp_path / "a.png")), image_key(data_url(data))}
    assert len(keys) == 1
    assert image_key(png_bytes(Image.new("RGB", (3, 2), (0, 255, 0)))) not in keys
    assert image_key(RED) == image_key(RED.copy())
    assert image_key(RED) != image_key(RED.convert("RGBA"))


def test_prompt_images_reads_trl_and_openai_parts() -> None:
    prompt = [
        {"role": "system", "content": "s"},
        {
            "role": "user",
            "content": [
                {"type": "image"},  # TRL placeholder: the image lives in the row's images
                {"type": "image", "image": "a.png"},
                {"type": "text", "text": "t"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                {"type": "image_url", "image_url": "b.png"},
            ],
        },
    ]
    assert prompt_images(prompt) == ["a.png", "data:image/png;base64,AA==", "b.png"]
    assert prompt_images("a string prompt") == []


def test_http_when_allowed_fetches_within_the_byte_limit(tmp_path: Path) -> None:
    # A loopback server: the tests' socket guard allows nothing else.
    import functools
    import http.server
    import threading

    data = png_bytes(RED)
    (tmp_path / "red.png").write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/red.png"
        assert load_image(url, ImageLimits(allow_http=True)).getpixel((0, 0)) == (255, 0, 0)
        assert image_key(url, ImageLimits(allow_http=True)) == image_key(data)
        with pytest.raises(InputError, match="over max_bytes"):
            load_image(url, ImageLimits(allow_http=True, max_bytes=len(data) - 1))
        with pytest.raises(InputError, match="could not be fetched"):
            load_image(url + ".missing", ImageLimits(allow_http=True))
    finally:
        server.shutdown()
        server.server_close()


def test_batch_loader_decodes_each_image_once_and_isolates_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import safeladder.images as images_mod

    calls: list[object] = []
    real = images_mod.load_image

    def counting(ref: object, limits: ImageLimits | None = None) -> Image.Image:
        calls.append(ref)
        return real(ref, limits)

    monkeypatch.setattr(images_mod, "load_image", counting)
    data = png_bytes(RED)
    rows: list[list[object]] = [[data], [], [bytes(data), b"junk"], [data, RED], [RED] * 3]
    got = images_mod.load_batch_images(rows, ImageLimits(max_images_per_row=2))
    assert len(calls) == 3  # data (3 rows share it), b"junk", RED
    assert isinstance(got[0], list) and got[0][0].size == (3, 2)
    assert got[1] == []
    assert isinstance(got[2], InputError) and got[2].row == 2
    assert str(got[2]).startswith("row 2: image 1: image could not be decoded")
    assert isinstance(got[3], list) and len(got[3]) == 2 and got[3][0] is got[0][0]
    assert isinstance(got[4], InputError)
    assert str(got[4]) == "row 4: 3 images, over max_images_per_row=2"
