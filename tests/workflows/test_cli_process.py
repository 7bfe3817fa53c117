"""The ``slidescope`` command as a separate process: what ``info`` imports, a closed stdout pipe
(issue 6 item 21) and an error that is one line on stderr (item 19)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

COMMAND = [sys.executable, "-m", "slidescope.workflows.cli"]
#: Loaded by tiling, Dask workflows and the model adapters; ``info`` needs none of them.
HEAVY = ("distributed", "dask.distributed", "torch", "tensorflow", "keras", "slidescope.tiling")


def test_info_imports_no_dask_distributed_framework_or_tiling(small_slide):
    script = (
        "import json, sys\n"
        "from slidescope.workflows.cli import main\n"
        f"status = main(['info', {str(small_slide)!r}, '--json'])\n"
        "print(json.dumps({'status': status, 'modules': sorted(sys.modules)}), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["status"] == 0 and json.loads(done.stdout)["dimensions"] == [1024, 768]
    loaded = [name for name in report["modules"] if name in HEAVY or name.startswith(tuple(f"{h}." for h in HEAVY))]
    assert loaded == []


def test_closed_stdout_pipe_exits_quietly_with_the_sigpipe_status(small_slide):
    # Closing the read end before the child writes makes its first write fail with EPIPE every
    # time, as `slidescope info X | head -1` does when head has already exited.
    child = subprocess.Popen([*COMMAND, "info", str(small_slide)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    err = child.stderr.read()
    child.stderr.close()
    assert child.wait(timeout=120) == 141
    assert err == b""


def test_info_on_a_crafted_broken_tiff_prints_exactly_one_line(tmp_path: Path):
    # A TIFF header whose first IFD lies past the end of the file: tifffile logs a warning about
    # it, which must not reach stderr beside the error line.
    path = tmp_path / "crafted.tiff"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 10**6) + bytes(64))
    done = subprocess.run([*COMMAND, "info", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("slidescope info: error: ") and str(path) in lines[0]
