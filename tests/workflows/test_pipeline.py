"""``Pipeline``: the merged slide model over one slide in this process (no Dask), each step returning data;
and the proof that the batched pipeline (tiles in batches, the cascade, peaks counted per batch) gives
what the merged graph gives when it runs whole on the same tiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slidescope.workflows import (ConfigurationError, ParameterError, Pipeline, Settings, SlideFailure,
                                  SlidePrediction)
from slidescope.wsi import open_slide


@pytest.fixture(scope="module")
def pipe(require_torch) -> Pipeline:
    return Pipeline()  # the shipped merged model


@pytest.fixture(scope="module")
def slide(batch_slides):
    return batch_slides["tumour-a"]  # 4 coarse tiles, 1 flagged


@pytest.fixture(scope="module")
def tissue(pipe, slide) -> pd.DataFrame:
    return pipe.tissue(slide)


@pytest.fixture(scope="module")
def flagged_cells(pipe, slide) -> pd.DataFrame:
    return pipe.cells(slide, where="flagged")


@pytest.fixture(scope="module")
def prediction(pipe, slide) -> SlidePrediction:
    return pipe.predict(slide)


def _parents(pipe, slide, cells: pd.DataFrame) -> set[int]:
    table = pipe.plan(slide).plan.table.set_index("tile_id")
    return set(table.parent_id.loc[cells.tile_id].astype(int))


def _read(slide, plan, rows: pd.DataFrame, scale_name: str) -> np.ndarray:
    """The tiles of ``rows`` as the plan says to read them (boxes, read size and mpp of their scale)."""
    scale = plan.scales[plan.scale_index(scale_name)]
    with open_slide(slide) as opened:
        return opened.read_tiles(plan.read_boxes(rows, scale_name)[:, :2], (scale.read_size, scale.read_size),
                                 mpp=scale.mpp)


def test_tissue_gives_coarse_tiles_with_class_probabilities_and_flags(pipe, slide, tissue):
    card = pipe.model.card
    probs = [f"prob_{c}" for c in card.tissue.class_names]
    assert {"tile_id", "l0_x", "l0_y", "l0_width", "l0_height", "tissue_fraction", *probs, "flagged"} <= set(tissue)
    assert tissue.tile_id.tolist() == pipe.plan(slide).coarse.tile_id.tolist() and len(tissue) > 0
    np.testing.assert_allclose(tissue[probs].sum(axis=1), 1.0, atol=1e-5)
    gate = tissue[f"prob_{card.tissue.cascade_class}"] >= card.tissue.thresholds["cascade_probability"]
    assert tissue.flagged.dtype == bool and tissue.flagged.tolist() == gate.tolist()
    assert 0 < tissue.flagged.sum() < len(tissue)
    with open_slide(slide) as opened:  # a Slide does as well as a path
        pd.testing.assert_frame_equal(pipe.tissue(opened), tissue)


def test_cells_where_flagged_are_the_nuclei_under_the_flagged_tiles(pipe, slide, tissue, flagged_cells):
    assert list(flagged_cells.columns) == ["l0_x", "l0_y", "type", "score", "tile_id"]
    assert len(flagged_cells) > 100 and set(flagged_cells.type) <= set(pipe.model.card.cell.class_names)
    assert flagged_cells.score.between(0, 1).all()
    assert _parents(pipe, slide, flagged_cells) == set(tissue.tile_id[tissue.flagged])


def test_cells_where_ids_of_the_flagged_tiles_are_cells_where_flagged(pipe, slide, tissue, flagged_cells):
    by_ids = pipe.cells(slide, where=tissue.tile_id[tissue.flagged].tolist())
    pd.testing.assert_frame_equal(by_ids, flagged_cells)  # the same parents: the same nuclei


def test_cells_where_all_reads_under_every_coarse_tile(pipe, batch_slides):
    # a small normal slide whose metadata lacks its mpp (given here), its tiles of most tissue only: the
    # tissue part flags none, so the cascade reads nothing there, and "all" reads under every coarse tile
    small = Pipeline(pipe.model, settings=Settings(min_tissue=0.6), slide_mpp=0.5)
    slide = batch_slides["no-mpp"]
    tiles = small.tissue(slide)
    assert len(tiles) > 0 and not tiles.flagged.any()
    assert len(small.cells(slide, where="flagged")) == 0
    everywhere = small.cells(slide, where="all")
    assert len(everywhere) > 0
    assert _parents(small, slide, everywhere) == set(tiles.tile_id)


def test_cells_refuses_an_unknown_tile_id_or_where(pipe, slide, tissue):
    unknown = int(tissue.tile_id.max()) + 1000
    with pytest.raises(ParameterError, match=str(unknown)):
        pipe.cells(slide, where=[int(tissue.tile_id.iloc[0]), unknown])
    with pytest.raises(ParameterError, match="where"):
        pipe.cells(slide, where="everywhere")


def test_predict_gives_the_slide_prediction_as_data(pipe, tissue, flagged_cells, prediction):
    card = pipe.model.card
    assert prediction.label == "tumour" and prediction.probability > 0.5
    assert prediction.probabilities[card.head.classes[-1]] == prediction.probability
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    coarse = prediction.coarse.reset_index(drop=True)
    probs = [f"prob_{c}" for c in card.tissue.class_names]
    np.testing.assert_allclose(coarse[probs].to_numpy(), tissue[probs].to_numpy(), atol=1e-6)
    assert coarse.flagged.tolist() == tissue.flagged.tolist()
    pd.testing.assert_frame_equal(prediction.cells.reset_index(drop=True), flagged_cells)
    assert prediction.nuclei == {t: int((flagged_cells.type == t).sum()) for t in card.cell.class_names}
    assert 0 < prediction.tumour_area_mm2 <= prediction.tissue_area_mm2
    assert set(prediction.maps) == {*probs, "attention", "nuclei_density"}


def test_the_batched_pipeline_equals_the_merged_graph_run_whole(pipe, slide, prediction):
    plan = prediction.plan
    coarse_rows = prediction.coarse.reset_index(drop=True)
    fine_rows = prediction.tiles[prediction.tiles.scale == "cell"].reset_index(drop=True)
    assert len(fine_rows) > 0
    coarse, fine = _read(slide, plan, coarse_rows, "tissue"), _read(slide, plan, fine_rows, "cell")
    parents = pd.Index(coarse_rows.tile_id).get_indexer(fine_rows.parent_id)
    assert (parents >= 0).all()
    whole = pipe.model.predict(coarse, fine, parents)  # the one graph: tissue, cell and head parts together
    assert float(whole["slide_probs"][-1]) == pytest.approx(prediction.probability, abs=1e-4)
    np.testing.assert_allclose(whole["attention"], coarse_rows.attention.to_numpy(), atol=1e-4)
    probs = [f"prob_{c}" for c in pipe.model.card.tissue.class_names]
    np.testing.assert_allclose(whole["tissue_probs"], coarse_rows[probs].to_numpy(), atol=1e-5)


def test_cell_counts_are_the_merged_graphs_peak_counts(pipe, slide, tissue):
    from slidescope.merge.head import peak_counts
    from slidescope.workflows.pipeline import Batch, cell_batch, fine_batches

    plan = pipe.plan(slide)
    whole = fine_batches(plan, tissue.tile_id[tissue.flagged], 64)[0]
    batch = Batch(whole.rows.iloc[:6].reset_index(drop=True), whole.boxes[:6], whole.scale)  # a few tiles will do
    result = cell_batch(pipe.model, plan.handle, batch)
    images = _read(slide, plan.plan, batch.rows, "cell")
    graph = pipe.model.backend.graph
    logits = pipe.model.backend.cell_logits(images)
    counts = peak_counts(logits["heatmap"], logits["types"], min_distance_px=graph.peak_radius,
                         threshold=float(pipe.model.card.cell.thresholds["nucleus_score"]))
    assert counts.sum() > 0
    np.testing.assert_array_equal(result["raw_counts"], counts)
    merged = pipe.model.backend.part_outputs(fine=images)["cell_counts"]  # the merged graph's own count
    np.testing.assert_array_equal(result["raw_counts"], np.rint(merged).astype(np.int64))
    # each nucleus once: no more than the peaks, and exactly the nuclei the batch returns
    assert (result["owned_counts"].sum(axis=0) <= result["raw_counts"].sum(axis=0)).all()
    assert result["owned_counts"].sum() == len(result["cells"])


def test_a_slide_without_tissue_fails_saying_so(pipe, batch_slides):
    blank = batch_slides["blank"]
    assert len(pipe.tissue(blank)) == 0
    with pytest.raises(SlideFailure, match="no coarse tile has tissue") as caught:
        pipe.predict(blank)
    assert str(blank) in str(caught.value)


def test_a_model_that_is_not_a_merged_one_is_refused(require_torch):
    from slidescope.models.loading import shipped_model_dir

    with pytest.raises(ConfigurationError, match="merged slide model"):
        Pipeline(model=shipped_model_dir("tissue", "torch"))


def test_slides_the_model_cannot_analyse_are_refused_saying_what_to_do(pipe, batch_slides, tmp_path):
    from slidescope.workflows.errors import UnsuitableSlideError
    from slidescope.workflows.pipeline import plan_slide
    from slidescope.wsi.synthetic import make_slide

    card = pipe.model.card
    small = tmp_path / "small.svs"
    make_slide(small, 512, 384, seed=3)
    with pytest.raises(UnsuitableSlideError, match=r"too small to analyse: 512 x 384 px .*--mask-mpp"):
        plan_slide(str(small), card, Settings(mask_mpp=32.0))
    with pytest.raises(UnsuitableSlideError, match="brightfield"):
        plan_slide(str(small), card, Settings(method="fluorescence"))
    with pytest.raises(UnsuitableSlideError, match=r"no microns-per-pixel .*manifest's mpp column.*slide_mpp"):
        plan_slide(str(batch_slides["no-mpp"]), card, Settings())


def test_exact_resample_is_a_setting_that_reaches_the_slides_and_the_configuration(pipe, slide):
    from slidescope.workflows.pipeline import plan_slide

    card = pipe.model.card
    assert Settings().identity()["exact_resample"] is False  # part of the configuration hash
    assert Settings(exact_resample=True).identity()["exact_resample"] is True
    with pytest.raises(TypeError, match="exact_resample: expected True or False, got 'yes'"):
        Settings(exact_resample="yes")
    assert plan_slide(str(slide), card, Settings()).handle.exact_resample is False
    assert plan_slide(str(slide), card, Settings(exact_resample=True)).handle.exact_resample is True
    assert Settings(exact_resample=np.True_).exact_resample is True  # numpy booleans, as everywhere


def test_an_open_slide_whose_exact_resample_differs_from_the_settings_is_refused(pipe, slide):
    from slidescope.wsi.errors import ParameterError

    with open_slide(slide, exact_resample=True) as opened:
        with pytest.raises(ParameterError, match=r"opened with exact_resample=True.*settings say exact_resample=False"):
            pipe.tissue(opened)
        exact = Pipeline(pipe.model, settings=Settings(exact_resample=True))
        assert exact.plan(opened).handle.exact_resample is True


@pytest.mark.parametrize("command", [["run", "a.svs", "--out", "out"], ["predict", "tissue", "a.svs", "--out", "out"],
                                     ["tissue", "a.svs", "--out", "mask.png"]])
def test_commands_that_read_pixels_take_exact_resample(command):
    from slidescope.workflows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(command).exact_resample is False
    assert parser.parse_args([*command, "--exact-resample"]).exact_resample is True
