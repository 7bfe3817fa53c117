"""The one atomic writer (slidescope.wsi.atomic): files, folders, several outputs together, parents."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slidescope.wsi import atomic
from slidescope.wsi.atomic import atomic_path, atomic_paths
from slidescope.wsi.errors import OutputError, OutputExistsError, ParameterError


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def write_folder(path: Path, text: str) -> None:
    path.mkdir()
    (path / "data.txt").write_text(text)


# ------------------------------------------------------------------------------------ files


def test_a_file_replaces_a_file_and_keeps_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "mask.png"
    target.write_text("old")
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".png" and temporary.name.startswith(".mask.")
        assert not temporary.exists()  # the writer creates it, with the umask's permissions
        temporary.write_text("new")
        assert target.read_text() == "old"  # nothing visible before the block ends
    assert target.read_text() == "new" and listing(tmp_path) == ["mask.png"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plan.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old" and listing(tmp_path) == ["plan.parquet"]


def test_writing_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "empty.png"):
            pass
    assert listing(tmp_path) == []


@pytest.mark.parametrize("bad", [b"mask.png", 3, ""])
def test_paths_are_parsed(bad) -> None:
    with pytest.raises(ParameterError, match="path"):
        with atomic_path(bad):
            pass


# ------------------------------------------------------------------------------------ folders


def test_a_folder_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "heatmap.zarr"
    write_folder(target, "old")
    with atomic_path(target) as temporary:
        write_folder(temporary, "new")
    assert (target / "data.txt").read_text() == "new" and listing(target) == ["data.txt"]
    assert listing(tmp_path) == ["heatmap.zarr"]  # the old folder, kept aside meanwhile, is gone


def test_the_old_folder_is_kept_aside_until_the_new_one_is_in_place(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "heatmap.zarr"
    write_folder(target, "old")
    real_rename, calls = os.rename, []

    def rename(source, destination):
        calls.append((Path(source).name, Path(destination).name))
        if len(calls) == 2:  # moving the new folder into place fails
            raise OSError("rename failed")
        return real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_path(target) as temporary:
            write_folder(temporary, "new")
    assert calls[0][0] == "heatmap.zarr" and calls[0][1].endswith(".old")  # aside first
    assert (target / "data.txt").read_text() == "old"  # and put back
    assert listing(tmp_path) == ["heatmap.zarr"]  # no temporary, no aside left


@pytest.mark.parametrize("existing, written", [("folder", "file"), ("file", "folder")])
def test_a_file_never_replaces_a_folder_nor_a_folder_a_file(tmp_path: Path, existing: str, written: str) -> None:
    target = tmp_path / "out.zarr"
    if existing == "folder":
        write_folder(target, "keep")
    else:
        target.write_text("keep")
    with pytest.raises(OutputExistsError, match=f"expected a path for a {written}, got an existing {existing}"):
        with atomic_path(target) as temporary:
            if written == "folder":
                write_folder(temporary, "new")
            else:
                temporary.write_text("new")
    assert (target / "data.txt" if existing == "folder" else target).read_text() == "keep"
    assert listing(tmp_path) == ["out.zarr"]


# ------------------------------------------------------------------------------------ parents


def test_only_the_last_missing_folder_level_is_created(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "results" / "mask.png") as temporary:
        temporary.write_text("x")
    assert (tmp_path / "results" / "mask.png").read_text() == "x"
    with pytest.raises(OutputError, match=rf"folder {tmp_path / 'typo'} does not exist"):
        with atomic_path(tmp_path / "typo" / "deeper" / "still" / "mask.png"):
            pass  # before: the whole chain of folders was created
    assert listing(tmp_path) == ["results"]


def test_a_file_where_the_folder_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("a file")
    with pytest.raises(OutputError, match="is not a folder"):
        with atomic_path(tmp_path / "results" / "mask.png"):
            pass


# ------------------------------------------------------------------------------------ several outputs


def test_several_outputs_are_committed_together_in_order(tmp_path: Path, monkeypatch) -> None:
    truth, slide = tmp_path / "s.truth.npz", tmp_path / "s.svs"
    real_replace, order = os.replace, []
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (order.append(Path(b).name), real_replace(a, b)))
    with atomic_paths([truth, slide]) as (truth_tmp, slide_tmp):
        truth_tmp.write_text("truth")
        assert not truth.exists()  # not committed before the other one is written
        slide_tmp.write_text("slide")
    assert order == ["s.truth.npz", "s.svs"] and truth.read_text() == "truth" and slide.read_text() == "slide"


def test_a_failure_in_any_output_commits_none(tmp_path: Path) -> None:
    truth, slide = tmp_path / "s.truth.npz", tmp_path / "s.svs"
    truth.write_text("old truth")
    with pytest.raises(ValueError, match="bad tile"):
        with atomic_paths([truth, slide]) as (truth_tmp, slide_tmp):
            truth_tmp.write_text("new truth")
            raise ValueError("bad tile")
    assert truth.read_text() == "old truth" and listing(tmp_path) == ["s.truth.npz"]


def test_the_same_output_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="distinct outputs"):
        with atomic_paths([tmp_path / "a.png", tmp_path / "." / "a.png"]):
            pass


def test_make_slide_leaves_nothing_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    from slidescope.wsi import synthetic

    def fail(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(synthetic, "write_pyramid", fail)
    with pytest.raises(OSError, match="no space left"):
        synthetic.make_slide(tmp_path / "s.svs", 128, 128)
    assert listing(tmp_path) == []  # neither the truth nor any temporary
