"""The one guard every writing command goes through before it writes a file or a folder.

Rules, the same for every command:

- An output never replaces an input: the paths are compared resolved and with
  :func:`os.path.samefile`, so a symbolic or hard link to the slide is refused too.
- An existing file that is this command's own kind of output (recognised by its contents, not its
  suffix) is replaced; anything else is refused unless ``--overwrite`` is given, and some kinds
  (an existing slide under ``synth``) are stricter still. Folders and special files are never replaced.
- A missing output folder is created only when its parent exists (one level); deeper missing
  folders are refused, so a typo in a path does not scatter folders over the disk.
- ``OSError`` raised while writing becomes :class:`~slidescope.wsi.errors.OutputError` naming the
  output, which the command line reports in one line; nothing else is caught.

>>> target = check_output("mask.png", PNG_MASK, inputs=["slide.svs"])    # doctest: +SKIP
>>> with target.writing():                                                 # doctest: +SKIP
...     mask.to_png(target.path)
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slidescope.wsi.atomic import check_parent, ensure_folder
from slidescope.wsi.errors import OutputError, OutputExistsError, SlideError
from slidescope.wsi.validation import parse_path

__all__ = [
    "OutputKind",
    "OutputTarget",
    "check_output",
    "check_output_folder",
    "PNG_MASK",
    "TILE_PLAN",
    "SLIDE",
    "SYNTHETIC_TRUTH",
    "PREDICTION_TABLE",
    "HEATMAP_PNG",
    "CAM_STORE",
    "PREDICTION_MANIFEST",
    "KINDS_BY_NAME",
    "writing_all",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OutputKind:
    """What a command writes, and what it may replace.

    Attributes
    ----------
    description : str
        The kind in words, for messages ("an 8-bit greyscale PNG mask").
    recognise : callable
        ``recognise(path) -> bool``: True when an existing regular file is of this kind.
    replace_own : bool
        Whether an existing file of this kind is replaced without ``--overwrite`` (re-running a
        command replaces its own previous output).
    replace_other : bool
        Whether ``--overwrite`` may replace an existing file of another kind.
    suffixes : tuple of str
        The lower-case suffixes an output path may end in; empty for any.
    suffix_note : str
        Why only those, added to the message when a path ends otherwise.
    folder : bool
        The output is a folder (a zarr store): an existing folder of this kind is replaced, any
        other existing folder or file is refused.
    """

    description: str
    recognise: Callable[[Path], bool]
    replace_own: bool = True
    replace_other: bool = True
    suffixes: tuple[str, ...] = ()
    suffix_note: str = ""
    folder: bool = False


def _is_png_mask(path: Path) -> bool:
    """An 8-bit greyscale PNG, as :meth:`TissueMask.to_png` writes: signature, then IHDR with bit
    depth 8 and colour type 0 (the PNG specification fixes these byte positions)."""
    with open(path, "rb") as stream:
        head = stream.read(26)
    return len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24:26] == b"\x08\x00"


def _is_tile_plan(path: Path) -> bool:
    """A Parquet file that the plan reader loads (it checks the slidescope plan metadata)."""
    from slidescope.tiling.plan import TilePlan

    try:
        TilePlan.load(path)
    # Any failure to read it back means "not a plan this project wrote": the guard then refuses,
    # which is the safe answer (pyarrow raises ValueError and OSError subclasses, bad metadata
    # KeyError or TypeError).
    except (ValueError, KeyError, TypeError, OSError):
        return False
    return True


def _is_slide(path: Path) -> bool:
    """A file some slide backend opens (with or without mpp metadata)."""
    from slidescope.wsi import open_slide

    try:
        with open_slide(path, require_mpp=False):
            return True
    except SlideError:
        return False


def _is_synthetic_truth(path: Path) -> bool:
    """The ``.truth.npz`` archive that :func:`slidescope.wsi.synthetic.make_slide` writes."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "format_version.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


#: What ``slidescope tissue`` writes.
PNG_MASK = OutputKind(
    "an 8-bit greyscale PNG mask", _is_png_mask, suffixes=(".png",),
    suffix_note="a mask is binary and stays lossless: JPEG would blur its edges into grey",
)
def _listed_in_manifest(path: Path) -> bool:
    """Whether the prediction manifest beside ``path`` lists it among its outputs."""
    from .predict import read_manifest

    manifest = read_manifest(path.parent)
    return manifest is not None and path.name in manifest.get("outputs", ())


