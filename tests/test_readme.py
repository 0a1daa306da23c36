"""The README's code runs as written.

Every ```python block of README.md is executed, in README order, in one namespace shared by all
blocks (later blocks use what earlier ones imported, as a reader does), with the repository root
as the working directory. A block that cannot run on a test machine (it needs a local
checkpoint, a GPU, a trainer) is exempted by an HTML comment on the line before its fence:
``<!-- not run: <the reason> -->``; such exemptions are few, and each must say why.

The ``safeladder eval`` / ``generate`` command lines of the README name files that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, SHARED_DATA

README = REPO / "README.md"
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->")
MAX_EXEMPTIONS = 3


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None  # the reason, when exempted


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, with the exemption comment before each, if any."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        exempt = NOT_RUN.search(before)
        blocks.append(
            Block(
                m.group(1),
                start + 1,
                "\n".join(lines[start + 1 : j]) + "\n",
                exempt.group("reason") if exempt else None,
            )
        )
        i = j + 1
    return blocks


PYTHON = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.lang == "python"]


class _Runner:
    """Runs the README's python blocks in order, once each, in one namespace."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "readme"}
        self.done: dict[int, str | None] = {}  # block index → traceback text, or None when ok

    def run_through(self, index: int) -> str | None:
        for k in range(index + 1):
            if k in self.done or PYTHON[k].not_run is not None:
                continue
            code = compile(PYTHON[k].code, f"README.md:{PYTHON[k].line}", "exec")
            try:
                exec(code, self.namespace)
                self.done[k] = None
            except Exception:
                self.done[k] = traceback.format_exc()
        return self.done.get(index)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    old_cwd, old_cache = Path.cwd(), os.environ.get("SAFELADDER_CACHE")
    # The demo policy is trained once per test session (test_cli_generate shares this cache).
    os.environ["SAFELADDER_CACHE"] = str(tmp_path_factory.getbasetemp() / "safeladder-demo-cache")
    os.chdir(REPO)
    try:
        yield _Runner()
    finally:
        os.chdir(old_cwd)
        if old_cache is None:
            os.environ.pop("SAFELADDER_CACHE", None)
        else:
            os.environ["SAFELADDER_CACHE"] = old_cache


def test_the_readme_has_python_blocks_and_few_exemptions() -> None:
    assert len(PYTHON) >= 4
    exempt = [b for b in PYTHON if b.not_run is not None]
    assert len(exempt) <= MAX_EXEMPTIONS, [b.line for b in exempt]
    assert all(len(b.not_run or "") >= 10 for b in exempt), "say why a block is not run"


def test_exemption_comments_are_recognised() -> None:
    text = (
        "x\n<!-- not run: needs a GPU -->\n\n```python\nraise SystemExit\n```\n```python\n1\n```\n"
    )
    got = readme_blocks(text)
    assert [(b.line, b.not_run) for b in got] == [(4, "needs a GPU"), (7, None)]


@pytest.mark.slow  # the blocks load the shipped models and train the tiny demo policy
@pytest.mark.parametrize("index", range(len(PYTHON)), ids=[f"line{b.line}" for b in PYTHON])
def test_python_block_runs(runner: _Runner, index: int) -> None:
    block = PYTHON[index]
    if block.not_run is not None:
        pytest.skip(f"README.md:{block.line}: not run: {block.not_run}")
    error = runner.run_through(index)
    assert error is None, f"README.md:{block.line} raised:\n{error}"


def _commands(tool: str) -> list[list[str]]:
    out = []
    for b in readme_blocks(README.read_text(encoding="utf-8")):
        if b.lang != "bash":
            continue
        for line in b.code.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(f"safeladder {tool} "):
                out.append(shlex.split(line))
    return out


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared data set is not beside the repo")
def test_eval_examples_name_files_that_exist() -> None:
    cmds = _commands("eval")
    assert len(cmds) >= 3
    for argv in cmds:
        if "--data" not in argv:  # the shift matrix reads ../shared/data itself
            assert argv[argv.index("--metrics") + 1] == "matrix", argv
            assert (REPO.parent / "shared" / "data").is_dir()
            continue
        data = argv[argv.index("--data") + 1]
        assert (REPO / data).exists(), f"README: {' '.join(argv)}: no {data}"


def test_generate_examples_name_configs_that_exist() -> None:
    cmds = _commands("generate")
    assert any("--demo" in argv for argv in cmds)
    for argv in cmds:
        configs = [a for a in argv[2:] if a.endswith(".yaml")]
        for c in configs:
            assert (REPO / c).is_file(), f"README: {' '.join(argv)}: no {c}"
