"""Generic tiled TIFF pyramids: the tiff backend sees the levels OpenSlide's generic-tiff reader sees.

OpenSlide 4.0.1 takes page 0 and every later tiled page with the reduced-image bit as a level,
widest first; the cases below were checked against it on these crafted files. A pyramid whose
downsamples are not whole numbers (tifffile splits it into several series) must keep all its
levels, so that ``auto`` keeps it on the tiff backend and returns the stored pixels exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import UnsupportedFormatError, open_slide

openslide = pytest.importorskip("openslide")

Page = tuple[int, int, bool, int]  # width, height, tiled, NewSubfileType


def write_pages(path: Path, pages: list[Page], mpp: float | None = None) -> list[np.ndarray]:
    """One page per entry, in this order, no SubIFDs; return each page's pixels."""
    rng = np.random.default_rng(11)
    images = []
    with tifffile.TiffWriter(path) as writer:
        for width, height, tiled, subfiletype in pages:
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            layout = {"tile": (64, 64)} if tiled else {"rowsperstrip": 16}
            if mpp is not None:
                layout.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
            writer.write(image, photometric="rgb", compression="zlib", subfiletype=subfiletype, metadata=None,
                         **layout)
            images.append(image)
    return images


# (pages, the pages OpenSlide reads as levels, in level order)
LAYOUTS = {
    "fractional-downsamples": ([(1000, 750, True, 0), (333, 250, True, 1), (137, 103, True, 1), (58, 44, True, 1)],
                               [0, 1, 2, 3]),
    "out-of-order": ([(400, 300, True, 0), (100, 75, True, 1), (200, 150, True, 1)], [0, 2, 1]),
    "wider-page-later": ([(200, 150, True, 0), (400, 300, True, 1), (100, 75, True, 1)], [1, 0, 2]),
    "stripped-page-between": ([(400, 300, True, 0), (120, 90, False, 1), (200, 150, True, 1)], [0, 2]),
    "not-reduced-page-skipped": ([(400, 300, True, 0), (200, 150, True, 9), (100, 75, True, 2)], [0, 1]),
}


@pytest.fixture(params=sorted(LAYOUTS))
def layout_file(request, tmp_path) -> tuple[Path, list[np.ndarray], list[int]]:
    pages, levels = LAYOUTS[request.param]
    path = tmp_path / f"{request.param}.tiff"
    return path, write_pages(path, pages, mpp=0.25), levels


def test_levels_are_openslides(layout_file):
    path, images, levels = layout_file
    expected = [(images[i].shape[1], images[i].shape[0]) for i in levels]
    with openslide.OpenSlide(str(path)) as reference:
        assert list(reference.level_dimensions) == expected  # the rule this backend copies
    with open_slide(path, backend="tiff") as slide:
        assert [level.dimensions for level in slide.levels] == expected


def test_auto_picks_the_tiff_backend_and_reads_stored_pixels_at_every_level(layout_file):
    path, images, levels = layout_file
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff"
        assert slide.mpp == pytest.approx((0.25, 0.25))
        for index, page in enumerate(levels):
            image = images[page]
            height, width = image.shape[:2]
            np.testing.assert_array_equal(slide.read_region((0, 0), (width, height), level=index), image)


def test_the_reported_pyramid_keeps_its_four_levels(tmp_path):
    # The trial's file: 4000 x 3000 px at 0.25 µm/px, downsamples 3.0, 7.3, 17.2 (not whole).
    path = tmp_path / "generic.tiff"
    pages = [(4000, 3000, True, 0), (1333, 1000, True, 1), (547, 410, True, 1), (233, 175, True, 1)]
    images = write_pages(path, pages, mpp=0.25)
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff"
        assert [level.dimensions for level in slide.levels] == [page[:2] for page in pages]
        for index in (1, 2, 3):
            np.testing.assert_array_equal(slide.read_region((0, 0), (233, 175), level=index),
                                          images[index][:175, :233])


def test_equal_widths_are_left_to_openslide(tmp_path):
    path = tmp_path / "equal.tiff"
    write_pages(path, [(400, 300, True, 0), (400, 200, True, 1), (100, 75, True, 1)])
    with pytest.raises(UnsupportedFormatError, match=f"{path}: pyramid levels do not shrink"):
        open_slide(path, backend="tiff", require_mpp=False)
    with open_slide(path, require_mpp=False) as slide:
        assert slide.backend_name == "openslide"
        assert [level.dimensions for level in slide.levels] == [(400, 300), (400, 200), (100, 75)]
