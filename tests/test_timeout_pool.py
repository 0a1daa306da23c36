"""``TimeoutPool``: hard kills, recovery, order, errors, threads, clean shutdown.

Workers run builtins only (``time.sleep``, ``abs``, ``sum`` over a ``range``, ``math.sqrt``,
``os._exit``), so nothing from the test modules has to be imported by the workers (but see
``test_functions_from_the_callers_sys_path_run_in_workers``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeladder.timeout_pool import Outcome, TimeoutPool

LIMIT = 0.5
SLACK = 0.5  # dispatcher wake-up + SIGKILL + reaping, with other jobs on a 2-core machine


@pytest.fixture(scope="module")
def pool() -> Iterator[TimeoutPool]:
    p = TimeoutPool(workers=2)
    # Start both workers up front: start-up is not part of any deadline but is part of wall time.
    assert [o.value for o in p.map(abs, [-1, -2], timeout_s=30)] == [1, 2]
    yield p
    p.close()


def assert_gone(pid: int) -> None:
    # Killed *and reaped*: a zombie would still answer signal 0.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_sleep_forever_is_a_timeout_and_the_pool_recovers(pool: TimeoutPool) -> None:
    started_before = pool.processes_started
    t0 = time.monotonic()
    out = pool.map(time.sleep, [3600], timeout_s=LIMIT)
    wall = time.monotonic() - t0
    assert out[0].status == "timeout" and out[0].timed_out and not out[0].ok
    assert out[0].value is None and "0.5 s" in out[0].message
    assert LIMIT <= wall < LIMIT + SLACK
    # The killed worker is replaced and the next tasks run normally.
    assert [o.value for o in pool.map(abs, [-3, -4, -5], timeout_s=30)] == [3, 4, 5]
    assert pool.processes_started == started_before + 1
    assert pool.timeouts >= 1


def test_killed_worker_is_reaped(pool: TimeoutPool) -> None:
    before = set(pool.worker_pids())
    assert pool.run(time.sleep, 3600, timeout_s=0.2).status == "timeout"
    pool.map(abs, [1, 2], timeout_s=30)  # make sure a replacement exists
    killed = before - set(pool.worker_pids())
    assert len(killed) == 1
    assert_gone(killed.pop())


def test_each_task_has_its_own_deadline_from_its_start(pool: TimeoutPool) -> None:
    # Four 0.3 s tasks on two workers take ~0.6 s in all, more than the 0.5 s limit of each.
    out = pool.map(time.sleep, [0.3, 0.3, 0.3, 0.3], timeout_s=LIMIT)
    assert [o.status for o in out] == ["ok"] * 4


def test_order_is_preserved_when_tasks_finish_out_of_order(pool: TimeoutPool) -> None:
    sizes = [3_000_000, 10, 1_000_000, 5, 0]
    out = pool.map(sum, [range(n) for n in sizes], timeout_s=30)
    assert [o.value for o in out] == [n * (n - 1) // 2 for n in sizes]


def test_exceptions_come_back_as_errors(pool: TimeoutPool) -> None:
    out = pool.map(math.sqrt, [4.0, -1.0, 9.0], timeout_s=30)
    assert [o.status for o in out] == ["ok", "error", "ok"]
    assert out[1].message == "ValueError: math domain error" and out[1].value is None
    assert out[0].value == 2.0 and out[2].value == 3.0


def test_worker_death_is_an_error_and_the_pool_recovers(pool: TimeoutPool) -> None:
    out = pool.map(os._exit, [3], timeout_s=30)
    assert out[0].status == "error" and "exit code 3" in out[0].message
    assert pool.run(abs, -7, timeout_s=30).value == 7


def test_unpicklable_task_fails_alone(pool: TimeoutPool) -> None:
    out = pool.map(lambda x: x, [1], timeout_s=30)
    assert out[0].status == "error" and "could not be sent" in out[0].message
    assert pool.run(abs, -1, timeout_s=30).value == 1


def test_many_threads_at_once(pool: TimeoutPool) -> None:
    results: dict[str, list[Outcome] | BaseException] = {}

    def call(name: str, fn: object, items: list, timeout_s: float) -> None:
        try:
            results[name] = pool.map(fn, items, timeout_s)  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the assertions below
            results[name] = exc

    jobs: dict[str, tuple[object, list[int], float]] = {
        f"abs{k}": (abs, list(range(-40, 0)), 30.0) for k in range(4)
    }
    jobs["hang"] = (time.sleep, [3600], LIMIT)
    threads = [threading.Thread(target=call, args=(name, *job)) for name, job in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in range(4):
        out = results[f"abs{k}"]
        assert isinstance(out, list) and [o.value for o in out] == list(range(40, 0, -1))
    hang = results["hang"]
    assert isinstance(hang, list) and hang[0].status == "timeout"


def test_empty_map_and_bad_arguments(pool: TimeoutPool) -> None:
    assert pool.map(abs, [], timeout_s=1) == []
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="timeout_s"):
            pool.map(abs, [1], timeout_s=bad)
    with pytest.raises(ValueError, match="workers"):
        TimeoutPool(workers=0)


def test_initializer_runs_in_each_worker_and_close_leaves_no_process() -> None:
    with TimeoutPool(workers=2, initializer=os.chdir, initargs=("/",)) as p:
        assert not p.started  # lazy: nothing runs before the first map
        out = p.map(os.path.abspath, ["a", "b", "c"], timeout_s=30)
        assert [o.value for o in out] == ["/a", "/b", "/c"]
        pids = p.worker_pids()
        assert 1 <= len(pids) <= 2
    assert p.closed
    for pid in pids:
        assert_gone(pid)
    with pytest.raises(RuntimeError, match="closed"):
        p.map(abs, [1], timeout_s=1)
    p.close()  # idempotent


def test_failing_initializer_fails_the_tasks() -> None:
    with TimeoutPool(workers=1, initializer=math.sqrt, initargs=(-1.0,)) as p:
        out = p.map(abs, [1, 2], timeout_s=30)
    assert [o.status for o in out] == ["error", "error"]
    assert "worker initializer failed: ValueError: math domain error" in out[0].message


def test_close_while_a_task_runs_reports_it() -> None:
    p = TimeoutPool(workers=1)
    result: list[Outcome] = []
    t = threading.Thread(target=lambda: result.extend(p.map(time.sleep, [3600], timeout_s=3600)))
    t.start()
    deadline = time.monotonic() + 30
    while not p.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = p.worker_pids()
    time.sleep(0.2)
    p.close()
    t.join(10)
    assert result and result[0].status == "error" and "pool closed" in result[0].message
    for pid in pids:
        assert_gone(pid)


_SCRIPT = """
import pathlib
marker = pathlib.Path({marker!r})
marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
from safeladder.timeout_pool import TimeoutPool
with TimeoutPool(workers=2) as pool:
    out = pool.map(abs, [-1, -2, -3], timeout_s=60)
