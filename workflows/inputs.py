"""The INPUTs of ``slidescope run`` as a list of slides: files, folders and manifest CSVs.

``slidescope run INPUT... --out DIR`` and :func:`~slidescope.workflows.run_batch` take any mix of

- **slide files**, taken whatever their extension (``open_slide`` reports a file that is no slide);
- **folders**, searched (recursively by default) for files with a known slide extension
  (:data:`SLIDE_EXTENSIONS`, case-insensitive), hidden files and folders skipped;
- **manifest CSVs** (any file ending in ``.csv``): UTF-8 (a byte-order mark is tolerated) with a header
  naming the columns :data:`MANIFEST_COLUMNS`: ``path`` (required; relative paths resolve against the
  CSV's folder), and the optional ``slide_id``, ``label`` (a reference label) and ``mpp`` (level-0 µm per
  pixel, for slides whose metadata lacks it). An empty optional field means none. Column names ignore case
  and surrounding spaces, fields their surrounding spaces; blank lines are skipped. A row may name a folder
  that holds exactly one slide (the folder of a DICOM series).

:func:`resolve_inputs` turns them into :class:`SlideInput` rows, one per slide, without opening a slide.

A path that does not exist is **not** an error here: a missing slide (given directly or named by a
manifest row) becomes a :class:`SlideInput` like any other, so that the batch records it as a failed slide
(``status=error`` in ``predictions.csv``) and goes on with the others. A missing ``.csv`` argument is the
exception: it can only be a manifest, and a mistyped manifest name is an :class:`InputError`.
What *is* an :class:`~slidescope.workflows.errors.InputError`: no inputs at all, a folder without a slide,
a manifest that is missing, cannot be read or has a bad row, two slides with one explicit ``slide_id``.

DICOM
    A DICOM whole-slide image is a series of ``.dcm`` instances in one folder (pyramid levels, thumbnail,
    label...). OpenSlide opens it by any one of its files and finds the other instances of the series
    (same SeriesInstanceUID) in that folder itself; ``open_slide`` refuses a folder. So a folder search
    groups the ``.dcm`` files of each folder by SeriesInstanceUID (read from each file's header, without
    pydicom; a file whose header cannot be read stays a slide of its own) and yields one slide per series,
    whose ``path`` is the series' first file in name order. A series' default ``slide_id`` is its folder's
    name when that folder holds no other DICOM series, else the stem of that first file. Two files of one
    series given directly (or one given and its folder searched) are one slide.
MRXS
    The ``.mrxs`` file is the slide; the ``.dat`` files of its companion folder have no slide extension.

Slide ids
    Each slide gets a ``slide_id`` unique in the batch, ignoring case (so that output folders do not collide
    on case-insensitive file systems), and safe as a folder name. The default is the file name less its slide
    extension (``S1`` for ``S1.svs`` and for ``S1.ome.tiff``), with unsafe characters replaced by ``_``.
    Explicit manifest ids come first: they must be safe already and unique, else an InputError names both rows.
    Default ids that collide are made unique in input order: the first slide keeps the stem, the next ones get
    ``-2``, ``-3``... (``a/S1.svs`` → ``S1``, ``b/S1.svs`` → ``S1-2``), skipping any id another slide has
    by right (its explicit id or its own stem). Adding slides to a batch can therefore renumber the later
    duplicates; give ids in a manifest where they must be stable.

The same slide listed twice (compared by real path, so a symbolic link and its target are one slide) appears
once, at its first position. Manifest fields of the later listings are merged into it (a slide found in a
folder and labelled by a manifest row gets the label); two listings that set one field to different values
are an InputError.
"""

from __future__ import annotations

import csv
import math
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from slidescope.wsi.errors import ParameterError
from slidescope.wsi.validation import MAX_MPP, describe, parse_path, parse_positive_float

from .errors import InputError

__all__ = ["SlideInput", "SLIDE_EXTENSIONS", "MANIFEST_COLUMNS", "MAX_SLIDE_ID_LENGTH", "resolve_inputs"]

