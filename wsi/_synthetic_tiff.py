"""Pyramidal TIFF writer for synthetic slides (private to :mod:`slidescope.wsi.synthetic`).

Level 0 is rendered tile by tile (row-major, as tifffile consumes tiles) and each tile is also
box-averaged by 4 into a raw on-disk image; every coarser level is box-averaged by 4 from the
previous one, streaming a strip at a time. So reduced levels are exactly what a scanner's
pyramid is (area averages of level 0), and memory never holds more than a strip.

Two layouts:

* ``"aperio"`` mirrors an Aperio SVS: level 0 (tiled), a stripped thumbnail, the reduced
  levels (tiled), a label (LZW) and a macro (JPEG), each page with an Aperio-style
  ImageDescription. JPEG data are like Aperio's: RGB samples coded *without* a colour
  transform, first component sampled 2x2 (TIFF Photometric RGB + YCbCrSubSampling 2,2), and
  the quantisation/Huffman tables shared in the JPEGTables tag.
* ``"generic-tiff"``: a plain tiled pyramid, one top-level page per level (reduced ones flagged
  REDUCEDIMAGE, as OpenSlide's generic-tiff driver expects), ordinary YCbCr JPEG, and the mpp in
  X/YResolution with ResolutionUnit centimetre.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import imagecodecs
import numpy as np
import tifffile

from slidescope.wsi._synthetic_render import TileRenderer

APERIO_HEADER = "Aperio Image Library v12.0.15 \r\n"
LEVEL_FACTOR = 4
MIN_REDUCED_LONG_SIDE = 1024  # add levels until one is smaller than this on its long side
THUMBNAIL_LONG_SIDE = 1024
_STRIP_ROWS = 16  # rows per strip of stripped JPEG pages (a multiple of 8 x vertical sampling)
_SOI, _SOS, _DQT, _DHT, _APP0 = 0xD8, 0xDA, 0xDB, 0xC4, 0xE0


@dataclass(frozen=True)
class WriteOptions:
    fmt: str  # "aperio" or "generic-tiff"
    tile_size: int
    quality: int
    mpp: float | None
    objective_power: float
    name: str
    seed: int


def level_dimensions(width: int, height: int) -> list[tuple[int, int]]:
    """Level sizes: downsample 4 each (floored, as Aperio does) until one is < 1024 px long."""
    dims = [(width, height)]
    while max(dims[-1]) >= MIN_REDUCED_LONG_SIDE and min(dims[-1]) >= LEVEL_FACTOR:
        dims.append((dims[-1][0] // LEVEL_FACTOR, dims[-1][1] // LEVEL_FACTOR))
    return dims


# ----------------------------------------------------------------------------- JPEG


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split a baseline JPEG stream into its marker segments before SOS, and the rest (SOS..EOI)."""
    pos, out = 2, []
    while True:
        marker = data[pos + 1]
        if marker == _SOS:
            return out, data[pos:]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, data[pos : pos + 2 + length]))
        pos += 2 + length


class _JpegEncoder:
    """Encodes RGB tiles; see the module docstring for the two flavours."""

    def __init__(self, quality: int, aperio: bool) -> None:
        self.quality = quality
        self.aperio = aperio
        self.tables: bytes | None = None
        self._table_bytes = b""
        if aperio:
            segs, _ = _segments(self._raw(np.zeros((16, 16, 3), dtype=np.uint8), "420"))
            self._table_bytes = b"".join(s for m, s in segs if m in (_DQT, _DHT))
            self.tables = b"\xff\xd8" + self._table_bytes + b"\xff\xd9"

    def _raw(self, rgb: np.ndarray, sampling: str) -> bytes:
        rgb = np.ascontiguousarray(rgb)
        if self.aperio:
            # Declaring the input as YCbCr makes libjpeg code the RGB samples untransformed
            # while still sampling the first component 2x2, which is what Aperio writes.
            return imagecodecs.jpeg8_encode(
                rgb, level=self.quality, colorspace="YCBCR", outcolorspace="YCBCR", subsampling=sampling
            )
        return imagecodecs.jpeg8_encode(
            rgb, level=self.quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=sampling
        )

    def encode(self, rgb: np.ndarray, *, stripped: bool = False) -> bytes:
        """One tile, or one strip of a stripped page. Aperio codes strips without subsampling
        (libtiff, which reads them, rejects 2x2 sampling under Photometric RGB) but keeps the
        YCbCrSubSampling tag at (2, 2); so do we."""
        data = self._raw(rgb, "444" if stripped and self.aperio else "420")
        if not self.aperio:
            return data
        segs, scan = _segments(data)
        tables = b"".join(s for m, s in segs if m in (_DQT, _DHT))
        # drop the JFIF marker (it would claim YCbCr); keep inline tables only if they differ
        kept = [s for m, s in segs if m != _APP0 and (m not in (_DQT, _DHT) or tables != self._table_bytes)]
        return b"\xff\xd8" + b"".join(kept) + scan


