"""``slidescope predict`` end to end on a small generated slide, in both frameworks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slidescope.tiling import PLAN_COLUMNS
from slidescope.workflows.cli import main

SMALL = {"widths": [8, 16], "depth": 1}


def _model_dir(tmp_path_factory, task: str, framework: str):
    pytest.importorskip("torch" if framework == "torch" else "keras")
    from slidescope.models import ModelCard, create_model, save_model

    data = ModelCard.new(task, framework, name=f"test-{task}").to_dict()
    data["architecture"].update(SMALL)
    data["input"].update(tile=64, overlap=0 if task == "tissue" else 8)
    if task == "cell":
        data["thresholds"]["nucleus_score"] = 0.3
    model = create_model(task, framework, card=ModelCard.from_dict(data), seed=1, device="cpu")
    return save_model(model, tmp_path_factory.mktemp("models") / f"{task}-{framework}")


@pytest.fixture(scope="module", params=["torch", "tf"])
def framework(request):
    return request.param


@pytest.fixture(scope="module")
def tissue_dir(tmp_path_factory, framework):
    return _model_dir(tmp_path_factory, "tissue", framework)


@pytest.fixture(scope="module")
def cell_dir(tmp_path_factory, framework):
    return _model_dir(tmp_path_factory, "cell", framework)


def _plan_rows(slide, card_dir):
    from slidescope.models import load_model
    from slidescope.tiling import plan_tiles, tissue_mask
    from slidescope.wsi import open_slide

    card = load_model(card_dir).card
    with open_slide(slide) as opened:
        return plan_tiles(opened, tissue_mask(opened), [card.scale()]).tiles(card.task)


def test_tissue_outputs(small_slide, tissue_dir, tmp_path, capsys):
    out = tmp_path / "tissue"
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out), "--batch-size", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    tiles = pd.read_parquet(out / "tiles.parquet")
    probs = ["prob_background", "prob_stroma", "prob_tumour"]
    assert list(tiles.columns) == [*PLAN_COLUMNS, *probs]
    expected = _plan_rows(small_slide, tissue_dir)
    assert len(tiles) == len(expected) > 0
    assert sorted(tiles.tile_id) == sorted(expected.tile_id)
    np.testing.assert_allclose(tiles[probs].sum(axis=1), 1.0, atol=1e-5)
    import cv2
    import zarr

    assert cv2.imread(str(out / "heatmap.png")) is not None
    cams = zarr.open_group(str(out / "cam.zarr"), mode="r")
    assert sorted(cams.array_keys()) == ["background", "stroma", "tumour"]
    assert cams.attrs["classes"] == ["background", "stroma", "tumour"]
    assert np.isfinite(cams["tumour"][...]).any()
    # a second run replaces its own outputs
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out)]) == 0


def test_cell_outputs_keep_each_nucleus_once(small_slide, cell_dir, tmp_path):
    out = tmp_path / "cell"
    assert main(["predict", str(cell_dir), str(small_slide), "--out", str(out), "--workers", "1"]) == 0
    cells = pd.read_parquet(out / "cells.parquet")
    tiles = pd.read_parquet(out / "tiles.parquet")
    assert list(cells.columns) == ["l0_x", "l0_y", "type", "score", "tile_id"]
    assert list(tiles.columns) == [*PLAN_COLUMNS, "count_normal", "count_tumour"]
    assert len(tiles) == len(_plan_rows(small_slide, cell_dir))
    assert tiles[["count_normal", "count_tumour"]].to_numpy().sum() == len(cells)
    assert set(cells.tile_id) <= set(tiles.tile_id)
    assert set(cells.type) <= {"normal", "tumour"}
    # every nucleus lies in its tile, and no two kept nuclei are closer than the card's minimum distance
    box = tiles.set_index("tile_id").loc[cells.tile_id]
    assert ((cells.l0_x.to_numpy() >= box.l0_x.to_numpy()) & (cells.l0_x.to_numpy() <= (box.l0_x + box.l0_width).to_numpy())).all()
    if len(cells) > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(cells[["l0_x", "l0_y"]].to_numpy()).query_pairs(r=4.0 / 0.25 - 1e-6)
        across = [(a, b) for a, b in pairs if cells.tile_id.iloc[a] != cells.tile_id.iloc[b]]
        assert not across


def test_errors_are_one_line(small_slide, tissue_dir, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope"), str(small_slide), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such model directory" in err
    assert main(["predict", str(tissue_dir), str(tmp_path / "absent.svs"), "--out", str(tmp_path / "o")]) == 2
    assert "absent.svs" in capsys.readouterr().err
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "tiles.parquet").write_text("someone's notes")
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(folder)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (folder / "tiles.parquet").read_text() == "someone's notes"
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(tissue_dir)]) == 2
    assert "model directory" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["tissue", "cell"])
def test_a_slide_without_tissue_gives_empty_tables_with_every_column(task, tmp_path_factory, tmp_path):
    pytest.importorskip("torch")
    from slidescope.models import load_model
    from slidescope.workflows.predict import predict_slide
    from slidescope.wsi import from_array

    model = load_model(_model_dir(tmp_path_factory, task, "torch"))
    blank = from_array(np.full((768, 1024, 3), 243, np.uint8), mpp=0.25, name="blank")
    result = predict_slide(model, blank, tmp_path, batch_size=4)
    assert result.tiles == 0
    tiles = pd.read_parquet(tmp_path / "tiles.parquet")
    assert len(tiles) == 0 and list(tiles.columns)[: len(PLAN_COLUMNS)] == list(PLAN_COLUMNS)
    if task == "cell":
        assert list(pd.read_parquet(tmp_path / "cells.parquet").columns) == ["l0_x", "l0_y", "type", "score", "tile_id"]
        assert list(tiles.columns)[len(PLAN_COLUMNS):] == ["count_normal", "count_tumour"]
    else:
        assert list(tiles.columns)[len(PLAN_COLUMNS):] == ["prob_background", "prob_stroma", "prob_tumour"]


def test_an_output_folder_that_is_a_file_is_one_line(small_slide, tissue_dir, tmp_path, capsys):
    target = tmp_path / "out"
    target.write_text("a file")
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(target) in err
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(tmp_path / "a" / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_manifest_records_the_run(small_slide, tissue_dir, tmp_path):
    import json
    import os

    out = tmp_path / "run"
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out), "--min-tissue", "0.3"]) == 0
    manifest = json.loads((out / "prediction.json").read_text())
    assert manifest["slide"]["path"] == os.path.realpath(small_slide)
    assert manifest["model"]["task"] == "tissue" and len(manifest["model"]["card_sha256"]) == 64
    assert manifest["options"]["min_tissue"] == 0.3
    assert manifest["outputs"] == ["tiles.parquet", "heatmap.png", "cam.zarr", "prediction.json"]
    assert manifest["tiles"] == len(pd.read_parquet(out / "tiles.parquet"))
    assert sorted(os.listdir(out)) == sorted(manifest["outputs"])


def test_two_runs_never_mix_in_one_folder(small_slide, tissue_dir, cell_dir, tmp_path, capsys):
    out = tmp_path / "shared"
    assert main(["predict", str(cell_dir), str(small_slide), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out)]) == 2
    assert "holds the predictions of model 'test-cell'" in capsys.readouterr().err
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out), "--overwrite"]) == 0
    import os

    assert sorted(os.listdir(out)) == ["cam.zarr", "heatmap.png", "prediction.json", "tiles.parquet"]  # cells gone


def test_a_stranger_png_needs_overwrite(small_slide, tissue_dir, tmp_path, capsys):
    import cv2

    out = tmp_path / "pictures"
    out.mkdir()
    cv2.imwrite(str(out / "heatmap.png"), np.zeros((5, 5, 3), np.uint8))
    before = (out / "heatmap.png").read_bytes()
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "heatmap.png").read_bytes() == before


def test_a_failed_run_creates_no_folder_and_model_folders_are_refused(small_slide, tissue_dir, cell_dir, tmp_path,
                                                                        capsys):
    out = tmp_path / "never"
    assert main(["predict", str(tissue_dir), str(tmp_path / "missing.svs"), "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["predict", str(tissue_dir), str(small_slide), "--out", str(cell_dir)]) == 2
    assert "is a model directory" in capsys.readouterr().err
