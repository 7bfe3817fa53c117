"""Reduced-resolution JPEG decoding: ``wsi/reduced.py`` and ``wsi/backends/_jpeg_scaled.py``.

Covers

- pixels: reads 2, 4 and 8 times coarser than a level, from tiles decoded that much smaller,
  against full decode + ``cv2.INTER_AREA`` (``exact=True``) on generated Aperio (RGB, 4:2:0),
  generated generic-tiff (YCbCr) and CMU-1-Small-Region.svs (RGB 4:4:4), and that the reduced
  path is really taken (a spy on ``TiffBackend.read_reduced_boxes``);
- the splice of JPEGTables and the Adobe marker: a spliced tile decodes at full scale exactly as
  imagecodecs decodes the abbreviated tile with the page's tables and colourspace;
- boxes partly or wholly outside the slide, and single reads against batched reads at the edge;
- when reduction must not be used (a shrink that is not whole, a box off the block grid): the
  pixels are those of ``exact_resample=True``, bit for bit;
- the block arithmetic (``choose_reduction``, ``reduced_crop``, ``best_reduced_crop``);
- ``component_sampling`` and ``soften_like_upsampling``;
- damaged tiles raising ``CorruptSlideError`` in both modes;
- the ``exact_resample`` option (validation, pickling, Dask tokens, Dask workers) and the
  ``SlideBackend.reductions`` / ``read_reduced_boxes`` defaults.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path
from unittest import mock

import cv2
import imagecodecs
import numpy as np
import pytest
import simplejpeg
import tifffile

from slidescope.wsi import CorruptSlideError, OutOfBoundsError, ParameterError, from_array, open_slide
from slidescope.wsi.backends._jpeg_scaled import (
    component_sampling,
    decode_scaled,
    soften_like_upsampling,
    spliced_stream,
)
from slidescope.wsi.backends.openslide_backend import OpenSlideBackend
from slidescope.wsi.backends.tiff_backend import TiffBackend
from slidescope.wsi.reading import read_resampled
from slidescope.wsi.reduced import ReducedCrop, best_reduced_crop, choose_reduction, reduced_crop
from slidescope.wsi.synthetic import make_slide

#: Per-channel mean and max absolute difference allowed between a reduced and a full decode.
MEAN_TOLERANCE, MAX_TOLERANCE = 1.5, 24
SLIDES = ["synthetic_svs", "synthetic_generic_tiff", "CMU-1-Small-Region.svs"]
#: Output size of the random boxes (a box of the level is ``k`` times larger).
OUT = (48, 40)


def resolve(name: str, request: pytest.FixtureRequest, data_file) -> Path:
    return request.getfixturevalue(name) if name.startswith("synthetic") else data_file(name)


@pytest.fixture(params=SLIDES)
def slide(request, data_file):
    with open_slide(resolve(request.param, request, data_file), backend="tiff") as opened:
        yield opened


def diff_stats(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and max absolute difference."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(-1, 3)
    return diff.mean(axis=0), diff.max(axis=0)


def assert_close(reduced: np.ndarray, exact: np.ndarray, what: object) -> None:
    mean, peak = diff_stats(reduced, exact)
    assert (mean <= MEAN_TOLERANCE).all() and (peak <= MAX_TOLERANCE).all(), (what, mean, peak)


@pytest.fixture
def spy():
    """``TiffBackend.read_reduced_boxes`` wrapped: calls are recorded, pixels are unchanged."""
    with mock.patch.object(TiffBackend, "read_reduced_boxes", autospec=True,
                           side_effect=TiffBackend.read_reduced_boxes) as wrapped:
        yield wrapped


def reduced_calls(spy) -> list[tuple[int, int, list]]:
    """``(level, reduction, boxes)`` of each recorded call."""
    return [(call.args[1], call.args[2], list(call.args[3])) for call in spy.call_args_list]


def both(backend, level, xy, out_size, k, path) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, np.int64).reshape(-1, 2)
    reduced = read_resampled(backend, level, xy, out_size, (k, k), path)
    exact = read_resampled(backend, level, xy, out_size, (k, k), path, exact=True)
    return reduced, exact


# -- a. pixels against a full decode -------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4, 8])
def test_reduced_reads_match_full_decode(slide, k, spy):
    backend, rng = slide._backend(), np.random.default_rng(k)
    box_w, box_h = OUT[0] * k, OUT[1] * k
    levels = [lvl for lvl in slide.levels if lvl.width >= box_w + 16 and lvl.height >= box_h + 16]
    assert levels, "no level large enough: the test would check nothing"
    for lvl in levels:
        assert k in backend.reductions(lvl.index)
        aligned = 8 * np.stack([rng.integers(0, (lvl.width - box_w) // 8 + 1, 6),
                                rng.integers(0, (lvl.height - box_h) // 8 + 1, 6)], axis=1)
        unaligned = np.stack([rng.integers(0, lvl.width - box_w, 6),
                              rng.integers(0, lvl.height - box_h, 6)], axis=1)
        unaligned[:2] |= 1  # two boxes on odd pixels (still inside): no reduction at all for those
        spy.reset_mock()
        reduced, exact = both(backend, lvl, aligned, OUT, k, slide.path)
        assert_close(reduced, exact, (lvl.index, k, "aligned"))
        # every aligned box was read from the grid of k x k blocks, in one batch
        calls = reduced_calls(spy)
        assert [(level, reduction) for level, reduction, _ in calls] == [(lvl.index, k)]
        assert len(calls[0][2]) == len(aligned)
        reduced, exact = both(backend, lvl, unaligned, OUT, k, slide.path)
        assert_close(reduced, exact, (lvl.index, k, "unaligned"))
        for i in range(2):
            np.testing.assert_array_equal(reduced[i], exact[i], err_msg=f"odd box {unaligned[i]}")


# -- b. the splice, at full scale ----------------------------------------------------------------


def stored_tiles(backend: TiffBackend, level: int, count: int):
    """The level's record and up to ``count`` of its stored tiles' bytes, spread over the level."""
    lvl = backend._levels[level]
    written = np.flatnonzero(lvl.byte_counts)
    picks = written[np.linspace(0, len(written) - 1, min(count, len(written))).astype(int)]
    return lvl, [os.pread(backend._fd, int(lvl.byte_counts[i]), int(lvl.offsets[i])) for i in picks]


@pytest.mark.parametrize("name, rgb", [("CMU-1-Small-Region.svs", True), ("synthetic_svs", True),
                                       ("synthetic_generic_tiff", False)])
def test_spliced_stream_decodes_as_the_full_decoder(name, rgb, request, data_file):
    with open_slide(resolve(name, request, data_file), backend="tiff") as opened:
        backend = opened._backend()
        for level in range(len(opened.levels)):
            lvl, tiles = stored_tiles(backend, level, 6)
            assert (lvl.jpeg_colorspace == 2) is rgb  # Aperio: RGB components; generic: YCbCr (JFIF)
            for data in tiles:
                expected = imagecodecs.jpeg8_decode(data, tables=lvl.jpeg_tables, colorspace=lvl.jpeg_colorspace,
                                                    outcolorspace=2)
                spliced = simplejpeg.decode_jpeg(spliced_stream(data, lvl.jpeg_tables, rgb), "RGB")
                np.testing.assert_array_equal(spliced, expected, err_msg=f"{name} level {level}")
                assert spliced_stream(data, lvl.jpeg_tables, rgb)[:2] == b"\xff\xd8"
                assert spliced_stream(data, lvl.jpeg_tables, rgb)[-2:] == data[-2:]


def test_cmu1_needs_the_adobe_marker(data_file):
    """CMU-1's components have ids 0, 1, 2 and no JFIF/Adobe marker: libjpeg would take them for
    YCbCr. Without the marker the colours are wrong, so the parity test above can fail."""
    with open_slide(data_file("CMU-1-Small-Region.svs"), backend="tiff") as opened:
        lvl, (data, *_) = stored_tiles(opened._backend(), 0, 1)
        frame = data.index(b"\xff\xc0")
        assert [data[frame + 10 + 3 * i] for i in range(data[frame + 9])] == [0, 1, 2]
        assert b"\xff\xee" not in data and b"\xff\xe0" not in data
        right = simplejpeg.decode_jpeg(spliced_stream(data, lvl.jpeg_tables, True), "RGB")
        wrong = simplejpeg.decode_jpeg(spliced_stream(data, lvl.jpeg_tables, False), "RGB")
        assert diff_stats(right, wrong)[0].max() > 10


def test_spliced_stream_without_tables_and_bad_starts():
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
    whole = simplejpeg.encode_jpeg(image, 90, "RGB")
    assert spliced_stream(whole, None, False) == whole
    assert spliced_stream(whole, b"", False) == whole
    # tables with or without their trailing EOI splice the same
    tables = b"\xff\xd8\xff\xfe\x00\x04hi\xff\xd9"
    assert spliced_stream(whole, tables, False) == spliced_stream(whole, tables[:-2], False)
    assert spliced_stream(whole, tables, False) == b"\xff\xd8\xff\xfe\x00\x04hi" + whole[2:]
    with pytest.raises(ValueError, match="tile does not start with a JPEG SOI"):
        spliced_stream(b"\x00\x01" + whole[2:], None, False)
    with pytest.raises(ValueError, match="JPEGTables does not start"):
        spliced_stream(whole, b"\x00" + tables[1:], False)


def test_decode_scaled_sizes_and_buffer():
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (256, 240, 3), np.uint8), (0, 0), 2)
    stream = simplejpeg.encode_jpeg(image, 95, "RGB")
    for k in (2, 4, 8):
        out = np.empty((256 // k, 240 // k, 3), np.uint8)
        decoded = decode_scaled(stream, k, (256, 240), out)
        assert decoded.shape == out.shape and np.shares_memory(decoded, out)
        expected = cv2.resize(image, (240 // k, 256 // k), interpolation=cv2.INTER_AREA)
        assert diff_stats(decoded, expected)[0].max() < 2
    with pytest.raises(ValueError, match="reduction"):
        decode_scaled(stream, 3, (256, 240))
    with pytest.raises(ValueError, match="expected a 64x64 px image at 1/4, got"):
        decode_scaled(stream, 4, (256, 256))  # the stream is 240 px wide, not 256


# -- c. edge, partial and outside boxes ------------------------------------------------------------


def outside_mask(origin: tuple[int, int], out_size: tuple[int, int], k: int, level) -> np.ndarray:
    """Output pixels whose whole footprint lies outside the level."""
    (x, y), (w, h) = origin, out_size
    cols = (x + k * np.arange(w) >= level.width) | (x + k * np.arange(1, w + 1) <= 0)
    rows = (y + k * np.arange(h) >= level.height) | (y + k * np.arange(1, h + 1) <= 0)
    return rows[:, None] | cols[None, :]


@pytest.mark.parametrize("k", [2, 4, 8])
def test_boxes_partly_outside_are_white_outside(slide, k, spy):
    backend = slide._backend()
    out = (40, 36)
    for lvl in slide.levels:
        if lvl.width < out[0] * k or lvl.height < out[1] * k:
            continue
        w, h = out[0] * k, out[1] * k
        origins = [
            (lvl.width - w // 2, lvl.height - h // 3),  # right and bottom
            (lvl.width - w // 2 + 1, 17),  # right, unaligned
            (8 * ((lvl.width - w // 3) // 8), lvl.height - h + 5),  # right on the grid, bottom
            (-16 * k, -8 * k),  # left and top, whole output pixels outside
            (-13, 24 * k + 3),  # left, unaligned
        ]
        spy.reset_mock()
        reduced, exact = both(backend, lvl, origins, out, k, slide.path)
        for origin, r, e in zip(origins, reduced, exact):
            mask = outside_mask(origin, out, k, lvl)
            assert mask.any() and not mask.all()
            assert (r[mask] == 255).all() and (e[mask] == 255).all(), (lvl.index, k, origin)
            assert_close(r, e, (lvl.index, k, origin))
        # the inside of boxes on the grid is still read reduced
        assert spy.called, (lvl.index, k)


@pytest.mark.parametrize("exact", [False, True])
def test_box_wholly_outside_raises(slide, exact):
    backend = slide._backend()
    for lvl in slide.levels:
        for origin in [(lvl.width, 0), (0, lvl.height + 64), (-2 * OUT[0] * 2, 0), (lvl.width + 8, lvl.height + 8)]:
            with pytest.raises(OutOfBoundsError, match=re.escape(slide.path)):
                read_resampled(backend, lvl, np.array([origin]), OUT, (2, 2), slide.path, exact=exact)
    with open_slide(slide.path, backend="tiff", exact_resample=exact) as opened:
        with pytest.raises(OutOfBoundsError):
            opened.read_region(opened.dimensions, (64, 64), mpp=2 * opened.mpp[0])


@pytest.mark.parametrize("exact", [False, True])
def test_edge_read_region_equals_batched_read_tiles(slide, exact):
    with open_slide(slide.path, backend="tiff", exact_resample=exact) as opened:
        width, height = opened.dimensions
        mpp, size = 2 * opened.mpp[0], (96, 80)
        locations = [
            (width - 2 * size[0], height - 2 * size[1]),  # inside, touching the corner
            (width - 2 * size[0] - 7, height - 2 * size[1] - 3),  # inside, off the grid
            (width - size[0], height - size[1]),  # half outside
            (width - 63, 41),  # right edge, odd
            (32, height - 50),  # bottom edge
            (width // 3 // 8 * 8, height // 3 // 8 * 8),  # interior
        ]
        batch = opened.read_tiles(locations * 2, size, mpp=mpp)
        for i, location in enumerate(locations * 2):
            np.testing.assert_array_equal(batch[i], opened.read_region(location, size, mpp=mpp), err_msg=str(location))


# -- d. where reduction must not be used -----------------------------------------------------------


def test_non_whole_shrink_is_exact(data_file, spy):
    """CMU-1 is 0.499 µm/px: 1.0 µm/px shrinks by 2.004, and the reduced grid cannot serve it."""
    path = data_file("CMU-1-Small-Region.svs")
    with open_slide(path, backend="tiff") as fast, open_slide(path, backend="tiff", exact_resample=True) as exact:
        locations = [(0, 0), (512, 256), (1000, 1600), (1, 3), (2100, 2800)]
        for size in [(256, 192), (224, 224), (130, 500)]:
            np.testing.assert_array_equal(fast.read_tiles(locations, size, mpp=1.0),
                                          exact.read_tiles(locations, size, mpp=1.0), err_msg=str(size))
        assert not spy.called
        # and 0.998 µm/px, a shrink of exactly 2, on the grid: reduced, so not bit-identical
        reduced, full = (s.read_tiles(locations[:3], (256, 192), mpp=0.998) for s in (fast, exact))
        assert spy.called and not np.array_equal(reduced, full)
        assert_close(reduced, full, "2x")


def test_unaligned_boxes_at_2x_are_exact(slide, spy):
    backend, lvl = slide._backend(), slide.levels[0]
    origins = [(1, 0), (0, 1), (101, 203), (lvl.width // 2 + 1, lvl.height // 2 + 1)]
    reduced, exact = both(backend, lvl, origins, OUT, 2, slide.path)
    np.testing.assert_array_equal(reduced, exact)
    assert not spy.called
    # the same boxes one pixel over, on the grid, are reduced
    reduced, exact = both(backend, lvl, [(x - x % 2, y - y % 2) for x, y in origins], OUT, 2, slide.path)
    assert spy.called
    assert_close(reduced, exact, "aligned")


# -- e. block arithmetic ---------------------------------------------------------------------------


def test_choose_reduction():
    available = (1, 2, 4, 8)
    assert choose_reduction(available, 1.0, 1.0) == 1
    assert choose_reduction(available, 2.0, 2.0) == 2
    assert choose_reduction(available, 3.0, 3.0) == 1
    assert choose_reduction(available, 4.0, 4.0) == 4
    assert choose_reduction(available, 6.0, 6.0) == 2
    assert choose_reduction(available, 8.0, 8.0) == 8
    assert choose_reduction(available, 16.0, 24.0) == 8
    assert choose_reduction(available, 12.0, 12.0) == 4
    # per axis: the largest k dividing both
    assert choose_reduction(available, 8.0, 4.0) == 4
    assert choose_reduction(available, 4.0, 2.0) == 2
    assert choose_reduction(available, 8.0, 3.0) == 1
    # float error counts as whole (the tolerance is 1e-9: 1.9999999 is not whole); a shrink
    # that is not whole gets a full decode
    assert choose_reduction(available, 2.0 - 1e-12, 2.0 + 1e-12) == 2
    assert choose_reduction(available, 0.3 / 0.1 * (8 / 3), 8.0) == 8  # 7.999999999999998
    assert choose_reduction(available, 2.004, 2.004) == 1
    assert choose_reduction(available, 2.0, 2.004) == 1
    assert choose_reduction(available, 2.5, 2.5) == 1
    # only what the backend has
    assert choose_reduction((1,), 8.0, 8.0) == 1
    assert choose_reduction((1, 2), 8.0, 8.0) == 2
    assert choose_reduction((1, 2, 4), 8.0, 8.0) == 4
    assert choose_reduction((), 8.0, 8.0) == 1


def test_reduced_crop():
    level = (1000, 750)
    assert reduced_crop((0, 0, 64, 64), 2, (32, 32), level) == ReducedCrop(2, (0, 0, 32, 32))
    assert reduced_crop((16, 8, 64, 32), 8, (4, 2), level) == ReducedCrop(8, (2, 1, 8, 4))
    assert reduced_crop((16, 8, 64, 32), 8, (8, 4), level) == ReducedCrop(8, (2, 1, 8, 4))
    # alignment of the origin, per axis
    assert reduced_crop((1, 0, 64, 64), 2, (32, 32), level) is None
    assert reduced_crop((0, 1, 64, 64), 2, (32, 32), level) is None
    assert reduced_crop((4, 0, 64, 64), 8, (8, 8), level) is None
    assert reduced_crop((4, 4, 64, 64), 4, (8, 8), level) == ReducedCrop(4, (1, 1, 16, 16))
    # each output pixel made of whole blocks, per axis
    assert reduced_crop((0, 0, 64, 48), 2, (16, 16), level) is None  # 3 px per output row
    assert reduced_crop((0, 0, 48, 64), 2, (16, 16), level) is None
    assert reduced_crop((0, 0, 64, 96), 2, (16, 16), level) == ReducedCrop(2, (0, 0, 32, 48))
    assert reduced_crop((0, 0, 64, 64), 8, (16, 16), level) is None  # 4 px per output pixel, 8 px blocks
    # outside the level, and inside its last partial block
    assert reduced_crop((-8, 0, 64, 64), 8, (8, 8), level) is None
    assert reduced_crop((992, 0, 8, 8), 8, (1, 1), level) == ReducedCrop(8, (124, 0, 1, 1))
    assert reduced_crop((992, 0, 16, 16), 8, (1, 1), level) is None  # past the level
    assert reduced_crop((0, 744, 8, 8), 8, (1, 1), level) is None  # 750 = 93 blocks of 8 + 6 px
    assert reduced_crop((0, 744, 4, 4), 4, (1, 1), (1000, 748)) == ReducedCrop(4, (0, 186, 1, 1))
    assert reduced_crop((0, 744, 8, 8), 8, (1, 1), (1000, 752)) == ReducedCrop(8, (0, 93, 1, 1))


def test_best_reduced_crop_takes_the_largest_allowed():
    level, ks = (1000, 750), (1, 2, 4, 8)
    assert best_reduced_crop((0, 0, 64, 64), ks, (8, 8), level) == ReducedCrop(8, (0, 0, 8, 8))
    assert best_reduced_crop((4, 0, 64, 64), ks, (8, 8), level) == ReducedCrop(4, (1, 0, 16, 16))
    assert best_reduced_crop((2, 6, 64, 64), ks, (8, 8), level) == ReducedCrop(2, (1, 3, 32, 32))
    assert best_reduced_crop((1, 0, 64, 64), ks, (8, 8), level) is None
    assert best_reduced_crop((0, 0, 64, 64), ks, (16, 16), level) == ReducedCrop(4, (0, 0, 16, 16))
    assert best_reduced_crop((0, 0, 64, 64), (1, 2), (8, 8), level) == ReducedCrop(2, (0, 0, 32, 32))
    assert best_reduced_crop((0, 0, 64, 64), (8, 2, 1, 4), (8, 8), level).reduction == 8  # any order
    assert best_reduced_crop((0, 0, 64, 64), (1,), (8, 8), level) is None  # 1 is not a reduction
    # the last partial block of the level: 750 = 93 * 8 + 6 = 187 * 4 + 2 = 375 * 2
    assert best_reduced_crop((0, 736, 8, 8), ks, (1, 1), level) == ReducedCrop(8, (0, 92, 1, 1))
    assert best_reduced_crop((0, 744, 8, 8), ks, (1, 1), level) is None
    assert best_reduced_crop((0, 744, 4, 4), ks, (1, 1), level) == ReducedCrop(4, (0, 186, 1, 1))
    assert best_reduced_crop((0, 748, 4, 4), ks, (2, 2), level) is None
    assert best_reduced_crop((0, 748, 2, 2), ks, (1, 1), level) == ReducedCrop(2, (0, 374, 1, 1))


# -- f. component_sampling and soften_like_upsampling ----------------------------------------------


def test_component_sampling_of_stored_tiles(data_file, synthetic_svs):
    with open_slide(data_file("CMU-1-Small-Region.svs"), backend="tiff") as cmu:
        for data in stored_tiles(cmu._backend(), 0, 5)[1]:
            assert component_sampling(data) == ((1, 1), (1, 1), (1, 1))
    with open_slide(synthetic_svs, backend="tiff") as generated:
        for level in range(len(generated.levels)):
            for data in stored_tiles(generated._backend(), level, 5)[1]:
                assert component_sampling(data) == ((2, 2), (1, 1), (1, 1))
                # cut anywhere before the frame header's components end: unreadable
                frame = data.index(b"\xff\xc0")
                for cut in (0, 1, 2, 3, frame, frame + 4, frame + 10, frame + 17):
                    assert component_sampling(data[:cut]) is None, cut
                assert component_sampling(data[: frame + 19]) == ((2, 2), (1, 1), (1, 1))


def sof(components: list[tuple[int, int, int]]) -> bytes:
    """A baseline frame header for 16 x 16 px with components ``(id, h, v)``."""
    body = bytes([8, 0, 16, 0, 16, len(components)])
    body += b"".join(bytes([cid, h << 4 | v, 0]) for cid, h, v in components)
    return b"\xff\xc0" + (len(body) + 2).to_bytes(2, "big") + body


def test_component_sampling_of_crafted_streams():
    frame = sof([(1, 2, 1), (2, 1, 1), (3, 1, 1)])
    comment = b"\xff\xfe\x00\x05abc"
    assert component_sampling(b"\xff\xd8" + comment + frame) == ((2, 1), (1, 1), (1, 1))
    assert component_sampling(frame) == ((2, 1), (1, 1), (1, 1))  # no SOI
    # fill bytes before a marker, and standalone markers (TEM, RST0) without a length
    assert component_sampling(b"\xff\xd8\xff\xff\xff" + comment + b"\xff\x01\xff\xd0" + frame) == \
        ((2, 1), (1, 1), (1, 1))
    # progressive (SOF2) and a one-component frame
    assert component_sampling(b"\xff\xd8\xff\xc2" + sof([(1, 1, 2)])[2:]) == ((1, 2),)
    # a scan before any frame header, garbage between markers, nothing at all
    assert component_sampling(b"\xff\xd8\xff\xda\x00\x08" + bytes(6) + frame) is None
    assert component_sampling(b"\xff\xd8" + comment + b"\x00" + frame) is None
    assert component_sampling(b"") is None
    assert component_sampling(b"\xff\xd8") is None
    assert component_sampling(b"\xff\xd8\xff\xd9") is None
    assert component_sampling(b"\xff\xd8" + frame[:-1]) is None  # a component cut short
    assert component_sampling(b"\xff\xd8\xff\xc0\x00\x08\x08\x00\x10\x00\x10\x00") is None  # no components
    rng = np.random.default_rng(5)
    for _ in range(200):
        junk = rng.integers(0, 256, int(rng.integers(0, 64)), np.uint8).tobytes()
        assert component_sampling(b"\x00" + junk) is None
        sampling = component_sampling(b"\xff\xd8" + junk)  # must not raise, whatever the bytes
        assert sampling is None or isinstance(sampling, tuple)


HALVED = ((False, False), (True, True), (True, True))


def test_soften_changes_only_flagged_channels():
    image = np.random.default_rng(2).integers(0, 256, (40, 56, 3), np.uint8)
    patterns = [HALVED, ((True, True), (False, False), (False, False)), ((False, False), (True, False), (False, True))]
    for halved in patterns:
        softened = image.copy()
        soften_like_upsampling(softened, halved, 2)
        for channel, flags in enumerate(halved):
            assert np.array_equal(softened[..., channel], image[..., channel]) is (not any(flags)), (halved, channel)
    softened = image.copy()
    soften_like_upsampling(softened, ((False, False),) * 3, 2)
    np.testing.assert_array_equal(softened, image)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_soften_keeps_a_constant_image(k):
    image = np.full((17, 23, 3), (12, 200, 97), np.uint8)
    soften_like_upsampling(image, HALVED, k)
    assert (image == (12, 200, 97)).all()


def test_soften_kernel_on_an_impulse():
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 128
    soften_like_upsampling(image, HALVED, 2)  # [1/8, 3/4, 1/8] along both axes
    expected = np.zeros((9, 9), np.uint8)
    expected[3:6, 3:6] = np.outer([16, 96, 16], [1 / 8, 3 / 4, 1 / 8])
    np.testing.assert_array_equal(image[..., 1], expected)
    np.testing.assert_array_equal(image[..., 2], expected)
    assert image[..., 0].sum() == 128 and image[4, 4, 0] == 128
    # halved along x only: the kernel runs along rows; k=4: [1/16, 7/8, 1/16]
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 128
    soften_like_upsampling(image, ((False, False), (True, False), (False, True)), 4)
    np.testing.assert_array_equal(image[4, 3:6, 1], [8, 112, 8])
    assert image[..., 1].sum() == 128 and image[4, :, 1].sum() == 128
    np.testing.assert_array_equal(image[3:6, 4, 2], [8, 112, 8])
    assert image[..., 2].sum() == 128 and image[:, 4, 2].sum() == 128


# -- g. damaged tiles ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_svs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reduced") / "small.svs"
    make_slide(path, 1024, 768, seed=5)
    return path


def damaged_copy(source: Path, target: Path, row: int, col: int, keep: int = 0) -> Path:
    """A copy whose level-0 tile (row, col) is overwritten with random bytes after its first ``keep``."""
    shutil.copyfile(source, target)
    with tifffile.TiffFile(target) as tif:
        page = tif.pages[0]
        index = row * (page.imagewidth // page.tilewidth) + col
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    data = bytearray(target.read_bytes())
    garbage = np.random.default_rng(0).integers(0, 256, count - keep, np.uint8).tobytes()
    data[offset + keep : offset + count] = garbage
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("exact", [False, True])
def test_damaged_tile_raises_naming_it(small_svs, tmp_path, exact):
    path = damaged_copy(small_svs, tmp_path / "damaged.svs", row=1, col=2)
    with open_slide(path, backend="tiff", exact_resample=exact) as opened:
        mpp = 2 * opened.mpp[0]
        opened.read_region((0, 0), (128, 128), mpp=mpp)  # tile (0, 0) is fine
        for location in [(512, 256), (600, 300), (384, 128)]:  # on the grid, off it, touching the corner
            with pytest.raises(CorruptSlideError, match=rf"{re.escape(str(path))}: .*level 0, row 1, col 2"):
                opened.read_region(location, (128, 128), mpp=mpp)
        with pytest.raises(CorruptSlideError, match=rf"{re.escape(str(path))}: .*level 0, row 1, col 2"):
            opened.read_tiles([(0, 0), (256, 0), (512, 256)], (128, 128), mpp=mpp)


@pytest.fixture
def damaged_scan(small_svs, tmp_path) -> Path:
    """A copy whose level-0 tile (1, 2) keeps its headers, with its entropy-coded data garbage."""
    with tifffile.TiffFile(small_svs) as tif:
        page = tif.pages[0]
        offset = page.dataoffsets[1 * (page.imagewidth // page.tilewidth) + 2]
    head = small_svs.read_bytes()[offset : offset + 4096]
    keep = head.index(b"\xff\xda") + 14  # SOS of three components: 12 bytes after the marker
    return damaged_copy(small_svs, tmp_path / "damaged.svs", row=1, col=2, keep=keep)


def test_damaged_scan_raises_in_exact_mode(damaged_scan):
    with open_slide(damaged_scan, backend="tiff", exact_resample=True) as exact:
        with pytest.raises(CorruptSlideError, match=rf"{re.escape(str(damaged_scan))}: .*level 0, row 1, col 2"):
            exact.read_region((512, 256), (128, 128), mpp=2 * exact.mpp[0])


def test_damaged_scan_raises_in_reduced_mode_too(damaged_scan):
    """The full decode refuses this tile (above), so must the reduced one."""
    with open_slide(damaged_scan, backend="tiff") as fast:
        with pytest.raises(CorruptSlideError, match=rf"{re.escape(str(damaged_scan))}: .*level 0, row 1, col 2"):
            fast.read_region((512, 256), (128, 128), mpp=2 * fast.mpp[0])


def test_a_scan_cut_short_reads_as_the_full_decoder_reads_it(small_svs, tmp_path):
    """Damage libjpeg decodes past (the scan ends early: the rest of the tile is grey) is not refused by
    either path, and the reduced path gives the full decoder's pixels, area-averaged."""
    path = tmp_path / "cut.svs"
    shutil.copyfile(small_svs, path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        index = 1 * (page.imagewidth // page.tilewidth) + 2
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    data = bytearray(path.read_bytes())
    tile = bytes(data[offset : offset + count])
    cut = tile.index(b"\xff\xda") + 14 + 400
    data[offset : offset + count] = (tile[:cut] + b"\xff\xd9").ljust(count, b"\x00")
    path.write_bytes(bytes(data))
    with open_slide(path, backend="tiff") as fast, open_slide(path, backend="tiff", exact_resample=True) as exact:
        mpp = 2 * fast.mpp[0]
        reduced, full = fast.read_region((512, 256), (128, 128), mpp=mpp), exact.read_region((512, 256), (128, 128), mpp=mpp)
        np.testing.assert_array_equal(reduced, full)  # the damaged tile is all the box holds
        assert (full[-8:] == full[-1, -1]).all()  # its lost part is flat (libjpeg's grey)


# -- h. the option ---------------------------------------------------------------------------------


def test_exact_resample_option(small_svs):
    for bad in ["yes", 1, 0, None, 1.0]:
        with pytest.raises(ParameterError, match="exact_resample"):
            open_slide(small_svs, exact_resample=bad)
    with open_slide(small_svs) as default, open_slide(small_svs, exact_resample=True) as exact, \
            open_slide(small_svs, exact_resample=np.bool_(False)) as fast:
        assert default.exact_resample is False and exact.exact_resample is True and fast.exact_resample is False
        for opened in (default, exact, fast):
            clone = pickle.loads(pickle.dumps(opened))
            assert clone.exact_resample is opened.exact_resample
            assert clone.lazy_copy().exact_resample is opened.exact_resample
        tokenize = pytest.importorskip("dask.base").tokenize
        assert tokenize(default) == tokenize(fast)
        assert tokenize(default) != tokenize(exact)
        # and the option changes the pixels of a 2x read (and only of a shrinking one)
        mpp = 2 * default.mpp[0]
        assert not np.array_equal(default.read_region((0, 0), (256, 256), mpp=mpp),
                                  exact.read_region((0, 0), (256, 256), mpp=mpp))
        np.testing.assert_array_equal(default.read_region((0, 0), (256, 256)), exact.read_region((0, 0), (256, 256)))


# -- i. the base class's defaults ------------------------------------------------------------------


def test_backends_without_reductions(small_svs):
    image = np.random.default_rng(3).integers(0, 256, (64, 80, 3), np.uint8)
    array_slide = from_array([image, image[::2, ::2].copy()], mpp=0.5, name="in-memory pyramid")
    backends = [array_slide._backend(), OpenSlideBackend(str(small_svs))]
    try:
        for backend in backends:
            for level in range(len(backend.info.level_dimensions)):
                assert backend.reductions(level) == (1,)
                out, full = np.empty((8, 8, 3), np.uint8), np.empty((8, 8, 3), np.uint8)
                backend.read_reduced_boxes(level, 1, [(0, 0, 8, 8)], [out])
                backend.read_boxes(level, [(0, 0, 8, 8)], [full])
                np.testing.assert_array_equal(out, full)
                for k in (2, 4, 8):
                    with pytest.raises(ValueError, match=rf"{re.escape(backend.path)}: .*level {level} .*1/{k}"):
                        backend.read_reduced_boxes(level, k, [(0, 0, 4, 4)], [np.empty((4, 4, 3), np.uint8)])
    finally:
        backends[1].close()
    # and a 2x read through the Slide API of such a backend is a full read
    single = from_array(image, mpp=0.5)
    np.testing.assert_array_equal(single.read_region((0, 0), (40, 32), mpp=1.0),
                                  cv2.resize(image, (40, 32), interpolation=cv2.INTER_AREA))


def test_tiff_backend_refuses_reductions_a_level_lacks(small_svs, data_file):
    backend = TiffBackend(str(small_svs))
    try:
        assert backend.reductions(0) == (1, 2, 4, 8)
        for k in (3, 16, 0):
            with pytest.raises(ValueError, match=rf"{re.escape(str(small_svs))}: level 0 does not decode at 1/{k}"):
                backend.read_reduced_boxes(0, k, [(0, 0, 8, 8)], [np.empty((8, 8, 3), np.uint8)])
    finally:
        backend.close()
    lossless = TiffBackend(str(data_file("boxes.tiff")))  # Deflate tiles: full decode only
    try:
        assert all(lossless.reductions(level) == (1,) for level in range(len(lossless.info.level_dimensions)))
        with pytest.raises(ValueError, match="boxes.tiff: level 0 does not decode at 1/2"):
            lossless.read_reduced_boxes(0, 2, [(0, 0, 8, 8)], [np.empty((4, 4, 3), np.uint8)])
    finally:
        lossless.close()


# -- j. Dask workers -------------------------------------------------------------------------------


def test_reduced_reads_in_a_dask_worker(small_svs, dask_client):
    locations = [(0, 0), (256, 128), (1024 - 100, 768 - 60), (3, 5)]
    size = (128, 96)
    with open_slide(small_svs) as fast, open_slide(small_svs, exact_resample=True) as exact:
        mpp = 2 * fast.mpp[0]
        futures = [dask_client.submit(lambda s: s.read_tiles(locations, size, mpp=mpp), s, pure=False)
                   for s in (fast, exact)]
        remote_fast, remote_exact = (future.result(timeout=60) for future in futures)
        np.testing.assert_array_equal(remote_fast, fast.read_tiles(locations, size, mpp=mpp))
        np.testing.assert_array_equal(remote_exact, exact.read_tiles(locations, size, mpp=mpp))
        assert not np.array_equal(remote_fast, remote_exact)  # the option travelled with the slide
