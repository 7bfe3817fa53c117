"""The shared read path in bounded memory: coarse reads, batches, thumbnails, close during reads.

Memory is measured with ``tracemalloc`` (numpy reports its buffers to it), so a regression that
materialises a source-level region, a whole batch at the source level or a whole level 0 shows
up as a peak many times the bound, without needing the memory to exist.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import pytest

from slidescope.wsi import ClosedSlideError, RegionError, ResolutionError, Slide, SlideError, from_array
from slidescope.wsi.backends.base import Box, SlideBackend
from slidescope.wsi.levels import SlideInfo, openslide_downsample
from slidescope.wsi.reading import READ_BUDGET_PIXELS
from slidescope.wsi.slide import SlideSpec

MIB = 1024 * 1024
#: What a bounded read may hold beyond its output: one read budget of RGB plus slack.
BOUND = 3 * READ_BUDGET_PIXELS + 16 * MIB


def traced_peak(read: Callable[[], np.ndarray]) -> tuple[np.ndarray, int]:
    """Run ``read`` and return its result and the peak of memory allocated meanwhile, in bytes."""
    tracemalloc.start()
    try:
        result = read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


class ProceduralBackend(SlideBackend):
    """A slide of any size whose pixels are computed, not stored: colour = (x // 64, y // 64, level)."""

    name = "procedural"

    def __init__(self, width: int, height: int, levels: int = 1, thumbnail: np.ndarray | None = None):
        self.path = f"procedural-{width}x{height}"
        dims = tuple((width >> i, height >> i) for i in range(levels))
        self._thumbnail = thumbnail
        self.info = SlideInfo(
            vendor="procedural", level_dimensions=dims,
            level_downsamples=tuple(openslide_downsample(dims[0], d) for d in dims), mpp=(0.25, 0.25),
            associated_names=("thumbnail",) if thumbnail is not None else (),
        )
        self.boxes: list[tuple[int, Box]] = []

    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        for (x, y, w, h), out in zip(boxes, outs):
            self.boxes.append((level, (x, y, w, h)))
            out[..., 0] = ((np.arange(x, x + w) // 64) % 256).astype(np.uint8)[None, :]
            out[..., 1] = ((np.arange(y, y + h) // 64) % 256).astype(np.uint8)[:, None]
            out[..., 2] = level

    def associated_image(self, name: str) -> np.ndarray:
        if name != "thumbnail" or self._thumbnail is None:
            raise KeyError(name)
        return self._thumbnail

    def reopen_args(self) -> tuple:
        return (self.info.level_dimensions[0][0], self.info.level_dimensions[0][1], len(self.info.level_dimensions),
                self._thumbnail)


def procedural_slide(width: int, height: int, levels: int = 1, thumbnail: np.ndarray | None = None) -> Slide:
    backend = ProceduralBackend(width, height, levels, thumbnail)
    return Slide(SlideSpec(ProceduralBackend, backend.reopen_args()), backend)


@pytest.fixture
def flat():
    """A single-level 3000 x 2000 slide at 0.25 µm/px with random pixels."""
    level0 = np.random.default_rng(1).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    return level0, from_array(level0, mpp=0.25, name="flat")


def test_coarse_read_mostly_outside_reads_only_the_inside(flat):
    level0, slide = flat
    out, peak = traced_peak(lambda: slide.read_region((0, 0), (2048, 2048), mpp=16))  # 64x shrink
    assert peak < BOUND + out.nbytes, f"peak {peak / MIB:.0f} MiB"
    # Output pixels touching the slide: 3000 / 64 -> 47 columns, 2000 / 64 -> 32 rows; the rest is white.
    padded = np.full((32 * 64, 47 * 64, 3), 255, np.uint8)
    padded[:2000, :3000] = level0
    np.testing.assert_array_equal(out[:32, :47], cv2.resize(padded, (47, 32), interpolation=cv2.INTER_AREA))
    assert (out[32:] == 255).all() and (out[:, 47:] == 255).all()


def test_absurd_resolution_is_a_clear_error_not_a_memory_error(flat):
    _, slide = flat
    with pytest.raises(ResolutionError, match=r"flat: .*coarser than .*expected at most"):
        slide.read_region((0, 0), (2048, 2048), mpp=1e6)
    with pytest.raises(ResolutionError, match="mpp"):
        slide.read_region((0, 0), (16, 16), mpp=1e30)


def test_large_region_inside_is_read_in_blocks_within_budget():
    slide = procedural_slide(30_000, 20_000)
    out, peak = traced_peak(lambda: slide.read_region((0, 0), (1000, 1000), mpp=6.0))  # 24x: 24k x 24k source
    assert peak < BOUND + out.nbytes, f"peak {peak / MIB:.0f} MiB"
    assert max(w * h for _, (_, _, w, h) in slide._backend().boxes) <= READ_BUDGET_PIXELS
    # The procedural red channel is x // 64: its shrunk value at output column c is about (24 c + 12) / 64.
    expected = (np.arange(1000) * 24 + 12) / 64
    assert np.abs(out[0, :, 0].astype(float) - expected % 256)[:600].max() <= 1.0
    assert (out[834:, :, 1] == 255).all()  # rows below the slide (20,000 / 24 = 833.3) are white


def test_read_tiles_shrinks_in_groups_not_the_whole_batch():
    slide = procedural_slide(8192, 8192)
    rng = np.random.default_rng(2)
    locations = rng.integers(0, 7000, (64, 2))
    tiles, peak = traced_peak(lambda: slide.read_tiles(locations, (64, 64), mpp=4.0))  # 16x: 1024^2 source each
    # The whole batch at the source level would be 64 x 3 MiB = 192 MiB.
    assert peak < READ_BUDGET_PIXELS * 3 + 16 * MIB + tiles.nbytes, f"peak {peak / MIB:.0f} MiB"
    for i in (0, 17, 63):
        np.testing.assert_array_equal(tiles[i], slide.read_region(tuple(locations[i]), (64, 64), mpp=4.0))


def test_grouped_batch_equals_one_region_at_a_time(flat):
    level0, slide = flat
    locations = [(0, 0), (100, 37), (2900, 1900), (-50, 10)]
    tiles = slide.read_tiles(locations, (30, 20), mpp=0.6)
    for (x, y), tile in zip(locations, tiles):
        box = np.full((48, 72, 3), 255, np.uint8)  # 30 x 20 at 2.4x -> 72 x 48 source pixels
        x0, y0 = max(x, 0), max(y, 0)
        part = level0[y0 : y + 48, x0 : x + 72]
        box[y0 - y : y0 - y + part.shape[0], x0 - x : x0 - x + part.shape[1]] = part
        np.testing.assert_array_equal(tile, cv2.resize(box, (30, 20), interpolation=cv2.INTER_AREA))


def test_thumbnail_of_a_large_single_level_slide_is_bounded():
    slide = procedural_slide(30_000, 30_000)  # 2.7 GB of RGB at level 0
    thumb, peak = traced_peak(lambda: slide.thumbnail(512))
    assert thumb.shape == (512, 512, 3)
    assert peak < BOUND, f"peak {peak / MIB:.0f} MiB"


def test_tiny_thumbnail_of_a_huge_slide_goes_through_an_intermediate():
    slide = procedural_slide(200_000, 100_000, levels=4)  # coarsest level 25,000 x 12,500
    thumb, peak = traced_peak(lambda: slide.thumbnail(4))  # 6,250x from the coarsest level
    assert thumb.shape == (2, 4, 3) and peak < BOUND
    assert {level for level, _ in slide._backend().boxes} == {3}


def test_thumbnail_prefers_a_large_enough_embedded_thumbnail():
    embedded = np.zeros((300, 400, 3), np.uint8)
    embedded[..., 2] = 200  # blue: the procedural pixels never are
    slide = procedural_slide(4000, 3000, thumbnail=embedded)
    small = slide.thumbnail(200)
    assert small.shape == (150, 200, 3) and (small[..., 2] == 200).all()
    assert not slide._backend().boxes  # no pixel read
    large = slide.thumbnail(800)  # bigger than the embedded one: read from the slide
    assert large.shape == (600, 800, 3) and (large[..., 2] == 0).all()


def test_thumbnail_of_a_real_svs_uses_its_embedded_thumbnail(data_file):
    from slidescope.wsi import open_slide

    with open_slide(data_file("CMU-1-Small-Region.svs")) as slide:
        thumb = slide.thumbnail(256)
        reference = cv2.resize(slide.read_region((0, 0), slide.dimensions), thumb.shape[1::-1],
                               interpolation=cv2.INTER_AREA)
    assert max(thumb.shape[:2]) == 256
    assert np.abs(thumb.astype(int) - reference).mean() < 6  # the scanner's own picture of the same slide


@pytest.mark.parametrize("max_size", [0, -3, True, 2.5, "256", (10,), float("nan")])
def test_thumbnail_rejects_bad_sizes(flat, max_size):
    with pytest.raises(SlideError, match="max_size"):
        flat[1].thumbnail(max_size)


@pytest.mark.parametrize("box", [(0, 0, 10), (0, 0, 0, 5), (0.5, 0, 4, 4), "abcd", (np.nan, 0, 4, 4)])
def test_read_level_box_rejects_bad_boxes(flat, box):
    with pytest.raises(RegionError, match="box"):
        flat[1].read_level_box(0, box)


CLOSE_WHILE_READING = textwrap.dedent(
    """
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    from slidescope.wsi import ClosedSlideError, open_slide

    slide = open_slide(sys.argv[1], backend=sys.argv[2])
    width, height = slide.dimensions
    rng = np.random.default_rng(0)
    started = threading.Barrier(5)

    def reader(seed):
        started.wait()
        rng = np.random.default_rng(seed)
        outcomes = []
        for _ in range(300):
            xy = rng.integers(0, [width - 300, height - 300], (8, 2))
            try:
                tiles = slide.read_tiles(xy, (256, 256), level=0)
                assert tiles.shape == (8, 256, 256, 3)
                outcomes.append("pixels")
            except ClosedSlideError:
                outcomes.append("closed")
        return outcomes

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(reader, seed) for seed in range(4)]
        started.wait()
        slide.read_region((0, 0), (64, 64))
        slide.close()
        slide.close()  # idempotent
        results = [future.result() for future in futures]
    flat = [outcome for outcomes in results for outcome in outcomes]
    assert "closed" in flat, "close did not happen during reads"
    print("ok", flat.count("pixels"), flat.count("closed"))
    """
)


@pytest.mark.parametrize("backend", ["tiff", "openslide"])
def test_close_while_other_threads_read_never_crashes(synthetic_svs, backend):
    # In a subprocess: the regression aborts the whole process (OpenSlide asserts on outstanding tiles).
    result = subprocess.run([sys.executable, "-c", CLOSE_WHILE_READING, str(synthetic_svs), backend],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def test_closed_slide_refuses_every_read(flat):
    _, slide = flat
    slide.close()
    for read in (lambda: slide.read_region((0, 0), (4, 4)), lambda: slide.read_tiles([(0, 0)], (4, 4)),
                 lambda: slide.read_level_box(0, (0, 0, 4, 4)), lambda: slide.thumbnail(16)):
        with pytest.raises(ClosedSlideError, match="flat: the slide is closed"):
            read()


def test_an_absurd_output_size_is_refused_before_allocating(flat):
    _, slide = flat
    _, peak = traced_peak(lambda: _read_absurd(slide))
    assert peak < 16 * MIB


def _read_absurd(slide):
    with pytest.raises(RegionError, match=r"flat: the read would return 1 x 100000 x 100000 px"):
        slide.read_region((0, 0), (100_000, 100_000))
    with pytest.raises(RegionError, match=r"flat: the read would return 4096 x 1024 x 1024 px"):
        slide.read_tiles(np.zeros((4096, 2)), (1024, 1024))


@pytest.mark.parametrize("call", [
    lambda s: s.read_region((0, 0), (8, 8), mpp=float("nan")),
    lambda s: s.read_region((0, 0), (0, 8)),
    lambda s: s.read_tiles([(0.5, 0)], (8, 8)),
    lambda s: s.thumbnail(float("nan")),
    lambda s: s.to_dask(0, chunk_target=0),
    lambda s: s.best_level_for_mpp(True),
])
def test_parameter_errors_of_a_slide_name_its_file(flat, call):
    with pytest.raises(SlideError, match=r"^flat: "):
        call(flat[1])
