"""Fast path for tiled TIFF-family pyramids (Aperio SVS, generic tiled TIFF, OME-TIFF).

tifffile parses the directory once; after that a read is ``os.pread`` of the stored tile bytes
and a libjpeg-turbo decode (imagecodecs) straight into the caller's buffer when the box is one
whole stored tile. No PIL, no ARGB round trip, no zarr indirection: a zarr view over tifffile
costs more per tile than the decode itself for 256 px JPEG tiles, so the tile index arithmetic
is done here. Other compressions (LZW, Deflate, JPEG 2000, ...) go through tifffile's decoder.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import imagecodecs
import numpy as np
import tifffile

from ..errors import CorruptSlideError, UnsupportedFormatError
from ..levels import SlideInfo, openslide_downsample
from .base import Box, SlideBackend, composite_on_white

__all__ = ["TiffBackend", "SUPPORTED_COMPRESSIONS"]

#: TIFF compression codes this backend decodes, with their names.
SUPPORTED_COMPRESSIONS: dict[int, str] = {
    1: "none",
    5: "LZW",
    7: "JPEG",
    8: "Deflate",
    32946: "Deflate (Adobe)",
    33003: "Aperio JPEG 2000 (YCbCr)",
    33005: "Aperio JPEG 2000 (RGB)",
    34712: "JPEG 2000",
    50000: "Zstandard",
    50001: "WebP",
}
_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR = 2, 6
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


@dataclass(frozen=True)
class _TiledLevel:
    """Where one level's stored tiles live and how to decode them."""

    page: Any  # tifffile.TiffPage
    width: int
    height: int
    tile_width: int
    tile_height: int
    tiles_across: int
    offsets: np.ndarray
    byte_counts: np.ndarray
    samples: int
    is_jpeg: bool
    jpeg_tables: bytes | None
    jpeg_colorspace: int | None
    decode: Callable[..., Any]


def _jpeg_colorspaces(page: Any) -> tuple[int | None, int]:
    """JPEG colour transform for a page: Aperio writes RGB (not YCbCr) JPEG without a JFIF marker."""
    if page.photometric == _PHOTOMETRIC_RGB and not page.is_jfif:
        return _PHOTOMETRIC_RGB, _PHOTOMETRIC_RGB
    return None, _PHOTOMETRIC_RGB


def _describe_page(page: Any) -> str:
    return f"page {page.index} ({page.imagewidth}x{page.imagelength})"


def _check_page(path: str, page: Any) -> None:
    """Raise UnsupportedFormatError unless this backend can decode the page exactly."""
    where = f"{path}: {_describe_page(page)}"
    if not page.is_tiled:
        raise UnsupportedFormatError(f"{where}: expected a tiled page, got a stripped one")
    compression = int(page.compression)
    if compression not in SUPPORTED_COMPRESSIONS:
        names = ", ".join(sorted(SUPPORTED_COMPRESSIONS.values()))
        raise UnsupportedFormatError(
            f"{where}: unsupported TIFF compression {compression}; expected one of {names}"
        )
    if page.bitspersample != 8 or page.planarconfig != 1:
        raise UnsupportedFormatError(
            f"{where}: expected 8-bit interleaved samples, got {page.bitspersample}-bit planar={page.planarconfig}"
        )
    photometric = int(page.photometric)
    if photometric not in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR) or page.samplesperpixel not in (3, 4):
        raise UnsupportedFormatError(
            f"{where}: expected RGB or YCbCr brightfield pixels, got photometric {photometric} "
            f"with {page.samplesperpixel} samples"
        )
    if photometric == _PHOTOMETRIC_YCBCR and compression != 7:
        raise UnsupportedFormatError(f"{where}: YCbCr is supported only inside JPEG tiles")


