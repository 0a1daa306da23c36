"""``python -m safeladder ...``: the same command line as ``safeladder ...``."""

from safeladder.cli.app import main

if __name__ == "__main__":
    main()