#: Lower-case file-name endings a folder search takes as slides: what OpenSlide 4 opens (Aperio, Hamamatsu,
#: Leica, MIRAX, Philips, Sakura, Trestle, Ventana, generic tiled TIFF, DICOM) and what the tifffile backend
#: opens (OME-TIFF, QPTIFF, pyramidal TIFF). Longer endings first (``.ome.tiff`` before ``.tiff``).
SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".ome.tiff", ".ome.tif", ".svslide", ".qptiff", ".tiff", ".mrxs", ".ndpi",
    ".ptif", ".svs", ".tif", ".vms", ".vmu", ".scn", ".bif", ".dcm",
)

#: The columns a manifest CSV may have (``path`` is required).
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "slide_id", "label", "mpp")

#: Longest slide id, in characters (room is left for the suffixes of temporary output folders).
MAX_SLIDE_ID_LENGTH = 200

_DICOM_EXTENSION = ".dcm"
_MANIFEST_EXTENSION = ".csv"
_UNSAFE_ID_CHARACTERS = frozenset('/\\:*?"<>|') | frozenset(chr(c) for c in range(32)) | {"\x7f"}
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
_ID_RULES = ("a folder name: no / \\ : * ? \" < > | or control characters, not starting with '.', "
             "not ending with '.' or a space, not a device name such as NUL, "
             f"at most {MAX_SLIDE_ID_LENGTH} characters")


# --------------------------------------------------------------------------------------------------------------
# Slide ids


def _id_problem(slide_id: str) -> str | None:
    """Why ``slide_id`` cannot be a folder name, or None when it can."""
    if not slide_id:
        return "empty"
    if len(slide_id) > MAX_SLIDE_ID_LENGTH:
        return f"longer than {MAX_SLIDE_ID_LENGTH} characters"
    bad = sorted({c for c in slide_id if c in _UNSAFE_ID_CHARACTERS})
    if bad:
        return "contains " + ", ".join(repr(c) for c in bad)
    if slide_id.startswith("."):
        return "starts with '.'"
    if slide_id.endswith((".", " ")) or slide_id != slide_id.strip():
        return "starts or ends with a space, or ends with '.'"
    if slide_id.split(".")[0].casefold() in _WINDOWS_DEVICES:
        return "is a device name on Windows"
    return None


def _safe_id(text: str) -> str:
    """``text`` made a safe slide id (the default ids): unsafe characters replaced by ``_``."""
    cleaned = "".join("_" if c in _UNSAFE_ID_CHARACTERS else c for c in text.strip())
    cleaned = cleaned[:MAX_SLIDE_ID_LENGTH]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if cleaned.endswith((".", " ")):
        cleaned = cleaned[:-1] + "_"
    if cleaned.split(".")[0].casefold() in _WINDOWS_DEVICES:
        cleaned = "_" + cleaned[: MAX_SLIDE_ID_LENGTH - 1]
    return cleaned or "slide"


def _slide_stem(name: str) -> str:
    """A file name less its slide extension (``S1.ome.tiff`` → ``S1``), else less its last suffix."""
    lower = name.casefold()
    for extension in SLIDE_EXTENSIONS:
        if lower.endswith(extension) and len(name) > len(extension):
            return name[: -len(extension)]
    stem, _ = os.path.splitext(name)
    return stem or name


def _is_slide_name(name: str) -> bool:
    lower = name.casefold()
    return any(lower.endswith(extension) and len(name) > len(extension) for extension in SLIDE_EXTENSIONS)