def _tiled_level(path: str, page: Any) -> _TiledLevel:
    _check_page(path, page)
    tile_height, tile_width = int(page.tilelength), int(page.tilewidth)
    width, height = int(page.imagewidth), int(page.imagelength)
    is_jpeg = int(page.compression) == 7
    colorspace = _jpeg_colorspaces(page)[0] if is_jpeg else None
    return _TiledLevel(
        page=page,
        width=width,
        height=height,
        tile_width=tile_width,
        tile_height=tile_height,
        tiles_across=-(-width // tile_width),
        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
        byte_counts=np.asarray(page.databytecounts, dtype=np.int64),
        samples=int(page.samplesperpixel),
        is_jpeg=is_jpeg,
        jpeg_tables=page.jpegtables,
        jpeg_colorspace=colorspace,
        decode=page.decode,
    )


def _aperio_properties(description: str) -> dict[str, str]:
    """``key = value`` pairs of an Aperio ImageDescription, as OpenSlide names them (``aperio.KEY``)."""
    properties = {}
    for item in description.split("|")[1:]:
        key, sep, value = item.partition("=")
        if sep:
            properties[f"aperio.{key.strip()}"] = value.strip()
    return properties


def _resolution_mpp(page: Any) -> tuple[float, float] | None:
    """Microns per pixel from the TIFF resolution tags (centimetre or inch units only)."""
    unit = page.tags.valueof("ResolutionUnit")
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit) if unit is not None else 0)
    x_res, y_res = page.tags.valueof("XResolution"), page.tags.valueof("YResolution")
    if um_per_unit is None or not x_res or not y_res:
        return None
    x_value, y_value = x_res[0] / x_res[1], y_res[0] / y_res[1]
    if x_value <= 0 or y_value <= 0:
        return None
    return um_per_unit / x_value, um_per_unit / y_value


def _ome_mpp(ome_xml: str) -> tuple[float, float] | None:
    """Microns per pixel from OME-XML ``Pixels`` physical sizes."""
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None:
        return None
    sizes = []
    for axis in ("X", "Y"):
        value = pixels.get(f"PhysicalSize{axis}")
        factor = _UNIT_TO_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or factor is None or float(value) <= 0:
            return None
        sizes.append(float(value) * factor)
    return sizes[0], sizes[1]


