"""resolve_inputs: slide files, folders and manifest CSVs as the SlideInput rows of a batch."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from slidescope.wsi.errors import ParameterError
from slidescope.workflows.errors import InputError
from slidescope.workflows.inputs import SLIDE_EXTENSIONS, SlideInput, resolve_inputs


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def ids(slides: list[SlideInput]) -> list[str]:
    return [slide.slide_id for slide in slides]


# ---------------------------------------------------------------------------------------------- files and folders


def test_file_given_directly(tmp_path: Path) -> None:
    from slidescope.wsi.synthetic import make_slide

    slide = make_slide(tmp_path / "S1.svs", 1024, 768, seed=1).path
    [row] = resolve_inputs([slide])
    assert row == SlideInput(slide_id="S1", path=str(slide), label=None, mpp=None)
    assert os.path.isabs(row.path)


def test_file_taken_whatever_its_extension(tmp_path: Path) -> None:
    touch(tmp_path / "scan.weird")
    assert ids(resolve_inputs([tmp_path / "scan.weird"])) == ["scan"]


def test_relative_path_made_absolute_without_resolving_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = touch(tmp_path / "real" / "target.svs")
    (tmp_path / "link.svs").symlink_to(target)
    monkeypatch.chdir(tmp_path)
    [row] = resolve_inputs(["link.svs"])
    assert row.path == str(tmp_path / "link.svs")
    assert row.slide_id == "link"


def test_missing_file_is_a_slide_not_an_error(tmp_path: Path) -> None:
    rows = resolve_inputs([tmp_path / "gone.svs", tmp_path / "gone.tiff"])
    assert [(r.slide_id, r.path) for r in rows] == [
        ("gone", str(tmp_path / "gone.svs")), ("gone-2", str(tmp_path / "gone.tiff"))]


def test_a_missing_manifest_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cohrot\.csv: no such manifest CSV"):
        resolve_inputs([tmp_path / "gone.svs", tmp_path / "cohrot.csv"])


def test_folder_recursive_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ["b.svs", "a.ndpi", "notes.txt", "a.truth.npz", "sub/c.tiff", "sub/deeper/d.mrxs",
                 "sub/deeper/d/Data0000.dat", "sub/deeper/d/Slidedat.ini", ".hidden.svs", ".cache/e.svs",
                 "z.ome.tiff", "table.csv"]:
        touch(tmp_path / name)
    rows = resolve_inputs([tmp_path])
    assert [os.path.relpath(r.path, tmp_path) for r in rows] == [
        "a.ndpi", "b.svs", "sub/c.tiff", "sub/deeper/d.mrxs", "z.ome.tiff"]
    assert ids(rows) == ["a", "b", "c", "d", "z"]
    assert resolve_inputs([tmp_path]) == rows  # deterministic


def test_folder_not_recursive(tmp_path: Path) -> None:
    touch(tmp_path / "a.svs")
    touch(tmp_path / "sub" / "b.svs")
    assert ids(resolve_inputs([tmp_path], recursive=False)) == ["a"]
    assert ids(resolve_inputs([tmp_path])) == ["a", "b"]


def test_extension_case_ignored(tmp_path: Path) -> None:
    touch(tmp_path / "A.SVS")
    touch(tmp_path / "B.Ndpi")
    touch(tmp_path / "C.OME.TIFF")
    assert ids(resolve_inputs([tmp_path])) == ["A", "B", "C"]


def test_extensions_are_lower_case_and_cover_the_formats() -> None:
    assert all(e == e.lower() and e.startswith(".") for e in SLIDE_EXTENSIONS)
    for extension in (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide",
                      ".dcm", ".qptiff", ".ome.tif", ".ome.tiff"):
        assert extension in SLIDE_EXTENSIONS


def test_folder_without_slides_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.svs")
    with pytest.raises(InputError, match=r"no slide file in this folder.*\.svs") as info:
        resolve_inputs([tmp_path])
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value, ParameterError)


def test_folder_symlink_loop_searched_once(tmp_path: Path) -> None:
    touch(tmp_path / "a.svs")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert ids(resolve_inputs([tmp_path])) == ["a"]


def test_no_inputs() -> None:
    with pytest.raises(InputError, match="got none"):
        resolve_inputs([])


def test_bad_input_types(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"inputs\[0\]"):
        resolve_inputs([b"x.svs"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="recursive"):
        resolve_inputs([tmp_path], recursive="yes")  # type: ignore[arg-type]
    touch(tmp_path / "one.svs")
    assert ids(resolve_inputs(str(tmp_path / "one.svs"))) == ["one"]  # one path: a list of one


# ---------------------------------------------------------------------------------------------- duplicates and ids


def test_same_file_twice_appears_once(tmp_path: Path) -> None:
    touch(tmp_path / "slides" / "a.svs")
    touch(tmp_path / "slides" / "b.svs")
    (tmp_path / "alias.svs").symlink_to(tmp_path / "slides" / "b.svs")
    rows = resolve_inputs([tmp_path / "slides" / "b.svs", tmp_path / "slides", tmp_path / "alias.svs"])
    assert [(r.slide_id, os.path.basename(r.path)) for r in rows] == [("b", "b.svs"), ("a", "a.svs")]


def test_duplicate_stems_get_suffixes(tmp_path: Path) -> None:
    for name in ["a/S1.svs", "b/S1.svs", "c/S1-2.svs", "d/s1.ndpi"]:
        touch(tmp_path / name)
    rows = resolve_inputs([tmp_path])
    assert [(os.path.relpath(r.path, tmp_path), r.slide_id) for r in rows] == [
        ("a/S1.svs", "S1"), ("b/S1.svs", "S1-3"), ("c/S1-2.svs", "S1-2"), ("d/s1.ndpi", "s1-4")]


def test_unsafe_default_ids_are_sanitised(tmp_path: Path) -> None:
    touch(tmp_path / "a:b*c.svs")
    touch(tmp_path / "NUL.svs")
    touch(tmp_path / "x\ny.svs")
    got = ids(resolve_inputs([tmp_path]))
    assert sorted(got) == sorted(["a_b_c", "_NUL", "x_y"])


def test_explicit_ids_win_over_stems(tmp_path: Path) -> None:
    touch(tmp_path / "slides" / "S1.svs")
    touch(tmp_path / "other.svs")
    manifest = write_csv(tmp_path / "m.csv", "path,slide_id\nother.svs,S1\n")
    rows = resolve_inputs([tmp_path / "slides", manifest])
    assert [(os.path.basename(r.path), r.slide_id) for r in rows] == [("S1.svs", "S1-2"), ("other.svs", "S1")]


def test_duplicate_explicit_ids_name_both_rows(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "manifest.csv", "path,slide_id\na.svs,X\nb.svs,y\nc.svs,x\n")
    with pytest.raises(InputError) as info:
        resolve_inputs([manifest])
    message = str(info.value)
    assert "line 4" in message and "line 2" in message and "a.svs" in message and "c.svs" in message


@pytest.mark.parametrize("bad", ["../up", "a/b", ".hidden", "..", "tail.", "NUL", "a\\b", "x" * 201])
def test_unsafe_explicit_id_is_an_error(tmp_path: Path, bad: str) -> None:
    manifest = write_csv(tmp_path / "manifest.csv", f'path,slide_id\na.svs,"{bad}"\n')
    with pytest.raises(InputError, match=r"manifest\.csv: line 2: slide_id: expected a folder name"):
        resolve_inputs([manifest])


def test_slide_input_validates() -> None:
    with pytest.raises(InputError, match="slide_id"):
        SlideInput("a/b", "/x/a.svs")
    with pytest.raises(InputError, match="absolute"):
        SlideInput("a", "a.svs")
    with pytest.raises(InputError, match="mpp"):
        SlideInput("a", "/x/a.svs", mpp=0.0)
    assert SlideInput("a", "/x/a.svs", mpp=1).mpp == 1.0


# ---------------------------------------------------------------------------------------------- manifests


def test_manifest_relative_paths_and_fields(tmp_path: Path) -> None:
    touch(tmp_path / "data" / "a.svs")
    manifest = write_csv(tmp_path / "data" / "manifest.csv",
                         "path,slide_id,label,mpp\n"
                         "a.svs,A1,tumour,0.25\n"
                         "sub/b.svs,,,\n"
                         f"{tmp_path / 'abs.ndpi'},,normal, 0.5 \n"
                         "\n")
    rows = resolve_inputs([manifest])
    assert rows == [
        SlideInput("A1", str(tmp_path / "data" / "a.svs"), "tumour", 0.25),
        SlideInput("b", str(tmp_path / "data" / "sub" / "b.svs"), None, None),  # missing: kept
        SlideInput("abs", str(tmp_path / "abs.ndpi"), "normal", 0.5),
    ]


def test_manifest_relative_to_its_folder_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "m" / "list.csv", "path\nx.svs\n")
    monkeypatch.chdir(tmp_path)
    [row] = resolve_inputs(["m/list.csv"])
    assert row.path == str(tmp_path / "m" / "x.svs")


def test_manifest_with_bom_and_column_order(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", "label,path\r\nT,a.svs\r\n", bom=True)
    assert resolve_inputs([manifest]) == [SlideInput("a", str(tmp_path / "a.svs"), "T")]


def test_manifest_upper_case_suffix(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "M.CSV", "path\na.svs\n")
    assert ids(resolve_inputs([manifest])) == ["a"]


@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), ("nan", "'nan'"), ("inf", "'inf'"), ("0", "0"),
                                          ("-0.5", "-0.5"), ("0,5", "'0,5'")])
def test_manifest_bad_mpp_names_file_line_and_field(tmp_path: Path, value: str, shown: str) -> None:
    manifest = write_csv(tmp_path / "manifest.csv", f'path,mpp\na.svs,0.5\nb.svs,"{value}"\n')
    with pytest.raises(InputError) as info:
        resolve_inputs([manifest])
    message = str(info.value)
    assert message.startswith(f"{manifest}: line 3: mpp: expected a ")
    assert shown in message


def test_manifest_bad_mpp_message_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(tmp_path / "manifest.csv", "path,mpp\na.svs,0.5\nb.svs,abc\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        resolve_inputs(["manifest.csv"])
    assert str(info.value) == "manifest.csv: line 3: mpp: expected a finite number > 0, got 'abc'"


def test_manifest_unknown_column(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", "path,lable\na.svs,T\n")
    with pytest.raises(InputError, match=r"line 1: unknown column 'lable'"):
        resolve_inputs([manifest])


def test_manifest_without_path_column(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", "slide_id,label\nA,T\n")
    with pytest.raises(InputError, match="no 'path' column"):
        resolve_inputs([manifest])


@pytest.mark.parametrize("text", ["", "\n\n", "path,label\n", "path\n\n,\n"])
def test_manifest_without_rows(tmp_path: Path, text: str) -> None:
    manifest = write_csv(tmp_path / "m.csv", text)
    with pytest.raises(InputError, match="m.csv: .*(empty manifest|no slide)"):
        resolve_inputs([manifest])


def test_manifest_row_errors(tmp_path: Path) -> None:
    cases = {
        "path,label\n,T\n": r"line 2: path: .*empty",
        "path\na.svs,extra\n": r"line 2: expected at most 1 fields",
        "path,path\na.svs,b.svs\n": r"line 1: column 'path' appears twice",
        "path,\na.svs,\n": r"line 1: column 2 has no name",
    }
    for text, pattern in cases.items():
        manifest = write_csv(tmp_path / "m.csv", text)
        with pytest.raises(InputError, match=pattern):
            resolve_inputs([manifest])


def test_manifest_not_utf8(tmp_path: Path) -> None:
    manifest = touch(tmp_path / "m.csv", "path\nä.svs\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-8"):
        resolve_inputs([manifest])


def test_manifest_labels_a_slide_found_in_a_folder(tmp_path: Path) -> None:
    touch(tmp_path / "slides" / "a.svs")
    touch(tmp_path / "slides" / "b.svs")
    manifest = write_csv(tmp_path / "labels.csv", "path,label,slide_id\nslides/b.svs,T,B7\n")
    rows = resolve_inputs([tmp_path / "slides", manifest])
    assert [(r.slide_id, r.label) for r in rows] == [("a", None), ("B7", "T")]


def test_same_slide_with_conflicting_values(tmp_path: Path) -> None:
    one = write_csv(tmp_path / "one.csv", "path,label\na.svs,T\n")
    two = write_csv(tmp_path / "two.csv", "path,label\na.svs,N\n")
    with pytest.raises(InputError, match=r"two\.csv: line 2: label: 'N'.*one\.csv: line 2.*'T'"):
        resolve_inputs([one, two])
    same = write_csv(tmp_path / "same.csv", "path,label\na.svs,T\n")
    assert len(resolve_inputs([one, same])) == 1


def test_manifest_row_naming_a_folder_of_one_slide(tmp_path: Path) -> None:
    touch(tmp_path / "case7" / "only.svs")
    touch(tmp_path / "two" / "a.svs")
    touch(tmp_path / "two" / "b.svs")
    manifest = write_csv(tmp_path / "m.csv", "path,label\ncase7,T\n")
    assert resolve_inputs([manifest]) == [SlideInput("only", str(tmp_path / "case7" / "only.svs"), "T")]
    manifest = write_csv(tmp_path / "m.csv", "path\ntwo\n")
    with pytest.raises(InputError, match="line 2: path: a row names one slide"):
        resolve_inputs([manifest])


def test_order_follows_the_inputs(tmp_path: Path) -> None:
    touch(tmp_path / "f" / "b.svs")
    touch(tmp_path / "f" / "a.svs")
    manifest = write_csv(tmp_path / "m.csv", "path\nz.svs\ny.svs\n")
    rows = resolve_inputs([manifest, tmp_path / "x.svs", tmp_path / "f"])
    assert ids(rows) == ["z", "y", "x", "a", "b"]


# ---------------------------------------------------------------------------------------------- DICOM


def _element(group: int, element: int, vr: bytes, value: bytes, explicit: bool = True) -> bytes:
    if not explicit:
        return struct.pack("<HHI", group, element, len(value)) + value
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH", group, element) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, element) + vr + struct.pack("<H", len(value)) + value


def _uid(text: str) -> bytes:
    data = text.encode("ascii")
    return data + b"\0" * (len(data) % 2)


def fake_dicom(path: Path, series: str, *, explicit: bool = True) -> Path:
    """A DICOM Part 10 header with an undefined-length sequence holding a decoy SeriesInstanceUID."""
    syntax = "1.2.840.10008.1.2.1" if explicit else "1.2.840.10008.1.2"
    meta = _element(0x0002, 0x0010, b"UI", _uid(syntax))
    meta = _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta))) + meta
    decoy = _element(0x0020, 0x000E, b"UI", _uid("9.9.9"), explicit)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + decoy + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sequence_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    if explicit:
        sequence = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
    else:
        sequence = struct.pack("<HHI", 0x0008, 0x1115, 0xFFFFFFFF)
    body = (_element(0x0008, 0x0060, b"CS", b"SM", explicit) + sequence + item + sequence_end
            + _element(0x0020, 0x000D, b"UI", _uid("1.2.3"), explicit)
            + _element(0x0020, 0x000E, b"UI", _uid(series), explicit))
    return touch(path, b"\0" * 128 + b"DICM" + meta + body + b"\0" * 64)


@pytest.mark.parametrize("explicit", [True, False])
def test_dicom_series_uid_read_from_the_header(tmp_path: Path, explicit: bool) -> None:
    from slidescope.workflows.inputs import _dicom_series_uid

    path = fake_dicom(tmp_path / "x.dcm", "1.2.3.4", explicit=explicit)
    assert _dicom_series_uid(str(path)) == "1.2.3.4"
    assert _dicom_series_uid(str(touch(tmp_path / "junk.dcm", b"not dicom"))) is None


def test_dicom_folder_of_one_series_is_one_slide(tmp_path: Path) -> None:
    for index in range(3):
        fake_dicom(tmp_path / "CASE7" / f"{index:06d}.dcm", "1.2.3.4", explicit=bool(index % 2))
    touch(tmp_path / "other.svs")
    rows = resolve_inputs([tmp_path])
    assert [(r.slide_id, os.path.relpath(r.path, tmp_path)) for r in rows] == [
        ("CASE7", "CASE7/000000.dcm"), ("other", "other.svs")]
    # A file of the series given directly is the same slide, with the same id.
    again = resolve_inputs([tmp_path / "CASE7" / "000002.dcm", tmp_path / "CASE7"])
    assert [(r.slide_id, os.path.basename(r.path)) for r in again] == [("CASE7", "000002.dcm")]
    # A symbolic link to the folder names the same series.
    (tmp_path / "alias").symlink_to(tmp_path / "CASE7")
    assert ids(resolve_inputs([tmp_path / "CASE7", tmp_path / "alias"])) == ["CASE7"]
    # A manifest row may name the folder of one series.
    manifest = write_csv(tmp_path / "m.csv", "path,label\nCASE7,T\n")
    assert resolve_inputs([manifest]) == [SlideInput("CASE7", str(tmp_path / "CASE7" / "000000.dcm"), "T")]


def test_dicom_folder_of_two_series(tmp_path: Path) -> None:
    fake_dicom(tmp_path / "b1.dcm", "1.1")
    fake_dicom(tmp_path / "a2.dcm", "2.2")
    fake_dicom(tmp_path / "a1.dcm", "1.1")
    touch(tmp_path / "junk.dcm", b"no header")
    rows = resolve_inputs([tmp_path])
    assert [(r.slide_id, os.path.basename(r.path)) for r in rows] == [
        ("a1", "a1.dcm"), ("a2", "a2.dcm"), ("junk", "junk.dcm")]


def test_dicom_shared_data(tmp_path: Path, data_dir: Path) -> None:
    names = ["boxes_0.dcm", "boxes_1.dcm", "sm_image.dcm"]
    if not all((data_dir / name).is_file() for name in names):
        pytest.skip(f"DICOM files {names} not all in {data_dir}")
    # The shared folder holds several series: one slide per series, the two boxes instances as one.
    rows = [r for r in resolve_inputs([data_dir]) if r.path.endswith(".dcm")]
    assert {os.path.basename(r.path) for r in rows} >= {"boxes_0.dcm", "sm_image.dcm"}
    assert "boxes_1.dcm" not in {os.path.basename(r.path) for r in rows}
    assert len(resolve_inputs([data_dir / "boxes_1.dcm", data_dir / "boxes_0.dcm"])) == 1
    # Copied into a folder of its own, the boxes series is named after that folder, and open_slide reads it.
    folder = tmp_path / "BOXES"
    folder.mkdir()
    for name in names[:2]:
        shutil.copyfile(data_dir / name, folder / name)
    [row] = resolve_inputs([tmp_path])
    assert (row.slide_id, os.path.basename(row.path)) == ("BOXES", "boxes_0.dcm")
    from slidescope.wsi import open_slide

    with open_slide(row.path) as slide:
        assert slide.dimensions == (16, 16)
