"""``slidescope inspect``: a checkpoint's contents as a table or as JSON, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slidescope.workflows.cli import main


@pytest.fixture
def checkpoint(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"conv1.weight": np.zeros((4, 3, 3, 3), np.float32), "bn1.running_mean": np.zeros(4, np.float32),
               "bn1.num_batches_tracked": np.array(2, np.int64)}, str(path))
    return path


def test_inspect_json_shape(checkpoint, capsys):
    assert main(["inspect", str(checkpoint), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "safetensors" and data["framework"] == "torch"
    by_name = {t["name"]: t for t in data["tensors"]}
    assert by_name["conv1.weight"] == {"name": "conv1.weight", "shape": [4, 3, 3, 3], "dtype": "float32", "kind": "weight"}
    assert {t["kind"] for t in data["tensors"]} == {"weight", "buffer", "counter"}
    assert data["totals"]["tensors"] == 3 and data["totals"]["parameters"] == 108 + 4 + 1


def test_inspect_table(checkpoint, capsys):
    assert main(["inspect", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "format      safetensors" in out and "conv1.weight" in out and "(4, 3, 3, 3)" in out
    assert "3 tensors (1 weight, 1 buffer, 1 counter); 113 values" in out


def test_inspect_errors_are_one_line(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["inspect", str(text)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(text) in err and "a text file" in err
    assert main(["inspect", str(tmp_path / "absent.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
