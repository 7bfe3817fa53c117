"""Training end to end on tiny generated sets: it learns, it resumes exactly, it refuses to lose a run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from slidescope.models import ModelCard, load_model
from slidescope.models.training import TrainingError, train

pytest.importorskip("torch")

SMALL = {"widths": [8, 16], "depth": 1}


def tiny_card(task: str, framework: str = "torch") -> ModelCard:
    data = ModelCard.new(task, framework).to_dict()
    data["architecture"].update(SMALL)
    data["input"].update(tile=32, overlap=0 if task == "tissue" else 4)
    if task == "tissue":
        data["input"].update(mpp=4.0)  # 32 px tiles of 128 µm: several tiles per region of a small slide
    return ModelCard.from_dict(data)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from slidescope.wsi.synthetic import make_slide

    folder = tmp_path_factory.mktemp("train-slides")
    return [str(make_slide(folder / f"t{seed}.svs", 3072, 2304, seed=seed).path) for seed in range(3)]


def _weights(folder):
    return load_model(folder).backend.get_weights()


def test_a_tiny_tissue_run_learns(slides, tmp_path):
    result = train("tissue", "torch", slides, tmp_path / "run", epochs=3, batch_size=16, lr=3e-3, workers=0, seed=1,
                   card=tiny_card("tissue"), steps_per_epoch=12)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] and losses[-1] < np.log(3)  # below chance for three classes
    assert result.history[-1]["val_accuracy"] > 1 / 3
    with open(tmp_path / "run" / "metrics.csv") as stream:
        assert [int(row["epoch"]) for row in csv.DictReader(stream)] == [1, 2, 3]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    card = load_model(result.model_dir).card
    assert card.metrics["epoch"] == result.best_epoch and card.training["data"]["train"]["tiles"] > 0
    assert not set(card.training["data"]["train"]["slides"]) & set(card.training["data"]["val"]["slides"])


def test_a_tiny_cell_run_learns(slides, tmp_path):
    result = train("cell", "torch", slides, tmp_path / "run", epochs=2, batch_size=8, lr=3e-3, workers=0, seed=1,
                   card=tiny_card("cell"), steps_per_epoch=10, crop=16)  # 16 px windows of the 32 px tiles
    assert result.history[-1]["heatmap_loss"] < result.history[0]["heatmap_loss"]
    assert "val_f1" in result.history[-1]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_resume_continues_exactly(slides, tmp_path, framework):
    if framework == "tf":
        pytest.importorskip("keras")
    options = dict(epochs=2, batch_size=8, workers=0, seed=4, card=tiny_card("tissue", framework), steps_per_epoch=3)
    whole = train("tissue", framework, slides, tmp_path / "whole", **options)
    train("tissue", framework, slides, tmp_path / "parts", until_epoch=1, **options)
    state = json.loads((tmp_path / "parts" / "state" / "state.json").read_text())
    assert state["epochs_done"] == 1
    resumed = train("tissue", framework, slides, tmp_path / "parts", resume=True, **options)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    a, b = _weights(tmp_path / "whole" / "last"), _weights(tmp_path / "parts" / "last")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[name], b[name]) for name in a), framework
    assert whole.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]


def test_a_run_is_never_overwritten_and_resumes_only_itself(slides, tmp_path):
    options = dict(epochs=1, batch_size=8, workers=0, card=tiny_card("tissue"), steps_per_epoch=1)
    train("tissue", "torch", slides, tmp_path / "run", **options)
    with pytest.raises(TrainingError, match="not empty; pass --resume"):
        train("tissue", "torch", slides, tmp_path / "run", **options)
    with pytest.raises(TrainingError, match="other settings .*seed"):
        train("tissue", "torch", slides, tmp_path / "run", resume=True, seed=9, **options)
    with pytest.raises(TrainingError, match="crop windows are for torch models"):
        train("tissue", "tf", slides, tmp_path / "tf", crop=16, **options)
    with pytest.raises(TrainingError, match="no training state"):
        train("tissue", "torch", slides, tmp_path / "new", resume=True, **options)


def _rectangle(x0, y0, x1, y1):
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def test_training_from_qupath_annotations(slides, tmp_path):
    """A lab's case: slides annotated in QuPath (regions for tissue, detections for nuclei), no ground truth."""
    from slidescope.wsi.synthetic import load_truth

    regions, nuclei = tmp_path / "regions", tmp_path / "nuclei"
    regions.mkdir()
    nuclei.mkdir()
    for slide in slides:
        truth = load_truth(slide)
        width, height = truth.dimensions
        stem = slide.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        features = [  # a hand-drawn split of the slide: left half "Tumor", right half "Stroma", as QuPath writes it
            {"type": "Feature", "id": "a1", "geometry": {"type": "Polygon", "coordinates": _rectangle(0, 0, width // 2, height)},
             "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
            {"type": "Feature", "id": "a2", "geometry": {"type": "Polygon",
                                                        "coordinates": _rectangle(width // 2, 0, width, height)},
             "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
        ]
        (regions / f"{stem}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        detections = []  # a bare list, as QuPath also writes: detections' polygons become their centroids
        for (x, y), kind in zip(truth.nuclei_xy[:40], truth.nuclei_type[:40]):
            name = "Tumor" if truth.type_names[kind] == "tumour" else "Other"
            detections.append({"type": "Feature", "id": f"d{len(detections)}",
                               "geometry": {"type": "Polygon", "coordinates": _rectangle(x - 3, y - 3, x + 3, y + 3)},
                               "properties": {"objectType": "detection", "classification": {"name": name}}})
        (nuclei / f"{stem}.geojson").write_text(json.dumps(detections))
    tissue_card = ModelCard.new("tissue", tile=32, mpp=4.0, classes=[("Stroma", "#00ff00"), ("Tumor", "#ff0000")],
                                cascade_class="Tumor")
    result = train("tissue", "torch", slides, tmp_path / "tissue", annotations=regions, epochs=1, batch_size=8,
                   workers=0, card=tissue_card, steps_per_epoch=2)
    assert load_model(result.model_dir).card.training["data"]["train"]["tiles_per_class"]["Tumor"] > 0
    cell_card = ModelCard.new("cell", tile=32, overlap=4, classes=[("Other", "#0000ff"), ("Tumor", "#ff0000")])
    result = train("cell", "torch", slides, tmp_path / "cell", annotations=nuclei, epochs=1, batch_size=4,
                   workers=0, card=cell_card, steps_per_epoch=2)
    summary = load_model(result.model_dir).card.training["data"]["train"]
    assert summary["tiles"] > 0 and sum(summary["nuclei_per_type"].values()) > 0


def test_an_unknown_annotation_class_names_the_file_and_feature(slides, tmp_path):
    from slidescope.models.errors import AnnotationError

    folder = tmp_path / "geojson"
    folder.mkdir()
    stem = slides[0].rsplit("/", 1)[-1].rsplit(".", 1)[0]
    (folder / f"{stem}.geojson").write_text(json.dumps([
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": _rectangle(0, 0, 500, 500)},
         "properties": {"objectType": "annotation", "classification": {"name": "Necrosis"}}}]))
    with pytest.raises(AnnotationError, match=rf"{stem}.geojson: feature 0: class 'Necrosis' is not among the classes"):
        train("tissue", "torch", slides[:1], tmp_path / "run", annotations=folder, epochs=1, workers=0,
              card=tiny_card("tissue"))
