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
    "SlideAccessError",
    "SlidePermissionError",
    "UnsupportedFormatError",
    "CorruptSlideError",
    "MissingMppError",
    "AssociatedImageNotFoundError",
    "ParameterError",
    "RegionError",
    "OutOfBoundsError",
    "ResolutionError",
    "ClosedSlideError",
    "OutputError",
    "OutputExistsError",
]


class SlideError(ValueError):
    """Base of every slidescope error about slides, tiles, masks and their parameters."""


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The slide path does not exist (or is a directory where a file was expected)."""


class SlideAccessError(SlideError, OSError):
    """The path exists but cannot be read as a slide: not a regular file (a FIFO, a socket, a
    device), a symbolic-link loop, or no permission to read it."""


class SlidePermissionError(SlideAccessError, PermissionError):
    """The slide (or a file it needs) exists but this process may not read it."""


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


class AssociatedImageNotFoundError(SlideError, KeyError):
    """The slide has no associated image of that name (``label``, ``macro``, ``thumbnail``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(SlideError):
    """A parameter has the wrong type or value: a bool or a string for a number, NaN, out of range.

    Raised by the ``parse_*`` functions of :mod:`slidescope.wsi.validation`.
    """


class RegionError(ParameterError):
    """A region request is malformed: zero, negative or absurd size, bad level, bad locations."""


class OutOfBoundsError(RegionError, IndexError):
    """A requested region lies wholly outside the slide."""


class ResolutionError(ParameterError):
    """A requested resolution is malformed or cannot be served (finer than level 0, non-positive...)."""


class ClosedSlideError(SlideError):
    """An operation was attempted on a slide after ``close()``."""


class OutputError(SlideError, OSError):
    """An output cannot be written where asked (its folder is missing, it would replace an input...)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output path holds something that is not this command's own kind of output."""