# ----------------------------------------------------------------------------- raw levels


@dataclass(frozen=True)
class _RawImage:
    """An RGB uint8 image stored row-major in a raw file (a level too big to keep in memory)."""

    path: Path
    width: int
    height: int

    def rows(self, r0: int, r1: int) -> np.ndarray:
        row_bytes = self.width * 3
        data = np.fromfile(self.path, dtype=np.uint8, count=(r1 - r0) * row_bytes, offset=r0 * row_bytes)
        return data.reshape(r1 - r0, self.width, 3)


def _shrink(src: _RawImage, dst: Path) -> _RawImage:
    """Area-average ``src`` by 4 into a new raw image, 256 output rows at a time."""
    w, h = src.width // LEVEL_FACTOR, src.height // LEVEL_FACTOR
    with open(dst, "wb") as fh:
        for r in range(0, h, 256):
            n = min(256, h - r)
            rows = src.rows(r * LEVEL_FACTOR, (r + n) * LEVEL_FACTOR)[:, : w * LEVEL_FACTOR]
            fh.write(cv2.resize(rows, (w, n), interpolation=cv2.INTER_AREA).tobytes())
    return _RawImage(dst, w, h)


def _level0_tiles(
    renderer: TileRenderer, ts: int, enc: _JpegEncoder, ds4: _RawImage
) -> Iterator[bytes]:
    """Encoded level-0 tiles in row-major order; writes the 4x-averaged rows to ``ds4`` on the way.

    A whole tile row is rendered (and its averaged strip written) before its tiles are yielded,
    so the raw file is complete once tifffile has taken the last tile.
    """
    width, height = renderer.model.width, renderer.model.height
    with open(ds4.path, "wb") as raw:
        for y0 in range(0, height, ts):
            h4 = min(ts, height - y0) // LEVEL_FACTOR
            strip = np.empty((h4, ds4.width, 3), dtype=np.uint8)
            row = []
            for x0 in range(0, width, ts):
                tile = renderer.render(x0, y0, ts, ts)  # rendered past the edge too: no padding
                row.append(enc.encode(tile))
                w4 = min(ts, width - x0) // LEVEL_FACTOR
                if h4 and w4:
                    block = tile[: h4 * LEVEL_FACTOR, : w4 * LEVEL_FACTOR]
                    lvl_x = x0 // LEVEL_FACTOR
                    strip[:, lvl_x : lvl_x + w4] = cv2.resize(block, (w4, h4), interpolation=cv2.INTER_AREA)
            raw.write(strip.tobytes())
            raw.flush()
            yield from row


