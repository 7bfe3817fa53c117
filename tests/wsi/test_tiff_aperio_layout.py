"""Which pages of an Aperio SVS are levels and which are associated images (issue 6, items 3 and 16).

tifffile's SVS series always takes page 1 as the thumbnail. On an SVS without a thumbnail page
the tiff backend lost level 1, the two backends disagreed on the pyramid, and ``auto`` handed
the file to OpenSlide, which interpolates a level whose downsample is not a whole number. The
tiff backend now sorts pages by OpenSlide's rule (wsi/backends/_tiff_aperio.py); these tests
hold it to OpenSlide on crafted layouts and to the stored pixels on the file that went wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import UnsupportedFormatError, open_slide
from slidescope.wsi.backends.openslide_backend import OpenSlideBackend
from slidescope.wsi.backends.tiff_backend import TiffBackend

DESCRIPTION = "Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (128x128) |AppMag = 20|MPP = 0.25"
LABEL, MACRO = 1, 9  # NewSubfileType of Aperio label and macro pages


def noise(width: int, height: int, seed: int) -> np.ndarray:
    """Uncorrelated pixels: any sub-pixel shift or blend of them shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_svs(path: Path, pages: list[tuple[str, np.ndarray, int, str | None]]) -> None:
    """An Aperio-like file, one page per ``(kind, pixels, subfiletype, description)``.

    ``kind`` is ``"tiled"`` (128 px tiles) or ``"stripped"``; page 0 gets the Aperio
    description that makes OpenSlide and tifffile call the file Aperio. Lossless, so the
    stored pixels are the written ones.
    """
    width, height = pages[0][1].shape[1], pages[0][1].shape[0]
    with tifffile.TiffWriter(path) as tif:
        for index, (kind, pixels, subfiletype, description) in enumerate(pages):
            layout = dict(tile=(128, 128)) if kind == "tiled" else dict(rowsperstrip=16)
            text = DESCRIPTION.format(w=width, h=height) if index == 0 else description
            tif.write(pixels, photometric="rgb", compression="zlib", compressionargs={"level": 1},
                      metadata=None, subfiletype=subfiletype, description=text, **layout)


def page(kind: str, width: int, height: int, subfiletype: int = 0, description: str | None = None, seed: int = 0):
    return kind, noise(width, height, seed), subfiletype, description


def label(seed: int = 7, width: int = 60, height: int = 40, description: str = "Aperio Image Library\nlabel 60x40"):
    return page("stripped", width, height, LABEL, description, seed)


def macro(seed: int = 8, description: str = "Aperio Image Library\nmacro 150x50"):
    return page("stripped", 150, 50, MACRO, description, seed)


#: Layouts whose page roles OpenSlide 4 decides: tiled pages are levels, a stripped page 1 is the
#: thumbnail, later stripped pages are label / macro by NewSubfileType alone.
LAYOUTS = {
    "thumbnail": [page("tiled", 520, 400), page("stripped", 130, 100, seed=1), page("tiled", 260, 200, seed=2),
                  label(), macro()],
    "no-thumbnail": [page("tiled", 520, 400), page("tiled", 260, 200, seed=2), label(), macro()],
    "no-thumbnail-three-levels": [page("tiled", 520, 400), page("tiled", 260, 200, seed=2),
                                  page("tiled", 130, 100, seed=3)],
    "stripped-page-between-levels": [page("tiled", 520, 400), page("stripped", 130, 100, seed=1), label(),
                                     page("tiled", 260, 200, seed=2)],
    "description-not-subfiletype": [page("tiled", 520, 400), page("tiled", 260, 200, seed=2),
                                    label(description="Aperio Image Library\nmacro 60x40"),
                                    page("stripped", 70, 30, 0, "Aperio Image Library\nlabel 70x30", seed=9)],
    "later-label-wins": [page("tiled", 520, 400), page("stripped", 130, 100, seed=1), label(seed=4),
                         label(seed=5, width=50, height=30)],
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def layout_file(request, tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("aperio-layout") / f"{request.param}.svs"
    write_svs(path, LAYOUTS[request.param])
    return request.param, path


def test_levels_and_associated_images_are_openslides(layout_file):
    _, path = layout_file
    reference, fast = OpenSlideBackend(str(path)), TiffBackend(str(path))
    try:
        assert fast.info.level_dimensions == reference.info.level_dimensions
        assert fast.info.level_downsamples == pytest.approx(reference.info.level_downsamples, rel=1e-12)
        assert fast.info.associated_names == reference.info.associated_names
        for name in reference.info.associated_names:  # lossless pages: the same pixels, not just the same size
            np.testing.assert_array_equal(fast.associated_image(name), reference.associated_image(name))
        assert fast.info.properties.get("openslide.quickhash-1") == reference.info.properties.get(
            "openslide.quickhash-1"
        )
    finally:
        reference.close()
        fast.close()


def test_auto_picks_the_tiff_backend_for_every_layout(layout_file):
    _, path = layout_file
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff"


# -- the file of issue 6 item 3 that went to OpenSlide -----------------------------------------------

LEVEL0, LEVEL1 = (1601, 1201), (800, 600)  # downsample 2.00125 / 2.00167: no whole number


@pytest.fixture(scope="module")
def no_thumbnail_svs(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    levels = [noise(*LEVEL0, seed=10), noise(*LEVEL1, seed=11)]
    path = tmp_path_factory.mktemp("no-thumbnail") / "slide.svs"
    write_svs(path, [("tiled", levels[0], 0, None), ("tiled", levels[1], 0, None), label(), macro()])
    return path, levels


def test_an_svs_without_thumbnail_page_reads_its_stored_pixels_at_every_level(no_thumbnail_svs):
    path, stored = no_thumbnail_svs
    reference = OpenSlideBackend(str(path))
    try:
        openslide_dimensions = reference.info.level_dimensions
        openslide_associated = reference.info.associated_names
    finally:
        reference.close()
    assert openslide_dimensions == (LEVEL0, LEVEL1)
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff"
        assert tuple(level.dimensions for level in slide.levels) == openslide_dimensions
        assert tuple(sorted(slide.associated_images)) == openslide_associated == ("label", "macro")
        assert slide.levels[1].downsample != int(slide.levels[1].downsample)
        for index, level in enumerate(slide.levels):
            np.testing.assert_array_equal(slide.read_region((0, 0), level.dimensions, level=index), stored[index])
        # A read away from the origin: level pixel (x, y) is at level-0 (x, y) * downsample.
        level = slide.levels[1]
        x, y, size = 333, 217, (130, 90)
        l0_xy = (int(np.ceil(x * level.downsample)), int(np.ceil(y * level.downsample)))
        np.testing.assert_array_equal(slide.read_region(l0_xy, size, level=1), stored[1][y : y + 90, x : x + 130])


def test_a_stripped_first_page_is_refused(tmp_path):
    """OpenSlide takes a file for Aperio only when page 0 is tiled; the tiff backend says why it cannot."""
    path = tmp_path / "stripped.svs"
    write_svs(path, [page("stripped", 300, 200), page("tiled", 150, 100, seed=2)])
    with pytest.raises(UnsupportedFormatError, match=r"stripped.svs: page 0 \(300x200\): expected a tiled page"):
        TiffBackend(str(path))
