"""The shared inference path: input checks, outputs, the CAM identity, loading, saving, pickling."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from slidescope.models import (
    FrameworkError,
    ModelCard,
    ModelCardError,
    ModelError,
    ModelInputError,
    ModelNotFoundError,
    OutputExistsError,
    create_model,
    load_model,
    logits_from_cams,
    save_model,
)

pytest.importorskip("torch")

SMALL = {"widths": [8, 16], "depth": 1}


def small_card(task: str, framework: str = "torch", **input_options) -> ModelCard:
    data = ModelCard.new(task, framework).to_dict()
    data["architecture"].update(SMALL)
    data["input"].update(tile=64, overlap=0 if task == "tissue" else 8, **input_options)
    return ModelCard.from_dict(data)


@pytest.fixture(scope="module")
def tissue_model():
    return create_model("tissue", "torch", card=small_card("tissue"), seed=0, device="cpu")


@pytest.fixture(scope="module")
def cell_model():
    return create_model("cell", "torch", card=small_card("cell"), seed=0, device="cpu")


def tiles(count: int = 3, size: int = 64) -> np.ndarray:
    return np.random.default_rng(count).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("images, expected", [
    ([[1, 2, 3]], "expected a numpy array"),
    (np.zeros((2, 64, 64, 3), np.float32), "expected dtype uint8"),
    (np.zeros((64, 64, 3), np.uint8), r"pass images\[None\]"),
    (np.zeros((2, 64, 64, 4), np.uint8), "expected 3 channels"),
    (np.zeros((2, 128, 128, 3), np.uint8), "expected tiles of 64 x 64 px .* got width 128 x height 128"),
])
def test_input_checks_say_expected_and_got(tissue_model, images, expected):
    with pytest.raises(ModelInputError, match=expected):
        tissue_model.predict(images)


def test_mpp_is_checked_when_given(tissue_model):
    tissue_model.predict(tiles(1), mpp=2.05)
    with pytest.raises(ModelInputError, match="expected 2 µm/px .* got 0.5"):
        tissue_model.predict(tiles(1), mpp=0.5)
    with pytest.raises(ModelInputError):
        tissue_model.predict(tiles(1), mpp=float("nan"))


def test_tissue_outputs_and_the_cam_identity(tissue_model):
    out = tissue_model.predict(tiles(5), batch_size=2)  # three chunks
    assert set(out) == {"probs", "cam", "logits", "embedding"}
    assert out["probs"].shape == (5, 3) and out["cam"].shape == (5, 16, 16, 3) and out["embedding"].shape == (5, 16)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-6)
    _, bias = tissue_model.backend.classifier()
    np.testing.assert_allclose(logits_from_cams(out["cam"], bias), out["logits"], atol=1e-5)
    whole = tissue_model.predict(tiles(5), batch_size=64)
    np.testing.assert_allclose(whole["probs"], out["probs"], atol=1e-6)  # chunking changes nothing


def test_cell_outputs(cell_model):
    out = cell_model.predict(tiles(2))
    assert set(out) == {"heatmap", "types", "counts", "embedding"}
    assert out["heatmap"].shape == (2, 64, 64) and out["types"].shape == (2, 64, 64, 2)
    assert out["heatmap"].min() >= 0 and out["heatmap"].max() <= 1
    np.testing.assert_allclose(out["types"].sum(axis=-1), 1.0, atol=1e-5)
    found = cell_model.detect(tiles(2))
    assert list(found.columns) == ["image", "x", "y", "type", "score"]
    assert (found.score >= cell_model.card.thresholds["nucleus_score"]).all()
    assert set(found.type) <= {"normal", "tumour"}
    counts = np.zeros((2, 2), np.int64)
    for image, name in zip(found.image, found.type):
        counts[image, ["normal", "tumour"].index(name)] += 1
    np.testing.assert_array_equal(out["counts"], counts)


def test_no_images_give_empty_outputs_of_the_right_shape(tissue_model, cell_model):
    empty = np.zeros((0, 64, 64, 3), np.uint8)
    assert tissue_model.predict(empty)["cam"].shape == (0, 16, 16, 3)
    assert cell_model.predict(empty)["types"].shape == (0, 64, 64, 2)
    assert list(cell_model.detect(empty).columns) == ["image", "x", "y", "type", "score"]


def test_detect_needs_a_cell_model(tissue_model):
    with pytest.raises(ModelError, match="expected a cell model"):
        tissue_model.detect(tiles(1))


def test_save_load_and_the_process_cache(tissue_model, tmp_path):
    directory = save_model(tissue_model, tmp_path / "tissue")
    assert sorted(os.listdir(directory)) == ["card.json", "weights.safetensors"]
    loaded = load_model(directory)
    assert loaded is load_model(directory)  # once per process
    assert pickle.loads(pickle.dumps(loaded)) is loaded  # unpickling goes through the cache
    np.testing.assert_array_equal(loaded.predict(tiles(2))["probs"], tissue_model.predict(tiles(2))["probs"])
    with pytest.raises(ModelCardError, match="framework: expected 'tf'"):
        load_model(directory, framework="tf")


def test_unsaved_models_pickle_with_their_weights(cell_model):
    copy = pickle.loads(pickle.dumps(cell_model))
    assert copy is not cell_model and copy.directory is None
    np.testing.assert_array_equal(copy.predict(tiles(1))["heatmap"], cell_model.predict(tiles(1))["heatmap"])


def test_save_model_never_replaces_other_folders(tissue_model, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a model directory"):
        save_model(tissue_model, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    save_model(tissue_model, tmp_path / "model")
    save_model(tissue_model, tmp_path / "model")  # a previous model is replaced


def test_changed_weights_are_refused(tissue_model, tmp_path):
    directory = save_model(tissue_model, tmp_path / "m")
    with open(os.path.join(directory, "weights.safetensors"), "r+b") as stream:
        stream.seek(-4, os.SEEK_END)
        stream.write(b"\0\0\0\0")
    with pytest.raises(ModelCardError, match="weights.sha256"):
        load_model(directory)


def test_missing_models(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such model directory"):
        load_model(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="got a file"):
        load_model(tmp_path / "file")
    with pytest.raises(ModelCardError, match="no model card"):
        load_model(tmp_path)
    with pytest.raises(ModelCardError, match="framework: expected one of"):
        create_model("tissue", "jax")


def test_a_framework_that_is_not_installed_says_what_to_install(monkeypatch):
    from slidescope.models import registry

    monkeypatch.setitem(registry.ADAPTERS, "torch", ("slidescope.models._absent", "Nothing", "torch==2.13.0"))
    with pytest.raises(FrameworkError, match="install torch==2.13.0"):
        registry.backend_class("torch")


def test_shipped_models_are_found_by_name_or_say_how_to_get_them():
    try:
        model = load_model("tissue", device="cpu")
    except ModelNotFoundError as exc:
        assert "pass a model directory" in str(exc)
    else:
        assert model.card.task == "tissue"


def test_importing_models_loads_no_framework():
    code = ("import sys, slidescope.models, slidescope.models.registry\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_saved_weights_are_readable_like_the_card(tissue_model, tmp_path):
    import stat

    directory = save_model(tissue_model, tmp_path / "shared-model")
    mode = {name: stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) for name in os.listdir(directory)}
    assert mode["weights.safetensors"] == mode["card.json"]


def test_a_card_whose_framework_disagrees_with_its_weights(tissue_model, tmp_path):
    import json

    directory = save_model(tissue_model, tmp_path / "m")
    card = json.loads(open(os.path.join(directory, "card.json")).read())
    card["framework"] = "tf"
    with open(os.path.join(directory, "card.json"), "w") as stream:
        json.dump(card, stream)
    pytest.importorskip("keras")
    with pytest.raises(ModelCardError, match="weights.file: expected a .weights.h5 file for framework 'tf'"):
        load_model(directory)
