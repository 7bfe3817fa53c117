"""Damaged and crafted TIFFs: clear slidescope errors naming the file, nothing printed by tifffile.

Truncated slides, tag values crafted to exhaust memory, fewer tile offsets than tiles, corrupt
associated images, IFD chains that point past the end of the file.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import AssociatedImageNotFoundError, CorruptSlideError, from_array, open_slide
from slidescope.wsi.backends._tiff_log import captured_tifffile_log

_FORMATS = {1: "<B", 3: "<H", 4: "<I", 16: "<Q"}


def _tag(path: Path, page: int, code: int):
    with tifffile.TiffFile(path) as tif:
        return tif.pages[page].tags[code]


def patch_tag_value(path: Path, page: int, code: int, value: int) -> None:
    """Overwrite the inline value of a one-value integer tag in place."""
    tag = _tag(path, page, code)
    data = bytearray(path.read_bytes())
    struct.pack_into(_FORMATS[int(tag.dtype)], data, tag.valueoffset, value)
    path.write_bytes(bytes(data))


def patch_tag_count(path: Path, page: int, code: int, count: int) -> None:
    """Overwrite the value count of a tag's IFD entry (classic TIFF: 4 bytes after code and type)."""
    tag = _tag(path, page, code)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, tag.offset + 4, count)
    path.write_bytes(bytes(data))


def small_tiled_tiff(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(64, 64), photometric="rgb", compression="zlib",
                     resolution=(40000.0, 40000.0), resolutionunit="CENTIMETER")
    return image


@pytest.fixture()
def svs_copy(synthetic_svs, tmp_path) -> Path:
    path = tmp_path / "copy.svs"
    shutil.copyfile(synthetic_svs, path)
    return path


def tifffile_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("tifffile")]


# -- item 7: truncation --------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.999])
@pytest.mark.parametrize("backend", ["tiff", "auto"])
def test_truncated_svs_is_refused_naming_the_file(svs_copy, fraction, backend, caplog):
    data = svs_copy.read_bytes()
    svs_copy.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptSlideError, match=f"{svs_copy}: .*(past the end of the file|damaged)"):
        open_slide(svs_copy, backend=backend)
    assert not tifffile_records(caplog)


def test_fewer_tile_offsets_than_tiles_is_refused(tmp_path):
    path = tmp_path / "short-offsets.tiff"
    small_tiled_tiff(path)
    tiles = len(_tag(path, 0, 324).value)  # 5 x 4 tiles
    patch_tag_count(path, 0, 324, tiles - 3)  # TileOffsets
    patch_tag_count(path, 0, 325, tiles - 3)  # TileByteCounts
    with pytest.raises(CorruptSlideError, match=f"{path}: page 0 .*TileOffsets lists {tiles - 3} tiles; expected {tiles}"):
        open_slide(path, backend="tiff")


def test_a_file_shrunk_after_opening_gives_a_clear_error(tmp_path):
    path = tmp_path / "shrinks.tiff"
    small_tiled_tiff(path)
    with open_slide(path, backend="tiff") as slide:
        slide.read_region((0, 0), (64, 64))
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
        with pytest.raises(CorruptSlideError, match=f"{path}: cannot decode stored tile .*row 3"):
            slide.read_region((0, 192), (300, 8), level=0)


# -- item 11: tag values validated before allocating ---------------------------------------------


@pytest.mark.parametrize("backend", ["tiff", "auto"])
def test_crafted_tile_size_is_refused_before_allocating(tmp_path, backend):
    path = tmp_path / "huge-tiles.tiff"
    small_tiled_tiff(path)
    patch_tag_value(path, 0, 322, 65520)  # TileWidth
    patch_tag_value(path, 0, 323, 65520)  # TileLength
    with pytest.raises(CorruptSlideError, match=f"{path}: page 0 .*TileWidth 65520 px is implausible; expected 1 to"):
        open_slide(path, backend=backend)


def test_crafted_image_size_is_refused(tmp_path):
    path = tmp_path / "huge-image.tiff"
    small_tiled_tiff(path)
    patch_tag_value(path, 0, 256, 2**22)  # ImageWidth: 65,536 tiles across, 20 offsets
    with pytest.raises(CorruptSlideError, match=f"{path}: page 0 .*TileOffsets lists 20 tiles; expected 262144"):
        open_slide(path, backend="tiff")


def test_crafted_associated_image_size_is_refused(svs_copy):
    with tifffile.TiffFile(svs_copy) as tif:
        label = next(s for s in tif.series if s.name.lower() == "label").keyframe.index
    patch_tag_value(svs_copy, label, 256, 60000)  # ImageWidth
    patch_tag_value(svs_copy, label, 257, 60000)  # ImageLength
    with pytest.raises(CorruptSlideError, match=f"{svs_copy}: page {label} \\(60000x60000\\).* implausible"):
        open_slide(svs_copy, backend="tiff")


