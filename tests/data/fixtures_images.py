"""A reward that reads a row's images, for the ``safeladder score`` image tests.

Not a test module (no ``test_`` prefix): the score command imports it by name.
"""

from __future__ import annotations

from safeladder.images import load_row_images
from safeladder.types import Sample


def total_width(sample: Sample) -> float | None:
    """Sum of the widths of the row's decoded images; abstains on a row without images."""
    if not sample.images:
        return None
    return float(sum(im.size[0] for im in load_row_images(sample.images)))
