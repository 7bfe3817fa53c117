"""``open_slide``: its arguments, what it refuses before any backend runs, and which backend it picks."""

from __future__ import annotations

import os
import pickle
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slidescope.wsi import ParameterError, SlideAccessError, SlideNotFoundError, SlidePermissionError, open_slide
from slidescope.wsi import paths
from slidescope.wsi.backends.openslide_backend import OpenSlideBackend
from slidescope.wsi.backends.tiff_backend import TiffBackend

#: Seconds a refusal may take before the test calls it a hang (a FIFO blocks open() forever).
HANG_TIMEOUT = 20.0


# -- the path argument (issue 6, item 18) ---------------------------------------------------------

@pytest.mark.parametrize("bad", [b"slide.svs", 3, None, "", 2.5, ["slide.svs"], "slide\x00.svs"],
                         ids=["bytes", "int", "None", "empty", "float", "list", "nul"])
def test_a_malformed_path_is_a_parameter_error(bad):
    with pytest.raises(ParameterError, match=r"path: expected"):
        open_slide(bad)


def test_a_bytes_pathlike_is_refused():
    class BytesPath(os.PathLike):
        def __fspath__(self) -> bytes:
            return b"slide.svs"

    with pytest.raises(ParameterError, match=r"path: expected a str or pathlib.Path, got b'slide.svs'"):
        open_slide(BytesPath())


def test_malformed_options(synthetic_svs):
    with pytest.raises(ParameterError, match=r"backend: expected one of auto, openslide, tiff; got 'pil'"):
        open_slide(synthetic_svs, backend="pil")
    with pytest.raises(ParameterError, match=r"require_mpp: expected True or False, got 'no'"):
        open_slide(synthetic_svs, require_mpp="no")


# -- what is not a readable regular file (items 12 and 17) -----------------------------------------

def call_with_hang_guard(function, *args, **kwargs):
    """Run ``function(*args, **kwargs)`` in a thread; the thread and ``{"error": what it raised}``."""
    outcome: dict[str, BaseException | None] = {}

    def target() -> None:
        try:
            function(*args, **kwargs)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_TIMEOUT)
    return thread, outcome


def release_fifo_reader(fifo: Path) -> None:
    """Unblock a thread stuck opening ``fifo`` for reading, by opening its write end once."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def error_on_fifo(fifo: Path, what: str, function, *args, **kwargs) -> BaseException | None:
    """What ``function(*args, **kwargs)`` raised with ``fifo`` in its way; the test fails if it blocked."""
    thread, outcome = call_with_hang_guard(function, *args, **kwargs)
    if thread.is_alive():
        release_fifo_reader(fifo)
        pytest.fail(f"{what} on a FIFO blocked for {HANG_TIMEOUT} s")
    return outcome["error"]


@pytest.mark.parametrize("backend", ["auto", "tiff", "openslide"])
def test_a_fifo_is_refused_without_hanging(tmp_path: Path, backend):
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)
    error = error_on_fifo(fifo, "open_slide", open_slide, fifo, backend=backend)
    assert isinstance(error, SlideAccessError), error
    assert str(error) == f"{fifo}: is a FIFO (named pipe); expected a regular slide file"


@pytest.mark.parametrize("command", ["info", "tissue"])
def test_the_cli_refuses_a_fifo_in_one_line(tmp_path: Path, command, capsys):
    """The symptom of issue 6 item 12: `slidescope info FIFO` and `tissue` hung."""
    from slidescope.workflows.cli import main

    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)
    argv = [command, str(fifo)] + (["--out", str(tmp_path / "mask.png")] if command == "tissue" else [])
    result: dict[str, int] = {}
    error = error_on_fifo(fifo, f"slidescope {command}", lambda: result.setdefault("code", main(argv)))
    assert error is None and result["code"] == 2
    assert capsys.readouterr().err.strip().endswith(f"{fifo}: is a FIFO (named pipe); expected a regular slide file")


@pytest.mark.parametrize("backend_class", [OpenSlideBackend, TiffBackend], ids=["openslide", "tiff"])
def test_a_backend_refuses_a_fifo_on_its_own(tmp_path: Path, backend_class):
    """A slide reopened in a worker goes straight to its backend, past open_slide's checks."""
    fifo = tmp_path / "slide.svs"
    os.mkfifo(fifo)
    error = error_on_fifo(fifo, backend_class.__name__, backend_class, str(fifo))
    assert isinstance(error, SlideAccessError), error
    assert str(error) == f"{fifo}: is a FIFO (named pipe); expected a regular slide file"


