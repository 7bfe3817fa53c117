"""Is this path a slide file this process can read? Answered before any backend touches it.

A backend handed a FIFO blocks forever in ``open()``; one handed an unreadable file reports a
format problem ("not a format OpenSlide reads") and one handed a symbolic-link loop says "no
such file". :func:`check_slide_path` answers each of these with the right slidescope error, naming
the path and saying what it is, from ``stat`` alone for anything that is not a regular file (a
device is never opened: opening some rewinds a tape or blocks on a terminal).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from .errors import SlideAccessError, SlideNotFoundError, SlidePermissionError, UnsupportedFormatError
from .validation import parse_path

__all__ = ["check_slide_path", "describe_file_type"]

_FILE_TYPES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def describe_file_type(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``"a regular file"``, ``"a FIFO (named pipe)"``, ``"a socket"``..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for test, words in _FILE_TYPES if test(mode)), f"a special file (mode {mode:o})")


def _stat_error(path: str, exc: OSError) -> OSError:
    """The slidescope error for a failed ``os.stat(path)``."""
    if exc.errno == errno.ELOOP:
        return SlideAccessError(f"{path}: a loop of symbolic links; expected a slide file")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SlidePermissionError(
            f"{path}: permission denied while looking the file up (a folder on the way is not searchable)"
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return SlideNotFoundError(
                f"{path}: a symbolic link to {os.readlink(path)!r}, which does not exist; expected a slide file"
            )
        return SlideNotFoundError(f"{path}: no such slide file")
    return SlideAccessError(f"{path}: cannot be looked up: {exc.strerror or exc}")


def check_slide_path(path: Any, what: str = "path") -> str:
    """Validate ``path`` and return it as ``str`` when it names a readable regular file.

    Parameters
    ----------
    path : str or os.PathLike of str
        The slide file.
    what : str
        The parameter's name, for the message of a malformed path.

    Returns
    -------
    str

    Raises
    ------
    ParameterError
        ``path`` is not a non-empty ``str`` or ``PathLike`` of one (bytes, ``None``, an int...).
    SlideNotFoundError
        Nothing exists there (a dangling symbolic link included).
    UnsupportedFormatError
        It is a directory (no format slidescope reads is a directory: an MRXS slide is its
        ``.mrxs`` file, a DICOM series one of its ``.dcm`` files).
    SlideAccessError
        It is not a regular file (FIFO, socket, device) or is a symbolic-link loop.
    SlidePermissionError
        It exists but this process may not read it.
    """
    text = parse_path(path, what)
    try:
        mode = os.stat(text).st_mode
    except OSError as exc:
        raise _stat_error(text, exc) from None
    if stat.S_ISDIR(mode):
        raise UnsupportedFormatError(
            f"{text}: is a directory; expected a slide file (for a DICOM series, pass one of its .dcm files; "
            "for MRXS, the .mrxs file)"
        )
    if not stat.S_ISREG(mode):
        raise SlideAccessError(f"{text}: is {describe_file_type(mode)}; expected a regular slide file")
    # Opening tells the truth about permissions (ACLs, root-squashed NFS, effective ids) where
    # os.access only guesses; a regular file opens without side effects.
    # O_NONBLOCK: should the path become a FIFO after the stat, the open must not wait for a writer.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        os.close(os.open(text, flags))
    except PermissionError:
        raise SlidePermissionError(f"{text}: permission denied; this process may not read the slide file") from None
    except OSError as exc:
        raise SlideAccessError(f"{text}: cannot be opened for reading: {exc.strerror or exc}") from None
    return text
