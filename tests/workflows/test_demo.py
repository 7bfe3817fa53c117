"""The demo (``make demo``): generated slides, one corrupt, through ``run_batch`` on a local Dask cluster of
its own, whose dashboard is printed and answers while the batch runs."""

from __future__ import annotations

import io
import urllib.request

from slidescope.workflows.batch import BatchEvents
from slidescope.workflows.demo import DEMO_SLIDES, run_demo
from slidescope.workflows.run_display import BatchDisplay


def test_demo_runs_the_batch_and_reports_the_corrupt_slide(tmp_path, require_torch):
    stream = io.StringIO()
    display = BatchDisplay(quiet=False, bars=False, stream=stream)
    shown = display.events()
    links: list[str] = []
    answers: list[int] = []

    def started(total, link, to_run):
        links.append(link)
        shown.started(total, link, to_run)

    def tiles(slide_id, done, total):  # a slide is in flight: ask the dashboard once
        if not answers:
            with urllib.request.urlopen(links[0], timeout=30) as answer:
                answer.read(4096)
                answers.append(answer.status)
        shown.tiles(slide_id, done, total)

    events = BatchEvents(started=started, tiles=tiles, finished=shown.finished, message=shown.message)
    frame = run_demo(tmp_path, width=3072, height=2304, workers=1, stream=stream, events=events)
    text = stream.getvalue()

    assert links[0].startswith("http://") and f"Dask dashboard: {links[0]}" in text
    assert answers == [200]
    assert text.count("generated ") == len(DEMO_SLIDES) + 1 and "cut short" in text
    assert f"over {len(DEMO_SLIDES) + 1} slides" in text
    frame = frame.set_index("slide_id")
    assert list(frame.index) == [f"demo-{name}" for name in DEMO_SLIDES] + ["demo-corrupt"]
    corrupt = frame.loc["demo-corrupt"]
    assert corrupt.status == "error" and "demo-corrupt.svs" in corrupt.error
    ok = frame.drop(index="demo-corrupt")
    assert ok.status.eq("ok").all()
    tumour = [f"demo-{name}" for name, (_, has_tumour) in DEMO_SLIDES.items() if has_tumour]
    normal = [f"demo-{name}" for name, (_, has_tumour) in DEMO_SLIDES.items() if not has_tumour]
    assert ok.loc[tumour].probability.min() > ok.loc[normal].probability.max()
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "predictions.csv").is_file()
