"""``open_slide``: pick a backend for a file and return a :class:`Slide`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends.array_backend import ArrayBackend
from .backends.base import SlideBackend
from .backends.openslide_backend import OpenSlideBackend
from .backends.tiff_backend import TiffBackend
from .errors import SlideError, SlideNotFoundError, UnsupportedFormatError
from .validation import parse_mpp
from .slide import Slide, SlideSpec

__all__ = ["open_slide", "from_array", "BACKENDS", "FAST_TIFF_VENDORS"]

BACKENDS: dict[str, type[SlideBackend]] = {"openslide": OpenSlideBackend, "tiff": TiffBackend}

#: Vendors (as OpenSlide names them) whose files the tifffile backend reads pixel for pixel.
FAST_TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})


def _check_path(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if not os.path.exists(text):
        raise SlideNotFoundError(f"{text}: no such slide file")
    if os.path.isdir(text):
        raise UnsupportedFormatError(
            f"{text}: is a directory; expected a slide file (for a DICOM series, pass one of its .dcm files)"
        )
    return text


def _open_auto(path: str) -> SlideBackend:
    """The fastest backend that reads ``path`` correctly.

    OpenSlide identifies the format; for the vendors in :data:`FAST_TIFF_VENDORS` the tifffile
    backend takes over when it can decode every level. Files OpenSlide rejects (OME-TIFF, TIFF
    compressions it lacks) get one more chance with tifffile.
    """
    try:
        reference = OpenSlideBackend(path)
    except UnsupportedFormatError as openslide_error:
        try:
            return TiffBackend(path)
        except UnsupportedFormatError as tiff_error:
            reasons = [str(error).removeprefix(f"{path}: ") for error in (openslide_error, tiff_error)]
            raise UnsupportedFormatError(
                f"{path}: no backend can read this file (OpenSlide: {reasons[0]}; tifffile: {reasons[1]})"
            ) from None
    if reference.info.vendor not in FAST_TIFF_VENDORS:
        return reference
    try:
        fast = TiffBackend(path)
    except UnsupportedFormatError:
        return reference
    if fast.info.level_dimensions != reference.info.level_dimensions:
        fast.close()  # the two disagree on the pyramid: trust OpenSlide
        return reference
    reference.close()
    return fast


def open_slide(
    path: str | os.PathLike[str], *, backend: str = "auto", mpp: Any = None, require_mpp: bool = True
) -> Slide:
    """Open a whole-slide image.

    Parameters
    ----------
    path : str or PathLike
        The slide file (SVS, NDPI, MRXS, SCN, BIF, DICOM, generic or OME TIFF...).
    backend : {"auto", "openslide", "tiff"}
        ``auto`` picks the fastest backend that reads the file correctly, else OpenSlide.
    mpp : float or (float, float), optional
        Microns per pixel of level 0; overrides the metadata, and is required when the file
        has none.
    require_mpp : bool
        When True (the default) a file without mpp metadata and no ``mpp=`` raises
        :class:`MissingMppError`. When False it opens with ``slide.mpp`` and every ``Level.mpp``
        ``None``: reads by ``level=`` work, anything that needs a resolution raises
        :class:`MissingMppError` (what ``slidescope info`` uses to describe such a file).

    Returns
    -------
    Slide

    Raises
    ------
    SlideNotFoundError, UnsupportedFormatError, CorruptSlideError, MissingMppError
    """
    text = _check_path(path)
    override = parse_mpp(mpp, "mpp=") if mpp is not None else None
    if backend == "auto":
        opened = _open_auto(text)
    elif backend in BACKENDS:
        opened = BACKENDS[backend](text)
    else:
        raise SlideError(f"backend: expected one of auto, {', '.join(BACKENDS)}; got {backend!r}")
    try:
        return Slide(SlideSpec(type(opened), opened.reopen_args(), override, bool(require_mpp)), opened)
    except BaseException:
        opened.close()
        raise


def from_array(
    image_or_levels: np.ndarray | Sequence[np.ndarray], mpp: Any, *, name: str | Path = "<array>"
) -> Slide:
    """An in-memory slide with the full :class:`Slide` API.

    Parameters
    ----------
    image_or_levels : ndarray or sequence of ndarray
        One ``(H, W, 3)`` uint8 image, or a pyramid of them, finest first.
    mpp : float or (float, float)
        Microns per pixel of the first level.
    name : str
        What ``slide.path`` reports.
    """
    levels = [image_or_levels] if isinstance(image_or_levels, np.ndarray) else list(image_or_levels)
    backend = ArrayBackend(levels, parse_mpp(mpp), str(name))
    return Slide(SlideSpec(ArrayBackend, backend.reopen_args()), backend)
