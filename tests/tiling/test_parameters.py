"""Every numeric parameter of every tiling entry point answers the same bad values the same way.

All go through slidescope.wsi.validation: bools, strings, bytes, NaN and infinities are refused with
a ParameterError (a ResolutionError for resolutions) that names the parameter, never taken as a
number (``float(True)`` is 1.0, ``float("0.5")`` is 0.5) and never a RegionError. Numpy numbers are
accepted like Python ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from slidescope.tiling import (
    HedAugmenter,
    MacenkoNormalizer,
    ReinhardNormalizer,
    Scale,
    TissueMask,
    augment_hed,
    canvas_size,
    map_batches,
    overlay,
    plan_tiles,
    read_batches,
    stitch,
    tissue_mask,
    tissue_mask_from_rgb,
)
from slidescope.wsi import MissingMppError, ParameterError, RegionError, ResolutionError, from_array, open_slide

BAD = [True, np.bool_(False), "0.5", b"1", float("nan"), float("inf"), -float("inf"), None]

SLIDE = from_array(np.full((256, 384, 3), 240, np.uint8), mpp=0.5, name="params")
PLAN = plan_tiles(SLIDE, None, Scale(2.0, 32, name="tissue"))
MASK = TissueMask.from_array(np.ones((8, 12), bool), 16.0, (384, 256))
RGB = np.full((16, 16, 3), 240, np.uint8)

# (entry point, parameter, call with the value); resolutions must raise ResolutionError
CALLS = {
    "tissue_mask_from_rgb mpp": (True, lambda v: tissue_mask_from_rgb(RGB, v)),
    "tissue_mask_from_rgb close_um": (False, lambda v: tissue_mask_from_rgb(RGB, 8.0, close_um=v)),
    "tissue_mask mpp": (True, lambda v: tissue_mask(SLIDE, mpp=v)),
    "tissue_mask max_mask_pixels": (False, lambda v: tissue_mask(SLIDE, max_mask_pixels=v)),
    "TissueMask mpp": (True, lambda v: TissueMask.from_array(np.ones((4, 4), bool), v, (40, 40))),
    "TissueMask slide_dimensions": (False, lambda v: TissueMask.from_array(np.ones((4, 4), bool), 8.0, (v, 40))),
    "TissueMask.polygons min_area_um2": (False, lambda v: MASK.polygons(min_area_um2=v)),
    "TissueMask.contains l0_x": (False, lambda v: MASK.contains(v, 0)),
    "TissueMask.fraction_in l0_w": (False, lambda v: MASK.fraction_in(0, 0, v, 10)),
    "Scale mpp": (True, lambda v: Scale(v, 64)),
    "Scale tile": (False, lambda v: Scale(0.5, v)),
    "Scale overlap": (False, lambda v: Scale(0.5, 64, overlap=v)),
    "Scale min_tissue": (False, lambda v: Scale(0.5, 64, min_tissue=v)),
    "plan_tiles min_tissue": (False, lambda v: plan_tiles(SLIDE, MASK, Scale(2.0, 32), min_tissue=v)),
    "read_batches batch_size": (False, lambda v: read_batches(SLIDE, PLAN, 0, batch_size=v)),
    "read_batches workers": (False, lambda v: read_batches(SLIDE, PLAN, 0, workers=v)),
    "map_batches batch_size": (False, lambda v: map_batches(lambda i, t: i.mean(axis=(1, 2, 3)), SLIDE, PLAN, 0,
                                                            batch_size=v, scheduler="sync")),
    "stitch out_mpp": (True, lambda v: stitch(PLAN, 0, np.zeros(len(PLAN)), out_mpp=v)),
    "stitch chunk": (False, lambda v: stitch(PLAN, 0, np.zeros(len(PLAN)), out_mpp=4.0, chunk=v)),
    "canvas_size out_mpp": (True, lambda v: canvas_size(PLAN, v)),
    "overlay alpha": (False, lambda v: overlay(SLIDE, np.zeros((4, 6)), alpha=v)),
    "overlay vmin": (False, lambda v: overlay(SLIDE, np.zeros((4, 6)), vmin=v)),
    "MacenkoNormalizer od_threshold": (False, lambda v: MacenkoNormalizer(od_threshold=v)),
    "ReinhardNormalizer min_tissue_pixels": (False, lambda v: ReinhardNormalizer(min_tissue_pixels=v)),
    "HedAugmenter sigma": (False, lambda v: HedAugmenter(sigma=v)),
    "augment_hed alpha_range": (False, lambda v: augment_hed(RGB, alpha_range=(v, 1.0))),
}


OPTIONAL = {"Scale min_tissue", "overlay vmin"}  # None means "not given" there


CASES = [pytest.param(name, bad, id=f"{name}-{bad!r}") for name in sorted(CALLS) for bad in BAD
         if not (bad is None and name in OPTIONAL)]


@pytest.mark.parametrize("name, bad", CASES)
def test_bad_values_are_parameter_errors_naming_the_parameter(name: str, bad) -> None:
    resolution, call = CALLS[name]
    with pytest.raises(ResolutionError if resolution else ParameterError) as caught:
        call(bad)
    assert not isinstance(caught.value, RegionError)
    parameter = name.split()[-1]
    assert parameter.split("_")[0] in str(caught.value)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_numbers_are_numbers(name: str) -> None:
    good = {  # a valid value per parameter, given as a numpy number
        "mpp": np.float32(16.0), "close_um": np.float64(20.0), "max_mask_pixels": np.int64(10**6),
        "slide_dimensions": np.int32(40), "min_area_um2": np.float32(0.0), "l0_x": np.int64(3), "l0_w": np.int16(10),
        "tile": np.int64(64), "overlap": np.uint8(8), "min_tissue": np.float32(0.5), "batch_size": np.int64(2),
        "workers": np.int32(2), "out_mpp": np.float32(4.0), "chunk": np.int64(16), "alpha": np.float32(0.5),
        "vmin": np.float64(-1.0), "od_threshold": np.float32(0.25), "min_tissue_pixels": np.int64(300),
        "sigma": np.float32(0.1), "alpha_range": np.float32(0.9),
    }[name.split()[-1]]
    CALLS[name][1](good)


def test_masks_and_plans_need_an_mpp(tmp_path) -> None:
    from slidescope.wsi.synthetic import make_slide

    made = make_slide(tmp_path / "no-mpp.tiff", 256, 256, mpp=None, format="generic-tiff")
    with open_slide(made.path, require_mpp=False) as slide:
        with pytest.raises(MissingMppError, match="no-mpp.tiff"):
            tissue_mask(slide)
        with pytest.raises(MissingMppError, match="no-mpp.tiff"):
            plan_tiles(slide, None, Scale(2.0, 32))
