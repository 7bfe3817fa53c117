"""The tifffile backend on the TIFF variants the real test files do not cover."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from slidescope.wsi import open_slide


def pyramid(width: int = 300, height: int = 200, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    return [base, cv2.resize(base, (width // 2, height // 2), interpolation=cv2.INTER_AREA)]


def write_pyramid(path: Path, levels: list[np.ndarray], **options) -> None:
    with tifffile.TiffWriter(path) as tif:
        for index, level in enumerate(levels):
            tif.write(level, tile=(64, 64), photometric="rgb" if level.shape[2] == 3 else "rgb",
                      subfiletype=1 if index else 0, resolution=(40000.0 / 2 ** index, 40000.0 / 2 ** index),
                      resolutionunit="CENTIMETER", **options)


@pytest.mark.parametrize("compression", ["lzw", "adobe_deflate", "zstd", "none"])
def test_lossless_compressions_read_back_exactly(tmp_path, compression):
    levels = pyramid()
    path = tmp_path / f"{compression}.tiff"
    write_pyramid(path, levels, compression=None if compression == "none" else compression)
    with open_slide(path, backend="tiff") as slide:
        assert slide.vendor == "generic-tiff" and slide.mpp == pytest.approx((0.25, 0.25))
        assert [lvl.dimensions for lvl in slide.levels] == [(300, 200), (150, 100)]
        for index, level in enumerate(levels):
            np.testing.assert_array_equal(slide.read_region((0, 0), level.shape[1::-1], level=index), level)
        np.testing.assert_array_equal(slide.read_region((37, 71), (100, 90)), levels[0][71:161, 37:137])


def test_jpeg2000_tiles(tmp_path):
    levels = pyramid()
    path = tmp_path / "jp2k.tiff"
    write_pyramid(path, levels, compression="jpeg2000", compressionargs={"level": 0})
    with open_slide(path, backend="tiff") as slide:
        np.testing.assert_array_equal(slide.read_region((0, 0), (300, 200)), levels[0])


def test_rgba_is_composited_on_white(tmp_path):
    base = pyramid()[0]
    alpha = np.full(base.shape[:2] + (1,), 255, np.uint8)
    alpha[:50] = 0
    path = tmp_path / "rgba.tiff"
    tifffile.imwrite(path, np.concatenate([base, alpha], axis=2), tile=(64, 64), photometric="rgb",
                     extrasamples=["unassalpha"], compression="zlib", resolution=(40000.0, 40000.0),
                     resolutionunit="CENTIMETER")
    with open_slide(path, backend="tiff") as slide:
        out = slide.read_region((0, 0), (300, 200))
    assert (out[:50] == 255).all()
    np.testing.assert_array_equal(out[50:], base[50:])


def test_sparse_tiles_are_background(tmp_path):
    base = pyramid()[0]
    path = tmp_path / "sparse.tiff"
    write_pyramid(path, [base], compression="zlib")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        counts_offset = page.tags["TileByteCounts"].valueoffset
        count_size = page.tags["TileByteCounts"].dtype_size if hasattr(page.tags["TileByteCounts"], "dtype_size") else 4
    data[counts_offset:counts_offset + count_size] = b"\0" * count_size  # first tile: never written
    path.write_bytes(bytes(data))
    with open_slide(path, backend="tiff") as slide:
        out = slide.read_region((0, 0), (128, 64))
    assert (out[:, :64] == 255).all()
    np.testing.assert_array_equal(out[:, 64:], base[:64, 64:128])


def test_ome_tiff_mpp_from_physical_size(tmp_path):
    base = pyramid()[0]
    path = tmp_path / "slide.ome.tiff"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(base, tile=(64, 64), photometric="rgb", compression="zlib",
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "µm",
                            "PhysicalSizeY": 0.5, "PhysicalSizeYUnit": "µm"})
    with open_slide(path) as slide:  # OpenSlide does not read OME-TIFF: auto falls back to tifffile
        assert slide.backend_name == "tiff" and slide.vendor == "ome-tiff"
        assert slide.mpp == pytest.approx((0.5, 0.5))
        np.testing.assert_array_equal(slide.read_region((10, 10), (50, 40)), base[10:50, 10:60])


def test_stripped_tiff_is_left_to_openslide_or_refused(tmp_path):
    path = tmp_path / "stripped.tif"
    tifffile.imwrite(path, pyramid()[0], photometric="rgb", resolution=(40000.0, 40000.0),
                     resolutionunit="CENTIMETER")
    with pytest.raises(Exception, match="stripped.tif"):
        open_slide(path, backend="tiff")


def test_a_tile_shared_by_an_aligned_box_and_others(tmp_path):
    """One stored tile feeding an exact-tile box (decoded into it) and overlapping boxes."""
    levels = pyramid()
    path = tmp_path / "shared.tiff"
    write_pyramid(path, levels, compression="zlib")
    locations = [(64, 64), (32, 40), (100, 90), (64, 64), (0, 0)]
    with open_slide(path, backend="tiff") as slide:
        batch = slide.read_tiles(locations, (64, 64))
    for (x, y), tile in zip(locations, batch):
        np.testing.assert_array_equal(tile, levels[0][y:y + 64, x:x + 64])


@pytest.mark.parametrize("extrasamples", ["assocalpha", "unspecified"])
def test_premultiplied_rgba_is_composited_as_premultiplied(tmp_path, extrasamples):
    """ExtraSamples 1 (and 0, which libtiff reads the same way): the colour already carries alpha."""
    rng = np.random.default_rng(4)
    base = pyramid()[0]
    alpha = rng.integers(0, 256, base.shape[:2] + (1,)).astype(np.uint8)
    premultiplied = np.round(base * (alpha / 255.0)).astype(np.uint8)
    path = tmp_path / f"premultiplied-{extrasamples}.tiff"
    tifffile.imwrite(path, np.concatenate([premultiplied, alpha], axis=2), tile=(64, 64), photometric="rgb",
                     extrasamples=[extrasamples], compression="zlib", resolution=(40000.0, 40000.0),
                     resolutionunit="CENTIMETER")
    expected = (premultiplied + (255 - alpha).astype(np.uint16)).astype(np.uint8)  # colour over white glass
    with open_slide(path, backend="tiff") as slide, open_slide(path, backend="openslide") as reference:
        ours = slide.read_region((0, 0), (300, 200))
        np.testing.assert_array_equal(ours, expected)
        np.testing.assert_array_equal(ours, reference.read_region((0, 0), (300, 200)))