@dataclass(frozen=True)
class SlideInput:
    """One slide of a batch.

    Parameters
    ----------
    slide_id : str
        Unique in the batch (ignoring case) and usable as a folder name (see :func:`resolve_inputs`).
    path : str
        Absolute path of the slide file, as given (``os.path.abspath``: symbolic links keep their name). It may
        not exist: the batch then records the slide as failed.
    label : str, optional
        Reference label from the manifest.
    mpp : float, optional
        Level-0 µm per pixel from the manifest, for a slide whose metadata lacks it.

    Raises
    ------
    InputError
        A field of the wrong type, an unsafe ``slide_id``, a relative ``path``, an ``mpp`` that is not a
        finite number > 0.
    """

    slide_id: str
    path: str
    label: str | None = None
    mpp: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.slide_id, str):
            raise InputError(f"slide_id: expected a str, got {describe(self.slide_id)}")
        problem = _id_problem(self.slide_id)
        if problem:
            raise InputError(f"slide_id: expected {_ID_RULES}; got {self.slide_id!r}, which {problem}")
        path = _parse_input_path(self.path, "path")
        if not os.path.isabs(path):
            raise InputError(f"path: expected an absolute path, got {path!r}")
        if self.label is not None and not isinstance(self.label, str):
            raise InputError(f"label: expected a str or None, got {describe(self.label)}")
        if self.mpp is not None:
            object.__setattr__(self, "mpp", parse_positive_float(self.mpp, "mpp", maximum=MAX_MPP, error=InputError))


# --------------------------------------------------------------------------------------------------------------
# DICOM series


_DICOM_IMPLICIT_LE = "1.2.840.10008.1.2"
_DICOM_UNSUPPORTED_SYNTAXES = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_DICOM_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SERIES_INSTANCE_UID = (0x0020, 0x000E)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
_MAX_NESTING = 32
_MAX_META_VALUE = 1 << 16


class _NotDicom(Exception):
    """The header cannot be walked (not DICOM, truncated, or an encoding this reader does not walk)."""


