"""The ``safeladder`` command line (typer): parses arguments, calls the library, prints.

Modules: ``app`` (imports every command; ``main`` is the entry point), ``base`` (the typer
``app`` the commands register on, exceptions → exit codes, shared options), one module per
command: ``score``, ``serve``, ``configs`` (check, verifiers), ``eval``, ``train``,
``generate``; ``describe`` (verifier docs from the config classes), ``output`` (warnings and
library noise), ``errors`` (``CliError`` and the exit codes). ``ray_engine`` and ``summary``
re-export names that moved to ``safeladder.scoring``.

Layer: the top one; it may import every other subpackage, and nothing imports it. No engine
lives here. The package does not import ``app`` itself, so ``python -m safeladder.cli.app``
runs cleanly.
"""
