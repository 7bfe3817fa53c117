"""``slidescope run`` as a separate process: exit statuses and what it prints (one error line, the dry run,
bars and a table on a terminal, plain lines elsewhere, ``--quiet``); and, on an existing Dask cluster
(``--scheduler``: a real ``dask scheduler`` and two ``dask worker`` processes), a batch with failing slides
killed with SIGKILL and run again: exit status 1, the last line says how many failed.

The local cluster ``run_batch`` starts by itself, and its dashboard answering while a batch runs, are
tested by the demo (test_demo.py), which runs on one.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

COMMAND = [sys.executable, "-m", "slidescope.workflows.cli", "run"]
DASK = Path(sys.executable).with_name("dask")
ESCAPE = "\x1b["


def _run(*args, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


class _Lines:
    """A child's output, read line by line in a thread (so that a pipe never fills)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def join(self) -> None:
        """Wait for the end of the output (the child closed it)."""
        self._thread.join(timeout=60)


@contextmanager
def _process_group(command: list[str], **kwargs):
    """A child in a session of its own, killed with every process it started when the block ends."""
    child = subprocess.Popen(command, start_new_session=True, **kwargs)
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(child.pid, signal.SIGKILL)  # what the child left running
        except ProcessLookupError:
            pass
        child.wait(timeout=10)


def _wait_for(condition, timeout: float, what: str, child: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if child is not None and child.poll() is not None:
            raise AssertionError(f"{what}: the process ended first (status {child.returncode})")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as answer:
        answer.read(4096)
        return answer.status


def _staged(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out / "slides") if n.startswith(".") and n.endswith((".partial", ".old")))


# -- an existing cluster: a batch with failing slides killed with SIGKILL, then run again (first: the longest) --

@contextmanager
def _dask_cluster(folder: Path):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; yields the scheduler's address."""
    scheduler_file = folder / "scheduler.json"
    scheduler = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                 "--scheduler-file", str(scheduler_file)]
    worker = [str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-nanny",
              "--no-dashboard", "--local-directory", str(folder / "scratch")]  # no nanny: one process each
    with open(folder / "scheduler.log", "w") as log, _process_group(scheduler, stdout=log, stderr=log, cwd=folder) as s:
        _wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0, 60, "the scheduler", s)
        address = json.loads(scheduler_file.read_text())["address"]
        with open(folder / "worker-1.log", "w") as log1, open(folder / "worker-2.log", "w") as log2, \
                _process_group(worker, stdout=log1, stderr=log1, cwd=folder), \
                _process_group(worker, stdout=log2, stderr=log2, cwd=folder):
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(2, timeout=90)
            yield address


def _complete_slides(out: Path) -> list[str]:
    """Slide folders renamed into place; not a staging folder (``.<id>.<hash>.partial``, which pathlib's
    ``*`` matches too) whose files are still being written."""
    return sorted(p.parent.name for p in out.glob("slides/*/prediction.json") if not p.parent.name.startswith("."))


