"""confidence_calibration with adaptive_lambda: Deliberative Searcher's λ as a dual variable.

The rule under test (papers.md §2; safeladder/verifiers/adaptive_lambda.py), written out here:
a batch is scored with λ_t, then λ_{t+1} = clip(λ_t + η·(rate_t − ε), 0, λ_max), where rate_t is
the fraction of the batch's scored rows that are wrong with confidence ≥ ζ.
"""

from __future__ import annotations

import json
import sys
import threading
import warnings
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from safeladder import load_reward
from safeladder.errors import ConfigError, SafeladderWarning
from safeladder.rewards import Reward
from safeladder.types import Sample, ScoreBatch
from safeladder.verifiers import build_verifier
from safeladder.verifiers.adaptive_lambda import (
    STATE_FILE_NAME,
    AdaptiveLambda,
    AdaptiveLambdaConfig,
)

SURE, UNSURE = "<confidence>9</confidence>", "<confidence>2</confidence>"
NO_PENDING = {"pending_rows": 0, "pending_false_certain": 0}


def verifier(**lam: object) -> Any:
    return build_verifier(
        {
            "type": "confidence_calibration",
            "correctness_from": "acc",
            "scale": "0-10",
            "adaptive_lambda": lam,
        }
    )


def batch(n: int, false_certain: int, correct_sure: int = 0) -> tuple[list[Sample], ScoreBatch]:
    """``n`` rows: ``false_certain`` wrong+sure, ``correct_sure`` right+sure, the rest wrong+unsure."""
    texts, acc = [], []
    for i in range(n):
        sure = i < false_certain + correct_sure
        texts.append(SURE if sure else UNSURE)
        acc.append(1.0 if false_certain <= i < false_certain + correct_sure else 0.0)
    sb = ScoreBatch("acc", np.array(acc, dtype=np.float32), np.array(["ok"] * n, dtype=object))
    return [Sample(completion=t) for t in texts], sb


def run(v: Any, n: int, bad: int) -> ScoreBatch:
    rows, acc = batch(n, bad)
    result: ScoreBatch = v.score(rows, context={"acc": acc})
    return result


def lam_of(res: ScoreBatch) -> tuple[float, float, float]:
    m = res.details[0]["batch_metrics"]
    return m["lambda"], m["false_certain_rate"], m["lambda_next"]


def test_update_rule_by_hand() -> None:
    # η = 1, ε = 0.25, λ0 = 0.5; batches of 4 rows (all numbers exact in binary).
    v = verifier(lambda_init=0.5, lr=1.0, target_rate=0.25)
    # rate 3/4: 0.5 + (0.75 − 0.25) = 1.0
    assert lam_of(run(v, 4, 3)) == (0.5, 0.75, 1.0)
    # rate 0: 1.0 − 0.25 = 0.75 — and this batch was scored with 1.0, the value before its update
    assert lam_of(run(v, 4, 0)) == (1.0, 0.0, 0.75)
    for expected in (0.5, 0.25, 0.0, 0.0):  # slack: down by ε each batch, projected at 0
        assert lam_of(run(v, 4, 0))[2] == expected
    assert v.state_dict() == {
        "lambda": 0.0,
        "step": 6,
        "rows": 24,
        "false_certain": 3,
        **NO_PENDING,
    }


def test_scores_are_lambda_times_reliability() -> None:
    v = verifier(lambda_init=2.0, lr=1.0, target_rate=0.0)
    rows, acc = batch(4, false_certain=1, correct_sure=1)  # wrong+sure, right+sure, 2× wrong+unsure
    res = v.score(rows, context={"acc": acc})
    # r_reliab = 0, 1, 1, 1 (threshold mode), scaled by λ = 2 (before the update)
    assert res.scores.tolist() == [0.0, 2.0, 2.0, 2.0]
    assert [d["reliability"] for d in res.details] == [0.0, 1.0, 1.0, 1.0]
    assert [d["false_certain"] for d in res.details] == [True, False, False, False]
    assert {d["lambda"] for d in res.details} == {2.0}
    assert v.state_dict()["lambda"] == 2.25  # 2 + 1·(1/4 − 0)


