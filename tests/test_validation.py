"""One validation home: the ``parse_*`` family, and every public entry point answering bad values alike.

The property: whichever public function takes a number, a bad value (NaN, an infinity, 1e30,
``True``, a string, bytes, a negative or zero where a positive is needed) is refused with a
:class:`SlideError` (a ``ValueError``) that names the parameter - never a raw ``OverflowError``,
``MemoryError``, ``TypeError``, a silent acceptance, or a value taken as 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidescope.wsi import ParameterError, RegionError, ResolutionError, SlideError, from_array, open_slide
from slidescope.wsi.validation import (
    MAX_COORDINATE,
    parse_fraction,
    parse_int,
    parse_locations,
    parse_mpp,
    parse_number,
    parse_path,
    parse_positive_float,
    parse_positive_int,
    parse_size,
)

#: Values no numeric parameter accepts.
BAD_NUMBERS = [math.nan, math.inf, -math.inf, 1e30, -1e30, True, False, np.True_, "0.5", b"0.5", [0.5],
               np.float64("nan"), complex(1, 0)]
#: Values no positive parameter accepts, on top of those.
NON_POSITIVE = [0, 0.0, -1, -0.5, np.int64(-3), np.float32(-0.25)]


# -- the parse_* family ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.float64(2.0), np.int64(3), np.uint8(4)])
def test_numbers_of_every_kind_are_accepted(value):
    assert parse_positive_float(value, "x") == pytest.approx(float(value))
    assert type(parse_positive_float(value, "x")) is float


@pytest.mark.parametrize("value", [v for v in BAD_NUMBERS + NON_POSITIVE if not (isinstance(v, float) and v == 1e30)])
def test_bad_positive_numbers_are_refused_naming_the_parameter(value):
    with pytest.raises(ParameterError, match="the-x"):
        parse_positive_float(value, "the-x")


def test_huge_values_are_refused_where_a_bound_applies():
    assert parse_positive_float(1e30, "x") == 1e30  # no bound asked for
    with pytest.raises(ParameterError, match=r"the-x: expected a number > 0 and <= 10"):
        parse_positive_float(1e30, "the-x", maximum=10)
    with pytest.raises(ResolutionError, match="mpp"):
        parse_mpp(1e30)


@pytest.mark.parametrize("value", [256, np.int64(256), 256.0, np.float32(256)])
def test_integers_may_be_numpy_or_integral_floats(value):
    assert parse_positive_int(value, "tile") == 256 and type(parse_positive_int(value, "tile")) is int


@pytest.mark.parametrize("value", [2.5, True, "256", math.nan, 2**40, 10**400, 0, -1])
def test_bad_integers_are_refused(value):
    with pytest.raises(ParameterError, match="tile"):
        parse_positive_int(value, "tile")


def test_bounds_and_the_error_class_can_be_chosen():
    assert parse_int(-3, "n", minimum=-5) == -3
    with pytest.raises(ParameterError, match=r"n: expected an integer >= 0 and <= 10, got 11"):
        parse_int(11, "n", minimum=0, maximum=10)
    with pytest.raises(ResolutionError):
        parse_number(math.nan, "mpp", error=ResolutionError)
    assert parse_fraction(np.float32(0.25), "min_tissue") == 0.25
    with pytest.raises(ParameterError, match="min_tissue"):
        parse_fraction(1.5, "min_tissue")


def test_mpp_pairs_and_errors():
    assert parse_mpp((0.25, np.float32(0.5))) == (0.25, 0.5)
    assert parse_mpp(np.array([0.25, 0.25])) == (0.25, 0.25)
    for bad in [(0.25,), (0.25, 0.25, 0.25), (0.25, math.nan), "0.25", 1e7]:
        with pytest.raises(ResolutionError, match="mpp"):
            parse_mpp(bad)


def test_sizes_and_locations():
    assert parse_size((np.int64(4), 5.0)) == (4, 5)
    for bad in [(4,), "ab", (4, True), (4, 2**30), (0, 4), None]:
        with pytest.raises(RegionError, match="size"):
            parse_size(bad)
    np.testing.assert_array_equal(parse_locations([(1.0, 2.0), (3, 4)]), [[1, 2], [3, 4]])
    for bad in [(1e20, 0), (math.nan, 0), (0.5, 0), "xy", [(1, 2, 3)], (MAX_COORDINATE + 1, 0), (True, 0),
                np.array([[True, False]])]:
        with pytest.raises(RegionError, match="locations"):
            parse_locations(bad)


def test_paths():
    assert parse_path("a.svs") == "a.svs"
    for bad in [b"a.svs", 3, None, "", "a\x00b"]:
        with pytest.raises(ParameterError, match="path"):
            parse_path(bad)


# -- every public entry point ----------------------------------------------------------------------

def _slide():
    level0 = np.full((256, 384, 3), 230, np.uint8)
    level0[64:192, 96:288] = (150, 60, 140)  # a pink block of "tissue"
    return from_array(level0, mpp=1.0, name="entry-points")


def _plan():
    from slidescope.tiling import Scale, plan_tiles

    return plan_tiles(_slide(), None, [Scale(2.0, 64)])


POSITIVE = BAD_NUMBERS + NON_POSITIVE  # a parameter that must be > 0
NON_NEGATIVE = BAD_NUMBERS + [-1, -0.5, np.int64(-3)]  # a parameter that may be 0
INTEGER = BAD_NUMBERS + [0.5, np.float32(2.25)]  # an integer that may be 0 or negative


def _entry_points():
    """``name -> (call(bad_value), bad values)``: each passes one bad value to one numeric parameter."""
    from slidescope.tiling import (HedAugmenter, MacenkoNormalizer, Scale, map_batches, overlay, plan_tiles, stitch,
                                   tissue_mask, tissue_mask_from_rgb)

    image = np.full((64, 64, 3), 200, np.uint8)
    mean = lambda images, ids: images.mean(axis=(1, 2, 3))  # noqa: E731
    return {
        "open_slide(mpp=)": (lambda v: open_slide("missing.svs", mpp=v), POSITIVE),
        "from_array(mpp=)": (lambda v: from_array(image, mpp=v), POSITIVE),
        "read_region(mpp=)": (lambda v: _slide().read_region((0, 0), (8, 8), mpp=v), POSITIVE),
        "read_region(location)": (lambda v: _slide().read_region((v, 0), (8, 8)), INTEGER + [None]),
        "read_region(size)": (lambda v: _slide().read_region((0, 0), (v, 8)), POSITIVE + [None]),
        "read_region(level=)": (lambda v: _slide().read_region((0, 0), (8, 8), level=v), INTEGER + [-1, 7]),
        "read_tiles(locations)": (lambda v: _slide().read_tiles([(0, 0), (v, 0)], (8, 8)), INTEGER),
        "thumbnail(max_size)": (lambda v: _slide().thumbnail(v), POSITIVE),
        "best_level_for_mpp": (lambda v: _slide().best_level_for_mpp(v), POSITIVE),
        "to_dask(chunk_target=)": (lambda v: _slide().to_dask(0, chunk_target=v), POSITIVE),
        "Scale(mpp)": (lambda v: Scale(v, 64), POSITIVE),
        "Scale(tile)": (lambda v: Scale(2.0, v), POSITIVE),
        "Scale(overlap)": (lambda v: Scale(2.0, 64, overlap=v), NON_NEGATIVE),
        "plan_tiles(min_tissue=)": (lambda v: plan_tiles(_slide(), None, [Scale(2.0, 64)], min_tissue=v),
                                    NON_NEGATIVE + [1.5]),
        "tissue_mask(mpp=)": (lambda v: tissue_mask(_slide(), mpp=v), POSITIVE),
        "tissue_mask_from_rgb(mpp)": (lambda v: tissue_mask_from_rgb(image, v), POSITIVE),
        "tissue_mask_from_rgb(close_um=)": (lambda v: tissue_mask_from_rgb(image, 1.0, close_um=v), NON_NEGATIVE),
        "map_batches(batch_size=)": (lambda v: map_batches(mean, _slide(), _plan(), 0, batch_size=v), POSITIVE),
        "stitch(out_mpp=)": (lambda v: stitch(_plan(), 0, np.zeros(len(_plan())), out_mpp=v), POSITIVE),
        "overlay(alpha=)": (lambda v: overlay(_slide(), np.zeros((4, 6), np.float32), alpha=v), NON_NEGATIVE + [1.5]),
        "MacenkoNormalizer(od_threshold=)": (lambda v: MacenkoNormalizer(od_threshold=v), NON_NEGATIVE),
        "HedAugmenter(sigma)": (lambda v: HedAugmenter(v), NON_NEGATIVE),
    }


ENTRY_POINTS = sorted(_entry_points())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_entry_point_refuses_bad_numbers_with_a_slide_error(entry, data):
    call, bad_values = _entry_points()[entry]
    value = data.draw(st.sampled_from(bad_values), label="value")
    with pytest.raises(SlideError) as raised:
        call(value)
    assert not isinstance(raised.value, (OverflowError, MemoryError)), raised.value
    assert str(raised.value), f"{entry}: empty message"
