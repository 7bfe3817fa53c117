"""Walk a TIFF's chain of image file directories and refuse a file cut short.

A slide truncated in transfer keeps a valid header, but its first IFD offset, or a later link
of the chain, points past the end of the file. tifffile then finds no pages, or fewer than the
chain promises, and carries on with what it read ("the TIFF holds no image series", or a slide
with fewer levels); it reports no structured "truncated" result, so the chain is walked here
from the header: a few small reads per page, at open only.
"""

from __future__ import annotations

import os
import struct

from ..errors import CorruptSlideError

__all__ = ["ifd_chain_length", "check_page_count", "MAX_CHAIN_PAGES"]

#: Longest IFD chain walked; beyond it the file is taken as it is (no slide has so many pages).
MAX_CHAIN_PAGES = 1 << 16
#: Byte order mark -> struct prefix.
_BYTE_ORDERS = {b"II": "<", b"MM": ">"}
#: Version -> (header size, offset format, entry count format, entry size).
_LAYOUTS = {42: (8, "I", "H", 12), 43: (16, "Q", "Q", 20)}


def _truncated(path: str, what: str, offset: int, need: int, file_size: int) -> CorruptSlideError:
    return CorruptSlideError(
        f"{path}: the file is truncated: {what} at offset {offset} needs {need} bytes but the file ends "
        f"at {file_size} bytes (past the end of the file); expected a complete TIFF"
    )


def ifd_chain_length(path: str, fd: int, file_size: int) -> int:
    """Count the IFDs of the main chain, checking that each lies whole inside the file.

    Parameters
    ----------
    path : str
        The file, for error messages.
    fd : int
        The file, open for reading.
    file_size : int
        Its size in bytes.

    Returns
    -------
    int
        The number of IFDs in the chain (0 when the header is not a classic or Big TIFF one,
        which tifffile refuses before this is called).

    Raises
    ------
    CorruptSlideError
        The first IFD offset, an IFD's entries or a next-IFD link lie past the end of the file.
    """
    header = os.pread(fd, 16, 0)
    order = _BYTE_ORDERS.get(header[:2])
    if order is None or len(header) < 8:
        return 0
    layout = _LAYOUTS.get(struct.unpack(order + "H", header[2:4])[0])
    if layout is None:
        return 0
    header_size, offset_format, count_format, entry_size = layout
    if len(header) < header_size:
        raise _truncated(path, "the TIFF header", 0, header_size, file_size)
    offset_size, count_size = struct.calcsize(offset_format), struct.calcsize(count_format)
    offset = struct.unpack_from(order + offset_format, header, header_size - offset_size)[0]
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < MAX_CHAIN_PAGES:
        what = f"IFD {len(seen)}"
        if offset + count_size > file_size:
            raise _truncated(path, what, offset, count_size, file_size)
        entries = struct.unpack(order + count_format, os.pread(fd, count_size, offset))[0]
        end = offset + count_size + entries * entry_size + offset_size
        if end > file_size:
            raise _truncated(path, f"{what} ({entries} entries)", offset, end - offset, file_size)
        seen.add(offset)
        offset = struct.unpack(order + offset_format, os.pread(fd, offset_size, end - offset_size))[0]
    return len(seen)


def check_page_count(path: str, chain_length: int, pages_found: int) -> None:
    """Raise unless tifffile found as many pages as the IFD chain holds."""
    if pages_found < chain_length:
        raise CorruptSlideError(
            f"{path}: the file is truncated or damaged: its IFD chain holds {chain_length} pages but only "
            f"{pages_found} can be read; expected all {chain_length}"
        )
