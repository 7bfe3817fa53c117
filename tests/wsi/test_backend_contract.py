"""The contract every slide backend fulfils, as one test class each backend subclasses.

:class:`BackendContract` checks what the shared read path in ``Slide`` relies on: metadata of the
right shape, ``read_boxes`` filling exactly its boxes (contiguous or not), ``reductions`` and
``read_reduced_boxes`` agreeing with an area average of ``read_boxes``, white outside the slide,
``read_tiles`` equal to a loop of ``read_region`` (at a level's resolution and shrinking),
``to_dask`` equal to ``read_region``, pickling and lazy reopening (in a Dask worker too), closed
slides refusing use, and missing associated images. A new backend gets a
``Test<Name>Backend(BackendContract)`` subclass here with its ``CASES``; the tiff backend's
slide-level tests run twice, with ``exact_resample`` False (reduced JPEG decoding) and True.

Pixel parity with OpenSlide is a separate class: ``test_openslide_parity.py``.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from slidescope.wsi import AssociatedImageNotFoundError, ClosedSlideError, Slide, from_array, open_slide
from slidescope.wsi.backends.array_backend import ArrayBackend
from slidescope.wsi.backends.base import SlideBackend
from slidescope.wsi.open import BACKENDS

#: Shared-data files each file backend reads (tests skip when the folder is absent).
TIFF_FILES = ["CMU-1-Small-Region.svs", "small.svs", "boxes.tiff", "small_HE_levels.tiff"]
OPENSLIDE_FILES = ["CMU-1-Small-Region.svs", "small.svs", "boxes.tiff", "test3-DAPI-2-(387).ndpi",
                   "sm_image.dcm", "boxes_0.dcm", "boxes_1.dcm"]
#: Generated files (fixtures below and in conftest.py).
GENERATED_FILES = ["synthetic_svs", "synthetic_generic_tiff", "lossless_tiff"]
LOSSLESS_DIMENSIONS = [(640, 480), (320, 240), (160, 120)]
#: A canvas value no backend writes by chance over a whole margin.
SENTINEL = 7
#: Per-channel mean and max absolute difference allowed between a reduced-resolution JPEG decode
#: and a full decode + ``cv2.INTER_AREA`` (see ``wsi/reduced.py``).
REDUCED_MEAN_TOLERANCE, REDUCED_MAX_TOLERANCE = 1.5, 24


def textured(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 1.0)


@pytest.fixture(scope="module")
def lossless_levels() -> list[np.ndarray]:
    """An independently textured image per level, so a level mix-up cannot pass."""
    return [textured(w, h, seed) for seed, (w, h) in enumerate(LOSSLESS_DIMENSIONS)]


@pytest.fixture(scope="module")
def lossless_tiff(tmp_path_factory, lossless_levels) -> Path:
    """A Deflate tiled generic pyramid with whole downsamples: every backend reads it exactly."""
    path = tmp_path_factory.mktemp("contract") / "lossless.tiff"
    with tifffile.TiffWriter(path) as tif:
        for index, level in enumerate(lossless_levels):
            scale = 2.0 ** -index
            tif.write(level, tile=(64, 64), photometric="rgb", compression="zlib", metadata=None,
                      subfiletype=1 if index else 0, resolution=(20000.0 * scale, 20000.0 * scale),
                      resolutionunit="CENTIMETER")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each subclass's ``CASES`` parametrise its ``case_name``."""
    if "case_name" in metafunc.fixturenames and metafunc.cls is not None:
        metafunc.parametrize("case_name", metafunc.cls.CASES, scope="class")


def assert_within_reduced_tolerance(ours: np.ndarray, reference: np.ndarray, what: object) -> None:
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16)).reshape(-1, 3)
    mean, peak = diff.mean(axis=0), diff.max(axis=0)
    assert (mean <= REDUCED_MEAN_TOLERANCE).all() and (peak <= REDUCED_MAX_TOLERANCE).all(), (what, mean, peak)


def level_boxes(width: int, height: int, tile: tuple[int, int] | None) -> list[tuple[int, int, int, int]]:
    """In-level boxes: the whole level, one stored tile, one across tile borders, the far corner pixel."""
    tw, th = tile or (64, 64)
    boxes = [(0, 0, width, height), (width - 1, height - 1, 1, 1)]
    if width > tw and height > th:
        boxes.append((0, 0, tw, th))
    across_w, across_h = min(width, tw + 11), min(height, th + 7)
    boxes.append((width - across_w, height - across_h, across_w, across_h))
    return boxes


