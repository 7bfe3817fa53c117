"""Aperio JPEG 2000 tiles (compression 33003 and 33005) decode in the right colours, as OpenSlide's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile

from slidescope.wsi import open_slide
from slidescope.wsi.backends._tiff_codecs import chroma_is_subsampled, ycbcr_to_rgb

TILE = 128
WIDTH, HEIGHT = 300, 200


def image(seed: int = 0) -> np.ndarray:
    """Smooth, saturated colours (hue differences are what a missing YCbCr conversion breaks)."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), (9, 9), 0)


def jfif_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range YCbCr, the transform Aperio applies before coding a 33003 tile."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def tiles(rgb: np.ndarray, encode):
    for y in range(0, rgb.shape[0], TILE):
        for x in range(0, rgb.shape[1], TILE):
            tile = np.zeros((TILE, TILE, 3), np.uint8)
            part = rgb[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            yield encode(tile)


def lossless_codestream(compression: int):
    """A raw J2K codestream per tile, without the codestream's own colour transform (as Aperio)."""

    def encode(tile: np.ndarray) -> bytes:
        samples = jfif_ycbcr(tile) if compression == 33003 else tile
        return imagecodecs.jpeg2k_encode(samples, level=0, codecformat="J2K", mct=False)

    return encode


def write_aperio_j2k(path: Path, rgb: np.ndarray, compression: int, encode) -> None:
    height, width = rgb.shape[:2]
    description = (f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
                   f"({TILE}x{TILE}) J2K/YUV16 Q=70|AppMag = 20|MPP = 0.5")
    with tifffile.TiffWriter(path) as tif:
        tif.write(tiles(rgb, encode), shape=rgb.shape, dtype=np.uint8, tile=(TILE, TILE),
                  compression=compression, photometric="rgb", description=description,
                  metadata=None, software=False)


def openslide_rgb(path: Path) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as reference:
        return np.asarray(reference.read_region((0, 0), 0, (WIDTH, HEIGHT)).convert("RGB"))


@pytest.mark.parametrize("compression", [33003, 33005])
def test_aperio_jpeg2000_colours_match_the_encoded_image_and_openslide(tmp_path, compression):
    rgb = image()
    path = tmp_path / f"j2k-{compression}.svs"
    write_aperio_j2k(path, rgb, compression, lossless_codestream(compression))
    with open_slide(path, backend="tiff") as slide:
        assert slide.vendor == "aperio"
        ours = slide.read_region((0, 0), (WIDTH, HEIGHT))
        crossing = slide.read_region((100, 90), (60, 70))  # a box over four stored tiles
    diff = np.abs(ours.astype(np.int16) - rgb)
    # Lossless coding: only the 8-bit YCbCr rounding remains (before the fix: mean 14, colours off).
    assert diff.mean() < 0.5 and diff.max() <= 2
    np.testing.assert_array_equal(ours, openslide_rgb(path))
    np.testing.assert_array_equal(crossing, ours[90:160, 100:160])


def test_ycbcr_conversion_is_openslides_integer_arithmetic():
    """Every (Y, Cb, Cr) corner and a grid in between, against OpenSlide's table formulas."""
    values = np.array([0, 1, 16, 127, 128, 129, 200, 235, 254, 255], dtype=np.uint8)
    y, cb, cr = np.meshgrid(values, values, values, indexing="ij")
    ycbcr = np.stack([y, cb, cr], axis=-1).reshape(-1, 1, 3)
    yi, cbi, cri = (ycbcr[..., i].astype(np.int64) for i in range(3))

    def c_round(x):
        return np.sign(x) * np.floor(np.abs(x) + 0.5)

    expected = np.stack([
        yi + c_round(1.402 * (cri - 128)),
        yi + ((c_round(65536 * (0.5 - 0.34414 * (cbi - 128))) + c_round(65536 * -0.71414 * (cri - 128))).astype(np.int64) >> 16),
        yi + c_round(1.772 * (cbi - 128)),
    ], axis=-1)
    np.testing.assert_array_equal(ycbcr_to_rgb(ycbcr), np.clip(expected, 0, 255).astype(np.uint8))
    in_place = ycbcr.copy()
    np.testing.assert_array_equal(ycbcr_to_rgb(in_place, out=in_place), ycbcr_to_rgb(ycbcr))


def test_chroma_subsampling_is_read_from_the_codestream_header():
    stream = bytearray(imagecodecs.jpeg2k_encode(np.zeros((32, 32, 3), np.uint8), level=0, codecformat="J2K",
                                                 mct=False))
    assert not chroma_is_subsampled(bytes(stream))
    components = stream.index(b"\xff\x51") + 2 + 36 + 2  # SIZ marker, Lsiz..YTOsiz, Csiz
    for component in (1, 2):  # horizontal and vertical separation 2 for Cb and Cr
        stream[components + 3 * component + 1] = stream[components + 3 * component + 2] = 2
    assert chroma_is_subsampled(bytes(stream))
    assert not chroma_is_subsampled(b"\x00\x00\x00\x0cjP  \r\n\x87\n")  # a JP2 box, no codestream here


@pytest.mark.skipif(shutil.which("opj_compress") is None,
                    reason="opj_compress (Debian libopenjp2-tools) writes the subsampled codestreams")
def test_aperio_jpeg2000_with_subsampled_chroma_matches_openslide(tmp_path):
    """imagecodecs converts subsampled sYCC itself: the backend must not convert twice."""
    rgb = image(1)

    def encode(tile: np.ndarray) -> bytes:
        ycbcr = jfif_ycbcr(tile)
        half = [cv2.resize(np.ascontiguousarray(ycbcr[..., c]), (TILE // 2, TILE // 2), interpolation=cv2.INTER_AREA)
                for c in (1, 2)]
        raw, out = tmp_path / "tile.raw", tmp_path / "tile.j2k"
        raw.write_bytes(ycbcr[..., 0].tobytes() + half[0].tobytes() + half[1].tobytes())
        subprocess.run(["opj_compress", "-i", str(raw), "-o", str(out), "-F", f"{TILE},{TILE},3,8,u@1x1:2x2:2x2",
                        "-mct", "0"], check=True, capture_output=True)
        return out.read_bytes()

    path = tmp_path / "j2k-subsampled.svs"
    write_aperio_j2k(path, rgb, 33003, encode)
    with open_slide(path, backend="tiff") as slide:
        ours = slide.read_region((0, 0), (WIDTH, HEIGHT))
    assert np.abs(ours.astype(np.int16) - rgb).mean() < 4  # chroma at half resolution
    assert np.abs(ours.astype(np.int16) - openslide_rgb(path)).max() <= 1  # OpenJPEG's vs OpenSlide's rounding