def _is_predicted_png(path: Path) -> bool:
    """A PNG that the prediction manifest beside it lists (a PNG carries no mark of its own)."""
    with open(path, "rb") as stream:
        return stream.read(8) == _PNG_SIGNATURE and _listed_in_manifest(path)


def _is_manifest(path: Path) -> bool:
    from .predict import read_manifest

    return path.name == "prediction.json" and read_manifest(path.parent) is not None


def _is_prediction_table(path: Path) -> bool:
    """A Parquet file carrying the metadata ``slidescope predict`` writes into its tables."""
    import pyarrow.parquet as pq

    from .predict import TABLE_METADATA_KEY

    try:
        return TABLE_METADATA_KEY in (pq.read_schema(path).metadata or {})
    except (ValueError, OSError):  # not Parquet: not ours
        return False


def _is_cam_store(path: Path) -> bool:
    """A zarr group written by ``slidescope predict`` (its ``zarr.json`` carries the CAM attribute)."""
    import json

    from .predict import CAM_ATTRIBUTE

    try:
        with open(path / "zarr.json", encoding="utf-8") as stream:
            return CAM_ATTRIBUTE in json.load(stream).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


#: The tables ``slidescope predict`` writes (``tiles.parquet``, ``cells.parquet``).
PREDICTION_TABLE = OutputKind("a slidescope prediction table (Parquet)", _is_prediction_table)
#: The heatmap picture ``slidescope predict`` writes (its own when the folder's manifest lists it).
HEATMAP_PNG = OutputKind("a slidescope heatmap PNG", _is_predicted_png, suffixes=(".png",))
#: The manifest ``slidescope predict`` writes beside its outputs.
PREDICTION_MANIFEST = OutputKind("a slidescope prediction manifest", _is_manifest)
#: The class activation maps ``slidescope predict`` writes: a zarr folder.
CAM_STORE = OutputKind("a slidescope CAM zarr store", _is_cam_store, replace_other=False, folder=True)
#: The kind of each file ``slidescope predict`` writes, by its name in the output folder.
KINDS_BY_NAME = {"tiles.parquet": PREDICTION_TABLE, "cells.parquet": PREDICTION_TABLE, "heatmap.png": HEATMAP_PNG,
                 "cam.zarr": CAM_STORE, "prediction.json": PREDICTION_MANIFEST}
#: What ``slidescope tile`` writes.
TILE_PLAN = OutputKind("a slidescope tile plan (Parquet)", _is_tile_plan)
#: What ``slidescope synth`` writes: an existing slide only with ``--overwrite``, never another file.
SLIDE = OutputKind("a slide", _is_slide, replace_own=False, replace_other=False)
#: The ground truth ``slidescope synth`` writes beside the slide: the same rules.
SYNTHETIC_TRUTH = OutputKind("a synthetic-slide ground truth (.npz)", _is_synthetic_truth,
                             replace_own=False, replace_other=False)


@dataclass(frozen=True)
class OutputTarget:
    """An output path that passed :func:`check_output`; write it inside :meth:`writing`."""

    path: Path
    kind: OutputKind
    inputs: tuple[str, ...]
    overwrite: bool
    option: str

    @contextmanager
    def writing(self) -> Iterator[Path]:
        """Check again (the command may have run for minutes) and turn an ``OSError`` of the writer
        into an :class:`OutputError` naming the path. The writer goes through
        :mod:`slidescope.wsi.atomic`, which creates the last missing folder level."""
        _check_file(self.path, self.kind, self.inputs, self.overwrite, self.option)
        with _output_errors(self.path, self.kind.description):
            yield self.path


