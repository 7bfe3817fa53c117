"""``slidescope merge`` (workflows/commands/merge.py; here beside the trained parts it merges)."""

from __future__ import annotations

import json
import os

import pytest

from slidescope.workflows.cli import main

pytest.importorskip("torch")


def test_merge_command_writes_a_checked_directory(parts, tmp_path, capsys):
    tissue, cell = parts.need(("tissue", "tf"), ("cell", "torch"))
    out = tmp_path / "merged"
    assert main(["merge", "--tissue", tissue["dir"], "--cell", cell["state"], "--cell-card",
                 os.path.join(cell["dir"], "card.json"), "--target", "torch", "--out", str(out), "--exports", "pt2"]) == 0
    printed = capsys.readouterr().out
    assert "scope tissue: 14 mapped" in printed or "scope tissue:" in printed
    assert "tissue part: agrees with its source run alone" in printed
    assert "cell part: not checked: a bare checkpoint" in printed
    assert "pt2: reloaded and checked" in printed and "the slide head is untrained" in printed
    card = json.loads((out / "card.json").read_text())
    assert set(card["exports"]) == {"pt2"} and card["sources"]["cell"]["format"] == "torch"
    assert main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", "--out", str(out),
                 "--exports"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_merge_command_strict_failure_prints_the_report(parts, tmp_path, capsys):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    out = tmp_path / "merged"
    code = main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", "--out", str(out),
                 "--rule", r"^classifier\.=>head_x.", "--exports"])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "MISSING" in err and "tissue.classifier.weight" in err and "UNEXPECTED" in err
    assert err.strip().splitlines()[-1].startswith("slidescope merge: error: tissue part:")
    code = main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", "--out", str(out),
                 "--rule", r"^classifier\.=>head_x.", "--lenient", "--exports"])
    captured = capsys.readouterr()
    assert code == 0 and "accepted (lenient): missing: tissue.classifier.weight" in captured.out
    assert "warning: tissue part" in captured.err


def test_merge_never_writes_over_its_inputs(parts, tmp_path, capsys):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    assert main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", "--out",
                 tissue["dir"], "--exports", "--overwrite"]) == 2
    assert "never writes over its inputs" in capsys.readouterr().err
    assert main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", "--out",
                 str(tmp_path / "a" / "b" / "c"), "--exports"]) == 2  # two missing levels


def test_merge_into_tf_and_back(parts, tmp_path, capsys):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "tf"))
    out = tmp_path / "tf-merged"
    assert main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "tf", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "savedmodel: reloaded and checked" in printed and "onnx: reloaded and checked" in printed
    names = sorted(os.listdir(out))
    assert {"card.json", "merged.weights.h5", "merged.ckpt.index", "model.onnx", "savedmodel"} <= set(names)
    assert main(["inspect", str(out / "merged.ckpt"), "--json"]) == 0
    tensors = {t["name"] for t in json.loads(capsys.readouterr().out)["tensors"]}
    assert "tissue/block1_conv1/kernel" in tensors and "cell/type_head/kernel" in tensors
    assert "head/classifier/kernel" in tensors


def test_merge_refuses_outputs_and_exports_before_the_work(parts, tmp_path, capsys):
    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("a lab's file")
    for extra, message in ((["--out", str(busy)], "holds no merged model"),
                           (["--out", str(tmp_path / "a" / "b")], "only the last level of --out is created"),
                           (["--out", str(tmp_path / "ok"), "--exports", "savedmodel"], "a torch graph exports pt2, onnx"),
                           (["--out", str(tmp_path / "ok"), "--allow-missing", "["], "allow_missing pattern '['")):
        code = main(["merge", "--tissue", tissue["dir"], "--cell", cell["dir"], "--target", "torch", *extra])
        captured = capsys.readouterr()
        assert code == 2 and message in captured.err and captured.err.count("\n") == 1, captured.err
        assert "mapped" not in captured.out  # refused before any source was read
    assert (busy / "notes.txt").read_text() == "a lab's file" and not (tmp_path / "ok").exists()


def test_a_head_fits_only_its_parts(parts, tmp_path):
    from slidescope.merge.export import write_merged
    from slidescope.merge.merging import merge_models
    from slidescope.wsi.errors import ParameterError

    tissue, cell = parts.need(("tissue", "torch"), ("cell", "torch"))
    model, _ = merge_models(tissue["dir"], cell["dir"], target="torch")
    model.card = model.card.replace(head_trained=True)  # as train head leaves it
    write_merged(model, tmp_path / "head", exports=())
    merge_models(tissue["dir"], cell["dir"], target="torch", head=tmp_path / "head")  # the same parts: taken
    other, _ = parts.need(("tissue", "tf"), ("cell", "torch"))
    with pytest.raises(ParameterError, match="trained on other tissue weights"):
        merge_models(other["dir"], cell["dir"], target="torch", head=tmp_path / "head")
