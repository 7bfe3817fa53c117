"""The ``slidescope`` command line: each command's output and its errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from slidescope.tiling.plan import TilePlan
from slidescope.workflows.cli import main


def test_info_table(capsys, data_file):
    path = data_file("CMU-1-Small-Region.svs")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "aperio" in out and "2220 x 2967" in out and "0.4990" in out and "20x" in out
    assert "label (387x463)" in out


def test_info_json(capsys, data_file):
    path = data_file("test3-DAPI-2-(387).ndpi")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vendor"] == "hamamatsu" and info["backend"] == "openslide"
    assert len(info["levels"]) == 7 and info["levels"][1]["downsample"] == 2.0
    assert info["objective_power"] == 40.0 and "macro" in info["associated_images"]


@pytest.mark.parametrize("name, message", [
    ("broken.svs", "broken.svs: no backend can read this file"),
    ("unopenable.tiff", "unopenable.tiff"),
])
def test_info_errors_exit_2_with_one_line(capsys, name, message, data_file):
    assert main(["info", str(data_file(name))]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_info_missing_file(capsys, tmp_path):
    assert main(["info", str(tmp_path / "x.svs")]) == 2
    assert "x.svs: no such slide file" in capsys.readouterr().err


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "made.svs"
    assert main(["synth", str(out), "--width", "1500", "--height", "1000", "--seed", "3", "--no-tumour"]) == 0
    assert out.exists()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["vendor"] == "aperio" and info["dimensions"] == [1500, 1000]


def test_tissue_and_tile(tmp_path, capsys, data_file):
    path = data_file("CMU-1-Small-Region.svs")
    mask_png = tmp_path / "mask.png"
    assert main(["tissue", str(path), "--out", str(mask_png), "--mpp", "8"]) == 0
    mask = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (round(2967 * 0.499 / 8), round(2220 * 0.499 / 8))
    assert 0.1 < np.count_nonzero(mask) / mask.size < 0.9
    plan_path = tmp_path / "plan.parquet"
    assert main(["tile", str(path), "--scale", "2:128", "--mpp", "0.5", "--tile", "128", "--overlap", "16",
                 "--out", str(plan_path)]) == 0
    plan = TilePlan.load(plan_path)
    assert len(plan.tiles(0)) > 0 and len(plan.tiles(1)) > len(plan.tiles(0))
    assert plan.scales[1].overlap == 16 and plan.slide.path == str(path)


def test_tile_errors(tmp_path, capsys, data_file):
    path = data_file("CMU-1-Small-Region.svs")
    assert main(["tile", str(path), "--out", str(tmp_path / "p.parquet")]) == 2
    assert "expected --mpp" in capsys.readouterr().err
    assert main(["tile", str(path), "--mpp", "0.1", "--out", str(tmp_path / "p.parquet")]) == 2
    assert "finer than level 0" in capsys.readouterr().err
    assert main(["tile", str(path), "--scale", "abc", "--out", str(tmp_path / "p.parquet")]) == 2
    assert not (tmp_path / "p.parquet").exists()


def _tiff_without_mpp(path):
    import tifffile

    tifffile.imwrite(path, np.full((256, 256, 3), 200, np.uint8), tile=(64, 64), photometric="rgb")
    return path


def test_info_shows_a_slide_without_mpp_with_mpp_unknown(tmp_path, capsys):
    path = _tiff_without_mpp(tmp_path / "nompp.tiff")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "256 x 256 px" in out and "mpp               unknown" in out and "--slide-mpp" in out
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mpp"] is None and info["dimensions"] == [256, 256]
    assert [level["mpp"] for level in info["levels"]] == [None] * len(info["levels"])
    assert main(["info", str(path), "--slide-mpp", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mpp"] == [0.5, 0.5]


def test_commands_that_need_mpp_say_how_to_pass_it(tmp_path, capsys):
    path = _tiff_without_mpp(tmp_path / "nompp.tiff")
    assert main(["tissue", str(path), "--out", str(tmp_path / "m.png")]) == 2
    assert "--slide-mpp 0.25" in capsys.readouterr().err
    assert main(["tile", str(path), "--slide-mpp", "0.5", "--mpp", "1.0", "--tile", "64", "--no-mask",
                 "--out", str(tmp_path / "p.parquet")]) == 0
    assert len(TilePlan.load(tmp_path / "p.parquet")) == 4


def test_only_slidescope_errors_are_one_line_exits(monkeypatch, small_slide):
    """A bug (here an OSError or KeyError from inside a command) is a traceback, not exit 2."""
    from slidescope.workflows import info

    for bug in (OSError("disk on fire"), KeyError("label")):
        def broken(slide, bug=bug):
            raise bug

        monkeypatch.setattr(info, "slide_summary", broken)
        with pytest.raises(type(bug)):
            main(["info", str(small_slide)])


def test_an_oserror_while_writing_is_a_one_line_error(monkeypatch, small_slide, tmp_path, capsys):
    from slidescope.tiling.tissue import TissueMask

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TissueMask, "to_png", full_disk)
    out = tmp_path / "mask.png"
    assert main(["tissue", str(small_slide), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: cannot write" in err and "No space left on device" in err


def test_tissue_at_an_absurd_mpp_is_a_one_line_error(small_slide, tmp_path, capsys):
    out = tmp_path / "mask.png"
    assert main(["tissue", str(small_slide), "--mpp", "100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slidescope tissue: error: ") and err.count("\n") == 1 and "100000" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["tissue", "tile"])
def test_dark_field_slide_is_refused_unless_the_method_is_chosen(capsys, tmp_path, data_file, command):
    path = data_file("test3-DAPI-2-(387).ndpi")  # DAPI fluorescence: black background
    out = tmp_path / ("mask.png" if command == "tissue" else "plan.parquet")
    extra = ["--mpp", "2"] if command == "tile" else []
    assert main([command, str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert "dark-field" in err and "--method fluorescence" in err and err.count("\n") == 1
    assert not out.exists()
    assert main([command, str(path), "--out", str(out), *extra, "--method", "fluorescence"]) == 0
    assert out.exists()
    if command == "tissue":
        assert "tissue 8" in capsys.readouterr().out  # about 83 % of the DAPI slide is tissue


def test_a_scale_that_keeps_no_tile_is_a_warning_line(capsys, tmp_path, small_slide):
    out = tmp_path / "plan.parquet"
    assert main(["tile", str(small_slide), "--mpp", "100000", "--tile", "256", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "0 tiles" in captured.out and out.exists()
    assert captured.err.count("\n") == 1
    assert "warning: scale 0 (256 px at 100000 µm/px) kept no tile" in captured.err
    assert "wider than the slide" in captured.err
    assert main(["tile", str(small_slide), "--mpp", "0.5", "--tile", "64", "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""  # tiles kept: no warning


@pytest.mark.parametrize("options, named", [
    (["--scale", "2:256:300"], "--scale 2:256:300: "),
    (["--mpp", "2", "--overlap", "256"], "--mpp 2 --tile 256 --overlap 256"),
])
def test_scale_errors_name_the_option(capsys, tmp_path, small_slide, options, named):
    assert main(["tile", str(small_slide), *options, "--out", str(tmp_path / "p.parquet")]) == 2
    err = capsys.readouterr().err
    assert named in err and "overlap" in err and err.count("\n") == 1


def test_synth_size_limits_are_the_generator_s(capsys, tmp_path):
    from slidescope.workflows.commands.slide import SYNTH_EDGE_RANGE
    from slidescope.wsi import synthetic

    assert SYNTH_EDGE_RANGE == (synthetic.MIN_SIZE, synthetic.MAX_SIZE)
    for width in ("10", str(2**20)):
        with pytest.raises(SystemExit):
            main(["synth", str(tmp_path / "x.svs"), "--width", width, "--height", "100"])
        assert "argument --width: expected an integer >= 64 and <= 262144" in capsys.readouterr().err
