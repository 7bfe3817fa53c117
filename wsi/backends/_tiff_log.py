"""Keep tifffile's log lines off stderr while the tiff backend parses or decodes, thread by thread.

tifffile reports damaged files (an IFD offset past the end of the file, a corrupted tag list)
through the ``tifffile`` logger and carries on with what it could read, so a truncated slide
would open with fewer levels and print lines of its own. Inside :func:`captured_tifffile_log`
the records of the calling thread are taken off that logger (a :class:`logging.Filter` that is
attached only while some thread is inside, so importing this module changes nothing and other
threads' records are untouched) and handed to the caller, which turns the ones that matter
into slidescope errors with :func:`raise_for_damage`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import CorruptSlideError

__all__ = ["captured_tifffile_log", "raise_for_damage"]

_TIFFFILE_LOGGER = "tifffile"
#: Where swallowed tifffile warnings go, for whoever turns on debug logging.
_DEBUG_LOGGER = logging.getLogger("slidescope.wsi.tiff")


class _PerThreadCapture(logging.Filter):
    """Takes the records of threads inside :func:`captured_tifffile_log`; lets all others pass."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.records: dict[int, list[logging.LogRecord]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        records = self.records.get(threading.get_ident())
        if records is None:
            return True
        records.append(record)
        return False


_CAPTURE = _PerThreadCapture()


@contextmanager
def captured_tifffile_log() -> Iterator[list[logging.LogRecord]]:
    """Collect (instead of print) what tifffile logs in this thread inside the block.

    Yields
    ------
    list of logging.LogRecord
        Filled as tifffile logs; nested blocks in one thread share the outer list.
    """
    ident = threading.get_ident()
    logger = logging.getLogger(_TIFFFILE_LOGGER)
    with _CAPTURE.lock:
        outer = _CAPTURE.records.get(ident)
        if outer is None:
            if not _CAPTURE.records:
                logger.addFilter(_CAPTURE)
            _CAPTURE.records[ident] = []
        records = _CAPTURE.records[ident]
    try:
        yield records
    finally:
        if outer is None:
            with _CAPTURE.lock:
                del _CAPTURE.records[ident]
                if not _CAPTURE.records:
                    logger.removeFilter(_CAPTURE)


def raise_for_damage(path: str, records: list[logging.LogRecord], what: str = "the TIFF structure") -> None:
    """Raise :class:`CorruptSlideError` if tifffile logged an error; keep warnings at debug level.

    tifffile logs at ERROR what it found broken in the file (page offsets past the end,
    corrupted tag lists, strip counts that do not match the image) and at WARNING what it could
    work around (odd tag types, ASCII it had to coerce).
    """
    errors = [record.getMessage() for record in records if record.levelno >= logging.ERROR]
    for record in records:
        if record.levelno < logging.ERROR:
            _DEBUG_LOGGER.debug("%s: tifffile: %s", path, record.getMessage())
    if errors:
        details = "; ".join(dict.fromkeys(errors))  # unique, in order
        raise CorruptSlideError(f"{path}: {what} is damaged (tifffile: {details})")
