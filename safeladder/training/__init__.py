"""Training verifiers: data → model → trainer → evaluate → calibrate → save.

``python train_verifier.py CONFIG`` and ``safeladder train CONFIG`` run the same code. Heavy
imports (torch, transformers, trl, peft, sklearn) happen inside the kind that needs them.
"""
