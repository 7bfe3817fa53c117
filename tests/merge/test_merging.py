"""merge_models and write_merged: parts loaded under their scopes compute exactly what their sources
compute, every problem is reported, exports reload and agree, nothing is half-written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slidescope.merge import CheckpointError, RemapError
from slidescope.merge.export import sample_inputs, write_merged
from slidescope.merge.head import peak_counts
from slidescope.merge.merged import load_merged
from slidescope.merge.merging import MergeOptions, merge_models
from slidescope.merge.remap import parse_rule
from slidescope.wsi.errors import OutputExistsError

torch = pytest.importorskip("torch")


def alone(directory, coarse=None, fine=None):
    """What the source model computes alone: tissue logits of ``coarse`` or nuclei counts of ``fine``."""
    from slidescope.models import load_model

    model = load_model(directory, device="cpu")
    if coarse is not None:
        return model.backend.run(coarse)["logits"]
    raw = model.backend.run(fine)
    thresholds = model.card.thresholds
    return peak_counts(raw["heatmap"], raw["types"], threshold=thresholds["nucleus_score"],
                       min_distance_px=thresholds["min_distance_um"] / model.card.input.mpp)


def test_same_framework_parts_are_bit_identical(parts):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, reports = merge_models(tissue["dir"], cell["dir"], target="torch")
    assert all(report.ok for report in reports.values())
    coarse, fine, parents, valid = sample_inputs(model.card, seed=4)
    out = model.backend.run(coarse, fine, parents, valid)
    np.testing.assert_array_equal(out["tissue_logits"], alone(tissue["dir"], coarse=coarse))
    counts = alone(cell["dir"], fine=fine)
    assert counts.sum() > 0
    np.testing.assert_array_equal(out["cell_counts"], counts)
    verified = model.card.training["verified_against_sources"]
    assert verified["tissue"]["max_difference"] == 0.0 and verified["cell"]["max_difference"] == 0.0


def test_training_states_merge_like_their_model_directories(parts, small_card):
    """A torch training file (model + AdamW state) and a TF object-based checkpoint (model, optimiser
    slots, step) load the same weights as the model directories written from them."""
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "tf"))
    from_dirs, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    bare = dict(from_dirs.card.tissue.to_dict())
    assert bare["architecture"]["padding"] == "symmetric"
    cards = {"tissue": small_card("tissue", "torch"), "cell": small_card("cell", "tf")}  # not the standard size
    from_states, reports = merge_models(tissue["state"], cell["state"], target="torch",
                                        options=MergeOptions(cards=cards))
    ignored = {entry["reason"].split()[-1] for entry in reports["tissue"].ignored}
    assert {"optimizer", "counter"} <= ignored
    assert any("momentum" in entry["source"] for entry in reports["cell"].ignored)
    a, b = from_dirs.backend.get_arrays(), from_states.backend.get_arrays()
    for name in a:
        if not name.startswith("head."):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_across_frameworks_within_tolerance(parts):
    tissue, cell = parts.need(("tissue", "tf"), ("cell", "tf"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    assert model.card.tissue.architecture.padding == "tf_same" and model.card.tissue.architecture.batchnorm_epsilon == 1e-3
    coarse, fine, parents, valid = sample_inputs(model.card, seed=5)
    out = model.backend.run(coarse, fine, parents, valid)
    np.testing.assert_allclose(out["tissue_logits"], alone(tissue["dir"], coarse=coarse), atol=1e-4, rtol=0)
    assert np.abs(out["cell_counts"] - alone(cell["dir"], fine=fine)).sum() <= 1


@pytest.mark.parametrize("wrong", [{"padding": "symmetric"}, {"batchnorm_epsilon": 1e-5}])
def test_wrong_padding_or_epsilon_is_caught(parts, monkeypatch, wrong):
    """A part built with another padding convention or BatchNorm epsilon than its source was trained
    with loads every tensor (names and shapes fit) but computes something else: the check catches it."""
    tissue, cell = parts.need(("tissue", "tf"), ("cell", "tf"))
    from slidescope.merge import merging
    from slidescope.models.architectures import Architecture

    original = merging.part_card

    def mistaken(source, target):
        card = original(source, target)
        return card.replace(architecture=Architecture(**{**card.architecture.__dict__, **wrong}))

    monkeypatch.setattr(merging, "part_card", mistaken)
    with pytest.raises(CheckpointError, match="tissue part: the merged graph's tissue logits differ"):
        merge_models(tissue["dir"], cell["dir"], target="torch")


def test_bare_nested_torch_checkpoint(parts, tmp_path, small_card):
    """A bare torch file as a lab may have one: under ``state_dict``, with DataParallel's ``module.``."""
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    from safetensors.numpy import load_file

    from slidescope.models.card import ModelCard

    card = ModelCard.load(tissue["dir"])
    weights = load_file(os.path.join(tissue["dir"], card.weights.file))
    nested = tmp_path / "tissue-checkpoint.pth"
    torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in weights.items()}, "epoch": 7}, nested)
    with pytest.raises(RemapError, match="shape mismatch"):  # read as the standard architecture: it is not
        merge_models(nested, cell["dir"], target="torch")
    options = MergeOptions(cards={"tissue": small_card("tissue", "torch")})
    model, reports = merge_models(nested, cell["dir"], target="torch", options=options)
    assert reports["tissue"].ok and len(reports["tissue"].mapped) == len(weights) - 2  # without the two counters
    assert model.card.training["verified_against_sources"]["tissue"].startswith("not checked")
    coarse = sample_inputs(model.card)[0]
    np.testing.assert_array_equal(model.backend.run(*sample_inputs(model.card))["tissue_logits"],
                                  alone(tissue["dir"], coarse=coarse))


