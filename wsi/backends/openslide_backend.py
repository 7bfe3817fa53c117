"""Every vendor format OpenSlide reads (SVS, NDPI, MRXS, SCN, BIF, DICOM, generic tiled TIFF).

Pixels come straight from ``openslide_read_region`` into a numpy buffer: no PIL image is built
(openslide-python's public ``read_region`` returns one, which costs a copy and a conversion).

Levels whose downsample is not a whole number are interpolated, not stored pixels: see
:class:`OpenSlideBackend` and :func:`interpolated_levels`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import cv2
import numpy as np
import openslide
from openslide import lowlevel

from ..errors import AssociatedImageNotFoundError, CorruptSlideError, UnsupportedFormatError
from ..levels import SlideInfo
from ..paths import check_slide_path
from .base import Box, SlideBackend, composite_on_white

__all__ = ["OpenSlideBackend", "argb_to_rgb", "interpolated_levels"]


def interpolated_levels(info: SlideInfo) -> tuple[int, ...]:
    """Levels OpenSlide serves interpolated rather than as stored: those whose downsample is not
    a whole number (2.0005 for a 4001 px wide level 0 over a 2000 px level 1).

    ``openslide_read_region`` takes level-0 coordinates and places the level at ``l0 / downsample``;
    unless the downsample is whole, no integer level-0 location lands on the level's pixel grid,
    so OpenSlide renders the level at a sub-pixel offset and each pixel is a blend of up to four
    stored neighbours.
    """
    return tuple(i for i, ds in enumerate(info.level_downsamples) if abs(ds - round(ds)) > 1e-9)


def _float_or_none(value: str | None) -> float | None:
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


def argb_to_rgb(argb: np.ndarray, out: np.ndarray) -> None:
    """Convert OpenSlide's premultiplied ARGB words into RGB composited on white.

    Parameters
    ----------
    argb : ndarray
        ``(H, W)`` uint32 native-endian premultiplied ARGB, as ``openslide_read_region`` writes
        (bytes B, G, R, A in memory on little-endian machines).
    out : ndarray
        ``(H, W, 3)`` uint8 destination.
    """
    channels = argb.view(np.uint8).reshape(argb.shape + (4,))
    # cv2.cvtColor: one pass, ~30x faster than a negative-stride numpy copy of the channels. It
    # writes into any view whose pixels are packed along rows, whatever the row stride (numpy
    # calls a one-row or one-pixel view contiguous whatever its strides; cv2 does not).
    height, width = argb.shape
    if out.strides[1:] == (3, 1) and (height == 1 or out.strides[0] >= 3 * width):
        cv2.cvtColor(channels, cv2.COLOR_BGRA2RGB, dst=out)
    else:
        out[...] = cv2.cvtColor(channels, cv2.COLOR_BGRA2RGB)
    if argb.min() < 0xFF000000:  # some pixel is not opaque: premultiplied colour over white
        alpha = channels[..., 3]
        transparent = alpha != 255
        out[transparent] += (255 - alpha[transparent])[:, None]


class OpenSlideBackend(SlideBackend):
    """Reads any file OpenSlide can open.

    Pixels differ from the stored ones at levels whose downsample is not a whole number
    (:func:`interpolated_levels`; e.g. 2.0005 on TCGA slides, or a generic pyramid 4001 x 3001
    over 2000 x 1500): OpenSlide renders such a level at a sub-pixel offset, so each pixel is a
    blend of its stored neighbours (mean absolute difference about 1.5-6.5 per read on real
    slides; each pixel within a few units of its stored 3 x 3 neighbourhood's range, white
    beyond the level's edge). Level 0 and levels with whole downsamples are exact. The ``tiff``
    backend, which ``auto`` picks for such Aperio and generic TIFF files, returns the stored
    pixels.
    """

    name = "openslide"

    def __init__(self, path: str):
        # Refuse FIFOs (OpenSlide would block in open), devices, link loops and unreadable files
        # with their own errors instead of OpenSlide's "not a format OpenSlide reads".
        self.path = check_slide_path(path)
        try:
            self._slide = openslide.OpenSlide(self.path)
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise UnsupportedFormatError(
                f"{self.path}: not a format OpenSlide reads ({exc})"
            ) from exc
        except openslide.OpenSlideError as exc:
            message = str(exc)
            if "compression" in message.lower() or "unsupported" in message.lower():
                raise UnsupportedFormatError(f"{self.path}: {message}") from exc
            raise CorruptSlideError(f"{self.path}: OpenSlide cannot open the file: {message}") from exc
        props = self._slide.properties
        mpp_x = _float_or_none(props.get(openslide.PROPERTY_NAME_MPP_X))
        mpp_y = _float_or_none(props.get(openslide.PROPERTY_NAME_MPP_Y))
        tile_sizes = []
        for i in range(self._slide.level_count):
            tw = props.get(f"openslide.level[{i}].tile-width")
            th = props.get(f"openslide.level[{i}].tile-height")
            tile_sizes.append((int(tw), int(th)) if tw and th else None)
        self.info = SlideInfo(
            vendor=props.get(openslide.PROPERTY_NAME_VENDOR) or "unknown",
            level_dimensions=tuple(tuple(map(int, d)) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            mpp=(mpp_x, mpp_y) if mpp_x and mpp_y else None,
            objective_power=_float_or_none(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
            tile_sizes=tuple(tile_sizes),
            properties=dict(props),
            associated_names=tuple(sorted(self._slide.associated_images.keys())),
        )

    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        downsample = self.info.level_downsamples[level]
        handle = self._slide._osr  # the C handle; public API would build a PIL image per read
        for (x, y, w, h), out in zip(boxes, outs):
            buffer = np.empty((h, w), dtype=np.uint32)
            l0_x, l0_y = int(round(x * downsample)), int(round(y * downsample))
            try:
                lowlevel._read_region(
                    handle, buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), l0_x, l0_y, level, w, h
                )
            except lowlevel.OpenSlideError as exc:
                raise CorruptSlideError(
                    f"{self.path}: cannot decode level {level} box x={x} y={y} w={w} h={h}: {exc}"
                ) from exc
            argb_to_rgb(buffer, out)

    def associated_image(self, name: str) -> np.ndarray:
        """Decode associated image ``name`` through a handle of its own.

        An OpenSlide handle that fails once fails for good, so a corrupt label decoded through
        the pixel handle would break every later read of the slide; a separate short-lived
        handle keeps the slide readable.

        Raises
        ------
        AssociatedImageNotFoundError
            The slide has no associated image ``name``.
        CorruptSlideError
            The image is there but cannot be decoded.
        """
        if name not in self.info.associated_names:
            raise AssociatedImageNotFoundError(
                f"{self.path}: no associated image {name!r}; available: {list(self.info.associated_names)}"
            )
        try:
            with openslide.OpenSlide(self.path) as handle:
                image = handle.associated_images[name]
        except (openslide.OpenSlideError, KeyError) as exc:
            raise CorruptSlideError(f"{self.path}: cannot decode associated image {name!r}: {exc}") from exc
        return composite_on_white(np.asarray(image.convert("RGBA")))

    def close(self) -> None:
        slide, self._slide = getattr(self, "_slide", None), None
        if slide is not None:
            slide.close()
