"""The model card: round trips, every validation error names the file and the key, sha256 checks."""

from __future__ import annotations

import json
import re

import pytest

from slidescope.models import ModelCard, ModelCardError
from slidescope.models.card import CARD_FILE, file_sha256
from slidescope.tiling import Scale


@pytest.mark.parametrize("task", ["tissue", "cell"])
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_round_trip_through_json(tmp_path, task, framework):
    card = ModelCard.new(task, framework, name="m", metrics={"auc": 0.97}, training={"slides": ["a.svs"]})
    path = card.save(tmp_path / CARD_FILE)
    loaded = ModelCard.load(path)
    assert loaded == card
    assert ModelCard.load(tmp_path) == card  # a directory finds its card.json
    assert json.loads((tmp_path / CARD_FILE).read_text())["task"] == task


def test_the_card_is_frozen():
    card = ModelCard.new("tissue")
    with pytest.raises(AttributeError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.thresholds["cascade_probability"] = 0.1  # type: ignore[index]
    with pytest.raises(TypeError):
        card.metrics["auc"] = 1.0  # type: ignore[index]


def test_scale_comes_from_the_card():
    assert ModelCard.new("tissue").scale() == Scale(2.0, 256, name="tissue")
    assert ModelCard.new("cell").scale() == Scale(0.5, 256, overlap=32, name="cell")
    custom = ModelCard.new("cell", mpp=0.25, tile=128, overlap=16, context=8)
    assert custom.scale() == Scale(0.25, 128, overlap=16, context=8, name="cell")
    assert custom.input.size == 144


def test_defaults_follow_the_framework():
    assert ModelCard.new("tissue", "torch").architecture.batchnorm_epsilon == 1e-5
    assert ModelCard.new("tissue", "torch").architecture.padding == "symmetric"
    assert ModelCard.new("tissue", "tf").architecture.batchnorm_epsilon == 1e-3
    assert ModelCard.new("tissue", "tf").architecture.padding == "tf_same"
    assert ModelCard.new("tissue").cascade_class == "tumour"
    assert ModelCard.new("cell").cascade_class is None


def _broken(edit):
    data = ModelCard.new("cell", "torch").to_dict()
    edit(data)
    return data


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("name"), "name"),
    (lambda d: d.pop("input"), "input"),
    (lambda d: d["input"].pop("mpp"), "input.mpp"),
    (lambda d: d["input"].update(mpp="0.5"), "input.mpp"),
    (lambda d: d["input"].update(mpp=float("nan")), "input.mpp"),
    (lambda d: d["input"].update(mpp=-1), "input.mpp"),
    (lambda d: d["input"].update(tile=True), "input.tile"),
    (lambda d: d["input"].update(tile=250), "input.tile"),  # not a multiple of 4 for the U-Net
    (lambda d: d["input"].update(overlap=256), "input.overlap"),
    (lambda d: d["input"].update(channel_order="BGR"), "input.channel_order"),
    (lambda d: d["input"].update(std=[1, 0, 1]), "input.std[1]"),
    (lambda d: d["input"].update(mean=[1, 2]), "input.mean"),
    (lambda d: d["input"].update(stain={"method": "nonsense"}), "input.stain"),
    (lambda d: d.update(task="organ"), "task"),
    (lambda d: d.update(framework="jax"), "framework"),
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d["architecture"].update(name="resnet50"), "architecture.name"),
    (lambda d: d["architecture"].update(widths=[16, "32"]), "architecture.widths"),
    (lambda d: d["architecture"].update(kernel=4), "architecture.kernel"),
    (lambda d: d["architecture"].update(padding="valid"), "architecture.padding"),
    (lambda d: d["architecture"].update(batchnorm_epsilon=0), "architecture.batchnorm_epsilon"),
    (lambda d: d.update(classes=[{"name": "a", "color": "#000000"}]), "classes"),
    (lambda d: d["classes"][0].update(color="red"), "classes[0].color"),
    (lambda d: d["classes"][1].update(name=d["classes"][0]["name"]), "classes"),
    (lambda d: d["thresholds"].pop("nucleus_score"), "thresholds.nucleus_score"),
    (lambda d: d["thresholds"].update(nucleus_score=1.5), "thresholds.nucleus_score"),
    (lambda d: d.update(outputs=["probs"]), "outputs"),
    (lambda d: d.update(cascade_class="tumour"), "cascade_class"),
    (lambda d: d.update(weights={"file": "../w.safetensors", "sha256": "0" * 64}), "weights.file"),
    (lambda d: d.update(weights={"file": "w.safetensors", "sha256": "xyz"}), "weights.sha256"),
    (lambda d: d.update(metrics=[1, 2]), "metrics"),
    (lambda d: d["inference"].update(autocast="int8"), "inference.autocast"),
])
def test_each_bad_value_names_the_file_and_the_key(tmp_path, edit, key):
    path = tmp_path / CARD_FILE
    path.write_text(json.dumps(_broken(edit)))
    with pytest.raises(ModelCardError) as caught:
        ModelCard.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}:"), message


def test_unknown_cascade_class_of_a_tissue_card(tmp_path):
    data = ModelCard.new("tissue").to_dict()
    data["cascade_class"] = "necrosis"
    with pytest.raises(ModelCardError, match="cascade_class: expected one of the classes"):
        ModelCard.from_dict(data, "x/card.json")


@pytest.mark.parametrize("content, reason", [(None, "no model card"), ("{not json", "not valid JSON"),
                                             ("[1, 2]", "card: expected a JSON object")])
def test_unreadable_cards(tmp_path, content, reason):
    path = tmp_path / CARD_FILE
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelCardError, match=reason):
        ModelCard.load(path)


def test_weights_checked_against_the_sha256(tmp_path):
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"weights")
    from slidescope.models import WeightsSpec

    card = ModelCard.new("tissue").replace(weights=WeightsSpec(weights.name, file_sha256(weights)))
    assert card.check_weights(tmp_path) == str(weights)
    weights.write_bytes(b"changed")
    with pytest.raises(ModelCardError, match="weights.sha256: expected .* the weights were changed"):
        card.check_weights(tmp_path)
    weights.unlink()
    with pytest.raises(ModelCardError, match="weights.file: .* does not exist"):
        card.check_weights(tmp_path)
    with pytest.raises(ModelCardError, match="names no weights file"):
        ModelCard.new("tissue").check_weights(tmp_path)


def test_digest_changes_with_the_contract():
    card = ModelCard.new("tissue")
    assert card.digest() == ModelCard.from_dict(card.to_dict()).digest()
    assert card.digest() != card.replace(thresholds={"cascade_probability": 0.7}).digest()


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.update(notes="from the lab"), "notes"),
    (lambda d: d["input"].update(mmp=0.5), "input.mmp"),
    (lambda d: d["architecture"].update(width=[8]), "architecture.width"),
    (lambda d: d["classes"][0].update(colour="#000000"), "classes[0].colour"),
])
def test_unknown_keys_are_refused_not_dropped(tmp_path, edit, key):
    path = tmp_path / CARD_FILE
    path.write_text(json.dumps(_broken(edit)))
    with pytest.raises(ModelCardError, match=re.escape(f"{key}: unknown key; expected only")):
        ModelCard.load(path)
