"""One image-bearing JSONL, every way in: the same numbers for each row.

The images are generated here (solid-colour PNGs): rows name them by a path relative to the
JSONL's folder, by a data URL, or both. The reward combines ``image_safety`` with a text term,
so a row's total depends on its images and its completion. Each route gets the rows the way
its trainer or client would hold them:

- Python API: ``Reward.score`` on ``Sample``s (paths made absolute, as the reader does);
- CLI: ``safeladder score`` on the file (relative paths resolve against its folder);
- TRL: ``as_trl(reward)`` called as ``GRPOTrainer._calculate_rewards`` calls it for a VLM
  policy -- the ``images`` column holding PIL images (what a datasets ``Image`` column gives)
  and the conversational prompt with its placeholders filled by the same images;
- verl: ``compute_score_batch`` with the images copied into ``extra_info`` as a Parquet
  ``list<struct<bytes, path>>`` column reads back;
- server: ``/score`` (paths allowed through ``image_root``) and ``/get_reward``'s ``images``
  extension (data URLs).

All totals are float32 in safeladder; each route's number is compared as a float32.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from safeladder import Sample, load_reward

REWARD = {
    "name": "mm",
    "terms": [
        {"name": "img", "verifier": {"type": "image_safety"}, "weight": 1.0},
        {"name": "rep", "verifier": {"type": "repetition", "ngram_size": 2}, "weight": 0.5},
    ],
}
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "skin": (250, 200, 180)}
QUESTION = "What is in the picture?"


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """``(jsonl path, rows)``; images under ``img/`` next to it, one only as a data URL."""
    root = tmp_path_factory.mktemp("mm")
    (root / "img").mkdir()
    for name in ("red", "green"):
        (root / "img" / f"{name}.png").write_bytes(_png(COLOURS[name]))
    skin = "data:image/png;base64," + base64.b64encode(_png(COLOURS["skin"])).decode()
    rows = [
        {"completion": "a red square", "images": ["img/red.png"]},
        {"completion": "green green green green", "images": ["img/green.png"]},
        {"completion": "a pale patch", "images": [skin]},
        {"completion": "red and pale and red and pale", "images": ["img/red.png", skin]},
    ]
    for i, r in enumerate(rows):
        r.update(id=i, prompt=[{"role": "user", "content": QUESTION}])
    path = root / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, rows


def _bytes_of(ref: str, root: Path) -> bytes:
    if ref.startswith("data:"):
        return base64.b64decode(ref.partition(",")[2])
    return (root / ref).read_bytes()


def _as_url(ref: str, root: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(_bytes_of(ref, root)).decode()


def test_same_numbers_through_every_route(
    dataset: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from PIL import Image

    from safeladder.integrations.trl import as_trl
    from safeladder.integrations.verl import compute_score_batch
    from safeladder.serving import ServeSettings, create_app
    from tests.cli.support import invoke

    path, rows = dataset
    root = path.parent
    reward = load_reward(REWARD)
    f32 = np.float32
    got: dict[str, list[Any]] = {}

    # Python API
    samples = [
        Sample(
            prompt=r["prompt"],
            completion=r["completion"],
            images=tuple(
                ref if ref.startswith("data:") else str(root / ref) for ref in r["images"]
            ),
        )
        for r in rows
    ]
    api = reward.score(samples)
    assert list(api.terms["img"].status) == ["ok"] * len(rows)  # every image was read
    got["python"] = list(api.total)

    # CLI
    cfg = tmp_path / "reward.yaml"
    cfg.write_text(yaml.safe_dump(REWARD), encoding="utf-8")
    res = invoke("score", cfg, "-i", path, "-o", tmp_path / "out.jsonl", "--no-progress")
    assert res.exit_code == 0, res.stderr
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    got["cli"] = [rec["reward"] for rec in out]

    # TRL: images as PIL, placed into the prompt's image parts by the trainer too
    pil = [[Image.open(io.BytesIO(_bytes_of(ref, root))) for ref in r["images"]] for r in rows]
    prompts = [
        [
            {
                "role": "user",
                "content": [
                    *({"type": "image", "image": im} for im in imgs),
                    {"type": "text", "text": QUESTION},
                ],
            }
        ]
        for imgs in pil
    ]
    got["trl"] = as_trl(reward)(
        prompts=prompts,
        completions=[r["completion"] for r in rows],
        images=pil,
        id=[r["id"] for r in rows],
        trainer_state=None,
    )

    # verl: images copied into extra_info as Hugging Face Image cells
    extras = [
        {
            "index": r["id"],
            "prompt": r["prompt"],
            "images": [{"bytes": _bytes_of(ref, root), "path": None} for ref in r["images"]],
            "num_turns": None,
            "rollout_reward_scores": {},
        }
        for r in rows
    ]
    verl = compute_score_batch(
        data_sources=np.array(["mm"] * len(rows), dtype=object),
        solution_strs=[r["completion"] for r in rows],
        ground_truths=[None] * len(rows),
        extra_infos=np.array(extras, dtype=object),
        config=REWARD,
    )
    got["verl"] = [row["score"] for row in verl]

    # server: /score with the file's own references, /get_reward with data URLs
    async def serve() -> tuple[Any, Any]:
        app = create_app(reward, ServeSettings(image_root=str(root)))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            score = await c.post("/score", json={"samples": [
                {k: r[k] for k in ("prompt", "completion", "images")} for r in rows
            ]})  # fmt: skip
            get = await c.post(
                "/get_reward",
                json={
                    "query": [QUESTION + r["completion"] for r in rows],
                    "prompts": [QUESTION] * len(rows),
                    "images": [[_as_url(ref, root) for ref in r["images"]] for r in rows],
                },
            )
            return score, get

    score, get = asyncio.run(serve())
    assert score.status_code == 200, score.text
    assert get.status_code == 200, get.text
    got["server /score"] = [r["total"] for r in score.json()["results"]]
    got["server /get_reward"] = get.json()["rewards"]
    reward.close()

    want = [f32(x) for x in got["python"]]
    assert len(set(want)) == len(want)  # the rows differ: equal columns would prove little
    for route, values in got.items():
        assert [f32(v) for v in values] == want, route
