"""Fast path for tiled TIFF-family pyramids (Aperio SVS, generic tiled TIFF, OME-TIFF).

tifffile parses the directory once; after that a read is ``os.pread`` of the stored tile bytes
and a libjpeg-turbo decode (imagecodecs) straight into the caller's buffer when the box is one
whole stored tile. No PIL, no ARGB round trip, no zarr indirection: a zarr view over tifffile
costs more per tile than the decode itself for 256 px JPEG tiles, so the tile index arithmetic
is done here. Aperio's JPEG 2000 tiles (33003, 33005) are decoded as OpenSlide decodes them
(:mod:`._tiff_codecs`); other compressions (LZW, Deflate, JPEG 2000, ...) go through tifffile's
decoder.

At open the backend checks what it will trust later (:mod:`._tiff_checks`): tag values within
sane limits, as many tile offsets as tiles, every stored tile and strip inside the file; and
what tifffile logs while parsing never reaches stderr (:mod:`._tiff_log`): damage it reports
becomes a :class:`CorruptSlideError`. ``properties`` holds the keys and values OpenSlide
reports for the same file (:mod:`._tiff_metadata`, :mod:`._properties`), and an Aperio file's
pages are levels or associated images by OpenSlide's rule (:mod:`._tiff_aperio`), so that both
backends see the same pyramid even where tifffile's SVS series does not (no thumbnail page).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import imagecodecs
import numpy as np
import tifffile

from ..errors import AssociatedImageNotFoundError, CorruptSlideError, SlideError, UnsupportedFormatError
from ..levels import SlideInfo, openslide_downsample
from ..paths import check_slide_path
from . import _tiff_metadata as metadata
from ._properties import associated_properties, standard_properties
from ._tiff_aperio import aperio_layout
from ._tiff_chain import check_page_count, ifd_chain_length
from ._tiff_checks import (
    check_associated_geometry,
    check_segments_in_file,
    check_tile_geometry,
    describe_page,
)
from ._jpeg_scaled import (
    SCALED_REDUCTIONS,
    component_sampling,
    decode_scaled,
    soften_like_upsampling,
    spliced_stream,
)
from ._tiff_codecs import APERIO_J2K_RGB, APERIO_J2K_YCBCR, decode_aperio_j2k
from ._tiff_generic import generic_levels
from ._tiff_log import captured_tifffile_log, raise_for_damage
from .base import Box, SlideBackend, composite_on_white, composite_premultiplied_on_white

__all__ = ["TiffBackend", "SUPPORTED_COMPRESSIONS"]

#: TIFF compression codes this backend decodes, with their names.
SUPPORTED_COMPRESSIONS: dict[int, str] = {
    1: "none",
    5: "LZW",
    7: "JPEG",
    8: "Deflate",
    32946: "Deflate (Adobe)",
    APERIO_J2K_YCBCR: "Aperio JPEG 2000 (YCbCr)",
    APERIO_J2K_RGB: "Aperio JPEG 2000 (RGB)",
    34712: "JPEG 2000",
    50000: "Zstandard",
    50001: "WebP",
}
_JPEG = 7
#: Reductions after which half-resolution components are softened; at 1/8 the scaled decode
#: is closer to a full decode as it is (measured: max 6 against 9 with the filter).
_SOFTENED_REDUCTIONS = (2, 4)
_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR = 2, 6
_EXTRASAMPLE_UNASSOCIATED_ALPHA = 2
#: Errors tifffile (and the struct/numpy code under it) raises on files it cannot parse.
_PARSE_ERRORS = (tifffile.TiffFileError, ValueError, IndexError, KeyError, TypeError, struct.error, OSError)


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
    compression: int
    is_jpeg: bool
    jpeg_tables: bytes | None
    jpeg_colorspace: int | None
    straight_alpha: bool
    decode: Callable[..., Any]
    #: Factors by which the tiles decode smaller directly (1, plus 2, 4, 8 for 3-sample JPEG).
    reductions: tuple[int, ...]
    #: Per channel, whether it is stored at half resolution along (x, y), where a scaled decode
    #: must soften it as a full decode's upsampling would (RGB components only); else None.
    softened: tuple[tuple[bool, bool], ...] | None


def _jpeg_colorspaces(page: Any) -> tuple[int | None, int]:
    """JPEG colour transform for a page: Aperio writes RGB (not YCbCr) JPEG without a JFIF marker."""
    if page.photometric == _PHOTOMETRIC_RGB and not page.is_jfif:
        return _PHOTOMETRIC_RGB, _PHOTOMETRIC_RGB
    return None, _PHOTOMETRIC_RGB


def _straight_alpha(page: Any) -> bool:
    """Whether a 4-sample page's alpha is unassociated (ExtraSamples 2).

    Associated (1), unspecified (0) and a missing tag all mean premultiplied colour, as libtiff,
    and so OpenSlide, reads them.
    """
    extra = tuple(page.extrasamples or ())
    return bool(extra) and int(extra[0]) == _EXTRASAMPLE_UNASSOCIATED_ALPHA


def _to_rgb(image: np.ndarray, straight_alpha: bool) -> np.ndarray:
    """Gray, RGB or RGBA decoded samples as ``(H, W, 3)`` uint8 RGB, alpha composited on white."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        return composite_on_white(image) if straight_alpha else composite_premultiplied_on_white(image)
    return image[..., :3]


