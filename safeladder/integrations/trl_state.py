"""Keep a stateful reward's state (adaptive λ) in a TRL / transformers run's checkpoints.

``as_trl(reward)`` keeps one ``Reward`` for the whole run, so a stateful term (a
``confidence_calibration`` with ``adaptive_lambda``) carries its λ from batch to batch by itself.
What a restart needs is that state on disk beside the model: ``RewardStateCallback`` writes
``safeladder_reward_state.json`` (``Reward.save_state``) into each checkpoint folder and reads it
back when training resumes.

Contract (transformers 5.x ``trainer.py``; TRL's ``GRPOTrainer`` is a ``Trainer``):

- a checkpoint is saved to ``<args.output_dir>/checkpoint-<state.global_step>`` (``PREFIX_CHECKPOINT_DIR``,
  ``Trainer._save_checkpoint``), then ``on_save(args, state, control)`` is called;
- with ``trainer.train(resume_from_checkpoint=...)`` the ``TrainerState`` is loaded from the
  checkpoint before ``on_train_begin``, so there ``state.global_step`` is the resumed step (0 on
  a fresh run).

So ``on_save`` writes into ``checkpoint-<global_step>`` (on the main process only) and
``on_train_begin`` of a resumed run (``global_step > 0``) reads ``checkpoint-<global_step>``,
or the ``resume_from`` folder you pass when the checkpoint lives elsewhere. A resumed run whose
checkpoint has no state file raises (``on_missing="warn"`` continues from the config's initial λ
with a warning): a silently reset λ would undo the constraint's history.

Example::

    from trl import GRPOConfig, GRPOTrainer
    from safeladder import load_reward
    from safeladder.integrations.trl import as_trl
    from safeladder.integrations.trl_state import RewardStateCallback

    reward = load_reward("configs/reward/calibrated_qa_adaptive.yaml")
    trainer = GRPOTrainer(model=..., train_dataset=ds, reward_funcs=as_trl(reward),
                          args=GRPOConfig(output_dir="out", save_steps=50),
                          callbacks=[RewardStateCallback(reward)])
    trainer.train()                                  # out/checkpoint-50/safeladder_reward_state.json, ...
    trainer.train(resume_from_checkpoint=True)       # λ restored from the last checkpoint

Limits: each process holds its own reward, so under multi-GPU data parallelism each rank's λ
follows the batches that rank scored, and only rank 0's state is saved (each rank restores
that one). A reward function shipped to another process (TRL's async rollout worker) updates
the copy there, which this callback does not see.

Nothing here imports transformers at import time: ``RewardStateCallback`` is created on first
access.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Literal

from safeladder.errors import ConfigError, SafeladderWarning
from safeladder.rewards import Reward
from safeladder.verifiers.adaptive_lambda import STATE_FILE_NAME, stateful_verifiers


def _as_reward(reward: Any) -> Reward:
    # as_trl(reward) callables expose the live reward as `.reward`.
    inner = reward if isinstance(reward, Reward) else getattr(reward, "reward", None)
    if not isinstance(inner, Reward):
        raise ConfigError(
            f"RewardStateCallback needs a safeladder Reward or an as_trl(reward) callable, "
            f"got {type(reward).__name__}"
        )
    return inner


@functools.cache
def _callback_class() -> type:
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class RewardStateCallback(TrainerCallback):
        """Saves / restores a reward's state with the trainer's checkpoints (module docstring).

        Args:
            reward: the ``Reward`` given to ``as_trl`` (or the ``as_trl`` callable itself).
            resume_from: a checkpoint folder to restore from at ``on_train_begin`` instead of
                ``<output_dir>/checkpoint-<global_step>`` (a resumed run only).
            on_missing: a resumed run whose checkpoint has no state file: "raise" or "warn".

        Attributes:
            saved: the state files written, in order.
            restored_from: the folder the state was restored from, or None.
        """

        def __init__(
            self,
            reward: Any,
            *,
            resume_from: str | os.PathLike[str] | None = None,
            on_missing: Literal["raise", "warn"] = "raise",
        ):
            if on_missing not in ("raise", "warn"):
                raise ConfigError(f"on_missing must be 'raise' or 'warn', got {on_missing!r}")
            self.reward = _as_reward(reward)
            self.resume_from = Path(resume_from) if resume_from is not None else None
            self.on_missing = on_missing
            self.saved: list[Path] = []
            self.restored_from: Path | None = None

        def checkpoint_dir(self, args: Any, state: Any) -> Path:
            """The folder ``Trainer._save_checkpoint`` wrote for ``state.global_step``."""
            return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            path = self.reward.save_state(self.checkpoint_dir(args, state))
            if path is not None:
                self.saved.append(path)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.resume_from is None and state.global_step == 0:
                return  # a fresh run: the config's initial λ
            named = {t: self.reward.verifier(t) for t in self.reward.term_names}
            if not stateful_verifiers(named):
                return  # nothing was saved, nothing to restore
            folder = self.resume_from or self.checkpoint_dir(args, state)
            if not (folder / STATE_FILE_NAME).is_file():
                message = (
                    f"resuming at step {state.global_step} but {folder / STATE_FILE_NAME} does "
                    f"not exist, so reward {self.reward.name!r} would restart from its initial "
                    "state; pass resume_from=<checkpoint folder>, or on_missing='warn' to accept"
                )
                if self.on_missing == "raise":
                    raise ConfigError(message)
                warnings.warn(message, SafeladderWarning, stacklevel=2)
                return
            self.reward.load_state(folder)
            self.restored_from = folder

    return RewardStateCallback


def __getattr__(name: str) -> Any:
    if name == "RewardStateCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# RewardStateCallback is created by __getattr__ on first access (transformers is heavy).
__all__ = ["STATE_FILE_NAME", "RewardStateCallback"]  # noqa: F822