def test_abstaining_rows_do_not_count_missing_confidence_does() -> None:
    v = verifier(lambda_init=0.0, lr=1.0, target_rate=0.0)
    texts = [SURE, SURE, "no confidence stated", SURE]
    acc = ScoreBatch(
        "acc",
        np.array([0.0, np.nan, 0.0, 1.0], dtype=np.float32),
        np.array(["ok", "abstain", "ok", "ok"], dtype=object),
    )
    res = v.score([Sample(completion=t) for t in texts], context={"acc": acc})
    assert res.status.tolist() == ["ok", "abstain", "ok", "ok"]
    # counted: rows 0, 2, 3; false-certain: row 0 only (row 2 stated nothing) → rate 1/3
    assert res.details[1]["batch_metrics"]["false_certain_rate"] == pytest.approx(1 / 3)
    assert v.state_dict() == {
        "lambda": pytest.approx(1 / 3),
        "step": 1,
        "rows": 3,
        "false_certain": 1,
        **NO_PENDING,
    }


def test_all_abstain_leaves_state_unchanged() -> None:
    v = verifier(lambda_init=0.7)
    acc = ScoreBatch(
        "acc", np.array([np.nan], dtype=np.float32), np.array(["abstain"], dtype=object)
    )
    res = v.score([Sample(completion=SURE)], context={"acc": acc})
    assert np.isnan(res.details[0]["batch_metrics"]["false_certain_rate"])
    assert v.state_dict() == {"lambda": 0.7, "step": 0, "rows": 0, "false_certain": 0, **NO_PENDING}


def test_violated_then_slack_fixed_stream() -> None:
    v = verifier(lambda_init=0.0, lr=0.5, target_rate=0.1)
    rising = [lam_of(run(v, 10, 5))[2] for _ in range(6)]  # rate 0.5 > ε
    assert all(b > a for a, b in pairwise([0.0, *rising]))
    falling = [lam_of(run(v, 10, 0))[2] for _ in range(30)]  # rate 0 < ε: −0.05 each
    assert all(b < a or b == 0.0 for a, b in pairwise([rising[-1], *falling]))
    assert falling[-1] == 0.0 and falling[-2] == 0.0  # projected: never negative


def test_responding_policy_is_driven_under_target() -> None:
    """A synthetic policy that answers confidently-wrong less as λ grows (p = 0.5 − 0.25·λ):
    λ rises while its rate is above ε, until the rate falls under ε, then hovers."""
    eps = 0.1
    v = verifier(lambda_init=0.0, lr=0.5, target_rate=eps)
    n, rates, lams = 100, [], []
    for _ in range(40):
        lam = v.state_dict()["lambda"]
        bad = round(n * max(0.0, 0.5 - 0.25 * lam))
        l_used, rate, _ = lam_of(run(v, n, bad))
        lams.append(l_used)
        rates.append(rate)
    first_ok = next(i for i, r in enumerate(rates) if r <= eps)
    assert first_ok > 0
    assert all(b > a for a, b in pairwise(lams[: first_ok + 1]))
    # after it first met the constraint, it stays near ε (the policy's fixed point is λ = 1.6)
    assert max(rates[first_ok + 1 :]) <= eps + 0.05
    assert lams[-1] == pytest.approx(1.6, abs=0.1)


def test_min_rows_pools_per_row_calls_into_one_update() -> None:
    """A host that scores one row per call (verl's compute_score) with min_rows = 4 moves λ as
    one batch of those 4 rows would: λ is constant inside the window, then one step."""
    cfg = {"lambda_init": 0.5, "lr": 1.0, "target_rate": 0.25}
    per_row = verifier(**cfg, min_rows=4)
    used = [lam_of(run(per_row, 1, bad))[0] for bad in (1, 0, 1)]
    assert used == [0.5, 0.5, 0.5]
    state = per_row.state_dict()
    assert (state["step"], state["pending_rows"], state["pending_false_certain"]) == (0, 3, 2)
    # the window survives a save / restore
    restored = verifier(**cfg, min_rows=4)
    restored.load_state_dict(state)
    for v in (per_row, restored):
        res = run(v, 1, 0)  # 4th row: pooled rate 2/4 → 0.5 + (0.5 − 0.25) = 0.75
        assert lam_of(res) == (0.5, 0.0, 0.75)
    whole = verifier(**cfg)
    rows, acc = batch(4, 2)
    whole.score(rows, context={"acc": acc})
    assert per_row.state_dict() == whole.state_dict() == restored.state_dict()