def test_strict_failure_names_the_part_and_every_problem(parts, tmp_path):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    with pytest.raises(RemapError) as raised:
        merge_models(tissue["dir"], cell["dir"], target="torch",
                     options=MergeOptions(rules=(parse_rule(r"^type_head\.=>types."),)))
    message = str(raised.value)
    assert message.startswith("cell part:") and "missing: cell.type_head.weight" in message
    assert "unexpected: cell.types.weight" in message
    report = raised.value.report
    assert report.missing == ["cell.type_head.weight", "cell.type_head.bias"]
    model, reports = merge_models(tissue["dir"], cell["dir"], target="torch",
                                  options=MergeOptions(rules=(parse_rule(r"^type_head\.=>types."),), lenient=True))
    assert not reports["cell"].ok  # reported, not raised; the type head kept its initial weights
    assert "differ from" in model.card.training["verified_against_sources"]["cell"]["error"]


def test_write_merged_exports_reload_and_agree(parts, tmp_path):
    tissue, cell = parts.need(("tissue", "tf"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    out = tmp_path / "merged"
    checks = write_merged(model, out)
    assert checks["weights"] == 0.0 and checks["pt2"] <= 1e-5 and checks["onnx"] <= 1e-5
    assert sorted(os.listdir(out)) == ["card.json", "merged.safetensors", "model.onnx", "model.pt2"]
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "slidescope-merged-model" and card["head_trained"] is False
    assert set(card["sources"]) == {"tissue", "cell"} and card["sources"]["tissue"]["framework"] == "tf"
    assert card["remap"]["tissue"]["ok"] and "port tf -> torch (names and layouts)" in card["remap"]["tissue"]["rules"]
    assert set(card["exports"]) == {"pt2", "onnx"}
    import onnx

    onnx.checker.check_model(str(out / "model.onnx"))
    assert not any(name.endswith(".data") for name in os.listdir(out))  # no external data
    loaded = load_merged(out)
    inputs = sample_inputs(loaded.card, coarse_tiles=4, fine_tiles=2, seed=9)  # other tile counts: dynamic shapes
    expected = model.backend.run(*inputs)
    for name, value in loaded.backend.run(*inputs).items():
        np.testing.assert_array_equal(value, expected[name])
    from slidescope.merge.onnx_files import run_onnx

    onnx_out = run_onnx(str(out / "model.onnx"), inputs, tuple(expected))
    for name, value in onnx_out.items():
        np.testing.assert_allclose(value, expected[name], atol=1e-5, rtol=0)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_merged(model, out)
    write_merged(model, out, exports=(), overwrite=True)
    assert "model.onnx" not in os.listdir(out) and "model.pt2" not in os.listdir(out)  # the old exports go too


def test_tampered_weights_are_refused(parts, tmp_path):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    write_merged(model, tmp_path / "m", exports=())
    weights = tmp_path / "m" / "merged.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        load_merged(tmp_path / "m")


def test_slide_model_predict_checks_inputs(parts):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    coarse, fine, parents, _ = sample_inputs(model.card)
    with pytest.warns(UserWarning, match="slide head is untrained"):
        out = model.predict(coarse, fine, parents)
    assert out["slide_probs"].shape == (2,) and abs(out["slide_probs"].sum() - 1) < 1e-6
    assert out["attention"].shape == (len(coarse),) and abs(out["attention"].sum() - 1) < 1e-6
    empty = model.predict(coarse, fine[:0], parents[:0])  # no fine tiles: cell features are zero
    assert empty["cell_counts"].shape == (0, 2) and not empty["cell_features"].any()
    from slidescope.wsi.errors import ParameterError

    with pytest.raises(ParameterError, match="at least one coarse tile"):
        model.predict(coarse[:0], fine, parents)
    with pytest.raises(ParameterError, match="rows of the 3 coarse tiles"):
        model.predict(coarse, fine, parents + 5)
    with pytest.raises(ParameterError, match="uint8 RGB tiles"):
        model.predict(coarse.astype(np.float32), fine, parents)


def test_load_model_loads_a_merged_directory_and_it_pickles_as_its_path(parts, tmp_path):
    import pickle

    from slidescope.merge import SlideModel
    from slidescope.models import load_model

    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    with pytest.raises(CheckpointError, match="write it first"):
        pickle.dumps(model)
    write_merged(model, tmp_path / "m", exports=())
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, SlideModel) and load_model(tmp_path / "m") is loaded
    assert len(pickle.dumps(loaded)) < 1000 and pickle.loads(pickle.dumps(loaded)) is loaded
    inputs = sample_inputs(loaded.card)
    np.testing.assert_array_equal(loaded.backend.run(*inputs)["slide_probs"], model.backend.run(*inputs)["slide_probs"])


@pytest.mark.parametrize("target", ["torch", "tf"])
def test_ensembles_average_their_members(parts, tmp_path, target, train_part):
    
    pytest.importorskip("keras") if target == "tf" else None
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    second = train_part(tmp_path, "tissue", "torch", seed=5)
    model, reports = merge_models([tissue["dir"], second["dir"]], cell["dir"], target=target)
    assert set(reports) == {"tissue_0", "tissue_1", "cell"} and model.card.members == {"tissue": 2, "cell": 1}
    separator = "." if target == "torch" else "/"
    names = {info.name.split(separator)[0] for info in model.backend.target_infos()}
    assert names == {"tissue_0", "tissue_1", "cell", "head"}
    coarse, fine, parents, valid = sample_inputs(model.card, seed=2)
    out = model.backend.run(coarse, fine, parents, valid)
    expected = (alone(tissue["dir"], coarse=coarse) + alone(second["dir"], coarse=coarse)) / 2
    np.testing.assert_allclose(out["tissue_logits"], expected, atol=1e-5, rtol=0)
    assert model.card.training["verified_against_sources"]["tissue"]["members"] == 2
    write_merged(model, tmp_path / "ensemble", exports=())
    loaded = load_merged(tmp_path / "ensemble")
    assert loaded.card.members == {"tissue": 2, "cell": 1}
    np.testing.assert_array_equal(loaded.backend.run(coarse, fine, parents, valid)["tissue_logits"], out["tissue_logits"])


def test_ensemble_members_must_agree(parts, tmp_path):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    from slidescope.models.loading import SHIPPED_DIR
    from slidescope.wsi.errors import ParameterError

    with pytest.raises(ParameterError, match="an ensemble's tissue models must share"):
        merge_models([tissue["dir"], SHIPPED_DIR / "tissue-torch"], cell["dir"], target="torch")


def test_sources_refused_before_any_work(parts, tmp_path):
    from slidescope.wsi.errors import ParameterError

    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    with pytest.raises(ParameterError, match="given twice"):
        merge_models([tissue["dir"], tissue["dir"]], cell["dir"], target="torch")
    with pytest.raises(ParameterError, match="brings its own card"):
        merge_models(tissue["dir"], cell["dir"], target="torch",
                     options=MergeOptions(cards={"tissue": small_card_of(tissue["dir"])}))
    with pytest.raises(ParameterError, match="allow_missing pattern"):
        merge_models(tissue["dir"], cell["dir"], target="torch", options=MergeOptions(allow_missing=("[",)))


def small_card_of(directory):
    from slidescope.models.card import ModelCard

    return ModelCard.load(directory)


def test_shipped_names_and_readable_outputs(tmp_path):
    from slidescope.models.loading import SHIPPED_DIR

    if not (SHIPPED_DIR / "cell-torch" / "card.json").is_file():
        pytest.skip("no shipped cell-torch model in this checkout (make models)")
    model, _ = merge_models("tissue", "cell", target="torch")
    assert model.card.sources["tissue"]["path"] == str((SHIPPED_DIR / "tissue-torch").resolve())
    old = os.umask(0o022)
    try:
        write_merged(model, tmp_path / "shared", exports=())
    finally:
        os.umask(old)
    for name in os.listdir(tmp_path / "shared"):
        assert oct(os.stat(tmp_path / "shared" / name).st_mode & 0o777) == "0o644", name
