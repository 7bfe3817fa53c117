"""No command writes over its input or over a file that is not its own kind of output (issue 6,
items 5 and 20): the output guard of ``slidescope.workflows.outputs`` as every writing command uses it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from slidescope.tiling.plan import TilePlan
from slidescope.workflows.cli import main

TILE = ["--mpp", "1", "--tile", "64"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _command(name: str, slide: Path, out: Path, *extra: str) -> list[str]:
    return [name, str(slide), "--out", str(out), *(TILE if name == "tile" else []), *extra]


# ----------------------------------------------------------------------------- never the input


@pytest.mark.parametrize("name", ["tissue", "tile"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_onto_the_input_is_refused(name, overwrite, slide_copy, capsys):
    before = _digest(slide_copy)
    assert main(_command(name, slide_copy, slide_copy, *overwrite)) == 2
    _one_line_error(capsys, "names the input", str(slide_copy))
    assert _digest(slide_copy) == before


@pytest.mark.parametrize("name, out_name", [("tissue", "link.png"), ("tile", "link.parquet")])
def test_output_through_a_symlink_or_hard_link_to_the_input_is_refused(name, out_name, slide_copy, tmp_path, capsys):
    before = _digest(slide_copy)
    symlink = tmp_path / out_name
    symlink.symlink_to(slide_copy)
    assert main(_command(name, slide_copy, symlink, "--overwrite")) == 2
    _one_line_error(capsys, "names the input")
    assert symlink.is_symlink() and _digest(slide_copy) == before

    hard = tmp_path / f"hard-{out_name}"
    os.link(slide_copy, hard)
    assert main(_command(name, slide_copy, hard, "--overwrite")) == 2
    _one_line_error(capsys, "names the input")
    assert os.path.samefile(hard, slide_copy) and _digest(slide_copy) == before


def test_input_given_through_a_symlink_is_still_the_input(slide_copy, tmp_path, capsys):
    via = tmp_path / "via.svs"
    via.symlink_to(slide_copy)
    before = _digest(slide_copy)
    assert main(["tile", str(via), "--out", str(slide_copy), *TILE, "--overwrite"]) == 2
    _one_line_error(capsys, "names the input")
    assert _digest(slide_copy) == before


# ----------------------------------------------------------------------------- other files


def test_tissue_replaces_its_own_mask_but_not_other_files(small_slide, tmp_path, capsys):
    mask = tmp_path / "mask.png"
    assert main(["tissue", str(small_slide), "--out", str(mask)]) == 0
    assert main(["tissue", str(small_slide), "--out", str(mask), "--mpp", "16"]) == 0  # a re-run replaces it
    assert cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape == (12, 16)  # 768 x 1024 px at 0.25 µm/px, 16 µm/px

    photo = tmp_path / "photo.png"  # a colour PNG is somebody's image, not a mask
    cv2.imwrite(str(photo), np.full((8, 8, 3), 90, np.uint8))
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    capsys.readouterr()
    for other in (photo, notes):
        before = _digest(other)
        assert main(["tissue", str(small_slide), "--out", str(other)]) == 2
        _one_line_error(capsys, str(other), "is not an 8-bit greyscale PNG mask", "--overwrite")
        assert _digest(other) == before
        assert main(["tissue", str(small_slide), "--out", str(other), "--overwrite"]) == 0
        assert cv2.imread(str(other), cv2.IMREAD_UNCHANGED).ndim == 2


def test_tile_replaces_its_own_plan_but_not_other_parquet(small_slide, tmp_path, capsys):
    plan = tmp_path / "plan.parquet"
    assert main(["tile", str(small_slide), "--out", str(plan), *TILE]) == 0
    assert main(["tile", str(small_slide), "--out", str(plan), "--mpp", "2", "--tile", "64"]) == 0
    assert TilePlan.load(plan).scales[0].mpp == 2

    table = tmp_path / "results.parquet"  # a Parquet table that is not a slidescope plan
    pd.DataFrame({"score": [0.1, 0.9]}).to_parquet(table)
    before = _digest(table)
    capsys.readouterr()
    assert main(["tile", str(small_slide), "--out", str(table), *TILE]) == 2
    _one_line_error(capsys, "is not a slidescope tile plan", "--overwrite")
    assert _digest(table) == before
    assert main(["tile", str(small_slide), "--out", str(table), *TILE, "--overwrite"]) == 0
    assert len(TilePlan.load(table)) > 0


@pytest.mark.parametrize("name", ["tissue", "tile"])
def test_a_folder_is_never_replaced(name, small_slide, tmp_path, capsys):
    folder = tmp_path / ("out.png" if name == "tissue" else "out.parquet")
    (folder / "inside").mkdir(parents=True)
    assert main(_command(name, small_slide, folder, "--overwrite")) == 2
    _one_line_error(capsys, "is a folder")
    assert (folder / "inside").is_dir()


# ----------------------------------------------------------------------------- folders


@pytest.mark.parametrize("name", ["tissue", "tile"])
def test_only_the_last_missing_folder_level_is_created(name, small_slide, tmp_path, capsys):
    leaf = "m.png" if name == "tissue" else "p.parquet"
    assert main(_command(name, small_slide, tmp_path / "a" / "b" / leaf)) == 2
    _one_line_error(capsys, "does not exist", "only the last missing folder level")
    assert not (tmp_path / "a").exists()
    assert main(_command(name, small_slide, tmp_path / "a" / leaf)) == 0
    assert (tmp_path / "a" / leaf).is_file()


def test_a_parent_that_is_a_file_is_a_one_line_error(small_slide, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["tissue", str(small_slide), "--out", str(blocker / "mask.png")]) == 2
    _one_line_error(capsys, "mask.png", "is not a folder")
    assert blocker.read_text() == "x"


def test_demo_refuses_a_file_or_a_deep_missing_folder_as_its_folder(tmp_path, capsys):
    existing = tmp_path / "report.txt"
    existing.write_text("keep me")
    assert main(["demo", "--out", str(existing)]) == 2
    _one_line_error(capsys, "expected a folder")
    assert existing.read_text() == "keep me"
    assert main(["demo", "--out", str(tmp_path / "x" / "y")]) == 2
    _one_line_error(capsys, "does not exist")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- mask format (item 20)


@pytest.mark.parametrize("leaf, needle", [("mask.jpg", "JPEG would blur"), ("mask.JPEG", "JPEG would blur"),
                                          ("mask.tif", "expected a path ending in .png"),
                                          ("mask", "no suffix")])
def test_tissue_writes_png_only_and_says_so(leaf, needle, small_slide, tmp_path, capsys):
    assert main(["tissue", str(small_slide), "--out", str(tmp_path / leaf)]) == 2
    _one_line_error(capsys, needle, leaf)
    assert list(tmp_path.iterdir()) == []


def test_tissue_accepts_an_upper_case_png_suffix(small_slide, tmp_path):
    out = tmp_path / "MASK.PNG"
    assert main(["tissue", str(small_slide), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- synth


def _synth(out: Path, *extra: str) -> list[str]:
    return ["synth", str(out), "--width", "512", "--height", "512", "--no-tumour", *extra]


def test_synth_never_replaces_a_file_that_is_not_a_slide(tmp_path, capsys):
    notes = tmp_path / "notes.svs"
    notes.write_text("my notes")
    for extra in ([], ["--overwrite"]):
        assert main(_synth(notes, *extra)) == 2
        _one_line_error(capsys, "is not a slide", "refusing to replace it")
        assert notes.read_text() == "my notes"
    assert not (tmp_path / "notes.truth.npz").exists()


def test_synth_replaces_a_slide_only_with_overwrite(tmp_path, capsys, small_slide):
    out = tmp_path / "made.svs"
    out.write_bytes(small_slide.read_bytes())  # somebody's slide, no ground truth beside it
    before = _digest(out)
    assert main(_synth(out)) == 2
    _one_line_error(capsys, "already exists (a slide)", "--overwrite")
    assert _digest(out) == before
    assert main(_synth(out, "--overwrite")) == 0
    assert _digest(out) != before and (tmp_path / "made.truth.npz").is_file()


def test_synth_never_replaces_a_foreign_file_where_its_ground_truth_goes(tmp_path, capsys):
    truth = tmp_path / "made.truth.npz"
    truth.write_text("not an archive")
    assert main(_synth(tmp_path / "made.svs", "--overwrite")) == 2
    _one_line_error(capsys, "made.truth.npz", "is not a synthetic-slide ground truth")
    assert truth.read_text() == "not an archive" and not (tmp_path / "made.svs").exists()
