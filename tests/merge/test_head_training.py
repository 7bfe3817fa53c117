"""train_head and ``slidescope train head``: the slide head learns slide labels with the parts frozen."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slidescope.merge.export import write_merged
from slidescope.merge.head_training import HeadTrainingError, read_labels, slide_features, train_head
from slidescope.merge.merged import load_merged
from slidescope.merge.merging import merge_models

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def labelled_slides(tmp_path_factory):
    """Two generated slides with a tumour region and two without (small: seconds to read)."""
    from slidescope.wsi.synthetic import make_slide

    folder = tmp_path_factory.mktemp("head-slides")
    return [str(make_slide(folder / f"s{seed}.svs", 2048, 1536, seed=seed, tumour=seed % 2 == 0).path)
            for seed in range(4)]


def test_slide_features_follow_the_plan_and_the_cascade(parts, labelled_slides):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    everywhere = slide_features(model, labelled_slides[0], cascade=False)
    assert everywhere.embedding.shape == (len(everywhere.gate), model.card.head.embedding)
    assert everywhere.cells.shape == (len(everywhere.gate), 2) and everywhere.fine_tiles > 0
    cascaded = slide_features(model, labelled_slides[0])
    assert cascaded.fine_tiles <= everywhere.fine_tiles
    np.testing.assert_array_equal(cascaded.embedding, everywhere.embedding)


def test_train_head_then_merge_with_it(parts, labelled_slides, tmp_path):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    before = model.backend.get_arrays()["head.classifier.weight"].copy()
    record = train_head(model, labelled_slides[:3], val_slides=labelled_slides[3:], epochs=5)
    assert model.card.head_trained and record["best_epoch"] >= 1 and len(record["history"]) == 5
    assert not np.array_equal(model.backend.get_arrays()["head.classifier.weight"], before)
    write_merged(model, tmp_path / "trained", exports=())
    assert json.loads((tmp_path / "trained" / "card.json").read_text())["head_trained"] is True
    # the trained head goes into another merge, here a TF graph: same slide probabilities
    pytest.importorskip("keras")
    other, reports = merge_models(tissue["dir"], cell["dir"], target="tf", head=tmp_path / "trained")
    assert other.card.head_trained and reports["head"].ok
    from slidescope.merge.export import sample_inputs

    inputs = sample_inputs(other.card)
    a = load_merged(tmp_path / "trained").backend.run(*inputs)["slide_probs"]
    np.testing.assert_allclose(other.backend.run(*inputs)["slide_probs"], a, atol=1e-5)


def test_labels_file_and_its_errors(parts, labelled_slides, tmp_path):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    good = tmp_path / "labels.csv"
    good.write_text("slide,label\n" + "".join(f"{os.path.basename(p)},{'tumour' if i % 2 == 0 else 'normal'}\n"
                                              for i, p in enumerate(labelled_slides)))
    assert read_labels(good, ["normal", "tumour"])["s1.svs"] == "normal"
    for text, message in (("name,label\n", "expected the columns slide,label"),
                          ("slide,label\ns0.svs,cancer\n", "line 2: label 'cancer' is not a slide class"),
                          ("slide,label\ns0.svs,normal\ns0.svs,tumour\n", "labelled twice")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(HeadTrainingError, match=message):
            read_labels(bad, ["normal", "tumour"])
    one_class = tmp_path / "one.csv"
    one_class.write_text("slide,label\n" + "".join(f"{os.path.basename(p)},normal\n" for p in labelled_slides))
    with pytest.raises(HeadTrainingError, match="at least two classes"):
        train_head(model, labelled_slides, labels=one_class, epochs=1)
    with pytest.raises(HeadTrainingError, match="at least two training slides"):
        train_head(model, labelled_slides[:1], epochs=1)


def test_train_head_command(parts, labelled_slides, tmp_path, capsys):
    from slidescope.workflows.cli import main

    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    out = tmp_path / "head"
    assert main(["train", "head", "--tissue", tissue["dir"], "--cell", cell["dir"], "--slides", *labelled_slides[:3],
                 "--val-slides", labelled_slides[3], "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2: train_loss" in printed and "val_accuracy" in printed and f"merge --head {out}" in printed
    assert json.loads((out / "card.json").read_text())["training"]["head"]["epochs"] == 2
    assert main(["train", "head", "--tissue", tissue["dir"], "--cell", cell["dir"], "--slides", *labelled_slides,
                 "--out", str(tmp_path / "x"), "--crop", "64"]) == 2
    assert "--crop does not apply here" in capsys.readouterr().err
    assert main(["train", "tissue", "--slides", *labelled_slides, "--out", str(tmp_path / "y"),
                 "--labels", "l.csv"]) == 2
    assert "--labels does not apply here" in capsys.readouterr().err


def test_slides_and_labels_refused_before_any_slide_is_read(parts, labelled_slides, tmp_path, capsys):
    from slidescope.workflows.cli import main

    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    with pytest.raises(HeadTrainingError, match="also a training slide"):
        train_head(model, labelled_slides[:3], val_slides=labelled_slides[:1], epochs=1)
    partial = tmp_path / "partial.csv"
    partial.write_text("slide,label\ns0,tumour\ns1.svs,normal\n")  # by stem and by file name; s2, s3 missing
    with pytest.raises(HeadTrainingError, match=f"{partial}: no label for the slide .*s2.svs"):
        train_head(model, labelled_slides, labels=partial, epochs=1)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["train", "head", "--tissue", tissue["dir"], "--cell", cell["dir"], "--slides", *labelled_slides,
                 "--labels", str(empty), "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert "an empty file" in captured.err and "mapped" not in captured.out
