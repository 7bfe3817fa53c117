"""The one error hierarchy of slidescope.

Every error slidescope raises on bad input derives from :class:`SlideError`, which is a
``ValueError``; each leaf also subclasses the builtin a caller would naturally catch
(``FileNotFoundError`` for a missing slide, ``IndexError`` for a read outside the slide...).
Messages name the file, key or value and say what was expected and what was found.

Later packages (tiling, models, merge, workflows) re-export these and add their own leaves.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "SlideError",
    "SlideNotFoundError",
    "UnsupportedFormatError",
    "CorruptSlideError",
    "MissingMppError",
    "RegionError",
    "OutOfBoundsError",
    "ResolutionError",
    "ClosedSlideError",
]


class SlideError(ValueError):
    """Base of every slidescope error about slides, tiles, masks and their parameters."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide path does not exist (or is a directory where a file was expected)."""


class UnsupportedFormatError(SlideError):
    """No backend can read this file (unknown format, unsupported compression...)."""


class CorruptSlideError(SlideError, OSError):
    """The file claims a supported format but its contents cannot be decoded."""


class MissingMppError(SlideError):
    """The slide carries no microns-per-pixel metadata and none was passed."""

    def __init__(self, path: str | PathLike[str]) -> None:
        super().__init__(
            f"{path}: the slide has no microns-per-pixel (mpp) metadata; pass it explicitly, "
            f"e.g. open_slide({str(path)!r}, mpp=0.25) or `--slide-mpp 0.25` on the command line"
        )
        self.path = str(path)


class RegionError(SlideError):
    """A region request is malformed: zero or negative size, bad level, bad arguments."""


class OutOfBoundsError(RegionError, IndexError):
    """A requested region lies wholly outside the slide."""


class ResolutionError(RegionError):
    """A requested resolution cannot be served (finer than level 0, non-positive...)."""


class ClosedSlideError(SlideError):
    """An operation was attempted on a slide after ``close()``."""
