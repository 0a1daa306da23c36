"""Train a verifier: ``python train_verifier.py CONFIG [--set KEY=VALUE ...] [--resume] ...``.

The same command as ``safeladder train CONFIG`` (``safeladder.cli.train.main``); see
``configs/train/`` for example configs and ``safeladder/training`` for what a run writes.
"""

from __future__ import annotations

if __name__ == "__main__":
    from safeladder.cli.train import main

    main()