class BackendContract:
    """What every backend must do. Subclasses set ``CASES`` and implement the two openers.

    ``stored(case_name, level)`` gives the exact stored pixels of a level when the case knows
    them (generated lossless data), else ``None``: boxes are then checked for consistency
    between output layouts and with ``read_region`` only.
    """

    CASES: list[str] = []

    # -- what a subclass provides ------------------------------------------------------------

    def open_slide(self, case: object) -> Slide:
        raise NotImplementedError

    def open_backend(self, case: object) -> SlideBackend:
        raise NotImplementedError

    def stored(self, case_name: str, level: int, request: pytest.FixtureRequest) -> np.ndarray | None:
        return None

    # -- fixtures ----------------------------------------------------------------------------

    @staticmethod
    def resolve(case_name: str, request: pytest.FixtureRequest, data_file):
        """What the openers take: a fixture's value for generated cases, else a shared-data file."""
        if case_name in GENERATED_FILES or case_name.startswith("array"):
            return request.getfixturevalue(case_name)
        return data_file(case_name)

    @pytest.fixture
    def case(self, case_name: str, request: pytest.FixtureRequest, data_file):
        return self.resolve(case_name, request, data_file)

    @pytest.fixture
    def slide(self, case):
        with self.open_slide(case) as opened:
            yield opened

    @pytest.fixture
    def backend(self, case):
        opened = self.open_backend(case)
        yield opened
        opened.close()

    # -- metadata ----------------------------------------------------------------------------

    def test_metadata_has_the_contracted_shape(self, backend):
        info = backend.info
        assert isinstance(backend.name, str) and isinstance(backend.path, str)
        assert isinstance(info.vendor, str) and info.vendor
        count = len(info.level_dimensions)
        assert count >= 1
        assert len(info.level_downsamples) == len(info.tile_sizes) == count
        for dims, downsample, tile in zip(info.level_dimensions, info.level_downsamples, info.tile_sizes):
            assert len(dims) == 2 and all(type(v) is int and v > 0 for v in dims)
            assert isinstance(downsample, float) and downsample >= 1.0
            assert tile is None or (len(tile) == 2 and all(type(v) is int and v > 0 for v in tile))
        assert info.level_downsamples[0] == 1.0
        assert list(info.level_downsamples) == sorted(info.level_downsamples)
        widths = [dims[0] for dims in info.level_dimensions]
        assert widths == sorted(widths, reverse=True)
        assert info.mpp is None or (len(info.mpp) == 2 and all(isinstance(v, float) and v > 0 for v in info.mpp))
        assert isinstance(info.properties, Mapping)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.properties.items())
        assert all(isinstance(name, str) for name in info.associated_names)
        assert isinstance(backend.token(), str) and backend.token()

    # -- read_boxes --------------------------------------------------------------------------

    def test_read_boxes_fills_exactly_each_box(self, backend, case_name, request):
        """Each out is a view into a bigger canvas: the box is filled, the margin untouched, and
        the pixels do not depend on the layout (contiguous, row-strided, column-strided)."""
        margin = 3
        for level, (width, height) in enumerate(backend.info.level_dimensions):
            boxes = level_boxes(width, height, backend.info.tile_sizes[level])
            contiguous = [np.full((h, w, 3), SENTINEL, np.uint8) for _, _, w, h in boxes]
            backend.read_boxes(level, boxes, contiguous)
            canvases = [np.full((h + 2 * margin, 2 * w + 2 * margin, 3), SENTINEL, np.uint8) for _, _, w, h in boxes]
            row_strided = [c[margin:margin + h, margin:margin + w] for c, (_, _, w, h) in zip(canvases, boxes)]
            backend.read_boxes(level, boxes, row_strided)
            column_canvases = [np.full((h, 2 * w, 3), SENTINEL, np.uint8) for _, _, w, h in boxes]
            column_strided = [c[:, ::2] for c in column_canvases]
            backend.read_boxes(level, boxes, column_strided)
            stored = self.stored(case_name, level, request)
            for i, (x, y, w, h) in enumerate(boxes):
                if stored is not None:
                    np.testing.assert_array_equal(contiguous[i], stored[y:y + h, x:x + w], err_msg=f"level {level}")
                np.testing.assert_array_equal(row_strided[i], contiguous[i])
                np.testing.assert_array_equal(column_strided[i], contiguous[i])
                margins = canvases[i].copy()
                margins[margin:margin + h, margin:margin + w] = SENTINEL
                assert (margins == SENTINEL).all(), f"level {level} box {boxes[i]}: wrote outside its box"
                assert (column_canvases[i][:, 1::2] == SENTINEL).all(), f"level {level}: wrote between columns"

    def test_reductions_are_honoured(self, backend):
        """``reductions(level)`` starts with 1; each ``k`` in it reads the level's grid of ``k`` x ``k``
        blocks as an area average of the full pixels would (within a JPEG decoder's tolerance);
        a factor not in it is refused."""
        margin = 2
        for level, (width, height) in enumerate(backend.info.level_dimensions):
            reductions = backend.reductions(level)
            assert reductions[0] == 1 and all(type(k) is int and k > 1 for k in reductions[1:])
            assert list(reductions) == sorted(set(reductions))
            box, out, full = (0, 0, min(width, 50), min(height, 40)), [], []
            for canvas in (out, full):
                canvas.append(np.full((box[3], box[2], 3), SENTINEL, np.uint8))
            backend.read_reduced_boxes(level, 1, [box], out)
            backend.read_boxes(level, [box], full)
            np.testing.assert_array_equal(out[0], full[0], err_msg=f"level {level}: reduction 1")
            with pytest.raises(ValueError, match="1/3"):
                backend.read_reduced_boxes(level, 3, [(0, 0, 1, 1)], [np.empty((1, 1, 3), np.uint8)])
            tile_w, tile_h = backend.info.tile_sizes[level] or (64, 64)
            for k in reductions[1:]:
                grid_w, grid_h = width // k, height // k  # whole blocks only
                if not grid_w or not grid_h:
                    continue
                w, h = min(grid_w, 48), min(grid_h, 40)
                across = (max(0, min(grid_w - w, tile_w // k - w // 2)), max(0, min(grid_h - h, tile_h // k - h // 2)))
                # the first and the last whole blocks, and a box across stored tiles' borders
                boxes = sorted({(0, 0, w, h), (grid_w - w, grid_h - h, w, h), (*across, w, h)})
                canvases = [np.full((bh + 2 * margin, bw + 2 * margin, 3), SENTINEL, np.uint8)
                            for _, _, bw, bh in boxes]
                views = [c[margin:-margin, margin:-margin] for c in canvases]
                backend.read_reduced_boxes(level, k, boxes, views)
                fulls = [np.empty((k * bh, k * bw, 3), np.uint8) for _, _, bw, bh in boxes]
                backend.read_boxes(level, [(k * x, k * y, k * bw, k * bh) for x, y, bw, bh in boxes], fulls)
                expected = [cv2.resize(whole, view.shape[1::-1], interpolation=cv2.INTER_AREA)
                            for view, whole in zip(views, fulls)]
                # the mean over the boxes together: one small box on dense detail can reach 2.5 (YCbCr 4:2:0)
                assert_within_reduced_tolerance(np.concatenate([v.reshape(-1, 3) for v in views]),
                                                np.concatenate([e.reshape(-1, 3) for e in expected]), (level, k, boxes))
                for box, canvas in zip(boxes, canvases):
                    canvas[margin:-margin, margin:-margin] = SENTINEL
                    assert (canvas == SENTINEL).all(), f"level {level} 1/{k} box {box}: wrote outside its box"

    def test_read_boxes_agrees_with_read_region(self, backend, slide):
        for level, lvl in enumerate(slide.levels):
            x, y = lvl.width // 3, lvl.height // 4
            w, h = min(lvl.width - x, 97), min(lvl.height - y, 61)
            out = np.empty((h, w, 3), np.uint8)
            backend.read_boxes(level, [(x, y, w, h)], [out])
            # ceil: the smallest level-0 pixel that falls in level pixel (x, y), whatever the downsample
            l0_xy = (math.ceil(x * lvl.downsample), math.ceil(y * lvl.downsample))
            np.testing.assert_array_equal(slide.read_region(l0_xy, (w, h), level=level), out)

    # -- the Slide read path over this backend -------------------------------------------------

    def test_edge_region_is_white_outside(self, slide):
        width, height = slide.dimensions
        location, size = (width - 10, height - 12), (40, 30)
        ours = slide.read_region(location, size)
        assert (ours[12:, :] == 255).all() and (ours[:, 10:] == 255).all()
        np.testing.assert_array_equal(ours[:12, :10], slide.read_region(location, (10, 12)))

    def test_read_tiles_equals_read_region_loop(self, slide, sample_regions):
        rng = np.random.default_rng(2)
        for level in range(len(slide.levels)):
            locations, size = sample_regions(slide, level, 5, rng)
            batch = slide.read_tiles(locations, size, level=level)
            looped = np.stack([slide.read_region(loc, size, level=level) for loc in locations])
            np.testing.assert_array_equal(batch, looped)

    def test_shrinking_read_tiles_equals_read_region_loop(self, slide, sample_regions):
        """Reads coarser than a level (tiling's reads), at the slide's edge too: batch == loop."""
        rng = np.random.default_rng(3)
        width, height = slide.dimensions
        for factor in (2, 8):
            locations, size = sample_regions(slide, 0, 4, rng)
            size = (max(1, size[0] // factor), max(1, size[1] // factor))
            locations += [(width - size[0] * factor // 2, height - size[1] * factor // 2), (1, 3)]
            mpp = factor * slide.mpp[0]
            batch = slide.read_tiles(locations, size, mpp=mpp)
            looped = np.stack([slide.read_region(loc, size, mpp=mpp) for loc in locations])
            np.testing.assert_array_equal(batch, looped, err_msg=f"{factor}x")

    def test_shrinking_edge_region_is_white_outside(self, slide):
        """A 2x read over the far corner: white where the output pixels lie wholly outside the slide,
        the inside as an in-bounds read gives it (bit for bit when the backend decodes in full)."""
        width, height = slide.dimensions
        mpp = 2 * slide.mpp[0]
        level = slide.best_level_for_mpp(mpp)
        location, size = (width - 10, height - 12), (20, 15)
        ours = slide.read_region(location, size, mpp=mpp)
        lvl_x, lvl_y = (math.floor((v + 0.5) / level.downsample) for v in location)
        scale = mpp / level.mpp[0]
        cols = sum(lvl_x + round(j * scale) < level.width for j in range(size[0]))
        rows = sum(lvl_y + round(i * scale) < level.height for i in range(size[1]))
        assert 0 < cols < size[0] and 0 < rows < size[1]
        assert (ours[rows:, :] == 255).all() and (ours[:, cols:] == 255).all()
        inside = slide.read_region(location, (cols, rows), mpp=mpp)
        if slide.exact_resample or slide._backend().reductions(level.index) == (1,):
            np.testing.assert_array_equal(ours[:rows, :cols], inside)
        else:
            assert_within_reduced_tolerance(ours[:rows, :cols], inside, location)

    def test_to_dask_equals_read_region(self, slide):
        level = len(slide.levels) - 1
        lvl = slide.levels[level]
        array = slide.to_dask(level)
        assert array.shape == (lvl.height, lvl.width, 3) and array.dtype == np.uint8
        if lvl.tile_size:
            assert all(c % lvl.tile_size[0] == 0 for c in array.chunks[1][:-1])
        np.testing.assert_array_equal(array.compute(scheduler="threads"),
                                      slide.read_region((0, 0), lvl.dimensions, level=level))

    # -- processes -----------------------------------------------------------------------------

    def test_pickle_round_trip_reopens_lazily(self, slide, case_name):
        clone = pickle.loads(pickle.dumps(slide))
        if not case_name.startswith("array"):  # an array slide carries its pixels by design
            assert len(pickle.dumps(slide)) < 2000  # path and options, never pixels or handles
        assert clone.path == slide.path and clone.backend_name == slide.backend_name
        size = (min(64, slide.dimensions[0]), min(64, slide.dimensions[1]))
        np.testing.assert_array_equal(clone.read_region((0, 0), size), slide.read_region((0, 0), size))

    def test_read_inside_dask_worker_process(self, request, data_file, dask_client):
        """One case per backend (the first) is enough to cross a process boundary."""
        slide = self.open_slide(self.resolve(self.CASES[0], request, data_file))
        request.addfinalizer(slide.close)
        locations = [(0, 0), (slide.dimensions[0] // 2, slide.dimensions[1] // 2)]
        size = (min(128, slide.dimensions[0]), min(96, slide.dimensions[1]))
        mpp = 2 * slide.mpp[0]  # a read that shrinks, as tiling's are
        expected = slide.read_tiles(locations, size, mpp=mpp)
        future = dask_client.submit(lambda s: s.read_tiles(locations, size, mpp=mpp), slide)
        np.testing.assert_array_equal(future.result(timeout=60), expected)
        level = slide.levels[-1]
        remote = slide.to_dask(level.index).compute(scheduler=dask_client)
        np.testing.assert_array_equal(remote, slide.read_region((0, 0), level.dimensions, level=level.index))

    # -- lifecycle and associated images ---------------------------------------------------------

    def test_closed_slide_refuses_use(self, case):
        slide = self.open_slide(case)
        slide.read_region((0, 0), (4, 4))
        slide.close()
        slide.close()  # twice is fine
        assert slide.closed
        for use in (lambda: slide.read_region((0, 0), (4, 4)), lambda: slide.read_tiles([(0, 0)], (4, 4)),
                    lambda: slide.levels, lambda: slide.associated_images, lambda: pickle.dumps(slide),
                    lambda: slide.to_dask(0)):
            with pytest.raises(ClosedSlideError, match="closed"):
                use()

    def test_backend_close_is_idempotent(self, case):
        backend = self.open_backend(case)
        backend.close()
        backend.close()

    def test_missing_associated_image(self, slide):
        images = slide.associated_images
        with pytest.raises(AssociatedImageNotFoundError, match="no-such-image") as caught:
            images["no-such-image"]
        assert isinstance(caught.value, KeyError) and slide.path in str(caught.value)
        assert "no-such-image" not in images and images.get("no-such-image") is None
        for name, image in images.items():
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name


class FileBackendContract(BackendContract):
    """Backends that read files: opened by ``open_slide(path, backend=BACKEND, exact_resample=EXACT_RESAMPLE)``."""

    BACKEND = ""
    EXACT_RESAMPLE = False

    def open_slide(self, case: Path) -> Slide:
        slide = open_slide(case, backend=self.BACKEND, exact_resample=self.EXACT_RESAMPLE)
        assert slide.exact_resample is self.EXACT_RESAMPLE
        return slide

    def open_backend(self, case: Path) -> SlideBackend:
        return BACKENDS[self.BACKEND](str(case))

    def stored(self, case_name: str, level: int, request: pytest.FixtureRequest) -> np.ndarray | None:
        return request.getfixturevalue("lossless_levels")[level] if case_name == "lossless_tiff" else None


class TestTiffBackend(FileBackendContract):
    BACKEND = "tiff"
    CASES = GENERATED_FILES + TIFF_FILES


class TestTiffBackendExactResample(TestTiffBackend):
    """The tiff backend's slides opened with ``exact_resample=True``: full decode before every shrink.

    The backend does not know the option, so the tests of the backend alone are not repeated
    (``None`` hides them from collection), and the cases are the generated files and one real SVS.
    """

    EXACT_RESAMPLE = True
    CASES = GENERATED_FILES + ["CMU-1-Small-Region.svs"]
    test_metadata_has_the_contracted_shape = None
    test_read_boxes_fills_exactly_each_box = None
    test_reductions_are_honoured = None
    test_backend_close_is_idempotent = None


class TestOpenSlideBackend(FileBackendContract):
    BACKEND = "openslide"
    CASES = GENERATED_FILES + OPENSLIDE_FILES


@pytest.fixture(scope="module")
def array_pyramid() -> list[np.ndarray]:
    base = textured(600, 400, 11)
    return [base, cv2.resize(base, (300, 200), interpolation=cv2.INTER_AREA), textured(150, 100, 12)]


@pytest.fixture(scope="module")
def array_single() -> list[np.ndarray]:
    return [textured(173, 91, 13)]


class TestArrayBackend(BackendContract):
    CASES = ["array_pyramid", "array_single"]

    def open_slide(self, case: list[np.ndarray]) -> Slide:
        return from_array(case, mpp=0.5, name="pyramid")

    def open_backend(self, case: list[np.ndarray]) -> SlideBackend:
        return ArrayBackend(case, (0.5, 0.5), "pyramid")

    def stored(self, case_name: str, level: int, request: pytest.FixtureRequest) -> np.ndarray | None:
        return request.getfixturevalue(case_name)[level]


@pytest.mark.parametrize("backend", ["tiff", "openslide"])
def test_unpickled_slide_sees_a_rewritten_file(tmp_path, backend):
    """A worker's cached handle must not outlive the file it was opened on."""
    from slidescope.wsi.synthetic import make_slide

    path = tmp_path / "rewritten.svs"
    make_slide(path, 512, 512, seed=1)
    with open_slide(path, backend=backend) as slide:
        first = pickle.loads(pickle.dumps(slide)).read_region((0, 0), (512, 512))
    make_slide(path, 512, 512, seed=2)
    with open_slide(path, backend=backend) as slide:
        second = pickle.loads(pickle.dumps(slide)).read_region((0, 0), (512, 512))
        np.testing.assert_array_equal(second, slide.read_region((0, 0), (512, 512)))
    assert not np.array_equal(first, second)