def check_output(
    path: Any,
    kind: OutputKind,
    *,
    inputs: Iterable[Any] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> OutputTarget:
    """Check that ``path`` may receive an output of ``kind``, before any work is done.

    Parameters
    ----------
    path : str or PathLike
        The output file.
    kind : OutputKind
        What will be written there.
    inputs : iterable of str or PathLike
        The command's input files; the output may be none of them.
    overwrite : bool
        The command's ``--overwrite``: replace an existing file of another kind.
    option : str
        The option that gave ``path``, for messages.

    Returns
    -------
    OutputTarget

    Raises
    ------
    OutputError
        The output would replace an input, or its folder cannot be used.
    OutputExistsError
        Something that may not be replaced is already there.
    """
    target = Path(parse_path(path, option))
    sources = tuple(parse_path(source, "input") for source in inputs)
    _check_file(target, kind, sources, bool(overwrite), option)
    return OutputTarget(target, kind, sources, bool(overwrite), option)


def check_output_folder(path: Any, *, option: str = "--out") -> Path:
    """Check an output folder and create it when only its last level is missing; returns it.

    Raises
    ------
    OutputExistsError
        ``path`` exists and is not a folder.
    OutputError
        More than the last level is missing, or the folder cannot be created.
    """
    folder = Path(parse_path(path, option))
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputExistsError(f"{folder}: {option}: expected a folder for the outputs, got an existing file")
    with _output_errors(folder, "the output folder"):
        return ensure_folder(folder)


# ----------------------------------------------------------------------------- checks


def _same_file(output: Path, source: str) -> bool:
    if not os.path.exists(source):
        return False
    if output.resolve() == Path(source).resolve():
        return True
    return output.exists() and os.path.samefile(output, source)


def _check_file(target: Path, kind: OutputKind, inputs: tuple[str, ...], overwrite: bool, option: str) -> None:
    for source in inputs:
        if _same_file(target, source):
            raise OutputError(
                f"{target}: {option} names the input {source} (the same file); refusing to write over an input, "
                f"choose another output path"
            )
    suffix = target.suffix.lower()
    if kind.suffixes and suffix not in kind.suffixes:
        note = f" ({kind.suffix_note})" if kind.suffix_note else ""
        raise OutputError(
            f"{target}: {option}: expected a path ending in {' or '.join(kind.suffixes)} for {kind.description}, "
            f"got {repr(suffix) if suffix else 'no suffix'}{note}"
        )
    if os.path.lexists(target):
        _check_existing(target, kind, overwrite)
    check_parent(target)


def _check_existing(target: Path, kind: OutputKind, overwrite: bool) -> None:
    try:
        mode = os.stat(target).st_mode
    except OSError:  # a dangling symbolic link: something the user made, not our output
        mode = None
    if kind.folder:
        if mode is not None and stat.S_ISDIR(mode) and not target.is_symlink() and kind.recognise(target):
            return
        raise OutputExistsError(f"{target}: already exists and is not {kind.description}; refusing to replace it, "
                                f"even with --overwrite: remove it yourself or choose another folder")
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputExistsError(f"{target}: is a folder; expected a file path for {kind.description}")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputExistsError(f"{target}: exists and is not a regular file; refusing to replace it")
    own = mode is not None and kind.recognise(target)
    if own and (kind.replace_own or overwrite):
        return
    if not own and overwrite and kind.replace_other:
        return
    if own:
        raise OutputExistsError(f"{target}: already exists ({kind.description}); pass --overwrite to replace it")
    if kind.replace_other:
        raise OutputExistsError(
            f"{target}: already exists and is not {kind.description}; pass --overwrite to replace it"
        )
    raise OutputExistsError(
        f"{target}: already exists and is not {kind.description}; refusing to replace it, even with "
        f"--overwrite: remove it yourself or choose another path"
    )


@contextmanager
def writing_all(targets: list[OutputTarget]) -> Iterator[list[Path]]:
    """Stage several checked outputs and rename them into place together (:func:`atomic_paths`).

    Each is checked again first (the command may have run for minutes); an ``OSError`` while
    writing becomes an :class:`OutputError` naming the output folder.
    """
    from slidescope.wsi.atomic import atomic_paths

    for target in targets:
        _check_file(target.path, target.kind, target.inputs, target.overwrite, target.option)
    folder = targets[0].path.parent if targets else Path(".")
    with _output_errors(folder, "the outputs"), atomic_paths([t.path for t in targets]) as temporaries:
        yield temporaries


@contextmanager
def _output_errors(path: Path, what: str) -> Iterator[None]:
    """Report an ``OSError`` raised while writing ``path`` as an :class:`OutputError` naming it."""
    try:
        yield
    except SlideError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and os.fspath(exc.filename) != os.fspath(path) else ""
        raise OutputError(f"{path}: cannot write {what}: {reason}{where}") from exc
