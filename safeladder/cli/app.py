"""The ``safeladder`` command line: ``score``, ``check``, ``verifiers``, ``serve``, ``eval``,
``train``, ``generate`` and the ``corrections`` group (add / import / list / search / export /
remove), each in its own module, registered on ``safeladder.cli.base.app``.

Exit codes: 0 ok; 1 the run failed (a bad row under ``--fail-on-error``, a reward that raised);
2 usage or config error (nothing was scored); 130 interrupted (Ctrl-C). Expected errors print
one message on stderr, without a traceback.

Run it as ``safeladder`` (``main``, the console script), ``python -m safeladder.cli`` or
``python -m safeladder.cli.app``.

Examples::

    safeladder score rewards.yaml --input rollouts.jsonl --output scored.jsonl
    safeladder score --input rollouts.parquet --output scored.jsonl --resume
    safeladder check rewards.yaml --set terms.0.weight=0.5
    safeladder verifiers math_answer
    safeladder eval --metrics guardrank --data answers.jsonl -o out/guardrank
    safeladder corrections search "Q: 6 bags of 8 coins?" --store fixes.db -k 3
"""

from __future__ import annotations

from typing import Any

# Importing a command module registers its command on ``app``; ``--help`` lists them in this
# order, so the imports are not sorted.
# isort: off
import safeladder.cli.score
import safeladder.cli.configs
import safeladder.cli.serve
import safeladder.cli.eval
import safeladder.cli.generate
import safeladder.cli.train
import safeladder.cli.corrections  # noqa: F401

# isort: on
from safeladder.cli.base import InputFormat, Overrides, app


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point (``safeladder = safeladder.cli.app:main``)."""
    return app(args=argv, prog_name="safeladder")


__all__ = ["InputFormat", "Overrides", "app", "main"]

if __name__ == "__main__":
    main()
