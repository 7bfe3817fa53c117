"""``run_batch`` end to end on small generated slides: the predictions table, every output a lab opens
(Parquet, QuPath GeoJSON, OME-Zarr, PNG, the report), resume, staging folders a killed run leaves, a
killed Dask worker, and the inputs refused before any slide runs.

The tests read the outputs of one shared batch run (``batch_run`` in conftest.py: two tumour slides, a
normal one, a corrupt one, a missing path) and of the runs made after it on the same cluster, each into a
copy of it or a folder of its own (``batch_reruns.py``): made once per session, they serve every
pytest-xdist worker, and one cluster loads the model for all of them.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from slidescope.workflows import (BatchEvents, ConfigurationError, InputError, OutputError, Settings,
                                  prediction_columns, read_geojson, read_ome_zarr_maps, run_batch)
from slidescope.workflows.slide_outputs import SLIDE_FILES

from batch_reruns import read  # beside this file (pytest puts its folder on sys.path)

OK = ("tumour-a", "normal-a", "tumour-b")
TUMOUR = ("tumour-a", "tumour-b")
FAILED = ("corrupt", "missing", "no-mpp", "blank")


def _card():
    from slidescope.merge.merged import MergedCard
    from slidescope.models.loading import shipped_model_dir

    return MergedCard.load(str(shipped_model_dir("slide", "torch")))


def _table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "predictions.csv", dtype={"slide_id": str, "error": str})
    frame["error"] = frame.error.fillna("")
    return frame.set_index("slide_id", drop=False)


def _prediction(out: Path, slide_id: str) -> dict:
    return json.loads((out / "slides" / slide_id / "prediction.json").read_text(encoding="utf-8"))


# -- the predictions table and run.json -------------------------------------------------------------

def test_predictions_table_has_one_row_per_slide_in_input_order(batch_run, batch_slides, batch_inputs):
    frame = _table(batch_run)
    types = list(_card().cell.class_names)
    assert list(frame.columns) == prediction_columns(types)
    assert list(frame.columns[:6]) == ["slide_id", "path", "status", "error", "probability", "label"]
    assert frame.slide_id.tolist() == list(batch_inputs)
    assert frame.path.tolist() == [str(batch_slides[name]) for name in batch_inputs]
    assert frame.status.to_dict() == {name: ("error" if name in FAILED else "ok") for name in batch_inputs}
    assert not frame.resumed.any() and (frame.attempts == 1).all()
    ok = frame.loc[list(OK)]
    assert (ok.error == "").all() and ok.output.tolist() == [f"slides/{name}" for name in OK]
    assert (ok.nuclei_total == ok[[f"nuclei_{t}" for t in types]].sum(axis=1)).all()
    assert ok.seconds_total.gt(0).all() and ok.tissue_area_mm2.gt(0).all() and ok.coarse_tiles.gt(0).all()
    # counts are written as whole numbers, empty on error rows (not 3196.0 and NaN)
    written = pd.read_csv(batch_run / "predictions.csv", dtype=str, keep_default_na=False).set_index("slide_id")
    for column in ("nuclei_total", "coarse_tiles", "flagged_tiles", "fine_tiles", "attempts"):
        assert written.loc[list(OK), column].str.fullmatch(r"\d+").all(), written[column]
        assert written.loc[list(FAILED), column].str.fullmatch(r"\d*").all(), written[column]


def test_tumour_slides_score_above_tumour_free_ones(batch_run):
    frame = _table(batch_run)
    tumour, normal = frame.loc[list(TUMOUR)], frame.loc[["normal-a"]]
    assert tumour.probability.min() > 0.5 > normal.probability.max()
    assert tumour.label.eq("tumour").all() and normal.label.eq("normal").all()
    assert tumour.nuclei_total.gt(100).all() and tumour.flagged_tiles.gt(0).all() and tumour.fine_tiles.gt(0).all()
    assert normal.nuclei_total.eq(0).all() and normal.tumour_area_mm2.eq(0).all()


def test_failed_slides_are_error_rows_naming_the_file(batch_run, batch_slides):
    frame = _table(batch_run)
    for name, words in (("corrupt", "truncated"), ("missing", "no such"), ("no-mpp", "the manifest's mpp column"),
                        ("blank", "no coarse tile has tissue")):
        row = frame.loc[name]
        assert row.status == "error" and str(batch_slides[name]) in row.error and words in row.error, row.error
        assert "\n" not in row.error
        assert pd.isna(row.probability) and pd.isna(row.label) and pd.isna(row.output)
        assert not (batch_run / "slides" / name).exists()


def test_run_json_records_the_run(batch_run):
    run = json.loads((batch_run / "run.json").read_text(encoding="utf-8"))
    card = _card()
    assert run["kind"] == "slidescope-run" and run["status"] == "complete"
    assert run["counts"] == {"slides": 7, "ok": 3, "failed": 4, "resumed": 0}
    assert re.fullmatch(r"[0-9a-f]{16}", run["configuration_hash"])
    assert run["model"]["card_sha256"] == card.digest() and run["model"]["name"] == card.name
    assert run["started"] <= run["ended"] and run["host"] and run["python"]
    assert {"slidescope", "dask", "distributed", "torch"} <= set(run["versions"])
    assert run["settings"] == Settings().to_dict()
    assert run["dashboard"].startswith("http")


# -- each slide's outputs ----------------------------------------------------------------------------

def test_every_slide_folder_holds_the_seven_files_and_no_staging_is_left(batch_run):
    assert sorted(os.listdir(batch_run / "slides")) == sorted(OK)
    for name in OK:
        assert sorted(os.listdir(batch_run / "slides" / name)) == sorted(SLIDE_FILES)


def test_prediction_json_fields_agree_with_the_table(batch_run):
    frame = _table(batch_run)
    card = _card()
    for name in OK:
        data, row = _prediction(batch_run, name), frame.loc[name]
        assert data["slide_id"] == name and data["status"] == "ok" and data["path"] == row.path
        assert data["probability"] == pytest.approx(row.probability) and data["label"] == row.label
        assert set(data["probabilities"]) == set(card.head.classes)
        assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert data["tissue_area_mm2"] == pytest.approx(row.tissue_area_mm2)
        assert 0 <= data["tumour_area_mm2"] <= data["tissue_area_mm2"] + 1e-9
        assert data["nuclei"] == {t: int(row[f"nuclei_{t}"]) for t in card.cell.class_names}
        assert data["nuclei_per_mm2"] == pytest.approx(row.nuclei_per_mm2)
        assert {"plan", "tissue", "cells", "head", "outputs", "total"} <= set(data["seconds"])
        assert data["model"]["card_sha256"] == card.digest()
        assert data["slidescope_version"] and data["created"] and re.fullmatch(r"[0-9a-f]{16}", data["slide_hash"])
        assert data["outputs"] == list(SLIDE_FILES)


def test_tiles_and_cells_tables_read_back_and_their_counts_add_up(batch_run):
    card = _card()
    types, classes = list(card.cell.class_names), list(card.tissue.class_names)
    cell_scale = card.cell.scale()
    for name in OK:
        tiles = pd.read_parquet(batch_run / "slides" / name / "tiles.parquet")
        cells = pd.read_parquet(batch_run / "slides" / name / "cells.parquet")
        data = _prediction(batch_run, name)
        assert {"tile_id", "scale", "l0_x", "l0_y", "l0_width", "l0_height", "parent_id", "attention", "flagged",
                *[f"prob_{c}" for c in classes], *[f"count_{t}" for t in types]} <= set(tiles.columns)
        assert list(cells.columns) == ["l0_x", "l0_y", "type", "score", "tile_id"]
        coarse, fine = tiles[tiles.scale == "tissue"], tiles[tiles.scale == "cell"]
        assert len(coarse) == data["tiles"]["coarse"] and len(fine) == data["tiles"]["fine"]
        assert int(coarse.flagged.sum()) == data["tiles"]["flagged"]
        np.testing.assert_allclose(coarse[[f"prob_{c}" for c in classes]].sum(axis=1), 1.0, atol=1e-5)
        assert coarse.attention.sum() == pytest.approx(1.0, abs=1e-4)
        assert fine.parent_id.isin(coarse.tile_id[coarse.flagged]).all()  # the cascade
        assert len(cells) == int(fine[[f"count_{t}" for t in types]].to_numpy().sum())
        assert len(cells) == int(coarse[[f"count_{t}" for t in types]].to_numpy().sum())
        for t in types:
            assert int((cells.type == t).sum()) == int(fine[f"count_{t}"].sum()) == data["nuclei"][t]
        assert cells.tile_id.isin(fine.tile_id).all() and cells.score.between(0, 1).all()
        boxes = fine.set_index("tile_id").loc[cells.tile_id]
        margin = boxes.l0_width.to_numpy() * cell_scale.overlap / cell_scale.tile
        assert (cells.l0_x.to_numpy() >= boxes.l0_x.to_numpy() - margin).all()
        assert (cells.l0_x.to_numpy() <= (boxes.l0_x + boxes.l0_width).to_numpy() + margin).all()
        assert (cells.l0_y.to_numpy() >= boxes.l0_y.to_numpy() - margin).all()
        assert (cells.l0_y.to_numpy() <= (boxes.l0_y + boxes.l0_height).to_numpy() + margin).all()


def _qupath_feature(feature: dict, object_type: str) -> dict:
    assert feature["type"] == "Feature" and feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    properties = feature["properties"]
    assert properties["objectType"] == object_type
    classification = properties["classification"]
    assert isinstance(classification["name"], str) and classification["name"]
    assert len(classification["color"]) == 3 and all(0 <= int(c) <= 255 for c in classification["color"])
    assert isinstance(properties["measurements"], dict) and properties["measurements"]
    return properties


def test_geojson_files_parse_with_the_fields_qupath_imports(batch_run, batch_slides):
    types = set(_card().cell.class_names)
    for name in OK:
        folder = batch_run / "slides" / name
        regions = read_geojson(folder / "regions.geojson")
        assert regions["type"] == "FeatureCollection"
        assert len(regions["features"]) == _prediction(batch_run, name)["regions"]
        assert (len(regions["features"]) > 0) == (name in TUMOUR)
        for feature in regions["features"]:
            properties = _qupath_feature(feature, "annotation")
            assert properties["measurements"]["area_mm2"] > 0
            points = np.asarray(feature["geometry"]["coordinates"][0], float)
            assert points.min() >= 0 and points[:, 0].max() <= 3072 and points[:, 1].max() <= 2304
        cells = read_geojson(folder / "cells.geojson.gz")
        table = pd.read_parquet(folder / "cells.parquet")
        assert cells["type"] == "FeatureCollection" and len(cells["features"]) == len(table)
        for feature in cells["features"][:50]:
            properties = _qupath_feature(feature, "detection")
            assert properties["classification"]["name"] in types and 0 <= properties["measurements"]["score"] <= 1
        if len(table):  # outlines centred on the table's nuclei, in level-0 pixels
            ring = np.asarray(cells["features"][0]["geometry"]["coordinates"][0], float)[:-1]
            assert ring.mean(axis=0) == pytest.approx([table.l0_x.iloc[0], table.l0_y.iloc[0]], abs=1.0)


def test_maps_read_back_as_ome_zarr_multiscale(batch_run):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    classes = list(_card().tissue.class_names)
    channels = [*[f"prob_{c}" for c in classes], "attention", "nuclei_density"]
    for name in OK:
        path = batch_run / "slides" / name / "maps.zarr"
        location = parse_url(str(path))
        assert location is not None
        node = next(iter(Reader(location)()))
        assert node.first(Multiscales) is not None
        assert json.loads((path / "zarr.json").read_text())["attributes"]["ome"]["multiscales"]
        assert node.metadata["channel_names"] == channels
        assert [a["name"] for a in node.metadata["axes"]] == ["c", "y", "x"]
        level0 = np.asarray(node.data[0])
        assert level0.dtype == np.float32 and level0.shape[0] == len(channels) and len(node.data) >= 1
        maps, mpp = read_ome_zarr_maps(path)
        assert list(maps) == channels and mpp > 0
        np.testing.assert_array_equal(maps["prob_tumour"], level0[channels.index("prob_tumour")])
        probs = sum(maps[f"prob_{c}"] for c in classes)
        analysed = np.isfinite(probs)
        assert analysed.any() and np.allclose(probs[analysed], 1.0, atol=1e-4)
        density = maps["nuclei_density"]
        if name in TUMOUR:
            assert np.nanmax(maps["prob_tumour"]) >= 0.5 and np.nanmax(density) > 0
        else:
            assert np.isnan(density).all()  # no fine tile analysed


def test_overlay_is_an_rgb_image_of_the_slide(batch_run):
    for name in OK:
        image = cv2.imread(str(batch_run / "slides" / name / "overlay.png"), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert image.shape[1] / image.shape[0] == pytest.approx(3072 / 2304, rel=0.02)
        assert image.std() > 0


def test_report_is_one_self_contained_page(batch_run, batch_inputs):
    page = (batch_run / "report.html").read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.IGNORECASE)
    assert not [link for link in links if re.match(r"(?i)(https?:)?//", link)]
    assert "<script src" not in page.lower()
    for name in batch_inputs:
        assert name in page
    assert "truncated" in page and "no such slide file" in page and "no coarse tile has tissue" in page
    assert "data:image/" in page  # overlays and tiles embedded
    run = json.loads((batch_run / "run.json").read_text(encoding="utf-8"))
    assert run["configuration_hash"] in page and run["model"]["card_sha256"] in page
    # the shipped model ran: the page says what it was trained on and what that means
    from slidescope.workflows.report import SHIPPED_MODEL_WARNING

    assert html.escape(SHIPPED_MODEL_WARNING) in page and "8 slides, labels: generated slides" in html.unescape(page)


# -- runs again: resume, no resume, another configuration, staging folders, killed workers -------------
# (made once, after the shared run and on its cluster, by batch_reruns.py; these tests read what they saw)

def _frame(record: dict) -> pd.DataFrame:
    return pd.DataFrame(record["returned"]).set_index("slide_id", drop=False)


def test_resume_skips_done_slides_and_retries_failed_ones(batch_reruns, batch_inputs, batch_run):
    record = read(batch_reruns, "resume")
    out = batch_reruns / "resume" / "out"
    assert [total for total, _, _ in record["started"]] == [7] and record["started"][0][2] == 4  # the failed ones ran
    frame = _frame(record)
    assert frame.slide_id.tolist() == list(batch_inputs) == _table(out).slide_id.tolist()
    assert frame.loc[list(OK), "resumed"].all() and (frame.loc[list(OK), "attempts"] == 0).all()
    assert frame.loc[list(FAILED), "status"].eq("error").all() and not frame.loc[list(FAILED), "resumed"].any()
    assert (frame.loc[list(FAILED), "attempts"] == 1).all()
    assert record["after"] == record["before"] and sorted(record["before"]) == sorted(OK)  # not written again
    before = _table(batch_run)
    for name in OK:
        assert frame.loc[name, "probability"] == pytest.approx(before.loc[name, "probability"])
        assert frame.loc[name, "nuclei_total"] == before.loc[name, "nuclei_total"]
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["counts"] == {"slides": 7, "ok": 3, "failed": 4, "resumed": 3}


def test_a_batch_whose_slides_are_all_done_starts_no_cluster(batch_reruns):
    record = read(batch_reruns, "all_done")
    assert record["started"] == [[2, None, 0]]  # no client was given, and no dashboard is there
    frame = _frame(record)
    assert frame.slide_id.tolist() == ["tumour-b", "normal-a"] and frame.resumed.all()
    assert _table(batch_reruns / "all_done" / "out").slide_id.tolist() == ["tumour-b", "normal-a"]


def test_no_resume_runs_done_slides_again(batch_reruns):
    record = read(batch_reruns, "no_resume")
    frame = _frame(record)
    assert frame.status.tolist() == ["ok"] and not frame.resumed.any() and frame.attempts.tolist() == [1]
    (inode, mtime, created), (new_inode, new_mtime, new_created) = record["before"], record["after"]
    assert new_inode != inode and new_mtime != mtime and new_created >= created
    assert record["hidden"] == []


def test_another_configuration_is_refused_unless_overwrite(batch_reruns, batch_run):
    record = read(batch_reruns, "other_configuration")
    for refused, change in zip(record["refused"], ["min_tissue 0.25 -> 0.5", "cascade True -> False"]):
        assert refused is not None and refused[0] == ConfigurationError.__name__
        assert "another configuration" in refused[1] and change in refused[1], refused[1]  # it says what changed
    assert record["unchanged"]  # refused before anything was written
    frame = _frame(record)
    assert frame.status.tolist() == ["ok"] and not frame.resumed.any()
    out = batch_reruns / "other_configuration" / "out"
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    old = json.loads((batch_run / "run.json").read_text(encoding="utf-8"))["configuration_hash"]
    assert run["configuration_hash"] != old and run["settings"]["min_tissue"] == 0.5
    data = _prediction(out, "normal-a")
    assert data["configuration_hash"] == run["configuration_hash"] and data["settings"]["min_tissue"] == 0.5


def test_staging_folders_of_a_killed_run_are_removed_and_partial_slide_folders_redone(batch_reruns):
    record = read(batch_reruns, "staging")
    assert record["dotted"] != ".case.01.partial" and record["dotted"] in record["staged"]
    assert len(record["staged"]) == 4  # three staging folders and a user's hidden file
    assert record["hidden"] == [".notes"]  # the staging folders removed, the user's file kept
    frame = _frame(record)
    assert frame.status.tolist() == ["ok"] * 3
    assert frame.resumed.tolist() == [True, False, False]  # tumour-a complete; the others partial, so redone
    assert record["after"] == record["before"]
    assert all(files == sorted(SLIDE_FILES) for files in record["folders"].values())


def test_a_manifest_gives_ids_labels_and_the_mpp_a_slide_lacks(batch_reruns, batch_slides, batch_run):
    frame = _frame(read(batch_reruns, "manifest_cell_everywhere"))
    assert frame.slide_id.tolist() == ["lab-7", "blank"]
    assert frame.path.tolist() == [str(batch_slides["no-mpp"]), str(batch_slides["blank"])]
    assert frame.status.tolist() == ["ok", "error"] and frame.reference_label.tolist() == ["normal", ""]
    data = _prediction(batch_reruns / "manifest_cell_everywhere" / "out", "lab-7")
    assert data["slide_mpp"] == 0.5 and data["reference_label"] == "normal"
    assert "mpp" in _table(batch_run).loc["no-mpp", "error"]  # the same slide without the manifest's mpp


def test_cell_everywhere_reads_fine_tiles_under_every_coarse_tile(batch_reruns):
    out = batch_reruns / "manifest_cell_everywhere" / "out"
    row = _frame(read(batch_reruns, "manifest_cell_everywhere")).loc["lab-7"]
    tiles = pd.read_parquet(out / "slides" / "lab-7" / "tiles.parquet")
    coarse = tiles[tiles.scale == "tissue"]
    assert not (coarse.prob_tumour >= 0.5).any()  # the tissue model flags none: the cascade would read no fine tile
    assert row.fine_tiles > 0 and set(tiles.parent_id[tiles.scale == "cell"]) == set(coarse.tile_id)
    assert row.flagged_tiles == row.coarse_tiles  # "flagged": the tiles the cell model read under, all of them here
    assert _prediction(out, "lab-7")["settings"]["cascade"] is False


def test_a_worker_killed_mid_slide_is_survived(batch_reruns, batch_run):
    record = read(batch_reruns, "killed_once")
    assert record["kills"] == ["once"]  # the worker running tumour-a's cell batch was killed
    frame = _frame(record)
    assert frame.status.tolist() == ["ok", "ok"], frame.error.tolist()
    before = _table(batch_run)
    for name in ("normal-a", "tumour-a"):  # retried on a live worker, with the same result
        assert frame.loc[name, "probability"] == pytest.approx(before.loc[name, "probability"], abs=1e-5)
        assert frame.loc[name, "nuclei_total"] == before.loc[name, "nuclei_total"]
    assert record["folders"] == ["normal-a", "tumour-a"]


def test_a_slide_that_keeps_killing_workers_is_an_error_row(batch_reruns, batch_slides):
    record = read(batch_reruns, "killing_always")
    assert len(record["kills"]) == 3  # Dask's allowed-failures (2) + 1
    frame = _frame(record)
    assert frame.status.tolist() == ["ok", "error"]
    error = frame.loc["normal-b", "error"]
    assert str(batch_slides["normal-b"]) in error and "worker" in error and "died" in error
    assert record["folders"] == ["normal-a"]


# -- refused before any slide runs -------------------------------------------------------------------

def test_no_inputs_or_an_empty_folder_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="at least one"):
        run_batch([], tmp_path / "out")
    with pytest.raises(InputError, match="no slide file"):
        run_batch([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_that_is_not_a_merged_one_is_a_configuration_error(batch_slides, tmp_path):
    from slidescope.models.loading import shipped_model_dir

    with pytest.raises(ConfigurationError, match="not a merged slide model"):
        run_batch([batch_slides["normal-a"]], tmp_path / "out", model=shipped_model_dir("tissue", "torch"))
    with pytest.raises(ConfigurationError, match="no such merged model directory"):
        run_batch([batch_slides["normal-a"]], tmp_path / "out", model=tmp_path / "nowhere")
    with pytest.raises(ConfigurationError, match="the shipped tissue model alone cannot predict slides"):
        run_batch([batch_slides["normal-a"]], tmp_path / "out", model="tissue")  # a shipped name, not a slide model
    assert not (tmp_path / "out").exists()


def test_a_foreign_non_empty_output_folder_is_refused(batch_slides, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not empty"):
        run_batch([batch_slides["normal-a"]], out)
    assert os.listdir(out) == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="must be a folder"):
        run_batch([batch_slides["normal-a"]], tmp_path / "file")


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path):
    out = tmp_path / "out"
    (out / "slides").mkdir(parents=True)
    inside = out / "slides" / "S1.svs"
    inside.write_bytes(b"")
    with pytest.raises(OutputError, match="lies in the output folder"):
        run_batch([inside], out)
    at_output = tmp_path / "other" / "run.json"
    at_output.parent.mkdir()
    at_output.write_bytes(b"")
    with pytest.raises(OutputError, match="at the output run.json"):
        run_batch([at_output], tmp_path / "other")
    assert sorted(os.listdir(out / "slides")) == ["S1.svs"] and os.listdir(tmp_path / "other") == ["run.json"]


def test_a_fluorescence_method_is_refused_before_any_slide_runs(batch_slides, tmp_path):
    with pytest.raises(ConfigurationError, match="brightfield"):
        run_batch([batch_slides["normal-a"]], tmp_path / "out", settings=Settings(method="fluorescence"))
    assert not (tmp_path / "out").exists()


def test_an_interrupted_run_says_so_in_run_json_and_keeps_its_rows(batch_client, batch_slides, tmp_path):
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch([batch_slides["missing"], batch_slides["normal-a"]], out, client=batch_client,
                  events=BatchEvents(finished=interrupt))  # Ctrl-C once the first slide (the missing one) is done
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["status"] == "interrupted" and run["ended"] >= run["started"]
    frame = pd.read_csv(out / "predictions.csv")
    assert frame.slide_id.tolist() == ["missing"] and frame.status.tolist() == ["error"]


def test_a_batch_of_missing_files_starts_no_cluster_and_counts_them_to_run(batch_slides, tmp_path):
    started = []
    frame = run_batch([batch_slides["missing"]], tmp_path / "out", events=BatchEvents(started=lambda *a: started.append(a)))
    assert started == [(1, None, 1)]  # one slide to run (not "done already"), no cluster, so no dashboard
    assert frame.status.tolist() == ["error"] and "no such slide file" in frame.error[0]
