"""``python -m safeladder.cli``: the ``safeladder`` command line."""

from safeladder.cli.app import main

if __name__ == "__main__":
    main()
