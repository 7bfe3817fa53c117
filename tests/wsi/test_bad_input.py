"""Every kind of bad input gets a clear slidescope error that names the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from slidescope.wsi import (
    ClosedSlideError,
    CorruptSlideError,
    MissingMppError,
    OutOfBoundsError,
    RegionError,
    ResolutionError,
    SlideAccessError,
    SlideError,
    SlideNotFoundError,
    SlidePermissionError,
    UnsupportedFormatError,
    open_slide,
)


def test_errors_subclass_the_matching_builtins():
    assert issubclass(SlideError, ValueError)
    assert issubclass(SlideNotFoundError, FileNotFoundError)
    assert issubclass(CorruptSlideError, OSError)
    assert issubclass(OutOfBoundsError, IndexError)
    assert issubclass(SlideAccessError, SlideError) and issubclass(SlideAccessError, OSError)
    assert issubclass(SlidePermissionError, SlideAccessError) and issubclass(SlidePermissionError, PermissionError)


def test_missing_file(tmp_path: Path):
    missing = tmp_path / "nope.svs"
    with pytest.raises(SlideNotFoundError, match="nope.svs: no such slide file"):
        open_slide(missing)


def test_directory(tmp_path: Path):
    with pytest.raises(UnsupportedFormatError, match=f"{tmp_path}: is a directory"):
        open_slide(tmp_path)


def test_png_named_svs(tmp_path: Path):
    fake = tmp_path / "photo.svs"
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "photo.png").rename(fake)
    with pytest.raises(UnsupportedFormatError, match="photo.svs: no backend can read this file"):
        open_slide(fake)


def test_text_named_svs(tmp_path: Path):
    fake = tmp_path / "notes.svs"
    fake.write_text("not a slide\n")
    with pytest.raises(UnsupportedFormatError, match="notes.svs"):
        open_slide(fake)


def test_empty_file(tmp_path: Path):
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match="empty.svs"):
        open_slide(empty)


def test_broken_svs(data_file):
    path = data_file("broken.svs")
    with pytest.raises(UnsupportedFormatError, match="broken.svs"):
        open_slide(path)


def test_unopenable_tiff_names_the_compression(data_file):
    path = data_file("unopenable.tiff")
    with pytest.raises(UnsupportedFormatError, match=r"unopenable.tiff.*compression.*52479"):
        open_slide(path)


@pytest.mark.parametrize("backend", ["auto", "tiff", "openslide"])
def test_unreadable_svs_fails_on_read_naming_the_file(backend, data_file):
    path = data_file("unreadable.svs")
    with open_slide(path, backend=backend) as slide:
        with pytest.raises(CorruptSlideError, match="unreadable.svs"):
            slide.read_region((0, 0), (16, 16))


def test_unsupported_compression(tmp_path: Path):
    """A tiled TIFF compressed with a codec neither backend decodes (LERC)."""
    path = tmp_path / "lerc.tiff"
    image = np.full((64, 64, 3), 200, np.uint8)
    try:
        tifffile.imwrite(path, image, tile=(32, 32), compression="lerc", photometric="rgb",
                         resolution=(4.0, 4.0), resolutionunit="CENTIMETER")
    except Exception as exc:  # pragma: no cover - depends on the imagecodecs build
        pytest.skip(f"this imagecodecs cannot write LERC: {exc}")
    with pytest.raises(UnsupportedFormatError, match=r"lerc.tiff.*compression"):
        open_slide(path)


def test_no_mpp_metadata_tells_how_to_pass_it(tmp_path: Path):
    path = tmp_path / "nompp.tiff"
    tifffile.imwrite(path, np.full((64, 64, 3), 200, np.uint8), tile=(32, 32), photometric="rgb")
    with pytest.raises(MissingMppError, match=r"nompp.tiff.*mpp=0.25"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == (0.5, 0.5)
        assert slide.read_region((0, 0), (8, 8)).mean() == 200


def test_unknown_backend(tmp_path: Path, data_file):
    path = data_file("small.svs")
    with pytest.raises(SlideError, match="backend.*'pil'"):
        open_slide(path, backend="pil")


def test_read_errors_name_the_file(data_file):
    path = data_file("CMU-1-Small-Region.svs")
    with open_slide(path) as slide:
        with pytest.raises(OutOfBoundsError, match="CMU-1-Small-Region.svs"):
            slide.read_region((5000, 5000), (10, 10))
        with pytest.raises(RegionError, match="size"):
            slide.read_region((0, 0), (0, 10))
        with pytest.raises(RegionError, match="size"):
            slide.read_tiles([(0, 0)], (-4, 10))
        with pytest.raises(ResolutionError, match=r"CMU-1-Small-Region.svs.*finer than level 0"):
            slide.read_region((0, 0), (10, 10), mpp=0.1)
    with pytest.raises(ClosedSlideError, match="CMU-1-Small-Region.svs.*closed"):
        slide.read_region((0, 0), (10, 10))


def test_dicom_openslide_cannot_read_gets_a_clear_error(data_file):
    """A real DICOM WSI instance OpenSlide 4.0 rejects ("Couldn't get image flavor"): the error
    names the file and OpenSlide's reason instead of failing later or silently."""
    path = data_file("small_dicom.dcm")
    with pytest.raises(SlideError, match=r"small_dicom.dcm.*image flavor"):
        open_slide(path)
