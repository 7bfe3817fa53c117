"""Dask batch reading: every scheduler gives the serial answer; tasks carry paths, not pixels."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from slidescope.tiling.dask_read import map_batches, read_batches
from slidescope.tiling.plan import TilePlanError, plan_tiles
from slidescope.tiling.scales import Scale
from slidescope.tiling.errors import TileBatchError
from slidescope.wsi import ParameterError, from_array, open_slide


def serial_means(slide, plan, scale) -> pd.DataFrame:
    index = plan.scale_index(scale)
    rows = plan.tiles(index)
    boxes = plan.read_boxes(rows, index)
    s = plan.scales[index]
    means = [slide.read_region(tuple(box[:2]), (s.read_size, s.read_size), mpp=s.mpp).mean() for box in boxes]
    return pd.DataFrame({"tile_id": rows.tile_id.to_numpy(), "value": means}).sort_values("tile_id")


def batch_means(images: np.ndarray, tile_ids: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).mean(axis=1)


@pytest.fixture(scope="module")
def array_case():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (1500, 2100, 3), dtype=np.uint8)
    slide = from_array(image, mpp=0.5, name="random")
    plan = plan_tiles(slide, None, [Scale(2.0, 64, name="coarse"), Scale(1.0, 48, overlap=8, context=4, name="fine")])
    return slide, plan


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_map_batches_equals_serial(array_case, scheduler):
    slide, plan = array_case
    for scale in ("coarse", "fine"):
        result = map_batches(batch_means, slide, plan, scale, batch_size=7, scheduler=scheduler)
        expected = serial_means(slide, plan, scale)
        np.testing.assert_array_equal(result.tile_id.to_numpy(), expected.tile_id.to_numpy())
        np.testing.assert_allclose(result.value.to_numpy(), expected.value.to_numpy())


def test_read_batches_yield_ids_and_pixels(array_case):
    import dask

    slide, plan = array_case
    tasks = read_batches(slide, plan, "fine", batch_size=10)
    assert len(tasks) == -(-len(plan.tiles("fine")) // 10)
    batches = dask.compute(*tasks, scheduler="threads")
    ids = np.concatenate([b.tile_ids for b in batches])
    assert sorted(ids) == sorted(plan.tiles("fine").tile_id)
    first = batches[0]
    assert first.images.shape[1:] == (56, 56, 3) and first.images.dtype == np.uint8  # 48 + 2 x 4 context
    row = plan.table.set_index("tile_id").loc[first.tile_ids[0]]
    expected = slide.read_region((int(row.l0_x) - 8, int(row.l0_y) - 8), (56, 56), mpp=1.0)
    np.testing.assert_array_equal(first.images[0], expected)


def test_transform_runs_in_the_task(array_case):
    slide, plan = array_case
    result = map_batches(batch_means, slide, plan, 0, transform=lambda images: 255 - images, scheduler="sync")
    expected = serial_means(slide, plan, 0)
    np.testing.assert_allclose(result.value.to_numpy(), 255 - expected.value.to_numpy())


def test_batch_function_results_shapes(array_case):
    slide, plan = array_case
    table = map_batches(lambda images, ids: {"mean": images.mean(axis=(1, 2, 3)), "map": images[..., 0] > 128},
                        slide, plan, 0, scheduler="sync")
    assert list(table.columns) == ["tile_id", "mean", "map"] and table["map"].iloc[0].shape == (64, 64)
    table = map_batches(lambda images, ids: images.mean(axis=(1, 2)), slide, plan, 0, scheduler="sync")
    assert list(table.columns) == ["tile_id", "value_0", "value_1", "value_2"]
    with pytest.raises(TileBatchError, match="one result row per tile"):
        map_batches(lambda images, ids: np.zeros(1), slide, plan, 0, scheduler="sync")


def test_bad_batch_size_and_foreign_slide(array_case):
    slide, plan = array_case
    for bad in (0, True, 2.5, "8", float("nan")):
        with pytest.raises(ParameterError, match="batch_size"):
            read_batches(slide, plan, 0, batch_size=bad)
    assert len(read_batches(slide, plan, 0, batch_size=np.int64(8))) > 0
    other = from_array(np.zeros((100, 100, 3), np.uint8), mpp=0.5, name="other")
    with pytest.raises(TilePlanError, match="other: the plan was made for random"):
        map_batches(batch_means, other, plan, 0)
    with pytest.raises(TilePlanError, match="scale"):
        map_batches(batch_means, slide, plan, "nope")


def test_tasks_carry_the_path_not_pixels(synthetic_svs):
    with open_slide(synthetic_svs) as slide:
        plan = plan_tiles(slide, None, Scale(1.0, 128))
        tasks = read_batches(slide, plan, 0, batch_size=32)
        graph = dict(tasks[0].__dask_graph__())
        assert len(pickle.dumps(graph)) < 20_000


def test_local_cluster_equals_serial(synthetic_svs, dask_client):
    with open_slide(synthetic_svs) as slide:
        plan = plan_tiles(slide, None, [Scale(4.0, 64), Scale(1.0, 64)])
        result = map_batches(batch_means, str(synthetic_svs), plan, 1, batch_size=40, scheduler=dask_client)
        expected = serial_means(slide, plan, 1)
    np.testing.assert_array_equal(result.tile_id.to_numpy(), expected.tile_id.to_numpy())
    np.testing.assert_allclose(result.value.to_numpy(), expected.value.to_numpy())


def test_batches_are_even_and_fill_the_workers(array_case):
    import dask

    slide, plan = array_case
    total = len(plan.tiles("fine"))
    for batch_size, workers in [(10, 1), (total - 1, 2), (7, 3), (total, 4)]:
        batches = dask.compute(*read_batches(slide, plan, "fine", batch_size=batch_size, workers=workers),
                               scheduler="sync")
        sizes = [len(b.tile_ids) for b in batches]
        assert sum(sizes) == total and max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
        assert len(sizes) % workers == 0 or len(sizes) == total


def test_parallelism_of_schedulers(dask_client):
    from slidescope.tiling.dask_read import parallelism

    assert parallelism("sync") == 1
    assert parallelism(dask_client) == 1  # the test cluster: one worker, one thread
    assert parallelism("threads") >= 1


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts open descriptors via /proc")
def test_paths_leak_no_file_handles(synthetic_svs):
    """A batch run calls map_batches with paths for hundreds of slides: handles must not pile up."""
    import gc
    import os

    with open_slide(synthetic_svs) as slide:
        plan = plan_tiles(slide, None, Scale(4.0, 64))
    map_batches(batch_means, str(synthetic_svs), plan, 0, scheduler="sync")  # warm the process cache
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        map_batches(batch_means, str(synthetic_svs), plan, 0, scheduler="sync")
        read_batches(str(synthetic_svs), plan, 0)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) - before <= 2


def test_dropped_backends_close_their_files(synthetic_svs):
    import gc
    import os

    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        open_slide(synthetic_svs).read_region((0, 0), (8, 8))  # never closed by the caller
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) - before <= 2


# -- a scale without tiles (issue 6, item 14) ------------------------------------------------------

BATCH_FUNCTIONS = {
    "1-D array": batch_means,
    "2-D array": lambda images, ids: images.mean(axis=(1, 2)),
    "dict": lambda images, ids: {"mean": images.mean(axis=(1, 2, 3)), "dark": (images < 64).mean(axis=(1, 2, 3)) > 0.5,
                                 "count": np.full(len(images), 3, dtype=np.int32)},
    "DataFrame": lambda images, ids: pd.DataFrame({"id_again": ids, "red": images[..., 0].mean(axis=(1, 2))}),
}


@pytest.fixture(scope="module")
def blank_case():
    """A slide without tissue and its plan: every scale has 0 tiles."""
    from slidescope.tiling.tissue import tissue_mask

    slide = from_array(np.full((1024, 1536, 3), 243, np.uint8), mpp=0.5, name="blank")
    plan = plan_tiles(slide, tissue_mask(slide), [Scale(2.0, 64, name="tissue"), Scale(1.0, 48, context=4, name="cell")])
    assert len(plan) == 0
    return slide, plan


@pytest.mark.parametrize("kind", sorted(BATCH_FUNCTIONS))
def test_empty_result_has_the_columns_and_dtypes_of_a_full_one(kind, array_case, blank_case):
    function = BATCH_FUNCTIONS[kind]
    full = map_batches(function, *array_case, "coarse", scheduler="sync")
    for scale in ("tissue", "cell"):
        empty = map_batches(function, *blank_case, scale, scheduler="sync")
        assert len(empty) == 0
        assert list(empty.columns) == list(full.columns)  # before: only tile_id
        assert dict(empty.dtypes) == dict(full.dtypes)


def test_readme_example_on_a_slide_without_tissue(blank_case):
    means = map_batches(lambda images, ids: images.mean(axis=(1, 2, 3)), *blank_case, "tissue")
    assert means.value.mean() != means.value.mean()  # NaN mean of no tiles; before: AttributeError 'value'
    assert means.tile_id.dtype == np.int64


def test_without_tiles_the_function_sees_one_white_tile_through_the_transform(blank_case):
    seen = []

    def record(images, ids):
        seen.append((images.shape, images.dtype, int(images.min()), ids.tolist()))
        return images.mean(axis=(1, 2, 3))

    result = map_batches(record, *blank_case, "cell", transform=lambda images: images[:, ::2], scheduler="sync")
    assert seen == [((1, 28, 56, 3), np.uint8, 255, [-1])]  # 48 + 2 x 4 context, halved by the transform
    assert len(result) == 0  # the white tile's row is not a result


def test_a_function_that_fails_without_tiles_is_named(blank_case):
    def broken(images, ids):
        raise RuntimeError("model not loaded")

    with pytest.raises(TileBatchError, match=r"no tiles.*one white 64 x 64 tile.*RuntimeError: model not loaded") as caught:
        map_batches(broken, *blank_case, "tissue", scheduler="sync")
    assert isinstance(caught.value.__cause__, RuntimeError)
