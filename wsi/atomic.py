"""Atomic output: write to a temporary path beside the target, then rename it onto the target.

The one way slidescope writes its outputs (masks, plans, overlays, zarr stores, synthetic slides):
readers never see a half-written file or folder, and a failure leaves the previous output (or
nothing) where it was.

- A file replaces a file in one ``os.replace``.
- A folder (a zarr store) cannot be renamed onto a non-empty folder, so the old one is first
  renamed aside, the new one renamed into place, and only then the old one deleted: readers see
  the old folder, for an instant none, then the new one; if the second rename fails the old folder
  is put back.
- A file never replaces a folder, nor a folder a file (:class:`~slidescope.wsi.errors.OutputExistsError`).
- :func:`atomic_paths` stages several outputs and renames them into place together, in order, only
  once every one was written (a synthetic slide and its ground truth).
- Of missing folders only the last level is created (``results/`` for ``results/mask.png``); a
  deeper missing folder is an :class:`~slidescope.wsi.errors.OutputError` naming it, so a typo in a
  path does not silently grow a tree of folders.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError, OutputExistsError, ParameterError
from .validation import parse_path

__all__ = ["atomic_path", "atomic_paths", "check_parent", "ensure_parent", "ensure_folder"]


def _token() -> str:
    return uuid.uuid4().hex[:12]


def _check_folder(target: Path, folder: Path) -> None:
    """``folder`` (where ``target`` goes) must be a folder, or be missing with its parent a folder."""
    if folder.is_dir():
        return
    if os.path.lexists(folder):
        raise OutputError(f"{target}: cannot write: {folder} is not a folder")
    missing = folder
    while not missing.parent.is_dir() and missing.parent != missing:
        missing = missing.parent
    if missing != folder:
        raise OutputError(
            f"{target}: cannot write: folder {missing} does not exist; slidescope creates only the last "
            f"missing folder level ({folder.name}), so create the others first"
        )


def _make_folder(target: Path, folder: Path) -> None:
    try:
        folder.mkdir(exist_ok=True)  # one level: _check_folder saw its parent
    except OSError as exc:
        raise OutputError(f"{target}: cannot create the folder {folder}: {exc.strerror or exc}") from exc


def check_parent(path: str | os.PathLike[str]) -> Path:
    """Check, creating nothing, that the folder of ``path`` exists or only its last level is missing.

    Returns
    -------
    pathlib.Path
        ``path`` as a Path.

    Raises
    ------
    OutputError
        The folder of ``path`` is a file, or a folder above it is missing (the message names the
        first missing one).
    """
    target = Path(parse_path(path))
    _check_folder(target, target.parent)
    return target


def ensure_parent(path: str | os.PathLike[str]) -> Path:
    """:func:`check_parent`, then create the folder of ``path`` when it is missing; returns ``path``."""
    target = check_parent(path)
    if not target.parent.is_dir():
        _make_folder(target, target.parent)
    return target


def ensure_folder(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created when only its last level is missing (see :func:`check_parent`)."""
    folder = Path(parse_path(path))
    _check_folder(folder, folder)
    _make_folder(folder, folder)
    return folder


class _Staged:
    """One output being written: its target and the temporary path beside it."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = ensure_parent(path)
        # The temporary keeps the target's suffix (.mask.1a2b.partial.png) for writers that choose
        # the format by suffix (OpenCV, tifffile); it is not created: the writer makes a file or a
        # folder with the usual (umask) permissions.
        self.temporary = self.path.with_name(f".{self.path.stem}.{_token()}.partial{self.path.suffix}")

    def check_written(self) -> None:
        if not os.path.lexists(self.temporary):
            raise OutputError(f"{self.path}: nothing was written to the temporary {self.temporary}")
        new_is_dir, old_is_dir = self.temporary.is_dir(), self.path.is_dir() and not self.path.is_symlink()
        if os.path.lexists(self.path) and new_is_dir != old_is_dir:
            old, new = ("folder", "file") if old_is_dir else ("file", "folder")
            raise OutputExistsError(f"{self.path}: expected a path for a {new}, got an existing {old}; "
                                    f"not replacing it")

    def commit(self) -> None:
        if not (self.temporary.is_dir() and self.path.is_dir() and not self.path.is_symlink()):
            os.replace(self.temporary, self.path)
            return
        aside = self.path.with_name(f".{self.path.name}.{_token()}.old")
        os.rename(self.path, aside)
        try:
            os.rename(self.temporary, self.path)
        except BaseException:
            os.rename(aside, self.path)  # put the old folder back
            raise
        shutil.rmtree(aside, ignore_errors=True)

    def discard(self) -> None:
        if self.temporary.is_dir() and not self.temporary.is_symlink():
            shutil.rmtree(self.temporary, ignore_errors=True)
        elif os.path.lexists(self.temporary):
            self.temporary.unlink(missing_ok=True)


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Temporary paths beside each of ``paths``, renamed onto them together when the block succeeds.

    Nothing is renamed until every temporary was written; they are then renamed in the order
    given (put the one whose presence announces the others, such as a slide beside its ground
    truth, last). On failure every temporary is removed and the targets are left as they were.

    Raises
    ------
    OutputError
        A folder is missing (see :func:`ensure_parent`), or the block wrote nothing to a temporary.
    OutputExistsError
        A target is a folder where a file was written, or the other way round.
    ParameterError
        A path is not a str or PathLike, or two paths are the same.
    """
    staged = [_Staged(path) for path in paths]
    targets = [os.path.abspath(s.path) for s in staged]
    if len(set(targets)) != len(targets):
        raise ParameterError(f"paths: expected distinct outputs, got {[str(s.path) for s in staged]}")
    try:
        yield [s.temporary for s in staged]
        for s in staged:
            s.check_written()
        for s in staged:
            s.commit()
    except BaseException:
        for s in staged:
            s.discard()
        raise


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` (file or folder, as the writer makes it), renamed onto it on success.

    Examples
    --------
    >>> with atomic_path("plan.parquet") as temporary:          # doctest: +SKIP
    ...     table.to_parquet(temporary)
    >>> with atomic_path("heatmap.zarr") as temporary:          # doctest: +SKIP
    ...     zarr.create_array(store=str(temporary), shape=(64, 64), dtype="f4")
    """
    with atomic_paths([path]) as (temporary,):
        yield temporary
