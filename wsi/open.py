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
from .errors import UnsupportedFormatError
from .levels import SlideInfo
from .paths import check_slide_path
from .slide import Slide, SlideSpec
from .validation import parse_bool, parse_choice, parse_mpp, parse_path

__all__ = ["open_slide", "from_array", "BACKENDS", "FAST_TIFF_VENDORS"]

BACKENDS: dict[str, type[SlideBackend]] = {"openslide": OpenSlideBackend, "tiff": TiffBackend}

#: Vendors (as OpenSlide names them) whose files the tifffile backend reads pixel for pixel.
#: Others stay with OpenSlide even when tifffile parses them: Trestle tiles overlap, and NDPI,
#: SCN, Philips and Ventana files carry layouts the tiff backend does not model.
FAST_TIFF_VENDORS = frozenset({"aperio", "generic-tiff"})


def _same_pyramid(reference: SlideInfo, fast: SlideInfo) -> bool:
    """Whether the tiff backend sees the pyramid OpenSlide sees, and no other resolution.

    (An mpp only the tiff backend finds, e.g. from inch resolution tags, is no disagreement.)
    """
    if fast.level_dimensions != reference.level_dimensions:
        return False
    if reference.mpp is None:
        return True
    return fast.mpp is not None and all(abs(a - b) <= 1e-6 * b for a, b in zip(fast.mpp, reference.mpp))


def _ome_pyramid_beyond_openslide(reference: SlideInfo, fast: SlideInfo) -> bool:
    """Whether tifffile sees an OME-TIFF's whole pyramid where OpenSlide sees only part of it.

    OpenSlide has no OME-TIFF support: it opens one as a generic TIFF, ignoring the reduced
    levels stored as SubIFDs and the resolution in the OME-XML. The tiff backend reads both; it
    takes over when the two agree on level 0 and every level OpenSlide does see.
    """
    if fast.level_dimensions[: len(reference.level_dimensions)] != reference.level_dimensions:
        return False
    return len(fast.level_dimensions) > len(reference.level_dimensions) or (reference.mpp is None and fast.mpp is not None)


def _open_auto(path: str) -> SlideBackend:
    """The fastest backend that reads ``path`` correctly.

    OpenSlide identifies the format; for the vendors in :data:`FAST_TIFF_VENDORS` the tifffile
    backend takes over when it can decode every level and sees the same pyramid and mpp. Files
    OpenSlide rejects (OME-TIFF, TIFF compressions it lacks) get one more chance with tifffile.

    The tiff backend returns the stored pixels of levels whose downsample is not a whole
    number, where OpenSlide interpolates (see :func:`.openslide_backend.interpolated_levels`):
    such a file goes to OpenSlide only when the tiff backend cannot read it as OpenSlide does.
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
    if fast.info.vendor == "ome-tiff" and _ome_pyramid_beyond_openslide(reference.info, fast.info):
        reference.close()  # OpenSlide reads an OME-TIFF as a generic TIFF: no SubIFD levels, no OME mpp
        return fast
    if not _same_pyramid(reference.info, fast.info):
        fast.close()  # the two disagree on the pyramid or the resolution: trust OpenSlide
        return reference
    reference.close()
    return fast


def open_slide(
    path: str | os.PathLike[str], *, backend: str = "auto", mpp: Any = None, require_mpp: bool = True,
    exact_resample: bool = False,
) -> Slide:
    """Open a whole-slide image.

    Parameters
    ----------
    path : str or PathLike
        The slide file (SVS, NDPI, MRXS, SCN, BIF, DICOM, generic or OME TIFF...): a regular
        file this process may read.
    backend : {"auto", "openslide", "tiff"}
        ``auto`` picks the fastest backend that reads the file correctly, else OpenSlide. The
        ``openslide`` backend interpolates levels whose downsample is not a whole number
        (see :class:`~slidescope.wsi.backends.openslide_backend.OpenSlideBackend`); the others
        return stored pixels.
    mpp : float or (float, float), optional
        Microns per pixel of level 0; overrides the metadata, and is required when the file
        has none.
    require_mpp : bool
        When True (the default) a file without mpp metadata and no ``mpp=`` raises
        :class:`MissingMppError`. When False it opens with ``slide.mpp`` and every ``Level.mpp``
        ``None``: reads by ``level=`` work, anything that needs a resolution raises
        :class:`MissingMppError` (what ``slidescope info`` uses to describe such a file).
    exact_resample : bool
        When False (the default), a read at least twice coarser than the stored level it reads
        decodes that level's JPEG tiles 2, 4 or 8 times smaller (libjpeg-turbo's scaled IDCT)
        and shrinks the rest of the way with ``cv2.INTER_AREA``, where every output pixel covers
        whole blocks (see :mod:`slidescope.wsi.reduced`): 1.35-1.4x faster at 2x on generated
        slides, 1.65-2.7x at 2x-8x on CMU-1-Small-Region.svs, and within about 0.1 grey levels of
        a full decode on average (at most 19-21). When True every tile is decoded in full
        and shrunk with ``cv2.INTER_AREA``, the reference pixels. Other codecs, and the
        ``openslide`` backend, always decode in full.

    Returns
    -------
    Slide

    Raises
    ------
    ParameterError
        ``path`` is not a non-empty ``str`` or ``PathLike`` (bytes, ``None``, an int...), or
        another argument is malformed.
    SlideNotFoundError
        Nothing exists at ``path``.
    SlideAccessError
        ``path`` is not a regular file (FIFO, socket, device) or is a symbolic-link loop;
        :class:`SlidePermissionError` when this process may not read it.
    UnsupportedFormatError, CorruptSlideError, MissingMppError
    """
    text = parse_path(path, "path")
    override = parse_mpp(mpp, "mpp=") if mpp is not None else None
    chosen = parse_choice(backend, "backend", ("auto", *BACKENDS))
    require_mpp, exact_resample = parse_bool(require_mpp, "require_mpp"), parse_bool(exact_resample, "exact_resample")
    check_slide_path(text)
    opened = _open_auto(text) if chosen == "auto" else BACKENDS[chosen](text)
    try:
        spec = SlideSpec(type(opened), opened.reopen_args(), override, require_mpp, exact_resample)
        return Slide(spec, opened)
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