def test_a_slide_whose_file_became_a_fifo_is_refused_on_reopening(tmp_path: Path, synthetic_generic_tiff):
    """What a Dask worker does with a pickled slide: reopen its backend from the spec."""
    path = tmp_path / "slide.tiff"
    path.write_bytes(Path(synthetic_generic_tiff).read_bytes())
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff"
        pickled = pickle.dumps(slide)
    path.unlink()
    os.mkfifo(path)
    reopened = pickle.loads(pickled)
    error = error_on_fifo(path, "reopening a pickled slide", reopened.read_region, (0, 0), (8, 8), level=0)
    assert isinstance(error, SlideAccessError) and "FIFO" in str(error)


def test_a_socket_is_refused(tmp_path: Path):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        with pytest.raises(SlideAccessError, match=r"s.sock: is a socket; expected a regular slide file"):
            open_slide(path)


def test_a_device_is_refused_without_being_opened(monkeypatch):
    opened = []
    monkeypatch.setattr(paths.os, "open", lambda *args: opened.append(args) or pytest.fail("opened a device"))
    with pytest.raises(SlideAccessError, match=r"/dev/null: is a character device; expected a regular slide file"):
        open_slide("/dev/null")
    assert not opened


def test_a_symlink_loop_is_not_called_missing(tmp_path: Path):
    first, second = tmp_path / "a.svs", tmp_path / "b.svs"
    first.symlink_to(second)
    second.symlink_to(first)
    with pytest.raises(SlideAccessError, match=r"a.svs: a loop of symbolic links") as caught:
        open_slide(first)
    assert not isinstance(caught.value, FileNotFoundError)


def test_a_dangling_symlink_names_its_target(tmp_path: Path):
    link = tmp_path / "slide.svs"
    link.symlink_to(tmp_path / "gone.svs")
    with pytest.raises(SlideNotFoundError, match=r"slide.svs: a symbolic link to '.*gone.svs', which does not exist"):
        open_slide(link)


@pytest.mark.parametrize("backend", ["auto", "tiff", "openslide"])
def test_a_file_the_kernel_refuses_is_a_permission_error(synthetic_svs, monkeypatch, backend):
    """The kernel's EACCES on open (what a non-root user gets for mode 000), simulated for root."""
    real_open = os.open

    def refusing_open(path, flags, *args):
        if os.fspath(path) == str(synthetic_svs):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(paths.os, "open", refusing_open)
    refused = r"slide.svs: permission denied; this process may not read"
    with pytest.raises(SlidePermissionError, match=refused) as caught:
        open_slide(synthetic_svs, backend=backend)
    assert isinstance(caught.value, PermissionError)
    with pytest.raises(SlidePermissionError, match="slide.svs: permission denied"):
        OpenSlideBackend(str(synthetic_svs))  # not "not a format OpenSlide reads"


_UNPRIVILEGED_CHECK = """
import os, sys
from slidescope.wsi import open_slide
from slidescope.wsi.backends.openslide_backend import OpenSlideBackend
from slidescope.wsi.backends.tiff_backend import TiffBackend
if os.getuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
for path in sys.argv[1:]:
    for attempt in (lambda p: open_slide(p), lambda p: open_slide(p, backend="openslide"), OpenSlideBackend):
        try:
            attempt(path)
            print("OPENED", path)
        except Exception as exc:
            print(type(exc).__name__, exc)
"""


