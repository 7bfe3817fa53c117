"""The batch runs test_batch.py checks after the shared batch run: what each one saw, recorded on disk.

They run once per session, one after the other, in the process that made the shared run and on its
cluster (conftest.py ``batch_run``), so that no second cluster loads the model; the other pytest-xdist
worker goes on with other tests and reads the records when it needs them. Each scenario works in a folder
of its own (a copy of the shared run's folder where it runs again) and returns what it saw; an exception
it did not expect is recorded as its traceback, which :func:`read` turns into the reading test's failure.
The scenarios that kill workers run last: they leave restarted workers without the model loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The file of each scenario's folder that holds what it saw.
RECORD = "record.json"


def _inputs(slides: dict[str, Path], names) -> list[str]:
    return [str(slides[name]) for name in names]


def _copy(run_out: Path, folder: Path) -> Path:
    out = folder / "out"
    shutil.copytree(run_out, out, symlinks=True)
    return out


def stamp(out: Path, slide_id: str) -> list[Any]:
    """What changes when a slide's outputs are written again: the folder's inode, prediction.json's
    modification time and its ``created``."""
    folder = out / "slides" / slide_id
    data = json.loads((folder / "prediction.json").read_text(encoding="utf-8"))
    return [folder.stat().st_ino, (folder / "prediction.json").stat().st_mtime_ns, data["created"]]


def hidden(out: Path) -> list[str]:
    return sorted(name for name in os.listdir(out / "slides") if name.startswith("."))


def _raised(function: Callable[[], Any]) -> list[str] | None:
    """``[type name, message]`` of what ``function`` raised, None when it returned."""
    try:
        function()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None


def _events(started: list) -> Any:
    from slidescope.workflows import BatchEvents

    return BatchEvents(started=lambda total, link, to_run: started.append([total, link, to_run]))


# -- the scenarios -----------------------------------------------------------------------------------

def resume(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """The same batch again into a copy: the done slides are skipped, the failed ones retried."""
    from slidescope.workflows import run_batch

    out = _copy(run_out, folder)
    before = {name: stamp(out, name) for name in os.listdir(out / "slides")}
    started: list = []
    frame = run_batch(_inputs(slides, inputs), out, client=client, events=_events(started))
    return {"started": started, "before": before, "after": {name: stamp(out, name) for name in before},
            "returned": json.loads(frame.to_json(orient="records"))}


def all_done(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """Done slides only, and no client: no cluster is started."""
    from slidescope.workflows import run_batch

    out = _copy(run_out, folder)
    started: list = []
    frame = run_batch(_inputs(slides, ["tumour-b", "normal-a"]), out, events=_events(started))
    return {"started": started, "returned": json.loads(frame.to_json(orient="records"))}


def no_resume(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    from slidescope.workflows import run_batch

    out = _copy(run_out, folder)
    before = stamp(out, "normal-a")
    frame = run_batch(_inputs(slides, ["normal-a"]), out, client=client, resume=False)
    return {"before": before, "after": stamp(out, "normal-a"), "hidden": hidden(out),
            "returned": json.loads(frame.to_json(orient="records"))}


def other_configuration(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """Another configuration into a copy: refused (two ways), then done with overwrite."""
    from slidescope.workflows import Settings, run_batch

    out = _copy(run_out, folder)
    files = [(out / "run.json").read_bytes(), (out / "predictions.csv").read_bytes()]
    refused = [_raised(lambda: run_batch(_inputs(slides, inputs), out, client=client,
                                         settings=Settings(min_tissue=0.5))),
               _raised(lambda: run_batch(_inputs(slides, inputs), out, client=client, cascade=False))]
    unchanged = files == [(out / "run.json").read_bytes(), (out / "predictions.csv").read_bytes()]
    frame = run_batch(_inputs(slides, ["normal-a"]), out, client=client, settings=Settings(min_tissue=0.5),
                      overwrite=True)
    return {"refused": refused, "unchanged": unchanged, "returned": json.loads(frame.to_json(orient="records"))}


def staging(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """What a run killed while writing leaves (hidden staging folders), and slide folders with files deleted."""
    from slidescope.workflows import run_batch
    from slidescope.wsi.atomic import atomic_path

    out = _copy(run_out, folder)
    at = out / "slides"
    (at / ".tumour-a.0123456789ab.partial").mkdir()
    (at / ".tumour-a.0123456789ab.partial" / "cells.parquet").write_bytes(b"half")
    (at / ".normal-a.abcdef012345.old").mkdir()
    try:  # the staging name of a slide id with a dot, as atomic_path makes it
        with atomic_path(at / "case.01") as temporary:
            dotted = temporary.name
            raise RuntimeError("not written")
    except RuntimeError:
        pass
    (at / dotted).mkdir()
    (at / ".notes").write_text("a user's hidden file")  # not a staging folder: kept
    staged = hidden(out)
    (at / "normal-a" / "prediction.json").unlink()
    (at / "tumour-b" / "overlay.png").unlink()
    before = stamp(out, "tumour-a")
    frame = run_batch(_inputs(slides, ["tumour-a", "normal-a", "tumour-b"]), out, client=client)
    return {"staged": staged, "dotted": dotted, "hidden": hidden(out), "before": before,
            "after": stamp(out, "tumour-a"),
            "folders": {name: sorted(os.listdir(at / name)) for name in ("tumour-a", "normal-a", "tumour-b")},
            "returned": json.loads(frame.to_json(orient="records"))}


def manifest_cell_everywhere(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """A manifest CSV (an id, a reference label and the mpp its metadata lacks for one slide; nothing but the
    path for another), run with the cascade off (``--cell-everywhere``; only the tiles of most tissue, to keep
    the work small)."""
    from slidescope.workflows import Settings, run_batch

    cohort = folder / "cohort.csv"
    cohort.write_text(f"path,slide_id,label,mpp\n{slides['no-mpp']},lab-7,normal,0.5\n{slides['blank']},,,\n",
                      encoding="utf-8")
    frame = run_batch([cohort], folder / "out", client=client, settings=Settings(min_tissue=0.6, cascade=False))
    return {"returned": json.loads(frame.to_json(orient="records"))}


def _killing(client, plugin, name: str, run: Callable[[], Any]) -> Any:
    client.register_plugin(plugin, name=name)
    try:
        return run()
    finally:
        client.unregister_worker_plugin(name)


def _killed_run(client, slides, folder, names: list[str], task_prefix: str, once: bool) -> dict[str, Any]:
    """``names`` run one slide at a time while a worker plugin SIGKILLs the worker that starts a task whose key
    begins with ``task_prefix`` (the first time only, or every time)."""
    from slidescope.workflows import run_batch
    from worker_killer import KillOnTask, kills

    record = folder / "kills"
    record.mkdir()
    # one slide at a time: no task of the other slide dies beside the killed one
    frame = _killing(client, KillOnTask(task_prefix, record, once=once), "kill-once" if once else "kill-always",
                     lambda: run_batch(_inputs(slides, names), folder / "out", client=client, slides_in_flight=1))
    return {"kills": kills(record), "folders": sorted(os.listdir(folder / "out" / "slides")),
            "returned": json.loads(frame.to_json(orient="records"))}


def killed_once(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """A worker killed (SIGKILL) the first time one of tumour-a's cell batches starts on it (tumour-a last: the
    other slide runs on workers that have the model loaded)."""
    return _killed_run(client, slides, folder, ["normal-a", "tumour-a"], "cells-tumour-a-", once=True)


def killing_always(client, slides, inputs, run_out, folder) -> dict[str, Any]:
    """normal-b's plan kills every worker that starts it."""
    return _killed_run(client, slides, folder, ["normal-a", "normal-b"], "plan-normal-b-", once=False)


#: In the order they run (those that kill workers last: they leave workers without the model loaded).
SCENARIOS = {f.__name__: f for f in (resume, all_done, no_resume, other_configuration, staging,
                                     manifest_cell_everywhere, killed_once, killing_always)}


def run_all(client, slides: dict[str, Path], inputs, run_out: Path, folder: Path) -> None:
    """Run every scenario into ``folder/<name>/``, recording what it saw (or its traceback) in :data:`RECORD`."""
    for name, scenario in SCENARIOS.items():
        target = folder / name
        target.mkdir()
        started = time.perf_counter()
        try:
            record = {"error": None, **scenario(client, slides, inputs, run_out, target)}
        except Exception:
            record = {"error": traceback.format_exc()}
        record["seconds"] = round(time.perf_counter() - started, 2)
        (target / RECORD).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")


def read(folder: Path, name: str) -> dict[str, Any]:
    """What scenario ``name`` saw; fails the calling test with the scenario's traceback when it raised."""
    import pytest

    record = json.loads((folder / name / RECORD).read_text(encoding="utf-8"))
    if record["error"] is not None:
        pytest.fail(f"the {name} scenario raised:\n{record['error']}", pytrace=False)
    return record