class TiffBackend(SlideBackend):
    """Reads tiled TIFF pyramids with tifffile + imagecodecs."""

    name = "tiff"

    def __init__(self, path: str):
        self.path = str(path)
        try:
            self._tiff = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise UnsupportedFormatError(f"{self.path}: not a TIFF file tifffile can parse ({exc})") from exc
        try:
            self._levels, self.info, self._associated = self._parse()
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except BaseException:
            self._tiff.close()
            raise

    def _parse(self) -> tuple[list[_TiledLevel], SlideInfo, dict[str, Any]]:
        tiff = self._tiff
        flags = [name for name in ("ndpi", "scn", "philips", "qpi", "bif", "lsm", "stk", "mmstack") if
                 getattr(tiff, f"is_{name}", False)]
        if flags:
            raise UnsupportedFormatError(f"{self.path}: {flags[0]} files are read through OpenSlide, not tifffile")
        if not tiff.series:
            raise UnsupportedFormatError(f"{self.path}: the TIFF holds no image series")
        pyramid = tiff.series[0]
        if pyramid.kind not in ("svs", "ome", "generic", "shaped", "uniform"):
            raise UnsupportedFormatError(f"{self.path}: TIFF series kind {pyramid.kind!r} is not a slide pyramid")
        levels = [_tiled_level(self.path, level.keyframe) for level in pyramid.levels]
        for previous, current in zip(levels, levels[1:]):
            if current.width >= previous.width or current.height >= previous.height:
                raise UnsupportedFormatError(f"{self.path}: pyramid levels do not shrink ({previous.width} -> "
                                             f"{current.width} px)")
        first = pyramid.levels[0].keyframe
        description = first.description or ""
        properties: dict[str, str] = {}
        for tag in ("ImageDescription", "Software", "DateTime", "Make", "Model", "ResolutionUnit",
                    "XResolution", "YResolution"):
            value = first.tags.valueof(tag)
            if value is not None:
                properties[f"tiff.{tag}"] = str(value)
        objective = None
        associated: dict[str, Any] = {}
        if tiff.is_svs:
            vendor = "aperio"
            properties.update(_aperio_properties(description))
            mpp_value = _positive_float(properties.get("aperio.MPP"))
            mpp = (mpp_value, mpp_value) if mpp_value else None
            objective = _positive_float(properties.get("aperio.AppMag"))
            associated = {s.name.lower(): s for s in tiff.series[1:] if s.name.lower() in ("thumbnail", "label", "macro")}
        elif tiff.is_ome:
            vendor = "ome-tiff"
            mpp = _ome_mpp(tiff.ome_metadata or "")
        else:
            vendor = "generic-tiff"
            mpp = _resolution_mpp(first)
        dims = tuple((lvl.width, lvl.height) for lvl in levels)
        info = SlideInfo(
            vendor=vendor,
            level_dimensions=dims,
            level_downsamples=tuple(openslide_downsample(dims[0], d) for d in dims),
            mpp=mpp,
            objective_power=objective,
            tile_sizes=tuple((lvl.tile_width, lvl.tile_height) for lvl in levels),
            properties=properties,
            associated_names=tuple(sorted(associated)),
        )
        return levels, info, associated

    # -- pixels ---------------------------------------------------------------------------------

    def _decode_tile(self, level: _TiledLevel, level_index: int, index: int, out: np.ndarray | None) -> np.ndarray:
        """Decode stored tile ``index`` of a level to ``(tile_h, tile_w, 3)``, into ``out`` when given."""
        count = int(level.byte_counts[index])
        shape = (level.tile_height, level.tile_width, 3)
        if count == 0:  # sparse TIFF: a tile never written is background
            tile = out if out is not None else np.empty(shape, np.uint8)
            tile.fill(255)
            return tile
        data = os.pread(self._fd, count, int(level.offsets[index]))
        try:
            if level.is_jpeg and level.samples == 3:
                return imagecodecs.jpeg8_decode(
                    data, tables=level.jpeg_tables, colorspace=level.jpeg_colorspace,
                    outcolorspace=_PHOTOMETRIC_RGB, out=out,
                )
            decoded, _, _ = level.decode(data, index, jpegtables=level.jpeg_tables)
        except Exception as exc:  # imagecodecs raises codec-specific errors; all mean bad bytes
            row, col = divmod(index, level.tiles_across)
            raise CorruptSlideError(
                f"{self.path}: cannot decode stored tile (level {level_index}, row {row}, col {col}, "
                f"{count} bytes at offset {int(level.offsets[index])}): {exc}"
            ) from exc
        tile = np.asarray(decoded).reshape(level.tile_height, level.tile_width, level.samples)
        if level.samples == 4:  # RGBA: composite on white, as OpenSlide does
            tile = composite_on_white(tile)
        if out is not None:
            out[...] = tile
            return out
        return tile

    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        lvl = self._levels[level]
        tw, th, across = lvl.tile_width, lvl.tile_height, lvl.tiles_across
        # Which boxes each stored tile feeds, so each tile is decoded once, in file order, into
        # one reused scratch buffer (cache-warm, no per-tile allocation) - or straight into a box
        # that is exactly that tile.
        users: dict[int, list[int]] = {}
        exact: dict[int, int] = {}
        for i, (x, y, w, h) in enumerate(boxes):
            col0, row0 = x // tw, y // th
            col1, row1 = (x + w - 1) // tw, (y + h - 1) // th
            if w == tw and h == th and x % tw == 0 and y % th == 0 and outs[i].flags.c_contiguous:
                exact.setdefault(row0 * across + col0, i)
            for row in range(row0, row1 + 1):
                for col in range(col0, col1 + 1):
                    users.setdefault(row * across + col, []).append(i)
        scratch = np.empty((th, tw, 3), dtype=np.uint8)
        for index in sorted(users):
            target = exact.get(index)
            tile = self._decode_tile(lvl, level, index, scratch if target is None else outs[target])
            top, left = (index // across) * th, (index % across) * tw
            for i in users[index]:
                if i == target:
                    continue
                x, y, w, h = boxes[i]
                x0, x1 = max(x, left), min(x + w, left + tw)
                y0, y1 = max(y, top), min(y + h, top + th)
                outs[i][y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - top : y1 - top, x0 - left : x1 - left]

    def associated_image(self, name: str) -> np.ndarray:
        series = self._associated.get(name)
        if series is None:
            raise KeyError(f"{self.path}: no associated image {name!r}; available: {sorted(self._associated)}")
        image = np.asarray(series.asarray())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        return np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)

    def token(self) -> str:
        stat = os.stat(self.path)
        return f"tiff:{self.path}:{stat.st_size}:{stat.st_mtime_ns}"

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        if getattr(self, "_tiff", None) is not None:
            self._tiff.close()


def _positive_float(value: str | None) -> float | None:
    try:
        number = float(re.sub(r"[^0-9.eE+-]", "", value)) if value else None
    except ValueError:
        return None
    return number if number and number > 0 else None
