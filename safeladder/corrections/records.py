"""The rows of a correction store, and its JSONL import / export format.

A correction says: on ``prompt`` the model reasoned ``wrong``; a person rewrote it as
``corrected`` (optionally with a ``note`` and ``tags``). The JSONL format of ``safeladder
corrections import`` / ``export`` is one ``NewCorrection`` per line::

    {"prompt": "Q: Tom has 7 bags with 8 pens each. How many pens?",
     "wrong": "7 * 8 = 54\\n\\n#### 54", "corrected": "7 * 8 = 56\\n\\n#### 56",
     "note": "7 x 8 is 56", "tags": ["mul"], "author": "ana"}

``id`` and ``created_at`` may be given (an export carries them, so export → import keeps
them); otherwise the store fills them in: the id is a content hash of prompt, wrong and
corrected (importing the same file twice adds nothing new), ``created_at`` the current UTC time.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator


def content_id(prompt: str, wrong: str, corrected: str) -> str:
    """The default id of a correction: 16 hex digits of sha256 over its three texts.

    >>> content_id("p", "w", "c") == content_id("p", "w", "c") != content_id("p", "w", "d")
    True
    """
    blob = "\0".join((prompt, wrong, corrected)).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


class NewCorrection(BaseModel):
    """One correction to add (a line of the import / export JSONL format)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Unique id; default: a content hash of prompt, wrong and corrected.",
    )
    prompt: str = Field(min_length=1, description="The question the model got wrong (text).")
    wrong: str = Field(min_length=1, description="The model's wrong reasoning or answer.")
    corrected: str = Field(
        min_length=1, description="The corrected reasoning, as a person wrote it."
    )
    note: str = Field(default="", description="Optional explanation of the mistake.")
    tags: tuple[str, ...] = Field(default=(), description="Free labels (e.g. task, mistake kind).")
    author: str = Field(default="", description="Who wrote the correction.")
    created_at: datetime | None = Field(
        default=None, description="When it was written (UTC); default: when it is added."
    )

    @field_validator("prompt", "wrong", "corrected")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank; give the text")
        return value

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a naive time is read as UTC
        return value

    def resolved_id(self) -> str:
        """``id`` if given, else ``content_id(prompt, wrong, corrected)``."""
        return self.id or content_id(self.prompt, self.wrong, self.corrected)


class Correction(NewCorrection):
    """A stored correction: ``id`` and ``created_at`` are always set."""

    id: str = Field(min_length=1, max_length=200, description="Unique id in the store.")
    created_at: datetime = Field(description="When it was written (UTC).")


class CorrectionHit(BaseModel):
    """A search result: a stored correction and the cosine similarity of its prompt to the query."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    correction: Correction
    similarity: float = Field(description="Cosine similarity of the prompt embeddings, in [-1, 1].")


__all__ = ["Correction", "CorrectionHit", "NewCorrection", "content_id"]