def test_metrics_for_a_scrape() -> None:
    v = verifier(lambda_init=1.0, lr=1.0, target_rate=0.0)
    before = v.metrics()
    assert before["lambda"] == 1.0 and np.isnan(before["false_certain_rate"])
    run(v, 4, 1)
    run(v, 4, 3)
    # λ = 1 + 1/4 + 3/4; last batch 3/4; overall 4/8
    assert v.metrics() == {
        "lambda": 2.0,
        "false_certain_rate": 0.75,
        "false_certain_rate_total": 0.5,
        "lambda_step": 2.0,
    }


def test_lambda_max_projects() -> None:
    v = verifier(lambda_init=0.9, lr=1.0, target_rate=0.0, lambda_max=1.0)
    run(v, 2, 2)
    assert v.state_dict()["lambda"] == 1.0
    with pytest.raises(ConfigError, match="lambda_init"):
        verifier(lambda_init=2.0, lambda_max=1.0)


def test_config_rejects_unknown_and_bad_fields() -> None:
    with pytest.raises(ConfigError, match="eta"):
        verifier(eta=0.1)
    with pytest.raises(ConfigError, match="lr"):
        verifier(lr=0.0)
    with pytest.raises(ConfigError, match="target_rate"):
        verifier(target_rate=1.5)


STREAM = [(20, k) for k in (12, 9, 7, 7, 3, 1, 0, 0, 5, 2, 0, 0)]


def trajectory(v: Any, stream: list[tuple[int, int]]) -> list[tuple[float, ...]]:
    out = []
    for n, bad in stream:
        res = run(v, n, bad)
        out.append((*lam_of(res), *res.scores.tolist()))
    return out


def test_same_stream_same_trajectory() -> None:
    cfg = {"lambda_init": 0.2, "lr": 0.7, "target_rate": 0.05}
    assert trajectory(verifier(**cfg), STREAM) == trajectory(verifier(**cfg), STREAM)


def reward_config(**lam: object) -> dict:
    return {
        "name": "cq",
        "terms": [
            {"name": "acc", "verifier": {"type": "qa_match"}, "weight": 0.9},
            {
                "name": "rel",
                "verifier": {
                    "type": "confidence_calibration",
                    "correctness_from": "acc",
                    "scale": "0-10",
                    "adaptive_lambda": {"lambda_init": 0.3, "lr": 1.0, "target_rate": 0.1, **lam},
                },
                "weight": 1.0,
            },
        ],
    }


def qa_rows(bad: int, n: int = 5) -> list[dict]:
    """``bad`` confidently wrong answers, the rest right and sure."""
    return [
        {"completion": f"{'Rome' if i < bad else 'Paris'} {SURE}", "reference": f"Paris {SURE}"}
        for i in range(n)
    ]


def test_reward_log_dict_and_save_restore_round_trip(tmp_path: Path) -> None:
    stream = [qa_rows(b) for b in (4, 3, 3, 1, 0, 2, 0, 0)]
    a = load_reward(reward_config())
    for rows in stream[:3]:
        a.score(rows)
    log = a.score(stream[3]).log_dict()
    assert log["reward/rel/lambda"] == pytest.approx(0.3 + 0.7 + 0.5 + 0.5)
    assert log["reward/rel/false_certain_rate"] == pytest.approx(0.2)
    path = a.save_state(tmp_path)
    assert path == tmp_path / STATE_FILE_NAME
    saved = json.loads(path.read_text())
    assert saved["reward"] == "cq" and saved["terms"]["rel"]["state"]["step"] == 4

    b = load_reward(reward_config())
    assert b.load_state(tmp_path) == ["rel"]
    for rows in stream[4:]:  # the restored run continues exactly as the original
        ra, rb = a.score(rows), b.score(rows)
        assert ra.total.tolist() == rb.total.tolist()
        assert ra.log_dict() == rb.log_dict()
    assert a.verifier("rel").state_dict() == b.verifier("rel").state_dict()  # type: ignore[attr-defined]


