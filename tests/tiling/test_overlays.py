"""Heatmap overlays: shapes, blending, NaN areas, colormaps, PNG output, zarr heatmaps, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slidescope.tiling.overlays import COLORMAPS, OverlayError, overlay
from slidescope.tiling.plan import plan_tiles
from slidescope.tiling.scales import Scale
from slidescope.tiling.stitching import StitchError, stitch
from slidescope.wsi import ParameterError, SlideError, from_array


def make_slide(width: int = 800, height: int = 600, mpp: float = 0.5):
    """A slide with a smooth colour gradient, so the thumbnail is not uniform."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 200)], axis=2).astype(np.uint8)
    return from_array(image, mpp=mpp, name="gradient")


def jet(level: int) -> np.ndarray:
    return cv2.applyColorMap(np.full((1, 1), level, np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]


def test_shape_and_type_follow_the_thumbnail():
    slide = make_slide()
    heatmap = np.random.default_rng(0).random((30, 40))
    result = overlay(slide, heatmap, max_size=200)
    assert result.shape == (150, 200, 3) and result.dtype == np.uint8
    assert result.shape == slide.thumbnail(200).shape


def test_nan_areas_equal_the_thumbnail_and_values_are_blended():
    slide = make_slide()
    heatmap = np.full((60, 80), 1.0)
    heatmap[:, :40] = np.nan  # left half: no value
    thumbnail = slide.thumbnail(200)
    result = overlay(slide, heatmap, max_size=200, alpha=0.5, vmin=0.0, vmax=1.0)
    np.testing.assert_array_equal(result[:, :98], thumbnail[:, :98])
    expected = np.rint(0.5 * thumbnail[:, 102:].astype(float) + 0.5 * jet(255).astype(float))
    np.testing.assert_allclose(result[:, 102:], expected, atol=1)
    opaque = overlay(slide, heatmap, max_size=200, alpha=1.0, vmin=0.0, vmax=1.0)
    assert (opaque[:, 102:] == jet(255)).all()
    assert (overlay(slide, heatmap, max_size=200, alpha=0.0) == thumbnail).all()


def test_value_limits_pick_the_colour():
    slide = make_slide(400, 400)
    heatmap = np.full((10, 10), 5.0)
    low = overlay(slide, heatmap, max_size=64, alpha=1.0, vmin=5.0, vmax=10.0)
    high = overlay(slide, heatmap, max_size=64, alpha=1.0, vmin=0.0, vmax=5.0)
    middle = overlay(slide, heatmap, max_size=64, alpha=1.0, vmin=0.0, vmax=10.0)
    assert (low == jet(0)).all() and (high == jet(255)).all() and (middle == jet(128)).all()
    clipped = overlay(slide, heatmap, max_size=64, alpha=1.0, vmin=6.0, vmax=7.0)
    assert (clipped == jet(0)).all()
    ramp = np.tile(np.linspace(0.0, 1.0, 64), (64, 1))
    default = overlay(slide, ramp, max_size=64, alpha=1.0)  # limits: the heatmap's min and max
    assert (default[:, 0] == jet(0)).all() and (default[:, -1] == jet(255)).all()


@pytest.mark.parametrize("name", ["viridis", "VIRIDIS", "COLORMAP_VIRIDIS", "turbo", "hot"])
def test_colormaps_by_name(name):
    slide = make_slide(100, 100)
    result = overlay(slide, np.zeros((4, 4)), colormap=name, alpha=1.0, vmin=0.0, vmax=1.0, max_size=16)
    code = getattr(cv2, "COLORMAP_" + name.upper().removeprefix("COLORMAP_"))
    assert (result == cv2.applyColorMap(np.zeros((1, 1), np.uint8), code)[0, 0, ::-1]).all()


def test_png_is_written_atomically_and_readable(tmp_path):
    slide = make_slide()
    heatmap = np.random.default_rng(1).random((60, 80))
    heatmap[:20] = np.nan
    target = tmp_path / "figures" / "overlay.png"
    result = overlay(slide, heatmap, max_size=256, out=target)
    written = cv2.imread(str(target), cv2.IMREAD_COLOR)
    assert written is not None
    np.testing.assert_array_equal(written[:, :, ::-1], result)  # PNG holds RGB the right way round
    assert [p.name for p in target.parent.iterdir()] == ["overlay.png"]


def test_stitched_heatmap_numpy_and_zarr(tmp_path):
    slide = make_slide(1024, 768)
    plan = plan_tiles(slide, None, Scale(2.0, 64))
    values = np.arange(len(plan), dtype=float)
    values[0] = np.nan
    in_memory = stitch(plan, 0, values, out_mpp=1.0)
    streamed = stitch(plan, 0, values, out_mpp=1.0, out=tmp_path / "heat.zarr", chunk=64)
    a = overlay(slide, in_memory, max_size=128)
    b = overlay(slide, streamed, max_size=128)  # read every 4th row and column
    assert a.shape == b.shape == (96, 128, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2
    thumbnail = slide.thumbnail(128)
    assert (b[:30, :30] == thumbnail[:30, :30]).all()  # the NaN tile shows the slide


def test_lazy_heatmap_is_read_strided():
    class Recorder:
        """A lazy 2-D array that records the slices asked of it."""

        shape, dtype = (6000, 8000), np.dtype("float32")

        def __init__(self):
            self.asked = []

        def __getitem__(self, key):
            self.asked.append(key)
            rows, cols = key
            return np.zeros((len(range(*rows.indices(6000))), len(range(*cols.indices(8000)))), np.float32)

    slide = make_slide(800, 600)
    lazy = Recorder()
    result = overlay(slide, lazy, max_size=200)
    assert result.shape == (150, 200, 3)
    assert lazy.asked == [(slice(None, None, 40), slice(None, None, 40))]


def test_all_nan_heatmap_gives_the_thumbnail():
    slide = make_slide()
    assert (overlay(slide, np.full((6, 8), np.nan), max_size=100) == slide.thumbnail(100)).all()


# ----------------------------------------------------------------------------- errors


def test_unknown_colormap_lists_the_valid_ones():
    with pytest.raises(ParameterError, match=r"colormap: expected one of .*jet.*viridis.*; got 'rainbowz'"):
        overlay(make_slide(), np.zeros((6, 8)), colormap="rainbowz")
    with pytest.raises(ParameterError, match="got 2"):
        overlay(make_slide(), np.zeros((6, 8)), colormap=2)
    assert "jet" in COLORMAPS and "viridis" in COLORMAPS


@pytest.mark.parametrize("heatmap, match", [
    (np.zeros((6, 8, 3)), r"heatmap: expected a 2-D \(H, W\) array, got shape \(6, 8, 3\)"),
    (np.zeros(8), r"got shape \(8,\)"),
    (np.zeros((0, 8)), r"expected a non-empty array"),
    (np.full((6, 8), "x"), r"heatmap: expected numbers, got dtype <U1"),
    (np.zeros((8, 6)), r"heatmap: expected the aspect ratio of gradient \(800x600 px\).*got shape \(8, 6\)"),
])
def test_bad_heatmaps(heatmap, match):
    with pytest.raises(OverlayError, match=match):
        overlay(make_slide(), heatmap)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 1.5}, r"alpha: expected a number >= 0 and <= 1, got 1.5"),
    ({"alpha": float("nan")}, "alpha: expected"),
    ({"alpha": True}, "alpha: expected a number, got True"),
    ({"vmin": float("inf")}, "vmin: expected a finite number, got inf"),
    ({"vmax": "1"}, "vmax: expected a number, got '1'"),
    ({"vmin": 1.0, "vmax": 1.0}, r"vmax: expected more than vmin \(1\), got 1"),
    ({"out": "overlay.jpg"}, r"out: expected a \.png path, got 'overlay.jpg'"),
    ({"out": 3}, "out: expected a str or pathlib.Path, got 3"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        overlay(make_slide(), np.zeros((6, 8)), **kwargs)


def test_errors_are_slide_errors():
    assert issubclass(OverlayError, StitchError) and issubclass(OverlayError, SlideError)
    assert issubclass(OverlayError, ValueError)
