"""Inputs a row handed over that no term of the reward looked at.

A reward that silently ignores part of a row teaches the policy the wrong thing without a
trace: a gold answer nobody compared against, or a picture the judging model never saw (a text
safety classifier judging "Describe what is in this image" only by the reply). ``UnreadInputs``
finds such rows per batch, returns them as masks for ``RewardResult`` and warns once per reward
and kind, so a misrouted config shows itself on the first batch.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping

import numpy as np

from safeladder.errors import SafeladderWarning
from safeladder.images import carries_images
from safeladder.types import SampleBatch, has_reference
from safeladder.verifiers.base import Verifier

__all__ = ["UnreadInputs"]


class UnreadInputs:
    """Rows whose reference / images no applied term reads, with a once-per-kind warning."""

    def __init__(self, reward_name: str):
        self.reward_name = reward_name
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def references(
        self,
        batch: SampleBatch,
        needed: Mapping[str, np.ndarray],
        verifiers: Callable[[str], Verifier],
        route: list[str | None],
    ) -> np.ndarray:
        """bool ``(b,)``: rows with a reference (``has_reference``) no term run on them reads."""
        n = len(batch)
        has = np.fromiter((has_reference(r) for r in batch.references), bool, count=n)
        unread = has & ~_read_by(needed, verifiers, n, lambda v: v.reads_reference)
        self._warn(
            "reference",
            unread,
            route,
            "carry a reference that no term reads, e.g. row {i}{on}; its gold answer is "
            "ignored. Route such rows to an answer check (meta 'task', routes.sources / "
            "routes.with_reference) or drop the reference. Counted as reference_unread",
        )
        return unread

    def images(
        self,
        batch: SampleBatch,
        needed: Mapping[str, np.ndarray],
        verifiers: Callable[[str], Verifier],
        route: list[str | None],
    ) -> np.ndarray:
        """bool ``(b,)``: rows carrying images (``carries_images``) no term run on them looks at."""
        n = len(batch)
        has = np.fromiter(
            (carries_images(im, p) for im, p in zip(batch.images, batch.prompts, strict=True)),
            bool,
            count=n,
        )
        unread = has & ~_read_by(needed, verifiers, n, lambda v: v.reads_images)
        self._warn(
            "images",
            unread,
            route,
            "carry images that no term looks at, e.g. row {i}{on}: their responses are judged "
            "without the picture. Add a term that reads images (a vision-language checkpoint, "
            "or image_safety for the images themselves; routes.with_images adds terms to "
            "image-bearing rows). Counted as images_unread",
        )
        return unread

    def _warn(self, kind: str, unread: np.ndarray, route: list[str | None], what: str) -> None:
        if not unread.any():
            return
        with self._lock:
            first_time = kind not in self._warned
            self._warned.add(kind)
        if not first_time:
            return
        i = int(np.flatnonzero(unread)[0])
        on = f" (route {route[i]!r})" if route[i] is not None else ""
        warnings.warn(
            f"reward {self.reward_name!r}: {int(unread.sum())} of {len(unread)} rows "
            + what.format(i=i, on=on)
            + " in every batch's results; this warning is shown once.",
            SafeladderWarning,
            stacklevel=4,
        )


def _read_by(
    needed: Mapping[str, np.ndarray],
    verifiers: Callable[[str], Verifier],
    n: int,
    reads: Callable[[Verifier], bool],
) -> np.ndarray:
    """bool ``(n,)``: rows on which at least one term whose verifier ``reads`` ran."""
    read = np.zeros(n, dtype=bool)
    for term, rows in needed.items():
        if reads(verifiers(term)):
            read |= rows
    return read
