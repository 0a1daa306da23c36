"""``classifier`` with ``render.windows``: long completions scored as windows, checked against
plain forwards of windows cut by hand."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from safeladder import ConfigError, Sample
from safeladder.verifiers import build_verifier
from safeladder.verifiers.classifier import ClassifierConfig
from tests.helpers import assert_batch_equals_rows, tiny_model_dir

torch.set_num_threads(1)

SIZE, STRIDE, MAX_LEN = 24, 16, 64
PROMPT = "Tell me about bread. "
LONG = " ".join(f"w{i} flour water yeast" for i in range(8))  # ~5 windows of 24 tokens


def cfg(windows: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    render: dict[str, Any] = {"max_length": MAX_LEN, **kw}
    if windows is not None:
        render["windows"] = {"size": SIZE, "stride": STRIDE, **windows}
    return {
        "type": "classifier",
        "path": str(tiny_model_dir("bert_classifier")),
        "good_label": "safe",
        "calibration": "none",
        "runtime": {"device": "cpu"},
        "render": render,
    }


@pytest.fixture(scope="module")
def windowed():  # type: ignore[no-untyped-def]
    v = build_verifier(cfg({}))
    yield v
    v.close()


@pytest.fixture(scope="module")
def plain():  # type: ignore[no-untyped-def]
    v = build_verifier(cfg())
    yield v
    v.close()


def hand_windows(prompt: str, completion: str) -> tuple[list[list[int]], list[int]]:
    """Windows cut by hand: [CLS] + the whole (short) prompt + 24 completion tokens + [SEP],
    starting every 16 completion tokens, the last one ending at the completion's end."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(tiny_model_dir("bert_classifier")))
    enc = tok(prompt + completion, return_offsets_mapping=True)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    body = list(range(1, len(ids) - 1))  # without [CLS] / [SEP]
    comp = [j for j in body if offs[j][0] >= len(prompt)]
    head = [ids[j] for j in body if j < comp[0]]
    n = len(comp)
    starts = [*range(0, n - SIZE, STRIDE), n - SIZE]
    wins = [[ids[0], *head, *(ids[j] for j in comp[a : a + SIZE]), ids[-1]] for a in starts]
    assert all(len(w) <= MAX_LEN for w in wins), "the prompt fits every window whole"
    return wins, starts