print([o.value for o in out])
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_callers_main_is_never_rerun_in_workers(tmp_path: Path, how: str) -> None:
    # A training script without an `if __name__ == "__main__":` guard, or code piped to
    # `python -`, must work: workers are fresh interpreters that never import the caller's main.
    marker = tmp_path / "ran"
    code = _SCRIPT.format(marker=str(marker))
    script = tmp_path / "train.py"
    script.write_text(code)
    args = [sys.executable, str(script)] if how == "file" else [sys.executable, "-"]
    r = subprocess.run(
        args,
        input=code if how == "stdin" else None,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "[1, 2, 3]" in r.stdout
    assert marker.read_text() == "x"


def test_functions_from_the_callers_sys_path_run_in_workers() -> None:
    from tests.helpers import double

    with TimeoutPool(workers=1) as p:
        assert [o.value for o in p.map(double, [1, 2.5], timeout_s=60)] == [2, 5.0]


# --------------------------------------------------------------------------- budgets, spares, limits


def test_call_budget_expires_queued_and_running_tasks_and_keeps_finished_ones() -> None:
    with TimeoutPool(workers=1) as p:
        p.run(abs, 0, timeout_s=60)  # started: the budget clock below counts task time only
        out = p.map(time.sleep, [0.0, 3600, 0.0, 0.0], timeout_s=3600, budget_s=1.0)
        assert [o.status for o in out] == ["ok", "expired", "expired", "expired"]
        assert out[1].message == "call budget of 1 s ran out while the task ran"
        assert out[2].message == "call budget of 1 s ran out before the task ran"
        assert not out[1].timed_out and p.expired == 3 and p.timeouts == 0
        # The killed worker is replaced; a call without a budget is unaffected by the last one.
        assert [o.value for o in p.map(abs, [-1, -2], timeout_s=60)] == [1, 2]


def test_budget_clock_starts_when_the_first_task_reaches_a_worker() -> None:
    # Start-up (here a 3 s initializer) must not eat the budget of the call that starts the pool.
    with TimeoutPool(workers=1, initializer=time.sleep, initargs=(3.0,)) as p:
        out = p.map(abs, [-1, -2, -3], timeout_s=60, budget_s=2.0)
    assert [o.status for o in out] == ["ok"] * 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_spare_worker_takes_the_place_of_a_killed_one() -> None:
    with TimeoutPool(workers=1, spares=1) as p:
        p.run(abs, 0, timeout_s=60)
        assert p.processes_started == 2  # the worker and its spare
        deadline = time.monotonic() + 120
        while p.idle_workers() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = set(p.worker_pids())
        assert len(ready) == 2
        assert p.run(time.sleep, 3600, timeout_s=0.3).status == "timeout"
        # The next task runs on the spare that was already started, not on a process started
        # after the kill (os.readlink("/proc/self") is the pid of the process that runs it).
        pid = int(p.run(os.readlink, "/proc/self", timeout_s=60).value)
        assert pid in ready
        assert p.processes_started == 3  # a new spare replaces the killed worker


def test_failing_initializer_with_spares_does_not_restart_forever() -> None:
    with TimeoutPool(workers=1, spares=2, initializer=math.sqrt, initargs=(-1.0,)) as p:
        out = p.map(abs, [1], timeout_s=30)
        assert out[0].status == "error" and "initializer failed" in out[0].message
        time.sleep(1.0)
        assert p.processes_started <= 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_memory_cap_turns_a_huge_allocation_into_an_outcome() -> None:
    with TimeoutPool(workers=1, memory_limit_mb=512) as p:
        out = p.map(bytearray, [64 * 2**20, 8 * 2**30, 1], timeout_s=60)
        assert [o.status for o in out] == ["ok", "memory", "ok"]
        assert out[1].message.startswith("MemoryError") and out[1].value is None
        assert len(out[0].value) == 64 * 2**20
        assert p.processes_started == 2  # the worker that ran out of memory was replaced


def test_bad_pool_and_budget_arguments() -> None:
    for kwargs in ({"spares": -1}, {"memory_limit_mb": 0}, {"spares": True}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            TimeoutPool(**kwargs)
    with TimeoutPool(workers=1) as p:
        for bad in (0, -1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="budget_s"):
                p.map(abs, [1], timeout_s=1, budget_s=bad)


_ORPHAN_SCRIPT = """
import threading, time
from safeladder.timeout_pool import TimeoutPool
pool = TimeoutPool(workers=2, spares=1)
pool.map(abs, [1, 2], timeout_s=120)
while pool.idle_workers() < 3:
    time.sleep(0.05)
# One worker sleeps, one is stuck in C code that holds the GIL, the spare is idle.
for fn, item in ((time.sleep, 3600), (sum, range(10**15))):
    threading.Thread(target=pool.map, args=(fn, [item], 3600), daemon=True).start()
while pool.idle_workers() > 1:
    time.sleep(0.05)
print(" ".join(str(pid) for pid in pool.worker_pids()), flush=True)
time.sleep(3600)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie is reaped by init, on its own schedule)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_when_their_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert len(pids) == 3, line
        assert all(_running(pid) for pid in pids)
    finally:
        parent.kill()  # SIGKILL: no atexit, no close(), no chance to clean up
        parent.wait(30)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _running(pid)] == []