def _raw_tiles(img: _RawImage, ts: int, enc: _JpegEncoder) -> Iterator[bytes]:
    for y0 in range(0, img.height, ts):
        rows = img.rows(y0, min(y0 + ts, img.height))
        for x0 in range(0, img.width, ts):
            tile = rows[:, x0 : x0 + ts]
            pad_y, pad_x = ts - tile.shape[0], ts - tile.shape[1]
            if pad_y or pad_x:
                tile = cv2.copyMakeBorder(tile, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
            yield enc.encode(tile)


def _strips(image: np.ndarray, enc: _JpegEncoder) -> Iterator[bytes]:
    for r in range(0, image.shape[0], _STRIP_ROWS):
        yield enc.encode(image[r : r + _STRIP_ROWS], stripped=True)


# ----------------------------------------------------------------------------- associated images


def _label(opts: WriteOptions, width: int, height: int) -> np.ndarray:
    img = np.full((420, 400, 3), 250, dtype=np.uint8)
    rng = np.random.default_rng(opts.seed)
    code = rng.random((12, 12)) < 0.5  # a fake 2-D barcode
    img[30:270, 80:320] = np.where(np.kron(code, np.ones((20, 20), dtype=bool))[..., None], 20, 250)
    for i, text in enumerate(("slidescope", f"seed {opts.seed}", f"{width}x{height}")):
        cv2.putText(img, text, (30, 320 + 34 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2, cv2.LINE_AA)
    return img


def _macro(label: np.ndarray, thumb: np.ndarray) -> np.ndarray:
    """A glass-slide overview, 1280 x 432: the label on the left, the tissue area on the right."""
    macro = np.full((432, 1280, 3), 232, dtype=np.uint8)
    lab = cv2.resize(label, (300, 315), interpolation=cv2.INTER_AREA)
    macro[58:373, 10:310] = lab
    scale = min(940 / thumb.shape[1], 412 / thumb.shape[0])
    tw, th = max(1, round(thumb.shape[1] * scale)), max(1, round(thumb.shape[0] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    x, y = 330 + (940 - tw) // 2, 10 + (412 - th) // 2
    macro[y : y + th, x : x + tw] = cv2.resize(thumb, (tw, th), interpolation=interp)
    return macro


# ----------------------------------------------------------------------------- descriptions


def _aperio_fields(opts: WriteOptions, width: int, height: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", opts.name) or "synthetic"
    parts = [
        f"AppMag = {opts.objective_power:g}",
        "StripeWidth = 2040",
        "ScanScope ID = SLIDESCOPE-SYNTHETIC",
        f"Filename = {name}",
        "Date = 01/01/25",
        "Time = 00:00:00",
        "Time Zone = GMT+00:00",
        "User = slidescope",
    ]
    if opts.mpp is not None:
        parts.append(f"MPP = {float(opts.mpp)!r}")
    parts += ["Left = 25.000000", "Top = 20.000000", f"ImageID = {opts.seed}",
              f"OriginalWidth = {width}", f"OriginalHeight = {height}"]
    return "|" + "|".join(parts)


# ----------------------------------------------------------------------------- the writer


def write_pyramid(path: Path, renderer: TileRenderer, opts: WriteOptions, workdir: Path) -> list[tuple[int, int]]:
    """Write the whole slide to ``path``; ``workdir`` holds the raw reduced levels meanwhile.

    Returns the level dimensions written.
    """
    width, height = renderer.model.width, renderer.model.height
    ts = opts.tile_size
    aperio = opts.fmt == "aperio"
    dims = level_dimensions(width, height)
    enc = _JpegEncoder(opts.quality, aperio)
    common = dict(dtype=np.uint8, photometric="rgb", compression="jpeg", subsampling=(2, 2),
                  metadata=None, software=False)
    if aperio:
        common.update(compressionargs={"outcolorspace": "RGB"}, jpegtables=enc.tables)
        fields = _aperio_fields(opts, width, height)
        head = f"{APERIO_HEADER}{width}x{height} [0,0 {width}x{height}] ({ts}x{ts})"

    def page_kwargs(lw: int, lh: int, level: int) -> dict:
        if aperio:
            size = "" if level == 0 else f" -> {lw}x{lh}"
            return dict(description=f"{head}{size} JPEG/RGB Q={opts.quality}{fields}", subfiletype=0)
        kw: dict = dict(subfiletype=0 if level == 0 else 1)
        if opts.mpp is not None:  # pixels per centimetre of this level, per axis
            kw.update(resolution=(1e4 * lw / (opts.mpp * width), 1e4 * lh / (opts.mpp * height)),
                      resolutionunit="CENTIMETER")
        return kw

    ds4 = _RawImage(workdir / "level-ds4.raw", width // LEVEL_FACTOR, height // LEVEL_FACTOR)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tw:
        tw.write(_level0_tiles(renderer, ts, enc, ds4), shape=(height, width, 3), tile=(ts, ts),
                 **common, **page_kwargs(width, height, 0))
        internal = [ds4]  # area averages at downsample 4, 16, ...
        for k in range(2, len(dims)):
            internal.append(_shrink(internal[-1], workdir / f"level-ds{LEVEL_FACTOR**k}.raw"))
        target = min(THUMBNAIL_LONG_SIDE, max(ds4.width, ds4.height))
        source = [im for im in internal if max(im.width, im.height) >= target][-1]
        scale = target / max(width, height)
        thumb = cv2.resize(source.rows(0, source.height),
                           (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        if aperio:
            th, tw_ = thumb.shape[:2]
            tw.write(_strips(thumb, enc), shape=thumb.shape, rowsperstrip=_STRIP_ROWS, **common,
                     description=f"{APERIO_HEADER}{width}x{height} -> {tw_}x{th} - {fields}", subfiletype=0)
        for k in range(1, len(dims)):
            lw, lh = dims[k]
            tw.write(_raw_tiles(internal[k - 1], ts, enc), shape=(lh, lw, 3), tile=(ts, ts),
                     **common, **page_kwargs(lw, lh, k))
        if aperio:
            label = _label(opts, width, height)
            tw.write(label, photometric="rgb", compression="lzw", predictor=True, metadata=None,
                     software=False, subfiletype=1, rowsperstrip=64,
                     description=f"{APERIO_HEADER}label {label.shape[1]}x{label.shape[0]}")
            macro = _macro(label, thumb)
            tw.write(_strips(macro, enc), shape=macro.shape, rowsperstrip=_STRIP_ROWS, **common,
                     description=f"{APERIO_HEADER}macro {macro.shape[1]}x{macro.shape[0]}", subfiletype=9)
    return dims
