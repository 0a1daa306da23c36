"""Image columns: rows → ``Sample.images`` (every cell shape, every format), outputs keep
references and never pixels, ``safeladder score --images-field``."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from safeladder.data import FieldMap, FieldValueError, dumps, read_rows, to_sample
from safeladder.errors import InputError
from tests.cli.support import invoke, read_jsonl, write_yaml

FIX = "tests.data.fixtures_images"


def png(width: int, height: int = 2) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 255)).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_cell_shapes_become_references(tmp_path: Path) -> None:
    base = tmp_path
    row = {"completion": "c", "prompt": "p"}
    assert to_sample(row).images == ()
    assert to_sample({**row, "images": None}).images == ()
    assert to_sample({**row, "image": "a.png"}, base_dir=base).images == (str(base / "a.png"),)
    s = to_sample({**row, "images": ["a.png", "/abs/b.png"], "k": 1}, base_dir=base)
    assert s.images == (str(base / "a.png"), "/abs/b.png")
    assert "images" not in s.meta and s.meta == {"k": 1}
    # without base_dir a relative path is left as written
    assert to_sample({**row, "images": "a.png"}).images == ("a.png",)
    url = data_url(png(1))
    remote = "https://example.com/x.png"
    assert to_sample({**row, "images": [url, remote]}, base_dir=base).images == (url, remote)
    # a CSV cell holding a JSON list
    assert to_sample({**row, "images": '["a.png", "b.png"]'}, base_dir=base).images == (
        str(base / "a.png"),
        str(base / "b.png"),
    )
    # Parquet bytes and Hugging Face Image cells
    blob = png(2)
    assert to_sample({**row, "images": blob}).images == (blob,)
    hf = [{"bytes": blob, "path": "ignored.png"}, {"bytes": None, "path": "p.png"}]
    assert to_sample({**row, "images": hf}, base_dir=base).images == (blob, str(base / "p.png"))


@pytest.mark.parametrize(
    ("cell", "match"),
    [
        (3, r"field 'images' \(images\): .*got int"),
        (["a.png", 2.5], r"\[1\]: an image must be .* got float"),
        ("data:text/html;base64,AA==", "a data URL must look like"),
        ("[not, json]", "invalid JSON list"),
        ({"other": 1}, "got dict"),
    ],
)
def test_bad_cells_name_the_field(cell: object, match: str) -> None:
    with pytest.raises(FieldValueError, match=match) as info:
        to_sample({"prompt": "p", "completion": "c", "images": cell})
    assert info.value.field == "images" and info.value.role == "images"


def test_images_field_flag_names_and_requires_the_field() -> None:
    fm = FieldMap.from_flags(images="pics")
    assert to_sample({"prompt": "p", "completion": "c", "pics": "a.png"}, fm).images == ("a.png",)
    with pytest.raises(InputError, match=r"missing field 'images' \(looked for: pics\)"):
        to_sample({"prompt": "p", "completion": "c", "images": "a.png"}, fm)
    assert fm.describe()["required"] == ["prompt", "images"]


def test_chat_prompt_with_image_parts_is_accepted() -> None:
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}]
    s = to_sample({"prompt": prompt, "completion": "c", "images": ["a.png"]})
    assert s.prompt == prompt and s.images == ("a.png",)
    with pytest.raises(FieldValueError, match="list of typed parts"):
        to_sample({"prompt": [{"role": "user", "content": [1]}], "completion": "c"})


def test_jsonl_json_csv_readers_carry_the_images_column(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p", "completion": "c", "images": ["a.png", "b.png"]},
        {"prompt": "p", "completion": "c", "images": "a.png"},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "in.json").write_text(json.dumps(rows))
    with open(tmp_path / "in.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "completion", "images"])
        w.writerow(["p", "c", '["a.png", "b.png"]'])
        w.writerow(["p", "c", "a.png"])
    want = [
        (str(tmp_path / "a.png"), str(tmp_path / "b.png")),
        (str(tmp_path / "a.png"),),
    ]
    for name in ("in.jsonl", "in.json", "in.csv"):
        got = [
            to_sample(r.data or {}, base_dir=tmp_path).images for r in read_rows(tmp_path / name)
        ]
        assert got == want, name


def test_parquet_binary_columns_and_outputs_name_bytes_by_hash(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    a, b = png(3), png(5)
    table = pa.table(
        {
            "prompt": ["p", "p"],
            "completion": ["c", "c"],
            "image": pa.array([a, b], type=pa.binary()),
            "images": pa.array([[a, b], []], type=pa.list_(pa.binary())),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    rows = list(read_rows(tmp_path / "in.parquet"))
    assert [to_sample(r.data or {}).images for r in rows] == [(a, b), ()]
    fm = FieldMap.from_flags(images="image")
    assert to_sample(rows[1].data or {}, fm).images == (b,)
    ref = {"sha256": hashlib.sha256(a).hexdigest(), "bytes": len(a)}
    # neither the raw text of a row nor an output line copies the pixels
    assert json.loads(rows[0].raw)["image"] == ref
    assert json.loads(dumps(rows[0].data))["images"][0] == ref


def test_hf_dataset_image_feature(tmp_path: Path) -> None:
    import datasets

    a = png(4)
    ds = datasets.Dataset.from_dict(
        {"prompt": ["p"], "completion": ["c"], "image": [{"bytes": a, "path": None}]},
        features=datasets.Features(
            {
                "prompt": datasets.Value("string"),
                "completion": datasets.Value("string"),
                "image": datasets.Image(),
            }
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    (row,) = list(read_rows(tmp_path / "ds"))
    assert to_sample(row.data or {}).images == (a,)


def test_score_carries_images_through_and_reads_them_relative_to_the_input(
    tmp_path: Path,
) -> None:
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    (d / "img" / "w3.png").write_bytes(png(3))
    rows = [
        {"id": 1, "prompt": "p", "completion": "c", "pics": ["img/w3.png", data_url(png(4))]},
        {"id": 2, "prompt": "p", "completion": "c", "pics": []},
        {"id": 3, "prompt": "p", "completion": "c", "pics": "img/missing.png"},
    ]
    inp = d / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_yaml(
        tmp_path / "r.yaml",
        {
            "terms": [
                {
                    "name": "width",
                    "verifier": {"type": "custom", "target": f"{FIX}:total_width"},
                    "weight": 1.0,
                }
            ]
        },
    )
    out = tmp_path / "out.jsonl"
    res = invoke(
        "score", cfg, "--input", inp, "--output", out, "--images-field", "pics", "--no-progress"
    )
    assert res.exit_code == 0, res.stderr
    scored = read_jsonl(out)
    assert [r["id"] for r in scored] == [1, 2]
    assert scored[0]["pics"] == rows[0]["pics"]  # what was read, unchanged
    assert scored[0]["reward/width"] == 7.0  # 3 px from the relative path + 4 px data URL
    assert scored[1]["pics"] == [] and scored[1]["status/width"] == "abstain"
    (err,) = read_jsonl(out.with_name("out.jsonl.errors.jsonl"))
    assert err["line"] == 3 and "img/missing.png" in err["error"]


def test_outputs_name_pil_images_by_content() -> None:
    from safeladder.images import image_key

    im = Image.new("RGB", (3, 2), (1, 2, 3))
    got = json.loads(dumps({"images": [im]}))["images"][0]
    assert got == {"sha256": image_key(im), "mode": "RGB", "size": [3, 2]}


def test_score_parquet_bytes_are_scored_and_written_as_hash_and_size(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = png(6)
    pq.write_table(
        pa.table({"prompt": ["p"], "completion": ["c"], "image": pa.array([a], pa.binary())}),
        tmp_path / "in.parquet",
    )
    cfg = write_yaml(
        tmp_path / "r.yaml",
        {
            "terms": [
                {"name": "width", "verifier": {"type": "custom", "target": f"{FIX}:total_width"}}
            ]
        },
    )
    out = tmp_path / "out.jsonl"
    res = invoke("score", cfg, "--input", tmp_path / "in.parquet", "--output", out, "--no-progress")
    assert res.exit_code == 0, res.stderr
    (row,) = read_jsonl(out)
    assert row["reward/width"] == 6.0
    assert row["image"] == {"sha256": hashlib.sha256(a).hexdigest(), "bytes": len(a)}
