"""The ``safeladder`` command line (typer): ``safeladder.cli.app:main`` is the entry point.

Modules: ``app`` (commands and exit codes), ``score`` (the score engine: streaming, resume),
``summary`` (streaming statistics of a scored file), ``describe`` (verifier docs generated from
the config classes), ``errors`` (``CliError`` and the exit codes). The package does not import
``app`` itself, so ``python -m safeladder.cli.app`` runs cleanly.
"""