def test_on_an_existing_cluster_a_run_killed_with_sigkill_completes_when_run_again(batch_slides, tmp_path,
                                                                                    require_torch):
    """A batch (two slides of it fail) killed with SIGKILL once a slide is complete, then the same batch
    again, on one existing cluster."""
    names = ["normal-a", "corrupt", "tumour-a", "missing", "tumour-b", "normal-b"]
    good = [n for n in names if n not in ("corrupt", "missing")]
    inputs = [str(batch_slides[n]) for n in names]
    out = tmp_path / "out"
    with _dask_cluster(tmp_path) as address:
        command = [*COMMAND, *inputs, "--out", str(out), "--scheduler", address]
        answers: list[int] = []
        with _process_group(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path) as child:
            stdout, stderr = _Lines(child.stdout), _Lines(child.stderr)
            line = _wait_for(lambda: next((x for x in stdout.lines if x.startswith("Dask dashboard: ")), None), 120,
                             "the dashboard line", child)
            # the printed dashboard answers while the batch runs (asked beside, so that the kill is not delayed)
            asking = threading.Thread(target=lambda: answers.append(_http_status(line.split(": ", 1)[1].strip())))
            asking.start()
            _wait_for(lambda: _complete_slides(out), 180, "a complete slide folder", child)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            asking.join(timeout=60)
        assert child.returncode == -signal.SIGKILL
        assert line.startswith("Dask dashboard: http://127.0.0.1:") and answers == [200]
        done_before = _complete_slides(out)
        assert 1 <= len(done_before) < len(good)
        stdout.join()
        stderr.join()
        printed = "".join(stdout.lines)
        assert ESCAPE not in printed and ESCAPE not in "".join(stderr.lines)  # not a terminal: plain lines, no bars
        for name in ("corrupt", "missing"):  # these fail at once, long before a slide is complete
            assert f"error    {name}: {batch_slides[name]}" in printed, printed
        # a slide's line follows its folder: the last one done may have had no time to print it
        assert {x.split(":")[0].split()[1] for x in stdout.lines if x.startswith("ok ")} <= set(done_before)

        again = _run(*inputs, "--out", out, "--scheduler", address, "--quiet", cwd=tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr  # a slide failed
    assert ESCAPE not in again.stdout and ESCAPE not in again.stderr
    lines = again.stdout.splitlines()  # quiet: the summary only (a header, a row a slide, where, the last line)
    assert len(lines) == len(names) + 3 and lines[0].split()[:2] == ["slide", "status"], again.stdout
    assert [x.split()[:2] for x in lines[1:-2]] == [[n, "ok" if n in good else "error"] for n in names]
    assert lines[-2] == f"predictions: {out}/predictions.csv   report: {out}/report.html"
    assert lines[-1] == f"6 slides: 4 ok ({len(done_before)} resumed), 2 failed"
    frame = pd.read_csv(out / "predictions.csv", dtype={"slide_id": str})
    assert frame.slide_id.tolist() == names  # each slide once, none lost
    assert sorted(frame.slide_id[frame.status == "ok"]) == sorted(good)
    assert sorted(frame.slide_id[frame.resumed]) == done_before
    assert _staged(out) == [] and sorted(os.listdir(out / "slides")) == sorted(good)
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["ok"] == 4 and run["options"]["scheduler"] == address


# -- errors, the dry run, a terminal -------------------------------------------------------------------

def test_no_slide_or_a_bad_model_exits_2_with_one_line_on_stderr(batch_slides, tmp_path):
    from slidescope.models.loading import shipped_model_dir

    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    done = _run(tmp_path / "empty", "--out", out)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("slidescope run: error: "), done.stderr
    assert str(tmp_path / "empty") in done.stderr and "no slide file" in done.stderr
    done = _run(batch_slides["normal-a"], "--out", out, "--model", shipped_model_dir("tissue", "torch"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not a merged slide model" in done.stderr, done.stderr
    assert not out.exists()


def test_dry_run_prints_the_plan_without_a_model_and_writes_nothing(batch_slides, tmp_path):
    from slidescope.merge.merged import MergedCard
    from slidescope.models.loading import shipped_model_dir
    from slidescope.workflows.pipeline import Settings, plan_slide

    out = tmp_path / "out"
    names = ["tumour-a", "normal-a", "corrupt"]
    script = (
        "import json, sys\n"
        "from slidescope.workflows.cli import main\n"
        f"status = main(['run', *{[str(batch_slides[n]) for n in names]!r}, '--out', {str(out)!r}, '--dry-run'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'distributed'))\n"
        "print(json.dumps({'status': status, 'heavy': heavy}), file=sys.stderr)\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"status": 1, "heavy": []}, done.stderr  # no model framework, no Dask; 1: a slide failed
    assert not out.exists()
    lines = done.stdout.splitlines()
    card = MergedCard.load(str(shipped_model_dir("slide", "torch")))
    for name, line in zip(names[:2], lines):
        plan = plan_slide(str(batch_slides[name]), card, Settings())
        fine = int((plan.plan.table.scale == plan.plan.scale_index("cell")).sum())
        assert line.startswith(f"{name}: tissue {plan.tissue_area_mm2:.1f} mm², {len(plan.coarse)} coarse tiles, "
                               f"{fine} fine tiles"), line
        assert "estimated" in line and " s on " in line
    assert lines[2].startswith("error    corrupt: ") and str(batch_slides["corrupt"]) in lines[2]
    assert lines[3].startswith("3 slides: ") and "estimated" in lines[3] and lines[3].endswith("1 cannot be planned")
    assert seconds < 60


def test_a_terminal_gets_rich_bars_lines_and_a_table(copy_run, batch_slides):
    out = copy_run()  # both slides done already: resumed, no cluster started
    leader, follower = pty.openpty()
    command = [*COMMAND, str(batch_slides["tumour-a"]), str(batch_slides["normal-a"]), "--out", str(out)]
    child = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower,
                             env={**os.environ, "COLUMNS": "160", "TERM": "xterm-256color"})
    os.close(follower)
    data, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(leader)
        if child.poll() is None and time.monotonic() >= deadline:
            child.kill()
    assert child.wait(timeout=120) == 0, data[-2000:]
    text = data.decode("utf-8", "replace")
    assert ESCAPE in text and "━" in text  # rich bars
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"slides +━+ 2/2", plain)
    assert "ok       tumour-a: tumour (p=" in plain and "(resumed: outputs of an earlier run)" in plain
    assert "slidescope run" in plain and "┃ slide" in plain  # the summary, a rich table
    assert plain.rstrip().splitlines()[-1] == "2 slides: 2 ok (2 resumed), none failed"
