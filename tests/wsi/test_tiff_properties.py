"""``slide.properties`` holds the keys and values OpenSlide reports, whichever backend opened the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from slidescope.wsi import from_array, open_slide
from slidescope.wsi.backends._properties import format_double, parse_double


def openslide_properties(path: Path) -> dict[str, str]:
    with openslide.OpenSlide(str(path)) as reference:
        return dict(reference.properties)


def assert_same_properties(path: Path) -> None:
    with open_slide(path, backend="tiff", require_mpp=False) as slide:
        ours = dict(slide.properties)
    theirs = openslide_properties(path)
    assert sorted(set(theirs) - set(ours)) == [], "keys OpenSlide has and the tiff backend lacks"
    assert sorted(set(ours) - set(theirs)) == [], "keys the tiff backend adds"
    assert {k: ours[k] for k in theirs if ours[k] != theirs[k]} == {}, "different values"


@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "small.svs", "boxes.tiff", "small_HE_levels.tiff"])
def test_real_files_have_openslides_properties(data_file, name):
    assert_same_properties(data_file(name))


@pytest.mark.parametrize("fixture", ["synthetic_svs", "synthetic_generic_tiff"])
def test_synthetic_slides_have_openslides_properties(request, fixture):
    assert_same_properties(request.getfixturevalue(fixture))


def test_the_keys_users_look_up_are_there(data_file):
    with open_slide(data_file("CMU-1-Small-Region.svs"), backend="tiff") as slide:
        properties = slide.properties
    assert properties["openslide.vendor"] == "aperio"
    assert properties["openslide.mpp-x"] == properties["openslide.mpp-y"] == "0.499"
    assert properties["openslide.objective-power"] == "20"
    assert properties["openslide.level-count"] == "1"
    assert properties["openslide.level[0].tile-width"] == "240"
    assert properties["openslide.associated.macro.width"] == "1280"


@pytest.mark.parametrize(
    ("fields", "unit", "resolution"),
    [
        ("|AppMag = 40.0|MPP = 0,25", None, None),  # comma decimal point, magnification as a float
        ("|AppMag = 20x|MPP = 0.2527|Empty = ", None, None),  # no objective power, 17 digits of mpp
        (None, "INCH", (100000.0, 50000.0)),  # generic TIFF, pixels per inch, anisotropic
        (None, "CENTIMETER", (28.346456692913385, 28.346456692913385)),
        (None, "NONE", (1000.0, 1000.0)),  # no unit: no mpp
    ],
)
def test_generated_tiffs_have_openslides_properties(tmp_path, fields, unit, resolution):
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    options = dict(tile=(32, 32), photometric="rgb", compression="zlib", metadata=None, software=False)
    if fields is not None:
        path = tmp_path / "slide.svs"
        options["description"] = f"Aperio Image Library v12.0.15 \r\n160x96 [0,0 160x96] (32x32) JPEG/RGB Q=70{fields}"
    else:
        path = tmp_path / "slide.tiff"
        options.update(resolution=resolution, resolutionunit=unit, datetime="2024:05:06 07:08:09",
                       extratags=[(315, "s", 0, "a pathologist", True), (271, "s", 0, "scanner maker", True)])
    reduced = {k: v for k, v in options.items() if k != "extratags"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, **options)
        if fields is not None:  # Aperio's layout: a stripped thumbnail after level 0
            tif.write(image[::4, ::4], **{k: v for k, v in reduced.items() if k != "tile"})
        tif.write(image[::2, ::2], subfiletype=0 if fields else 1, **reduced)
    assert_same_properties(path)


def test_array_slides_have_the_openslide_keys_that_apply():
    levels = [np.zeros((100, 300, 3), np.uint8), np.zeros((50, 150, 3), np.uint8)]
    properties = from_array(levels, (0.25, 0.5)).properties
    assert properties["openslide.vendor"] == "array"
    assert properties["openslide.level-count"] == "2"
    assert (properties["openslide.level[1].width"], properties["openslide.level[1].height"]) == ("150", "50")
    assert properties["openslide.level[1].downsample"] == "2"
    assert (properties["openslide.mpp-x"], properties["openslide.mpp-y"]) == ("0.25", "0.5")
    assert "openslide.level[0].tile-width" not in properties  # arrays are not tiled


def test_number_formats_are_openslides():
    assert format_double(1.0) == "1" and format_double(0.2527) == "0.25269999999999998"
    assert format_double(4.016129032258064) == "4.0161290322580641"
    assert parse_double(" 0,25 ") == 0.25
    assert parse_double("20x") is None and parse_double("nan") is None and parse_double(None) is None