def p_safe(ids_rows: list[list[int]]) -> np.ndarray:
    """P('safe') of each row from its own un-padded forward."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dir("bert_classifier"))
    ).eval()
    out = []
    with torch.inference_mode():
        for ids in ids_rows:
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
            out.append(torch.softmax(logits, -1)[1].item())  # id2label {0: unsafe, 1: safe}
    return np.array(out)


def test_long_completion_scores_its_worst_window(windowed: Any) -> None:
    wins, starts = hand_windows(PROMPT, LONG)
    assert len(wins) >= 4
    expected = p_safe(wins)
    got = windowed.score([Sample(prompt=PROMPT, completion=LONG)])
    assert got.status[0] == "ok"
    assert got.scores[0] == pytest.approx(expected.min(), abs=1e-5)
    d = got.details[0]
    assert d["windows"] == len(wins)
    assert d["worst_window_offset"] == starts[int(np.argmin(expected))]
    assert "truncated" not in d  # the whole prompt and completion were seen


def test_mean_aggregate_is_the_mean_of_the_windows() -> None:
    wins, _ = hand_windows(PROMPT, LONG)
    v = build_verifier(cfg({"aggregate": "mean"}))
    try:
        got = v.score([Sample(prompt=PROMPT, completion=LONG)]).scores[0]
    finally:
        v.close()
    assert got == pytest.approx(p_safe(wins).mean(), abs=1e-5)


def test_short_completion_gets_exactly_the_unwindowed_score(windowed: Any, plain: Any) -> None:
    rows = [
        Sample(prompt=PROMPT, completion="Mix flour and water."),
        Sample(prompt="long prompt " * 40, completion="ok then"),  # prompt trimmed in both
        Sample(prompt="", completion="a"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = windowed.score(rows), plain.score(rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    for da, db in zip(a.details, b.details, strict=True):
        assert da["windows"] == 1 and da["worst_window_offset"] == 0
        assert da.get("truncated") == db.get("truncated")
        assert da["probs"] == db["probs"]


def test_batched_equals_one_by_one_with_duplicates(windowed: Any) -> None:
    rows = [
        Sample(prompt=PROMPT, completion=LONG),
        Sample(prompt="Hi", completion="ok"),
        Sample(prompt=PROMPT, completion=LONG),
        Sample(prompt="p", completion=""),
        Sample(prompt="long prompt " * 40, completion=LONG[:300]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_batch_equals_rows(windowed, rows, atol=1e-5)


def test_all_windows_go_in_one_engine_call(windowed: Any, monkeypatch: Any) -> None:
    import safeladder.verifiers.neural_base as nb

    calls: list[int] = []
    real = nb.run_batched

    def spy(ids: Any, *a: Any, **kw: Any) -> Any:
        calls.append(len(ids))
        return real(ids, *a, **kw)

    monkeypatch.setattr(nb, "run_batched", spy)
    n_win = len(hand_windows(PROMPT, LONG)[0])
    windowed.score([Sample(prompt=PROMPT, completion=LONG), Sample(prompt="Hi", completion="ok")])
    assert calls == [n_win + 1]


def test_max_windows_keeps_the_end_and_flags_truncation() -> None:
    v = build_verifier(cfg({"max_windows": 3}))
    try:
        # The warning says what windows cut (the prompt's beginning; a completion only past
        # max_windows), not the plain truncation side, which would read as "answers were cut".
        with pytest.warns(Warning, match=r"truncated \(windows: the prompt keeps .* 3 windows"):
            got = v.score([Sample(prompt=PROMPT, completion=LONG)])
    finally:
        v.close()
    _, starts = hand_windows(PROMPT, LONG)
    d = got.details[0]
    assert d["windows"] == 3 and d["truncated"] is True
    # The kept part is the last 24 + 2 x 16 tokens: windows start 56, 40 and 24 tokens from the end.
    n = starts[-1] + SIZE
    assert d["worst_window_offset"] in {n - 56, n - 40, n - 24}


def test_config_unset_windows_leave_the_dump_and_fingerprint_alone(
    windowed: Any, plain: Any
) -> None:
    dump = ClassifierConfig(path="x").model_dump()
    assert "windows" not in dump["render"]
    assert windowed.fingerprint != plain.fingerprint
    with pytest.raises(ConfigError, match="stride"):
        build_verifier(cfg({"stride": SIZE + 1}))


def test_chat_template_classifier_short_equals_unwindowed_and_long_is_windowed() -> None:
    base = {
        "type": "classifier",
        "path": str(tiny_model_dir("qwen2_classifier")),
        "good_label": "safe",
        "runtime": {"device": "cpu"},
    }
    plain_v = build_verifier({**base, "render": {"max_length": MAX_LEN}})
    win_v = build_verifier(
        {**base, "render": {"max_length": MAX_LEN, "windows": {"size": SIZE, "stride": STRIDE}}}
    )
    rows = [
        Sample(prompt=[{"role": "user", "content": "Hi?"}], completion="Hello there."),
        Sample(prompt="Tell me.", completion=LONG),
    ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b = win_v.score(rows), plain_v.score(rows)
            one_a, one_b = win_v.score(rows[:1]), plain_v.score(rows[:1])
            assert_batch_equals_rows(win_v, rows, atol=1e-5)
    finally:
        plain_v.close()
        win_v.close()
    assert one_a.scores[0] == one_b.scores[0]  # the same ids through the same forward
    # In a batch the rows around it differ (windows vs one cut row): padding noise only.
    assert a.scores[0] == pytest.approx(b.scores[0], abs=1e-6) and a.details[0]["windows"] == 1
    assert a.details[1]["windows"] > 1


def test_a_row_that_cannot_be_rendered_raises_or_is_that_rows_error() -> None:
    rows = [
        Sample(prompt="p", completion="bad \ud800 text"),
        Sample(prompt=PROMPT, completion=LONG),
    ]
    strict = build_verifier(cfg({}))
    tolerant = build_verifier({**cfg({}), "on_error": "abstain"})
    try:
        with pytest.raises(Exception, match="surrogate"):
            strict.score(rows)
        got = tolerant.score(rows)
        alone = tolerant.score(rows[1:])
    finally:
        strict.close()
        tolerant.close()
    assert got.status[0] == "error" and "surrogate" in got.details[0]["reason"]
    assert got.scores[1] == alone.scores[0] and got.details[1]["windows"] > 1
