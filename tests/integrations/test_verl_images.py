"""verl adapter with images: ``extra_info`` images reach ``Sample.images``, in verl's call shapes.

verl's reward managers hand ``compute_score`` the row's ``extra_info`` and nothing of its
``images`` column or ``multi_modal_data`` (``verl/workers/reward_manager/naive.py``,
``verl/experimental/reward_loop/reward_manager/naive.py`` / ``batch.py``), so images reach the
reward through ``extra_info``: as the dataset wrote them (a Parquet ``list<struct<bytes,
path>>`` read back as ``{"bytes", "path"}`` dicts, paths, data URLs), as
``multi_modal_data = {"image": [PIL...]}`` (``RLHFDataset``'s shape), or as image parts of a
``raw_prompt``-style chat prompt (``{"type": "image", "image": ...}``).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import safeladder.integrations._common as common
from safeladder import Sample, load_reward
from safeladder.errors import InputError
from safeladder.integrations.verl import compute_score, compute_score_batch

IMAGE_REWARD = {"name": "img", "terms": [{"name": "img", "verifier": {"type": "image_safety"}}]}
RED, GREEN, SKIN = (255, 0, 0), (0, 160, 0), (250, 200, 180)


def _png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(common.ENV_REWARD_CONFIG, raising=False)
    monkeypatch.delenv(common.ENV_NAN_SCORE, raising=False)
    yield
    common.clear_shared_rewards()


@pytest.fixture(scope="module")
def direct() -> Any:
    """P(safe) of each colour's PNG through ``Reward.score`` (the expectation)."""
    reward = load_reward(IMAGE_REWARD)
    res = reward.score(
        [Sample(prompt="", completion="x", images=(_png(c),)) for c in (RED, GREEN, SKIN)]
    )
    reward.close()
    return dict(zip((RED, GREEN, SKIN), (float(x) for x in res.total), strict=True))


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The batches the shared reward of IMAGE_REWARD scores."""
    reward = common.shared_reward(IMAGE_REWARD)
    seen: list[Any] = []
    real = reward.score
    monkeypatch.setattr(reward, "score", lambda b: seen.append(b) or real(b))
    return seen


def _naive_extra(extra: dict[str, Any]) -> dict[str, Any]:
    # What verl's naive managers add to every extra_info before the call.
    return {**extra, "num_turns": None, "rollout_reward_scores": {}}


def test_naive_manager_call_with_hf_image_cells(
    direct: dict[Any, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _spy(monkeypatch)
    extra = _naive_extra({"index": 3, "images": [{"bytes": _png(GREEN), "path": None}]})
    out = compute_score(
        data_source="vqa", solution_str="green", ground_truth=None, extra_info=extra,
        config=IMAGE_REWARD,
    )  # fmt: skip
    assert out["score"] == pytest.approx(direct[GREEN], abs=1e-6)
    assert out["img"] == out["score"]
    (batch,) = seen
    assert batch.images == [(_png(GREEN),)]
    assert "images" not in batch.metas[0] and batch.metas[0]["index"] == 3  # no pixels in meta


def test_batch_manager_call_with_numpy_object_arrays(
    direct: dict[Any, float], tmp_path: Path
) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(_png(RED))
    url = "data:image/png;base64," + base64.b64encode(_png(SKIN)).decode()
    extras = np.array(
        [
            _naive_extra({"index": 0, "images": np.array([str(path)], dtype=object)}),
            _naive_extra({"index": 1, "image": url}),
            _naive_extra({"index": 2, "images": [str(path), url]}),
        ],
        dtype=object,
    )
    out = compute_score_batch(
        data_sources=np.array(["vqa"] * 3, dtype=object),
        solution_strs=["a", "b", "c"],
        ground_truths=[None] * 3,
        extra_infos=extras,
        config=IMAGE_REWARD,
    )
    scores = [row["score"] for row in out]
    want = [direct[RED], direct[SKIN], min(direct[RED], direct[SKIN])]
    assert scores == pytest.approx(want, abs=1e-6)


def test_parquet_extra_info_images_as_verl_reads_them(
    direct: dict[Any, float], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # verl's preprocessing writes images as list<struct<bytes, path>>; a copy in extra_info
    # is how the reward sees them.
    cells = [[{"bytes": _png(RED), "path": None}], [{"bytes": _png(GREEN), "path": None}]]
    table = pa.table(
        {
            "data_source": ["vqa", "vqa"],
            "images": cells,
            "extra_info": [{"index": i, "images": c} for i, c in enumerate(cells)],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    out = [
        compute_score(
            data_source=r["data_source"], solution_str="x", ground_truth=None,
            extra_info=_naive_extra(r["extra_info"]), config=IMAGE_REWARD,
        )["score"]
        for r in rows
    ]  # fmt: skip
    assert out == pytest.approx([direct[RED], direct[GREEN]], abs=1e-6)


def test_multi_modal_data_and_raw_prompt_image_parts(
    direct: dict[Any, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    seen = _spy(monkeypatch)
    red = Image.open(io.BytesIO(_png(RED)))
    green = Image.open(io.BytesIO(_png(GREEN)))
    raw_prompt = [
        {
            "role": "user",
            "content": [{"type": "image", "image": green}, {"type": "text", "text": "colour?"}],
        }
    ]
    out = compute_score_batch(
        data_sources=["vqa", "vqa"],
        solution_strs=["a", "b"],
        ground_truths=[None, None],
        extra_infos=[
            _naive_extra({"multi_modal_data": {"image": [red]}}),
            _naive_extra({"prompt": raw_prompt}),
        ],
        config=IMAGE_REWARD,
    )
    assert [r["score"] for r in out] == pytest.approx([direct[RED], direct[GREEN]], abs=1e-6)
    (batch,) = seen
    assert batch.images == [(red,), (green,)]
    assert batch.prompts[1][0]["content"][0] == {"type": "image"}  # the image is seen once
    assert "multi_modal_data" not in batch.metas[0]


def test_images_key_option(direct: dict[Any, float]) -> None:
    extra = _naive_extra({"pics": [_png(SKIN)], "images": [_png(RED)]})
    out = compute_score(
        data_source="vqa", solution_str="x", ground_truth=None, extra_info=extra,
        config=IMAGE_REWARD, images_key="pics",
    )  # fmt: skip
    assert out["score"] == pytest.approx(direct[SKIN], abs=1e-6)


def test_a_bad_image_cell_names_the_row() -> None:
    with pytest.raises(InputError, match=r"row 1: extra_info\['images'\].*int"):
        compute_score_batch(
            data_sources=["a", "a"],
            solution_strs=["x", "y"],
            ground_truths=[None, None],
            extra_infos=[{"images": []}, {"images": [7]}],
            config=IMAGE_REWARD,
        )
    with pytest.raises(InputError, match=r"multi_modal_data'\] must be a mapping"):
        compute_score(
            data_source="a", solution_str="x", ground_truth=None,
            extra_info={"multi_modal_data": ["x.png"]}, config=IMAGE_REWARD,
        )  # fmt: skip


def test_an_undecodable_image_is_that_rows_unscorable_score(direct: dict[Any, float]) -> None:
    extras = [{"images": [_png(RED)[:40]]}, {"images": [_png(GREEN)]}]
    kwargs = {"data_sources": ["a", "a"], "solution_strs": ["x", "y"], "ground_truths": [None] * 2}
    with pytest.raises(InputError, match=r"row 0 .*image 0"):
        compute_score_batch(**kwargs, extra_infos=extras, config=IMAGE_REWARD)
    out = compute_score_batch(**kwargs, extra_infos=extras, config=IMAGE_REWARD, nan_score=-1.0)
    assert out[0]["score"] == -1.0 and out[0]["unscorable"] == 1.0
    assert out[1]["score"] == pytest.approx(direct[GREEN], abs=1e-6)


def test_images_no_term_looks_at_are_flagged() -> None:
    from safeladder.errors import SafeladderWarning

    text_only = {"name": "t", "terms": [{"name": "rep", "verifier": {"type": "repetition"}}]}
    with pytest.warns(SafeladderWarning, match="carry images that no term looks at"):
        out = compute_score_batch(
            data_sources=["a", "a"],
            solution_strs=["x y", "x y"],
            ground_truths=[None, None],
            extra_infos=[{"images": [_png(RED)]}, {}],
            config=text_only,
        )
    assert [r["images_unread"] for r in out] == [1.0, 0.0]
