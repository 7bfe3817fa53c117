"""The errors of slidescope.merge: leaves of the one hierarchy of :mod:`slidescope.wsi.errors`.

- :class:`CheckpointError`: a checkpoint that cannot be read (missing, truncated, empty, text, a
  foreign format, a pickle that would need arbitrary code); the message names the file.
- :class:`CheckpointNotFoundError`: no checkpoint at that path.
- :class:`RemapError`: a remap plan with problems (missing, unexpected, shape mismatches,
  collisions, refused dtype casts); it carries the whole :class:`~slidescope.merge.report.RemapReport`
  so every problem is seen at once, never the first only.
"""

from __future__ import annotations

from typing import Any

from slidescope.wsi.errors import SlideError

__all__ = ["CheckpointError", "CheckpointNotFoundError", "RemapError"]


class CheckpointError(SlideError):
    """A checkpoint file that cannot be read as one; the message names the file and says why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at that path (nor a TensorFlow checkpoint with that prefix)."""


class RemapError(CheckpointError):
    """A remap whose plan has problems; ``report`` lists every one of them."""

    def __init__(self, message: str, report: Any) -> None:  # a RemapReport (not imported: no cycle)
        super().__init__(message)
        self.report = report