def test_unreadable_files_for_real():
    """Real permission checks by the kernel, no simulation: a mode-000 file and a file inside a
    folder this process may not search. Root is not refused either, so the check runs in a child
    that drops to ``nobody`` after importing slidescope."""
    if os.getuid() == 0 and sys.platform != "linux":
        pytest.skip("dropping root to nobody is done on Linux only")
    folder = Path(tempfile.mkdtemp(prefix="slidescope-perm-"))  # not under pytest's private tmp
    try:
        folder.chmod(0o755)
        image = np.full((64, 64, 3), 200, np.uint8)
        unreadable = folder / "unreadable.tiff"
        tifffile.imwrite(unreadable, image, tile=(32, 32), photometric="rgb")
        unreadable.chmod(0)
        locked = folder / "locked"
        locked.mkdir()
        tifffile.imwrite(locked / "inside.tiff", image, tile=(32, 32), photometric="rgb")
        locked.chmod(0o700 if os.getuid() == 0 else 0)
        command = [sys.executable, "-c", _UNPRIVILEGED_CHECK, str(unreadable), str(locked / "inside.tiff")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[:3] == [f"SlidePermissionError {unreadable}: permission denied; this process may not read "
                             "the slide file"] * 3
        assert lines[3:] == [f"SlidePermissionError {locked / 'inside.tiff'}: permission denied while looking the "
                             "file up (a folder on the way is not searchable)"] * 3
    finally:
        for path in (folder / "locked", folder / "unreadable.tiff"):
            if path.exists():
                path.chmod(stat.S_IRWXU)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


# -- which backend auto picks -----------------------------------------------------------------------

def test_auto_prefers_the_tiff_backend_for_aperio(synthetic_svs, data_file):
    with open_slide(synthetic_svs) as slide:
        assert slide.backend_name == "tiff"
    with open_slide(data_file("test3-DAPI-2-(387).ndpi")) as slide:
        assert slide.backend_name == "openslide"


def test_auto_keeps_openslide_when_the_tiff_backend_finds_another_resolution(tmp_path: Path):
    """OpenSlide takes any description starting "Aperio" for an SVS (mpp from it); tifffile wants
    "Aperio " and reads the file as a generic TIFF without mpp. The tiff backend must not win."""
    path = tmp_path / "terse.svs"
    tifffile.imwrite(path, np.full((300, 400, 3), 200, np.uint8), tile=(128, 128), photometric="rgb",
                     compression="zlib", metadata=None, description="Aperio\r\n400x300 |AppMag = 20|MPP = 0.5")
    with open_slide(path) as slide:
        assert slide.backend_name == "openslide"
        assert slide.vendor == "aperio" and slide.mpp == (0.5, 0.5)


def test_auto_reads_an_ome_tiff_pyramid_with_the_tiff_backend(tmp_path: Path):
    # OpenSlide opens an OME-TIFF as a one-level generic TIFF without mpp (it ignores the SubIFD
    # levels and the OME-XML); auto must not settle for that.
    import openslide

    rng = np.random.default_rng(4)
    level0 = rng.integers(0, 255, (1024, 1536, 3), dtype=np.uint8)
    level1 = np.ascontiguousarray(level0[::2, ::2])
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(level0, tile=(256, 256), subifds=1, compression="zlib",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        writer.write(level1, tile=(256, 256), subfiletype=1, compression="zlib")
    with openslide.OpenSlide(str(path)) as reference:
        assert reference.level_count == 1 and openslide.PROPERTY_NAME_MPP_X not in reference.properties
    with open_slide(path) as slide:
        assert slide.backend_name == "tiff" and slide.vendor == "ome-tiff"
        assert [level.dimensions for level in slide.levels] == [(1536, 1024), (768, 512)]
        assert slide.mpp == (0.5, 0.5)
        np.testing.assert_array_equal(slide.read_region((512, 256), (300, 200), level=1), level1[128:328, 256:556])
        np.testing.assert_array_equal(slide.read_region((0, 0), (64, 64)), level0[:64, :64])
