"""Truncated TIFFs whose IFDs lie past the cut: a CorruptSlideError saying so, naming the file.

An Aperio SVS (CMU-1-Small-Region) keeps its IFDs after the pixel data, so a copy cut to 10 or
50 % still has a valid header whose first IFD offset points past the end of the file; tifffile
then finds no pages at all. Cuts further on lose later IFDs of the chain.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import CorruptSlideError, open_slide
from slidescope.wsi.backends._tiff_chain import ifd_chain_length

SVS = "CMU-1-Small-Region.svs"


@pytest.mark.parametrize("percent", [10, 30, 50, 70, 90])
@pytest.mark.parametrize("backend", ["tiff", "auto"])
def test_a_cut_svs_is_reported_as_truncated(data_file, tmp_path, percent, backend):
    data = Path(data_file(SVS)).read_bytes()
    path = tmp_path / f"cut-{percent}.svs"
    path.write_bytes(data[: len(data) * percent // 100])
    with pytest.raises(CorruptSlideError, match=f"{re.escape(str(path))}: the file is truncated: IFD .*past the end of the file"):
        open_slide(path, backend=backend)


def _three_page_tiff(path: Path) -> None:
    rng = np.random.default_rng(2)
    with tifffile.TiffWriter(path, bigtiff=path.suffix == ".btf") as writer:
        for size in (256, 128, 64):
            writer.write(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), tile=(64, 64), photometric="rgb",
                         subfiletype=0 if size == 256 else 1, metadata=None,
                         resolution=(4e4, 4e4), resolutionunit="CENTIMETER")


@pytest.mark.parametrize("suffix", [".tiff", ".btf"])
def test_the_chain_walk_counts_classic_and_big_tiff_pages(tmp_path, suffix):
    path = tmp_path / f"three{suffix}"
    _three_page_tiff(path)
    with open(path, "rb") as handle:
        assert ifd_chain_length(str(path), handle.fileno(), path.stat().st_size) == 3
    with open_slide(path, backend="tiff") as slide:
        assert len(slide.levels) == 3


def test_an_ifd_cut_in_the_middle_is_truncation(tmp_path):
    path = tmp_path / "cut-ifd.tiff"
    _three_page_tiff(path)
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[2].offset
    path.write_bytes(path.read_bytes()[: last + 10])  # the entry count survives, the entries do not
    with pytest.raises(CorruptSlideError, match=f"{re.escape(str(path))}: the file is truncated: IFD 2 .*past the end"):
        open_slide(path, backend="tiff")


def test_fewer_pages_than_the_chain_holds_is_refused(tmp_path):
    # IFD 1 claims 5,000 entries (inside the file, but more than tifffile accepts) and ends the
    # chain: the chain holds 2 IFDs, tifffile reads only page 0.
    path = tmp_path / "many-tags.tiff"
    _three_page_tiff(path)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].offset
    entries = 5000
    next_link = offset + 2 + entries * 12
    data = bytearray(path.read_bytes())
    assert next_link + 4 <= len(data)  # the crafted IFD lies inside the file
    struct.pack_into("<H", data, offset, entries)
    struct.pack_into("<I", data, next_link, 0)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptSlideError, match=f"{re.escape(str(path))}: .*IFD chain holds 2 pages but only 1"):
        open_slide(path, backend="tiff")