def _check_page(path: str, page: Any) -> str:
    """Raise unless this backend can decode the page exactly; return how errors name it."""
    where = f"{path}: {describe_page(page)}"
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
    aperio_j2k = compression in (APERIO_J2K_YCBCR, APERIO_J2K_RGB)
    if photometric == _PHOTOMETRIC_YCBCR and compression != _JPEG and not aperio_j2k:
        raise UnsupportedFormatError(f"{where}: YCbCr is supported only inside JPEG tiles")
    if aperio_j2k and page.samplesperpixel != 3:
        raise UnsupportedFormatError(
            f"{where}: expected 3 samples in Aperio JPEG 2000 tiles, got {page.samplesperpixel}"
        )
    return where


def _scaled_decoding(fd: int, offsets: np.ndarray, counts: np.ndarray, tile_size: tuple[int, int],
                     rgb: bool) -> tuple[tuple[int, ...], tuple[tuple[bool, bool], ...] | None]:
    """Reductions a 3-sample JPEG level decodes at, and which channels to soften (see :mod:`._jpeg_scaled`).

    Reads the frame header of the level's first stored tile. A level whose tiles do not divide
    by a reduction, whose header cannot be read, or whose components are sampled other than
    at full or half resolution, decodes in full only.
    """
    written = np.flatnonzero(counts)
    if not written.size:
        return (1,), None
    first = int(written[0])
    sampling = component_sampling(os.pread(fd, int(min(counts[first], 1 << 16)), int(offsets[first])))
    if sampling is None or len(sampling) != 3:
        return (1,), None
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    ratios = [(max_h / h if h else 0, max_v / v if v else 0) for h, v in sampling]
    if any(ratio not in (1, 2) for pair in ratios for ratio in pair):
        return (1,), None
    reductions = (1,) + tuple(k for k in SCALED_REDUCTIONS if tile_size[0] % k == 0 and tile_size[1] % k == 0)
    halved = tuple((rx == 2, ry == 2) for rx, ry in ratios)
    return reductions, (halved if rgb and any(any(h) for h in halved) else None)


def _tiled_level(path: str, page: Any, fd: int) -> _TiledLevel:
    where = _check_page(path, page)
    across, _ = check_tile_geometry(where, page)
    compression = int(page.compression)
    is_jpeg = compression == _JPEG
    tile_width, tile_height = int(page.tilewidth), int(page.tilelength)
    offsets = np.asarray(page.dataoffsets, dtype=np.int64)
    byte_counts = np.asarray(page.databytecounts, dtype=np.int64)
    jpeg_colorspace = _jpeg_colorspaces(page)[0] if is_jpeg else None
    reductions, softened = (1,), None
    if is_jpeg and int(page.samplesperpixel) == 3:
        reductions, softened = _scaled_decoding(fd, offsets, byte_counts, (tile_width, tile_height),
                                                jpeg_colorspace == _PHOTOMETRIC_RGB)
    return _TiledLevel(
        page=page,
        width=int(page.imagewidth),
        height=int(page.imagelength),
        tile_width=tile_width,
        tile_height=tile_height,
        tiles_across=across,
        offsets=offsets,
        byte_counts=byte_counts,
        samples=int(page.samplesperpixel),
        compression=compression,
        is_jpeg=is_jpeg,
        jpeg_tables=page.jpegtables,
        jpeg_colorspace=jpeg_colorspace,
        straight_alpha=_straight_alpha(page),
        decode=page.decode,
        reductions=reductions,
        softened=softened,
    )


