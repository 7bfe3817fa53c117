"""The openslide backend: premultiplied ARGB to RGB over white without PIL; associated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import AssociatedImageNotFoundError, CorruptSlideError, open_slide
from slidescope.wsi.backends.openslide_backend import argb_to_rgb
from slidescope.wsi.synthetic import make_slide


def pack(r, g, b, a) -> np.uint32:
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


def test_opaque_and_translucent_pixels():
    argb = np.array([[pack(10, 20, 30, 255), pack(0, 0, 0, 0)],
                     [pack(50, 40, 20, 128), pack(200, 100, 0, 255)]], dtype=np.uint32)
    out = np.empty((2, 2, 3), np.uint8)
    argb_to_rgb(argb, out)
    np.testing.assert_array_equal(out[0, 0], (10, 20, 30))
    np.testing.assert_array_equal(out[0, 1], (255, 255, 255))  # transparent glass is white
    np.testing.assert_array_equal(out[1, 0], (50 + 127, 40 + 127, 20 + 127))  # premultiplied over white
    np.testing.assert_array_equal(out[1, 1], (200, 100, 0))


def test_non_contiguous_destination():
    argb = np.full((3, 4), pack(1, 2, 3, 255), dtype=np.uint32)
    canvas = np.zeros((5, 6, 3), np.uint8)
    argb_to_rgb(argb, canvas[1:4, 1:5])
    assert (canvas[1:4, 1:5] == (1, 2, 3)).all() and (canvas[0] == 0).all()


@pytest.fixture
def corrupt_macro_svs(tmp_path: Path) -> Path:
    """A synthetic SVS whose macro image's JPEG data are zeroed past its first bytes."""
    path = tmp_path / "corrupt.svs"
    make_slide(path, 512, 512, seed=1)
    with tifffile.TiffFile(path) as tif:
        macro = next(series for series in tif.series if series.name.lower() == "macro").keyframe
        offset, count = int(macro.dataoffsets[0]), int(macro.databytecounts[0])
    data = bytearray(path.read_bytes())
    data[offset + 20 : offset + count] = bytes(count - 20)
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_associated_image_names_the_file_and_the_image(corrupt_macro_svs):
    with open_slide(corrupt_macro_svs, backend="openslide") as slide:
        before = slide.read_region((0, 0), (64, 64))
        with pytest.raises(CorruptSlideError, match=r"corrupt.svs: cannot decode associated image 'macro'"):
            slide.associated_images["macro"]
        # OpenSlide handles fail for good after one error: the pixels must not go with the macro.
        np.testing.assert_array_equal(slide.read_region((0, 0), (64, 64)), before)
        assert slide.associated_images["label"].shape == (420, 400, 3)


def test_a_missing_associated_image(corrupt_macro_svs):
    with open_slide(corrupt_macro_svs, backend="openslide") as slide:
        with pytest.raises(AssociatedImageNotFoundError,
                           match=r"corrupt.svs: no associated image 'slide'; available: \['label', 'macro', "
                                 r"'thumbnail'\]") as caught:
            slide.associated_images["slide"]
        assert isinstance(caught.value, KeyError)
        assert "slide" not in slide.associated_images and slide.associated_images.get("slide") is None