def _read_exact(file: IO[bytes], size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise _NotDicom("truncated")
    return data


def _element_header(file: IO[bytes], explicit: bool) -> tuple[tuple[int, int], bytes | None, int]:
    """Tag, VR (None when implicit) and value length of the next data element (little endian)."""
    group, element = struct.unpack("<HH", _read_exact(file, 4))
    tag = (group, element)
    if group == 0xFFFE or not explicit:  # items and delimiters never carry a VR
        return tag, None, struct.unpack("<I", _read_exact(file, 4))[0]
    vr = _read_exact(file, 2)
    if vr in _DICOM_LONG_VRS:
        _read_exact(file, 2)
        return tag, vr, struct.unpack("<I", _read_exact(file, 4))[0]
    return tag, vr, struct.unpack("<H", _read_exact(file, 2))[0]


def _skip_undefined(file: IO[bytes], explicit: bool, depth: int) -> None:
    """Skip a sequence of undefined length, its items and their nested sequences, to its delimiter."""
    if depth > _MAX_NESTING:
        raise _NotDicom("nested too deep")
    while True:
        tag, _, length = _element_header(file, False)
        if tag == _SEQUENCE_END:
            return
        if tag != _ITEM:
            raise _NotDicom(f"expected an item, got {tag}")
        if length != _UNDEFINED_LENGTH:
            file.seek(length, os.SEEK_CUR)
            continue
        while True:  # an item of undefined length: elements up to the item delimiter
            tag, vr, length = _element_header(file, explicit)
            if tag == _ITEM_END:
                break
            if length == _UNDEFINED_LENGTH:
                _skip_undefined(file, explicit and vr != b"UN", depth + 1)
            else:
                file.seek(length, os.SEEK_CUR)


def _read_series_uid(file: IO[bytes]) -> str | None:
    """The top-level SeriesInstanceUID of a DICOM Part 10 file, or None when it has none."""
    if _read_exact(file, 132)[128:] != b"DICM":
        raise _NotDicom("no DICM preamble")
    syntax = ""
    while True:  # file meta information: explicit VR little endian, group 0002
        start = file.tell()
        group = struct.unpack("<H", _read_exact(file, 2))[0]
        file.seek(start)
        if group != 0x0002:
            break
        tag, _, length = _element_header(file, True)
        if length > _MAX_META_VALUE:
            raise _NotDicom("malformed file meta information")
        value = _read_exact(file, length)
        if tag == (0x0002, 0x0010):
            syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")
    if syntax in _DICOM_UNSUPPORTED_SYNTAXES:
        raise _NotDicom(f"transfer syntax {syntax}")
    explicit = syntax != _DICOM_IMPLICIT_LE
    while True:
        tag, vr, length = _element_header(file, explicit)
        if tag > _SERIES_INSTANCE_UID:
            return None  # elements come in tag order: it is not there
        if tag == _SERIES_INSTANCE_UID:
            if length == _UNDEFINED_LENGTH or length > 256:
                raise _NotDicom("malformed SeriesInstanceUID")
            return _read_exact(file, length).rstrip(b"\x00 ").decode("ascii", "replace") or None
        if length == _UNDEFINED_LENGTH:
            _skip_undefined(file, explicit and vr != b"UN", 0)
        else:
            file.seek(length, os.SEEK_CUR)


def _dicom_series_uid(path: str) -> str | None:
    """The SeriesInstanceUID of a DICOM file, or None when it cannot be read (the file is then its own slide)."""
    try:
        with open(path, "rb") as file:
            return _read_series_uid(file)
    except (OSError, _NotDicom, struct.error, ValueError):
        return None


class _DicomFolders:
    """The DICOM series of each folder, read once per folder: ``series(folder)`` maps a key to its files."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[tuple[str, str], list[str]]] = {}

    def series(self, folder: str) -> dict[tuple[str, str], list[str]]:
        """Series key → the folder's ``.dcm`` files of that series, in name order (files in name order too).

        A file whose SeriesInstanceUID cannot be read is a series of its own, keyed by its real path.
        """
        real_folder = os.path.realpath(folder)
        cache_key = os.path.abspath(folder)  # members are listed under the folder's name as given
        if cache_key not in self._cache:
            groups: dict[tuple[str, str], list[str]] = {}
            try:
                names = sorted(name for name in os.listdir(folder)
                               if name.casefold().endswith(_DICOM_EXTENSION) and not name.startswith("."))
            except OSError:
                names = []
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isdir(path):
                    continue
                uid = _dicom_series_uid(path)
                key = ("series", f"{real_folder}\x00{uid}") if uid else ("file", os.path.realpath(path))
                groups.setdefault(key, []).append(path)
            self._cache[cache_key] = groups
        return self._cache[cache_key]

    def key_and_id(self, path: str) -> tuple[tuple[str, str], str]:
        """Identity key and default id of the DICOM file ``path``, as a search of its folder would give them."""
        folder = os.path.dirname(path)
        real = os.path.realpath(path)
        for key, members in self.series(folder).items():
            if any(os.path.realpath(member) == real for member in members):
                return key, self.series_id(folder, key, members)
        return ("file", real), _slide_stem(os.path.basename(path))

    def series_id(self, folder: str, key: tuple[str, str], members: list[str]) -> str:
        """The default id of a series: its folder's name when the folder holds no other DICOM series, else the
        stem of the series' first file."""
        name = os.path.basename(os.path.abspath(folder))
        if name and key[0] == "series" and len(self.series(folder)) == 1:
            return name
        return _slide_stem(os.path.basename(members[0]))


# --------------------------------------------------------------------------------------------------------------
# Candidates: slides before duplicates are merged and ids assigned


@dataclass
class _Candidate:
    key: tuple[str, str]            # identity: ("file", realpath) or ("series", folder + uid)
    path: str                       # absolute path
    natural_id: str                 # default id (already safe)
    slide_id: str | None = None     # explicit (manifest)
    label: str | None = None
    mpp: float | None = None
    fields_origin: dict[str, str] = field(default_factory=dict)


def _parse_input_path(value: Any, what: str) -> str:
    try:
        return parse_path(value, what)
    except InputError:
        raise
    except ParameterError as error:
        raise InputError(str(error)) from None


def _file_candidate(path: str, dicom: _DicomFolders) -> _Candidate:
    """A slide file named directly (by an argument or a manifest row), which may not exist."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    if name.casefold().endswith(_DICOM_EXTENSION) and os.path.isfile(path):
        key, natural = dicom.key_and_id(path)
    else:
        key, natural = ("file", os.path.realpath(path)), _slide_stem(name)
    return _Candidate(key=key, path=path, natural_id=_safe_id(natural))


def _walk(folder: str, recursive: bool, visited: set[str]) -> Iterator[tuple[str, str]]:
    """``(folder, name)`` of each slide file under ``folder``: entries in code-point order of their names,
    a subfolder's files at the subfolder's place (depth first). Hidden entries are skipped; a folder reached
    twice (symbolic links) is searched once.
    """
    real = os.path.realpath(folder)
    if real in visited:
        return
    visited.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        raise InputError(f"{folder}: cannot list this folder: {error.strerror or error}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk(entry.path, recursive, visited)
        elif _is_slide_name(entry.name):
            yield folder, entry.name


def _folder_candidates(folder: str, shown: str, recursive: bool, dicom: _DicomFolders) -> list[_Candidate]:
    """The slides of a folder search."""
    found: list[_Candidate] = []
    seen_series: set[tuple[str, str]] = set()
    for current, name in _walk(os.path.abspath(folder), recursive, set()):
        path = os.path.join(current, name)
        if not name.casefold().endswith(_DICOM_EXTENSION):
            found.append(_Candidate(key=("file", os.path.realpath(path)), path=path,
                                    natural_id=_safe_id(_slide_stem(name))))
            continue
        groups = dicom.series(current)
        key = next((k for k, members in groups.items() if path in members), ("file", os.path.realpath(path)))
        if key in seen_series:
            continue
        seen_series.add(key)
        members = groups.get(key, [path])
        natural = dicom.series_id(current, key, members)
        found.append(_Candidate(key=key, path=members[0], natural_id=_safe_id(natural)))
    if not found:
        how = "recursively" if recursive else "not recursively"
        raise InputError(
            f"{shown}: no slide file in this folder (searched {how}, hidden files skipped, for names ending in "
            f"{', '.join(SLIDE_EXTENSIONS)}, any case)"
        )
    return found


# --------------------------------------------------------------------------------------------------------------
# Manifests


def _manifest_lines(file: IO[str], shown: str) -> Iterator[tuple[int, list[str]]]:
    """``(first line number, fields)`` of each CSV record (records may span lines inside quotes)."""
    reader = csv.reader(file)
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise InputError(f"{shown}: line {reader.line_num}: not valid CSV: {error}") from None
        except UnicodeDecodeError as error:
            raise InputError(f"{shown}: expected UTF-8 text, got undecodable bytes ({error.reason} at byte "
                             f"{error.start} of a block)") from None
        yield previous + 1, row
        previous = reader.line_num


def _parse_manifest_mpp(text: str, where: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise InputError(f"{where}: mpp: expected a finite number > 0, got {text!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: mpp: expected a finite number > 0, got {text!r}")
    return parse_positive_float(number, f"{where}: mpp", maximum=MAX_MPP, error=InputError)


def _manifest_candidates(manifest: str, shown: str, recursive: bool, dicom: _DicomFolders) -> list[_Candidate]:
    """The slides a manifest CSV names, one per row."""
    base = os.path.dirname(os.path.abspath(manifest))
    try:
        file = open(manifest, encoding="utf-8-sig", newline="")
    except OSError as error:
        raise InputError(f"{shown}: cannot read this manifest: {error.strerror or error}") from None
    found: list[_Candidate] = []
    with file:
        lines = _manifest_lines(file, shown)
        header: list[str] | None = None
        for line, row in lines:
            if any(value.strip() for value in row):
                header = [name.strip().casefold() for name in row]
                break
        if header is None:
            raise InputError(f"{shown}: empty manifest; expected a header line naming the columns "
                             f"{', '.join(MANIFEST_COLUMNS)} (path required), then one line per slide")
        header_line = line
        for index, name in enumerate(header):
            if not name:
                raise InputError(f"{shown}: line {header_line}: column {index + 1} has no name; expected "
                                 f"columns among {', '.join(MANIFEST_COLUMNS)}")
            if name not in MANIFEST_COLUMNS:
                raise InputError(f"{shown}: line {header_line}: unknown column {name!r}; expected columns among "
                                 f"{', '.join(MANIFEST_COLUMNS)} (path required)")
            if header.index(name) != index:
                raise InputError(f"{shown}: line {header_line}: column {name!r} appears twice")
        if "path" not in header:
            raise InputError(f"{shown}: line {header_line}: no 'path' column; expected columns among "
                             f"{', '.join(MANIFEST_COLUMNS)} (path required), got {', '.join(header)}")
        for line, row in lines:
            if not any(value.strip() for value in row):
                continue  # blank line
            where = f"{shown}: line {line}"
            if len(row) > len(header):
                raise InputError(f"{where}: expected at most {len(header)} fields (the header's), got {len(row)}")
            values = {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(header)}
            found.append(_manifest_row(values, where, base, recursive, dicom))
    if not found:
        raise InputError(f"{shown}: the manifest names no slide (a header and no rows)")
    return found


def _manifest_row(values: dict[str, str], where: str, base: str, recursive: bool,
                  dicom: _DicomFolders) -> _Candidate:
    text = values["path"]
    if not text:
        raise InputError(f"{where}: path: expected the path of a slide, got an empty field")
    if "\x00" in text:
        raise InputError(f"{where}: path: expected a path without NUL characters, got {text!r}")
    path = os.path.join(base, os.path.expanduser(text))
    if os.path.isdir(path):  # e.g. the folder of one DICOM series
        try:
            inside = _folder_candidates(path, text, recursive, dicom)
        except InputError as error:
            raise InputError(f"{where}: path: {error}") from None
        if len(inside) != 1:
            raise InputError(f"{where}: path: a row names one slide; the folder {text!r} holds {len(inside)} "
                             f"({', '.join(os.path.basename(c.path) for c in inside[:5])}"
                             f"{', ...' if len(inside) > 5 else ''})")
        candidate = inside[0]
    else:
        candidate = _file_candidate(path, dicom)
    if values.get("slide_id"):
        slide_id = values["slide_id"]
        problem = _id_problem(slide_id)
        if problem:
            raise InputError(f"{where}: slide_id: expected {_ID_RULES}; got {slide_id!r}, which {problem}")
        candidate.slide_id = slide_id
        candidate.fields_origin["slide_id"] = where
    if values.get("label"):
        candidate.label = values["label"]
        candidate.fields_origin["label"] = where
    if values.get("mpp"):
        candidate.mpp = _parse_manifest_mpp(values["mpp"], where)
        candidate.fields_origin["mpp"] = where
    return candidate


# --------------------------------------------------------------------------------------------------------------
# The batch


def _merge(candidates: list[_Candidate]) -> list[_Candidate]:
    """One candidate per slide, at its first position, with the manifest fields of all its listings."""
    kept: dict[tuple[str, str], _Candidate] = {}
    for candidate in candidates:
        first = kept.get(candidate.key)
        if first is None:
            kept[candidate.key] = candidate
            continue
        for name in ("slide_id", "label", "mpp"):
            value = getattr(candidate, name)
            if value is None:
                continue
            old = getattr(first, name)
            if old is None:
                setattr(first, name, value)
                first.fields_origin[name] = candidate.fields_origin[name]
            elif old != value:
                raise InputError(
                    f"{candidate.fields_origin[name]}: {name}: {value!r} for {candidate.path}, which "
                    f"{first.fields_origin[name]} already gives {name} {old!r} (the same slide listed twice "
                    "with different values)"
                )
    return list(kept.values())


def _assign_ids(slides: list[_Candidate]) -> list[str]:
    """The slide id of each slide: explicit ids (unique, or an error), then default ids made unique."""
    ids: list[str | None] = [None] * len(slides)
    owner: dict[str, int] = {}
    for index, slide in enumerate(slides):
        if slide.slide_id is None:
            continue
        folded = slide.slide_id.casefold()
        if folded in owner:
            other = slides[owner[folded]]
            raise InputError(
                f"{slide.fields_origin['slide_id']}: slide_id: {slide.slide_id!r} ({slide.path}) is already the "
                f"slide_id of {other.fields_origin['slide_id']} ({other.path}); slide ids must be unique, "
                "ignoring case"
            )
        owner[folded] = index
        ids[index] = slide.slide_id
    taken = set(owner)
    for index, slide in enumerate(slides):  # each stem to its first slide, unless an explicit id has it
        folded = slide.natural_id.casefold()
        if ids[index] is None and folded not in taken:
            ids[index] = slide.natural_id
            taken.add(folded)
    reserved = taken | {slide.natural_id.casefold() for slide in slides}
    for index, slide in enumerate(slides):
        if ids[index] is not None:
            continue
        number = 2
        while True:
            suffix = f"-{number}"
            candidate = slide.natural_id[: MAX_SLIDE_ID_LENGTH - len(suffix)] + suffix
            if candidate.casefold() not in reserved:
                break
            number += 1
        ids[index] = candidate
        reserved.add(candidate.casefold())
    return [slide_id for slide_id in ids if slide_id is not None]


def resolve_inputs(inputs: Sequence[str | os.PathLike[str]], *, recursive: bool = True) -> list[SlideInput]:
    """The slides of a batch, from slide files, folders and manifest CSVs, in order and without duplicates.

    Parameters
    ----------
    inputs : sequence of str or PathLike
        Each a slide file (taken whatever its extension), a folder (searched for :data:`SLIDE_EXTENSIONS`)
        or a manifest CSV (a file ending in ``.csv``). A single path is taken as a list of one. A path that
        does not exist is a slide that will fail, not an error (see the module's documentation).
    recursive : bool
        Search folders' subfolders too.

    Returns
    -------
    list of SlideInput
        In input order (a folder's slides in code-point order of their names, subfolders
        depth first at their place; a manifest's in row order),
        each slide once (at its first listing), with unique, folder-safe slide ids.

    Raises
    ------
    InputError
        No inputs; an input that is not a path; a folder without a slide, or one that cannot be listed; a
        manifest that cannot be read, is not UTF-8, has an unknown, unnamed or repeated column, no ``path``
        column, no rows, a row with an empty path, too many fields, an unsafe ``slide_id`` or a bad ``mpp``;
        two slides with one explicit ``slide_id``; one slide listed twice with different manifest values.
        Messages name the file, the line and the field.

    Examples
    --------
    >>> resolve_inputs(["slides/", "extra/S9.ndpi", "cohort.csv"])      # doctest: +SKIP
    [SlideInput(slide_id='S1', path='/data/slides/S1.svs', label=None, mpp=None), ...]
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(inputs, (bytes, bytearray)) or not isinstance(inputs, Sequence):
        raise InputError(f"inputs: expected a list of paths, got {describe(inputs)}")
    if not isinstance(recursive, bool):
        raise InputError(f"recursive: expected True or False, got {describe(recursive)}")
    if not inputs:
        raise InputError("inputs: expected at least one slide file, folder or manifest CSV, got none")
    dicom = _DicomFolders()
    candidates: list[_Candidate] = []
    for number, item in enumerate(inputs, 1):
        shown = _parse_input_path(item, f"inputs[{number - 1}]")
        try:
            mode: int | None = os.stat(shown).st_mode
        except (OSError, ValueError):
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            candidates.extend(_folder_candidates(shown, shown, recursive, dicom))
        elif shown.casefold().endswith(_MANIFEST_EXTENSION):
            if mode is None or not stat.S_ISREG(mode):
                raise InputError(f"{shown}: no such manifest CSV (a .csv argument is read as a manifest: path, "
                                 f"slide_id, label, mpp)")
            candidates.extend(_manifest_candidates(shown, shown, recursive, dicom))
        else:
            candidates.append(_file_candidate(shown, dicom))
    slides = _merge(candidates)
    return [SlideInput(slide_id=slide_id, path=slide.path, label=slide.label, mpp=slide.mpp)
            for slide_id, slide in zip(_assign_ids(slides), slides)]