class TiffBackend(SlideBackend):
    """Reads tiled TIFF pyramids with tifffile + imagecodecs."""

    name = "tiff"

    def __init__(self, path: str):
        # Refuse FIFOs (tifffile would block in open), devices, link loops and unreadable files
        # here too: a slide reopened in a worker from its spec comes straight to the backend.
        self.path = check_slide_path(path)
        self._fd: int | None = None
        with captured_tifffile_log() as records:
            try:
                self._tiff = tifffile.TiffFile(self.path)
            except _PARSE_ERRORS as exc:
                raise UnsupportedFormatError(f"{self.path}: not a TIFF file tifffile can parse ({exc})") from exc
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                try:
                    self._levels, self.info, self._associated = self._parse()
                except SlideError:
                    raise
                except _PARSE_ERRORS as exc:
                    raise CorruptSlideError(f"{self.path}: tifffile cannot parse the TIFF structure ({exc})") from exc
                raise_for_damage(self.path, records)
            except BaseException:
                self.close()
                raise

    # -- metadata -------------------------------------------------------------------------------

    def _parse(self) -> tuple[list[_TiledLevel], SlideInfo, dict[str, Any]]:
        tiff = self._tiff
        flags = [name for name in ("ndpi", "scn", "philips", "qpi", "bif", "lsm", "stk", "mmstack") if
                 getattr(tiff, f"is_{name}", False)]
        if flags:
            raise UnsupportedFormatError(f"{self.path}: {flags[0]} files are read through OpenSlide, not tifffile")
        # A file cut short keeps its header but loses IFDs: say so before tifffile's partial view.
        chain_length = ifd_chain_length(self.path, self._fd, os.fstat(self._fd).st_size)
        check_page_count(self.path, chain_length, len(tiff.pages))
        if not tiff.series:
            raise UnsupportedFormatError(f"{self.path}: the TIFF holds no image series")
        associated: dict[str, Any] = {}
        if tiff.is_svs:  # OpenSlide's page roles, not tifffile's SVS series (see _tiff_aperio)
            layout = aperio_layout(tiff.pages)
            level_pages, associated = layout.levels, layout.associated
        else:
            pyramid = tiff.series[0]
            if pyramid.kind not in ("ome", "generic", "shaped", "uniform"):
                raise UnsupportedFormatError(f"{self.path}: TIFF series kind {pyramid.kind!r} is not a slide pyramid")
            level_pages = [level.keyframe for level in pyramid.levels]
            if not tiff.is_ome:
                # OpenSlide's generic-tiff levels (see _tiff_generic), unless OpenSlide sees only
                # page 0 where tifffile finds reduced levels (SubIFDs, pages without the reduced
                # bit): those stay readable here, and ``auto`` keeps such a file with OpenSlide.
                chain_levels = generic_levels(tiff.pages)
                if len(chain_levels) > 1 or len(level_pages) == 1:
                    level_pages = list(chain_levels)
        levels = [_tiled_level(self.path, page, self._fd) for page in level_pages]
        for previous, current in zip(levels, levels[1:]):
            if current.width >= previous.width or current.height >= previous.height:
                raise UnsupportedFormatError(
                    f"{self.path}: pyramid levels do not shrink ({describe_page(previous.page)} -> "
                    f"{describe_page(current.page)}); expected each level smaller than the one before"
                )
        for page in associated.values():
            check_associated_geometry(f"{self.path}: {describe_page(page)}", page)
        self._check_not_truncated()
        return levels, self._slide_info(levels, associated), associated

    def _check_not_truncated(self) -> None:
        """Every page's stored data lies inside the file, levels, associated images and others."""
        file_size = os.fstat(self._fd).st_size
        for page in self._tiff.pages:
            check_segments_in_file(f"{self.path}: {describe_page(page)}", page, file_size)

    def _slide_info(self, levels: list[_TiledLevel], associated: dict[str, Any]) -> SlideInfo:
        tiff = self._tiff
        # OpenSlide takes a generic TIFF's properties and mpp from page 0, even when a wider
        # reduced page makes another page level 0 (for SVS and OME-TIFF page 0 is level 0).
        first = tiff.pages.first if not tiff.is_ome else levels[0].page
        properties = metadata.tiff_properties(self._fd, first)
        objective = None
        if tiff.is_svs:
            vendor = "aperio"
            properties.update(metadata.aperio_properties(properties.get("tiff.ImageDescription", "")))
            mpp = metadata.aperio_mpp(properties)
            objective = metadata.aperio_objective_power(properties)
        elif tiff.is_ome:
            vendor = "ome-tiff"
            mpp = metadata.ome_mpp(tiff.ome_metadata or "")
        else:
            vendor = "generic-tiff"
            mpp = metadata.resolution_mpp(first)
        dims = tuple((lvl.width, lvl.height) for lvl in levels)
        downsamples = tuple(openslide_downsample(dims[0], d) for d in dims)
        tile_sizes = tuple((lvl.tile_width, lvl.tile_height) for lvl in levels)
        properties.update(standard_properties(vendor=vendor, level_dimensions=dims, level_downsamples=downsamples,
                                              tile_sizes=tile_sizes, mpp=mpp, objective_power=objective))
        for name, page in associated.items():
            properties.update(associated_properties(name, page.imagewidth, page.imagelength))
        properties.update(metadata.quickhash(self._fd, levels[-1].page, first))
        return SlideInfo(
            vendor=vendor,
            level_dimensions=dims,
            level_downsamples=downsamples,
            mpp=mpp,
            objective_power=objective,
            tile_sizes=tile_sizes,
            properties=properties,
            associated_names=tuple(sorted(associated)),
        )

    # -- pixels ---------------------------------------------------------------------------------

    def _corrupt_tile(self, level: _TiledLevel, level_index: int, index: int, problem: str) -> CorruptSlideError:
        row, col = divmod(index, level.tiles_across)
        return CorruptSlideError(
            f"{self.path}: cannot decode stored tile (level {level_index}, row {row}, col {col}, "
            f"{int(level.byte_counts[index])} bytes at offset {int(level.offsets[index])}): {problem}"
        )

    def _decode_tile(self, level: _TiledLevel, level_index: int, index: int, out: np.ndarray | None,
                     reduction: int = 1, used: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Decode stored tile ``index`` of a level to ``(tile_h, tile_w, 3)`` / ``reduction``, into ``out`` when given.

        ``used`` (x0, y0, x1, y1) is the part of the tile the caller will use, where only that part
        needs to be right (the softening of a scaled decode is limited to it).
        """
        count = int(level.byte_counts[index])
        shape = (level.tile_height // reduction, level.tile_width // reduction, 3)
        if count == 0:  # sparse TIFF: a tile never written is background
            tile = out if out is not None else np.empty(shape, np.uint8)
            tile.fill(255)
            return tile
        data = os.pread(self._fd, count, int(level.offsets[index]))
        if len(data) != count:  # the file shrank since it was opened
            raise self._corrupt_tile(level, level_index, index, f"the file ends after {len(data)} of them")
        if reduction > 1:
            return self._decode_scaled_tile(level, level_index, index, data, out, reduction, used)
        try:
            if level.is_jpeg and level.samples == 3:
                return imagecodecs.jpeg8_decode(
                    data, tables=level.jpeg_tables, colorspace=level.jpeg_colorspace,
                    outcolorspace=_PHOTOMETRIC_RGB, out=out,
                )
            if level.compression in (APERIO_J2K_YCBCR, APERIO_J2K_RGB):
                tile = decode_aperio_j2k(data, level.compression)
            else:
                with captured_tifffile_log():
                    decoded, _, _ = level.decode(data, index, jpegtables=level.jpeg_tables)
                tile = np.asarray(decoded).reshape(level.tile_height, level.tile_width, level.samples)
        except Exception as exc:  # imagecodecs raises codec-specific errors; all mean bad bytes
            raise self._corrupt_tile(level, level_index, index, str(exc)) from exc
        if tile.shape[:2] != shape[:2]:
            raise self._corrupt_tile(level, level_index, index,
                                     f"expected a {shape[1]}x{shape[0]} px tile, got {tile.shape[1]}x{tile.shape[0]}")
        tile = _to_rgb(tile, level.straight_alpha)
        if out is not None:
            out[...] = tile
            return out
        return tile

    def _decode_scaled_tile(self, level: _TiledLevel, level_index: int, index: int, data: bytes,
                            out: np.ndarray | None, reduction: int, used: tuple[int, int, int, int] | None) -> np.ndarray:
        """A JPEG tile decoded ``reduction`` times smaller (see :meth:`_decode_tile`).

        The scaled decoder refuses any damage, even what the full decoder gets past (a scan cut
        short), and the full decoder refuses some damage that a lenient scaled decoder would turn
        into pixels. So a tile the scaled decoder refuses is decoded in full and area-averaged:
        the full decoder's verdict is the one both paths give, and its pixels the reference.
        """
        try:
            stream = spliced_stream(data, level.jpeg_tables, level.jpeg_colorspace == _PHOTOMETRIC_RGB)
            tile = decode_scaled(stream, reduction, (level.tile_height, level.tile_width), out)
        except ValueError:
            full = self._decode_tile(level, level_index, index, None)  # raises CorruptSlideError if refused
            size = (level.tile_width // reduction, level.tile_height // reduction)
            if out is None:
                return cv2.resize(full, size, interpolation=cv2.INTER_AREA)
            cv2.resize(full, size, dst=out, interpolation=cv2.INTER_AREA)
            return out
        if level.softened is not None and reduction in _SOFTENED_REDUCTIONS:
            soften_like_upsampling(tile, level.softened, reduction, used)
        return tile

    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        self._read_tiled(level, 1, boxes, outs)

    def reductions(self, level: int) -> tuple[int, ...]:
        return self._levels[level].reductions

    def read_reduced_boxes(self, level: int, reduction: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        """See :meth:`SlideBackend.read_reduced_boxes`: JPEG tiles decode at 1/2, 1/4, 1/8 (:mod:`._jpeg_scaled`)."""
        if reduction not in self._levels[level].reductions:
            raise ValueError(f"{self.path}: level {level} does not decode at 1/{reduction}; "
                             f"expected one of {self._levels[level].reductions}")
        self._read_tiled(level, reduction, boxes, outs)

    def _read_tiled(self, level: int, reduction: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        """Fill boxes of a level's grid of ``reduction`` x ``reduction`` blocks (1: its pixels)."""
        lvl = self._levels[level]
        tw, th, across = lvl.tile_width // reduction, lvl.tile_height // reduction, lvl.tiles_across
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
            top, left = (index // across) * th, (index % across) * tw
            used = None
            if target is None and reduction > 1 and lvl.softened is not None:  # the part its boxes take
                ux0, uy0, ux1, uy1 = tw, th, 0, 0
                for i in users[index]:
                    x, y, w, h = boxes[i]
                    ux0, uy0 = min(ux0, x - left), min(uy0, y - top)
                    ux1, uy1 = max(ux1, x + w - left), max(uy1, y + h - top)
                used = (max(0, ux0), max(0, uy0), min(tw, ux1), min(th, uy1))
            tile = self._decode_tile(lvl, level, index, scratch if target is None else outs[target], reduction, used)
            for i in users[index]:
                if i == target:
                    continue
                x, y, w, h = boxes[i]
                x0, x1 = max(x, left), min(x + w, left + tw)
                y0, y1 = max(y, top), min(y + h, top + th)
                outs[i][y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - top : y1 - top, x0 - left : x1 - left]

    def associated_image(self, name: str) -> np.ndarray:
        page = self._associated.get(name)
        if page is None:
            raise AssociatedImageNotFoundError(
                f"{self.path}: no associated image {name!r}; available: {sorted(self._associated)}"
            )
        what = f"associated image {name!r} ({describe_page(page)})"
        with captured_tifffile_log() as records:
            try:
                image = np.asarray(page.asarray())
            except Exception as exc:  # tifffile and imagecodecs raise codec-specific errors
                raise CorruptSlideError(f"{self.path}: cannot decode {what}: {exc}") from exc
            raise_for_damage(self.path, records, what)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise UnsupportedFormatError(
                f"{self.path}: {what}: expected 8-bit gray, RGB or RGBA pixels, got {image.dtype} {image.shape}"
            )
        return np.ascontiguousarray(_to_rgb(image, _straight_alpha(page)))

    def token(self) -> str:
        stat = os.stat(self.path)
        return f"tiff:{self.path}:{stat.st_size}:{stat.st_mtime_ns}"

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        if getattr(self, "_tiff", None) is not None:
            self._tiff.close()