# -- item 6: associated images -------------------------------------------------------------------


def test_corrupt_associated_image_names_the_file_and_the_image(svs_copy):
    with tifffile.TiffFile(svs_copy) as tif:
        macro = next(s for s in tif.series if s.name.lower() == "macro").keyframe
        offsets = list(macro.dataoffsets)
    data = bytearray(svs_copy.read_bytes())
    for offset in offsets:  # every strip loses its JPEG header
        data[offset : offset + 16] = b"\0" * 16
    svs_copy.write_bytes(bytes(data))
    with open_slide(svs_copy, backend="tiff") as slide:
        assert slide.associated_images["label"].shape[2] == 3  # the others still read
        with pytest.raises(CorruptSlideError, match=f"{svs_copy}: cannot decode associated image 'macro'"):
            slide.associated_images["macro"]


def test_real_unreadable_thumbnail_names_the_file(data_file):
    path = data_file("unreadable.svs")
    with open_slide(path, backend="tiff") as slide:
        with pytest.raises(CorruptSlideError, match=f"{path}: cannot decode associated image 'thumbnail'"):
            slide.associated_images["thumbnail"]


def test_missing_associated_image_is_a_key_error_naming_what_exists(synthetic_svs):
    with open_slide(synthetic_svs, backend="tiff") as slide:
        with pytest.raises(AssociatedImageNotFoundError, match=f"{synthetic_svs}: no associated image 'barcode'"):
            slide.associated_images["barcode"]
        assert slide.associated_images.get("barcode") is None  # a KeyError, so Mapping.get works
    array_slide = from_array(np.zeros((8, 8, 3), np.uint8), 0.5, name="mem")
    with pytest.raises(AssociatedImageNotFoundError, match="mem: no associated image 'label'"):
        array_slide.associated_images["label"]


# -- item 19: tifffile's log stays quiet ---------------------------------------------------------


def broken_ifd_chain(path: Path) -> None:
    """A two-page TIFF whose first page points at a next IFD beyond the end of the file."""
    small_tiled_tiff(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        next_ifd_at = page.offset + 2 + len(page.tags) * 12
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, next_ifd_at, len(data) + 4096)
    path.write_bytes(bytes(data))


def test_tifffile_errors_become_one_corrupt_slide_error(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "broken-chain.tiff"
    broken_ifd_chain(path)
    # tifffile logs "invalid page offset" while parsing; the chain walk names the cause.
    with pytest.raises(CorruptSlideError, match=f"{path}: the file is truncated: IFD 1 .*past the end of the file"):
        open_slide(path, backend="tiff")
    assert not tifffile_records(caplog)
    assert capsys.readouterr().err == ""
    assert logging.getLogger("tifffile").filters == []  # nothing left behind on the global logger


def test_tifffile_warnings_on_a_readable_file_stay_quiet(tmp_path, caplog):
    """tifffile warns about an ImageDescription it cannot decode; the slide still opens, silently."""
    caplog.set_level(logging.WARNING)
    path = tmp_path / "odd-ascii.tiff"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), tile=(16, 16), photometric="rgb",
                     description="abcdef", metadata=None)
    tag = _tag(path, 0, 270)
    data = bytearray(path.read_bytes())
    data[tag.valueoffset : tag.valueoffset + 2] = b"\x81\x8d"  # undefined in cp1252: tifffile warns
    path.write_bytes(bytes(data))
    with open_slide(path, backend="tiff", require_mpp=False) as slide:
        assert slide.properties["tiff.ImageDescription"] == "\ufffd\ufffdcdef"  # as OpenSlide decodes it
    assert not tifffile_records(caplog)


def test_the_capture_takes_only_its_own_threads_records(caplog):
    caplog.set_level(logging.WARNING)
    logger = logging.getLogger("tifffile")
    inside, outside = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(5)
        logger.warning("from another thread")
        outside.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with captured_tifffile_log() as records:
        logger.warning("from the capturing thread")
        inside.set()
        outside.wait(5)
    worker.join(5)
    logger.warning("after the block")
    assert [r.getMessage() for r in records] == ["from the capturing thread"]
    assert [r.getMessage() for r in tifffile_records(caplog)] == ["from another thread", "after the block"]


def test_a_damaged_file_prints_nothing_but_the_error_in_a_fresh_process(tmp_path):
    """No log handler configured, as in the CLI: tifffile's records would reach stderr."""
    path = tmp_path / "broken-chain.tiff"
    broken_ifd_chain(path)
    script = (
        "import sys\n"
        "from slidescope.wsi import CorruptSlideError, open_slide\n"
        "try:\n"
        f"    open_slide({str(path)!r}, backend='tiff')\n"
        "except CorruptSlideError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CorruptSlideError"
    assert done.stderr == ""
