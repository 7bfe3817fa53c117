"""Sanity checks of TIFF tag values before the tiff backend trusts them with memory or reads.

A crafted or damaged file must fail at open with an error that names the file, the page and
the tag, never later with a ``MemoryError`` (a 65,520 px tile would need a 12 GiB scratch
buffer), an ``IndexError`` (fewer tile offsets than tiles) or a slide that silently lost its
last levels (a file truncated in transfer). The limits are far beyond anything a scanner
writes: real tiles are 240 to 2,048 px, real labels and macros a few megapixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptSlideError

__all__ = [
    "MAX_TILE_SIDE",
    "MAX_TILE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_ASSOCIATED_PIXELS",
    "describe_page",
    "check_tile_geometry",
    "check_associated_geometry",
    "check_segments_in_file",
]

#: Largest tile width or height accepted, in pixels.
MAX_TILE_SIDE = 16384
#: Largest tile area accepted (8,192 x 8,192 px: a 256 MiB RGBA scratch buffer).
MAX_TILE_PIXELS = 2**26
#: Largest level width or height accepted (2**24 px is 4 m at 0.25 µm/px).
MAX_IMAGE_SIDE = 2**24
#: Largest associated image (label, macro, thumbnail) accepted, in pixels.
MAX_ASSOCIATED_PIXELS = 2**26


def describe_page(page: Any) -> str:
    """``page 3 (1280x431)``: how errors name a TIFF page (or a TiffFrame, through its keyframe)."""
    sized = page if hasattr(page, "imagewidth") else page.keyframe
    return f"page {page.index} ({sized.imagewidth}x{sized.imagelength})"


def _check_image_size(where: str, page: Any) -> None:
    for tag, value in (("ImageWidth", page.imagewidth), ("ImageLength", page.imagelength)):
        if not 1 <= int(value) <= MAX_IMAGE_SIDE:
            raise CorruptSlideError(f"{where}: {tag} {int(value)} px is implausible; expected 1 to {MAX_IMAGE_SIDE} px")


def check_tile_geometry(where: str, page: Any) -> tuple[int, int]:
    """Check a tiled page's image and tile sizes and its tile count; return ``(across, down)``.

    Raises
    ------
    CorruptSlideError
        A size tag is zero or beyond the limits of this module, or the page lists fewer tile
        offsets or byte counts than its size needs.
    """
    _check_image_size(where, page)
    tile_width, tile_height = int(page.tilewidth), int(page.tilelength)
    for tag, value in (("TileWidth", tile_width), ("TileLength", tile_height)):
        if not 1 <= value <= MAX_TILE_SIDE:
            raise CorruptSlideError(f"{where}: {tag} {value} px is implausible; expected 1 to {MAX_TILE_SIDE} px")
    if tile_width * tile_height > MAX_TILE_PIXELS:
        raise CorruptSlideError(
            f"{where}: tiles of {tile_width}x{tile_height} px (TileWidth x TileLength) are implausible; "
            f"expected at most {MAX_TILE_PIXELS} px per tile"
        )
    across = -(-int(page.imagewidth) // tile_width)
    down = -(-int(page.imagelength) // tile_height)
    for tag, values in (("TileOffsets", page.dataoffsets), ("TileByteCounts", page.databytecounts)):
        if len(values) < across * down:
            raise CorruptSlideError(
                f"{where}: {tag} lists {len(values)} tiles; expected {across * down} "
                f"({across} x {down} tiles of {tile_width}x{tile_height} px)"
            )
    return across, down


def check_associated_geometry(where: str, page: Any) -> None:
    """Check an associated image's size before it is decoded whole."""
    _check_image_size(where, page)
    pixels = int(page.imagewidth) * int(page.imagelength)
    if pixels > MAX_ASSOCIATED_PIXELS:
        raise CorruptSlideError(
            f"{where}: an associated image of {pixels} px is implausible; expected at most {MAX_ASSOCIATED_PIXELS} px"
        )


def check_segments_in_file(where: str, page: Any, file_size: int) -> None:
    """Every stored tile or strip of the page lies inside the file (a truncated file fails here).

    Byte count 0 marks a tile never written (sparse TIFF), which is allowed.
    """
    offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
    counts = np.asarray(page.databytecounts, dtype=np.uint64)
    if len(offsets) != len(counts):
        raise CorruptSlideError(
            f"{where}: {len(offsets)} data offsets but {len(counts)} byte counts; expected as many of each"
        )
    ends = offsets + counts  # uint64: no overflow for any offset a file can hold
    beyond = np.flatnonzero((counts > 0) & ((ends > file_size) | (ends < offsets)))
    if beyond.size:
        first = int(beyond[0])
        raise CorruptSlideError(
            f"{where}: {beyond.size} of {len(offsets)} stored segments lie past the end of the file "
            f"(segment {first}: {int(counts[first])} bytes at offset {int(offsets[first])}, "
            f"file size {file_size} bytes); expected all inside: the file is truncated or damaged"
        )