def test_reward_without_state_writes_nothing(tmp_path: Path) -> None:
    r = load_reward({"name": "plain", "terms": [{"name": "acc", "verifier": {"type": "qa_match"}}]})
    assert r.save_state(tmp_path) is None
    assert not (tmp_path / STATE_FILE_NAME).exists()


@pytest.mark.filterwarnings("ignore:.*fingerprint:safeladder.errors.SafeladderWarning")
def test_load_state_refuses_bad_files_and_changes_nothing(tmp_path: Path) -> None:
    r = load_reward(reward_config())
    r.score(qa_rows(5))
    before = r.verifier("rel").state_dict()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="no saved reward state"):
        r.load_state(tmp_path)
    (tmp_path / STATE_FILE_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        r.load_state(tmp_path)
    good = {"lambda": 1.0, "step": 1, "rows": 5, "false_certain": 5, **NO_PENDING}
    for terms, match in [
        ({"other": {"state": good}}, "missing: \\['rel'\\]"),
        ({"rel": {"state": {**good, "lambda": -1.0}}}, "outside"),
        ({"rel": {"state": {**good, "rows": 2}}}, "exceeds"),
        ({"rel": {"state": {"lambda": 1.0}}}, "keys"),
    ]:
        (tmp_path / STATE_FILE_NAME).write_text(json.dumps({"format": 1, "terms": terms}))
        with pytest.raises(ConfigError, match=match):
            r.load_state(tmp_path)
    assert r.verifier("rel").state_dict() == before  # type: ignore[attr-defined]


def test_load_state_from_changed_config_warns(tmp_path: Path) -> None:
    a = load_reward(reward_config())
    a.score(qa_rows(2))
    a.save_state(tmp_path)
    b = load_reward(reward_config(target_rate=0.2))
    with pytest.warns(SafeladderWarning, match="fingerprint"):
        b.load_state(tmp_path)
    assert b.verifier("rel").state_dict() == a.verifier("rel").state_dict()  # type: ignore[attr-defined]


def test_state_file_persists_across_rebuilds(tmp_path: Path) -> None:
    state = tmp_path / "lam.json"
    v = verifier(lambda_init=0.0, lr=1.0, target_rate=0.0, state_file=str(state))
    run(v, 4, 1)
    assert json.loads(state.read_text())["lambda"] == 0.25
    again = verifier(lambda_init=0.0, lr=1.0, target_rate=0.0, state_file=str(state))
    assert again.state_dict() == v.state_dict()


def test_concurrent_batches_are_serialised() -> None:
    # η = 1, ε = 0.25, every batch at rate 0.5: each update adds exactly 0.25, in any order.
    v = verifier(lambda_init=0.0, lr=1.0, target_rate=0.25)
    used: list[float] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                used.append(lam_of(run(v, 4, 2))[0])
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unguarded update would interleave
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert v.state_dict() == {
        "lambda": 200.0,
        "step": 800,
        "rows": 3200,
        "false_certain": 1600,
        **NO_PENDING,
    }
    # every batch saw a different λ: no two read the same value before one of them updated it
    assert sorted(used) == [0.25 * k for k in range(800)]


def test_controller_doctest_numbers() -> None:
    lam = AdaptiveLambda(AdaptiveLambdaConfig(lambda_init=1.0, lr=2.0, target_rate=0.5))
    step = lam.observe([True, True, True, True])  # 1 + 2·(1 − 0.5)
    assert (step.lam, step.lam_next, step.rate, step.counted, step.false_certain) == (
        1.0,
        2.0,
        1.0,
        4,
        4,
    )


def test_as_trl_keeps_state_and_logs_lambda() -> None:
    from safeladder.integrations.trl import as_trl

    f = as_trl(load_reward(reward_config()))
    logged: dict[str, float] = {}

    def call(bad: int) -> list[float | None]:
        rows = qa_rows(bad)
        return f(
            prompts=["Capital of France?"] * len(rows),
            completions=[r["completion"] for r in rows],
            answer=[r["reference"] for r in rows],
            log_metric=logged.__setitem__,
        )

    call(5)  # λ 0.3 → 0.3 + (1 − 0.1) = 1.2
    assert logged["cq/rel/lambda"] == 0.3 and logged["cq/rel/false_certain_rate"] == 1.0
    out = call(0)  # scored with λ = 1.2: 0.9·1 + 1.2·1 per row
    assert out == pytest.approx([2.1] * 5)
    assert logged["cq/rel/lambda"] == pytest.approx(1.2)


@pytest.mark.slow  # imports transformers (and torch): seconds when cold
def test_trl_callback_saves_and_restores_with_transformers_objects(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState
    from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

    from safeladder.integrations.trl import as_trl
    from safeladder.integrations.trl_state import RewardStateCallback

    args: Any = SimpleNamespace(output_dir=str(tmp_path))  # the only field the callback reads
    reward = load_reward(reward_config())
    f = as_trl(reward)
    cb = RewardStateCallback(f)  # the as_trl callable or the Reward itself
    handler = CallbackHandler([DefaultFlowCallback(), cb], None, None, None, None)
    state, control = TrainerState(global_step=0), TrainerControl()
    handler.on_train_begin(args, state, control)  # fresh run: nothing restored
    assert cb.restored_from is None

    def step(fn: Any, bad: int) -> list[float | None]:
        rows = qa_rows(bad)
        return fn(
            prompts=[""] * len(rows),
            completions=[r["completion"] for r in rows],
            answer=[r["reference"] for r in rows],
        )

    for bad in (5, 4, 2):
        step(f, bad)
    state.global_step = 3
    handler.on_save(args, state, control)
    ckpt = tmp_path / "checkpoint-3"
    assert cb.saved == [ckpt / STATE_FILE_NAME]
    saved_state = reward.verifier("rel").state_dict()  # type: ignore[attr-defined]

    # A non-main rank writes nothing.
    other = RewardStateCallback(reward)
    CallbackHandler([other], None, None, None, None).on_save(
        args, TrainerState(global_step=4, is_world_process_zero=False), TrainerControl()
    )
    assert other.saved == [] and not (tmp_path / "checkpoint-4").exists()

    # Resume: a new process builds the reward again; on_train_begin at global_step 3 restores.
    reward2 = load_reward(reward_config())
    cb2 = RewardStateCallback(reward2)
    resumed = TrainerState(global_step=3)
    CallbackHandler([cb2], None, None, None, None).on_train_begin(args, resumed, TrainerControl())
    assert cb2.restored_from == ckpt
    assert reward2.verifier("rel").state_dict() == saved_state  # type: ignore[attr-defined]
    f2 = as_trl(reward2)
    for bad in (1, 0, 3):
        assert step(f, bad) == step(f2, bad)

    # Resuming from a checkpoint without the file: refused, or a warning when asked.
    with pytest.raises(ConfigError, match="does not exist"):
        RewardStateCallback(reward2).on_train_begin(args, TrainerState(global_step=7), control)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RewardStateCallback(reward2, on_missing="warn").on_train_begin(
            args, TrainerState(global_step=7), control
        )
    assert any(issubclass(w.category, SafeladderWarning) for w in caught)
    with pytest.raises(ConfigError, match="Reward"):
        RewardStateCallback(object())


def test_shipped_adaptive_config_builds() -> None:
    path = (
        Path(__file__).resolve().parents[2] / "configs" / "reward" / "calibrated_qa_adaptive.yaml"
    )

    def row(answer: str, confidence: int) -> dict:
        text = f"<think>...</think><answer>{answer}</answer><confidence>{confidence}</confidence>"
        return {"completion": text, "reference": "Paris"}

    with load_reward(str(path)) as r:
        assert isinstance(r, Reward)
        assert r.verifier("reliability").stateful  # type: ignore[attr-defined]
        res = r.score([row("Rome", 9), row("Rome", 2), row("Paris", 9), row("Paris", 9)])
        # 0.1·fmt + 0.9·acc + λ·reliab with λ = 0.3: wrong+sure 0.1, wrong+unsure 0.1 + 0.3,
        # right+sure 0.1 + 0.9 + 0.3; then λ = 0.3 + 0.5·(1/4 − 0.05) = 0.4
        assert res.total.tolist() == pytest.approx([0.1, 0.4, 1.3, 1.3])
        assert res.log_dict()["reward/reliability/lambda_next"] == pytest.approx(0.4)
