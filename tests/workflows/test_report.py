"""The batch report (:func:`slidescope.workflows.report.write_report`): a self-contained page, every
slide in its table, user text escaped, images embedded, a deleted slide a note; and, in headless
Chromium, a page that renders and raises no console error.

The browser is driven over the DevTools protocol on ``--remote-debugging-pipe`` (file descriptors
3 and 4, NUL-terminated JSON), with nothing but the standard library: uncaught exceptions
(``Runtime.exceptionThrown``), ``console.error``/``console.assert`` calls, browser log errors
(failed loads, Content-Security-Policy refusals) and every request the page makes are recorded. A
page with deliberate errors proves the detector catches them.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest

from slidescope.wsi import open_slide
from slidescope.wsi.errors import ParameterError
from slidescope.workflows.report import TILE_PX, write_report

HOSTILE_MESSAGE = 'tile 17 failed: <script>alert("pwned")</script> & <b>bold</b>'
TOP_TILES = 3
THUMBNAIL_PX = 400
COARSE_BOXES = [(0, 0, 512, 512), (512, 0, 512, 512), (1024, 512, 512, 512), (512, 1024, 512, 512)]
ATTENTION = [0.1, 0.4, 0.3, 0.2]  # tiles 1, 2, 3 are the top three, in that order
#: Columns a failed slide has no value for.
FIGURES = ("probability", "tissue_area_mm2", "tumour_area_mm2", "nuclei_total", "nuclei_normal", "nuclei_tumour",
           "nuclei_per_mm2", "coarse_tiles", "flagged_tiles", "fine_tiles")


def _tiles_table() -> pd.DataFrame:
    """A few coarse tiles with attention, and fine tiles under one of them (attention NaN)."""
    rows = []
    for i, ((x, y, w, h), attention) in enumerate(zip(COARSE_BOXES, ATTENTION)):
        rows.append(dict(tile_id=i, scale="tissue", l0_x=x, l0_y=y, l0_width=w, l0_height=h, prob_background=0.2,
                         prob_stroma=0.3, prob_tumour=0.5, attention=attention, flagged=attention > 0.25,
                         count_normal=0, count_tumour=0))
    for j, (x, y) in enumerate([(512, 0), (768, 0), (512, 256)]):
        rows.append(dict(tile_id=10 + j, scale="cell", l0_x=x, l0_y=y, l0_width=256, l0_height=256,
                         prob_background=np.nan, prob_stroma=np.nan, prob_tumour=np.nan, attention=np.nan,
                         flagged=False, count_normal=3 + j, count_tumour=5))
    return pd.DataFrame(rows)


def _overlay(width: int, height: int) -> np.ndarray:
    """A colourful BGR overlay larger than THUMBNAIL_PX (so the report shrinks it)."""
    gradient = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    return cv2.applyColorMap(gradient, cv2.COLORMAP_JET)


def _row(slide_id: str, path: Path | str, **values: Any) -> dict[str, Any]:
    row = dict(slide_id=slide_id, path=str(path), status="ok", error="", probability=0.87, label="tumour",
               reference_label="tumour", tissue_area_mm2=1.234, tumour_area_mm2=0.4, nuclei_total=1200,
               nuclei_normal=700, nuclei_tumour=500, nuclei_per_mm2=972.4, coarse_tiles=4, flagged_tiles=2,
               fine_tiles=3, seconds_total=12.5, seconds_plan=0.1, seconds_tissue=3.0, seconds_cells=8.0,
               seconds_head=0.1, seconds_outputs=1.3, resumed=False, attempts=1, output=f"slides/{slide_id}")
    row.update(values)
    return row


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fake ``slidescope run`` output: two ok slides (one of them deleted since), an ok slide whose
    outputs are missing, and a failure whose message is hostile HTML."""
    from slidescope.wsi.synthetic import make_slide

    root = tmp_path_factory.mktemp("report")
    inputs, out = root / "inputs", root / "OUT"
    inputs.mkdir()
    (out / "slides").mkdir(parents=True)
    kept = make_slide(inputs / "kept.svs", 2048, 1536, seed=1).path
    deleted = inputs / "deleted.svs"
    shutil.copyfile(kept, deleted)

    ids = {"kept": "case&1 <i>", "deleted": "gone-2", "empty": "no-outputs-3", "failed": "broken<script>4"}
    for key in ("kept", "deleted"):
        folder = out / "slides" / ids[key]
        folder.mkdir()
        _tiles_table().to_parquet(folder / "tiles.parquet")
        assert cv2.imwrite(str(folder / "overlay.png"), _overlay(1000, 750))
        (folder / "prediction.json").write_text("{}")
    (out / "slides" / ids["empty"]).mkdir()
    deleted.unlink()

    predictions = pd.DataFrame([
        _row(ids["kept"], kept, reference_label=" Tumour"),  # a lab's spelling of the model's label
        _row(ids["deleted"], deleted, probability=0.12, label="normal", reference_label="tumour"),
        _row(ids["failed"], inputs / "broken.svs", status="error", error=HOSTILE_MESSAGE, label="", output="",
             attempts=2, **{k: np.nan for k in FIGURES}),
        _row(ids["empty"], kept, probability=0.5),
    ])
    run = {"versions": {"slidescope": "0.1.0"}, "parameters": {"top": 3}, "model": {"name": "slide-<torch>",
           "sha256": "ab" * 32}, "host": "lab-1", "started": "2025-01-02T03:04:05Z", "ended": "2025-01-02T03:09:05Z",
           "config_hash": "c0ffee"}
    report = write_report(out / "report.html", predictions, run=run, out_dir=out, top_tiles=TOP_TILES,
                          thumbnail_px=THUMBNAIL_PX)
    return dict(out=out, report=report, text=report.read_text(encoding="utf-8"), ids=ids, kept=kept,
                predictions=predictions)


class _Page(HTMLParser):
    """The parts of the report the tests look at: table rows, images, sections, scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []  # cells of #predictions' body rows
        self.row_classes: list[str] = []
        self.images: list[dict[str, str]] = []  # attributes of each <img>, with "section" added
        self.sections: dict[str, str] = {}  # section id -> its text
        self.scripts: list[dict[str, str]] = []
        self._table = self._in_body = False
        self._cell: list[str] | None = None
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table = a.get("id") == "predictions"
        elif tag == "tbody" and self._table:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
            self.row_classes.append(a.get("class", ""))
        elif tag == "td" and self._in_body:
            self._cell = []
        elif tag == "img":
            self.images.append({**a, "section": self._section or ""})
        elif tag == "section":
            self._section = a.get("id", "")
            self.sections[self._section] = ""
        elif tag == "script":
            self.scripts.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = self._in_body = False
        elif tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self.sections[self._section] += data


def _parsed(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _decode(uri: str) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert uri.startswith(prefix), uri[:60]
    image = cv2.imdecode(np.frombuffer(base64.b64decode(uri[len(prefix):]), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_the_report_is_self_contained(batch: dict[str, Any]) -> None:
    text = batch["text"]
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""\b(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"https?://", text)
    assert "<link" not in text.lower() and "@import" not in text and "url(" not in text
    page = _parsed(text)
    assert page.scripts == [{}]  # one inline script, no src
    for image in page.images:
        assert image["src"].startswith("data:image/"), image["src"][:60]
    assert not list(batch["out"].glob(".*partial*"))  # written atomically: no temporary left


def test_every_slide_is_in_the_table(batch: dict[str, Any]) -> None:
    page = _parsed(batch["text"])
    assert [row[0] for row in page.rows] == list(batch["predictions"]["slide_id"])
    failed = [cells for cells, cls in zip(page.rows, page.row_classes) if "failed" in cls]
    assert len(failed) == 1 and failed[0][0] == batch["ids"]["failed"]
    assert HOSTILE_MESSAGE in failed[0]  # the message, shown in its row
    assert "mismatch" in page.row_classes[1]  # label normal, reference tumour
    assert "mismatch" not in page.row_classes[0]  # tumour against " Tumour": the same label
    assert "2 of 3 slides" in batch["text"]  # agreement with the reference labels
    assert "shipped model" not in batch["text"]  # not the shipped model: no warning
    text = batch["text"]
    assert "4: 3 ok, 1 failed" in text and "c0ffee" in text and "slide-&lt;torch&gt;" in text


def test_user_text_is_escaped(batch: dict[str, Any]) -> None:
    text = batch["text"]
    assert text.lower().count("<script") == 1  # ours only
    assert "<i>" not in text and "<b>bold" not in text
    assert html.escape(HOSTILE_MESSAGE) in text
    assert html.escape(batch["ids"]["kept"]) in text
    failures = text[text.index('id="failures"'):]
    assert html.escape(batch["ids"]["failed"]) in failures and html.escape(HOSTILE_MESSAGE) in failures


def test_images_are_embedded(batch: dict[str, Any]) -> None:
    page = _parsed(batch["text"])
    kept, deleted, empty = (f"slide-{i}" for i in (0, 1, 3))
    assert set(page.sections) == {kept, deleted, empty}  # ok slides only
    by_section = {name: [i for i in page.images if i["section"] == name] for name in page.sections}
    assert len(by_section[kept]) == 1 + TOP_TILES and len(by_section[deleted]) == 1 and not by_section[empty]

    overlay = _decode(by_section[kept][0]["src"])
    assert max(overlay.shape[:2]) == THUMBNAIL_PX and overlay.shape[:2] == (300, 400)
    assert overlay.std() > 20  # the colour map, not a blank

    # The tiles are the top three by attention, read from the slide: compare with a direct read.
    with open_slide(batch["kept"]) as slide:
        for image, tile in zip(by_section[kept][1:], (1, 2, 3)):
            x, y, w, h = COARSE_BOXES[tile]
            pixels = _decode(image["src"])
            assert pixels.shape == (TILE_PX, TILE_PX, 3)
            expected = cv2.resize(slide.read_region((x, y), (w, h)), (TILE_PX, TILE_PX), interpolation=cv2.INTER_AREA)
            difference = np.abs(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB).astype(float) - expected).mean()
            assert difference < 4, (tile, difference)
    assert "cannot be opened anymore" in page.sections[deleted]
    assert "SlideNotFoundError" in page.sections[deleted]
    assert "No overlay" in page.sections[empty] and "No attention tiles" in page.sections[empty]


def test_bad_arguments_are_refused(batch: dict[str, Any], tmp_path: Path) -> None:
    predictions = batch["predictions"]
    with pytest.raises(ParameterError, match="top_tiles"):
        write_report(tmp_path / "r.html", predictions, run={}, out_dir=batch["out"], top_tiles=-1)
    with pytest.raises(ParameterError, match="status"):
        write_report(tmp_path / "r.html", predictions.drop(columns="status"), run={}, out_dir=batch["out"])
    with pytest.raises(ParameterError, match="run"):
        write_report(tmp_path / "r.html", predictions, run=None, out_dir=batch["out"])  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_a_batch_without_run_details_or_tiles(batch: dict[str, Any], tmp_path: Path) -> None:
    """Only slide_id and status: still a page, with the slides and no tiles."""
    frame = pd.DataFrame({"slide_id": ["x", "y"], "status": ["ok", "error"]})
    path = write_report(tmp_path / "report.html", frame, run={}, out_dir=tmp_path, top_tiles=0)
    page = _parsed(path.read_text(encoding="utf-8"))
    assert [row[0] for row in page.rows] == ["x", "y"] and not page.images


# --- Headless Chromium ---------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1280, 2000)
# Moves the two pipe ends onto descriptors 3 and 4, where --remote-debugging-pipe expects them,
# then becomes the browser (no preexec_fn: safe with threads).
_TRAMPOLINE = ("import os, sys\n"
               "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
               "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w)\n"
               "os.execvp(sys.argv[3], sys.argv[3:])\n")


def _browser_binary() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    where = "CI's .ci/run should have installed it; " if os.environ.get("CI") else ""
    pytest.skip(f"no Chromium found ({', '.join(BROWSERS)} not on PATH): {where}"
                "install it with `apt-get install chromium` to run the browser checks")


@dataclass
class PageLoad:
    """What loading one page produced."""

    errors: list[str] = field(default_factory=list)  # uncaught exceptions, console errors, log errors
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    screenshot: np.ndarray | None = None  # BGR
    values: dict[str, Any] = field(default_factory=dict)  # results of the expressions evaluated


class DevTools:
    """A headless Chromium driven over ``--remote-debugging-pipe`` with the standard library only."""

    def __init__(self, binary: str, profile: Path, log: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.log = log
        to_browser, from_browser = os.pipe(), os.pipe()
        # Child ends above 9, so that dup2 onto 3 and 4 in the child cannot clobber one another.
        child_read = _high(to_browser[0])
        child_write = _high(from_browser[1])
        flags = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--mute-audio", "about:blank"]
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, str(child_read), str(child_write), binary, *flags],
                pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, start_new_session=True)
        os.close(child_read)
        os.close(child_write)
        self._write, self._read = to_browser[1], from_browser[0]
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium did not answer in {self.timeout} s; its log:\n{self._log_tail()}")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium closed the DevTools pipe; its log:\n{self._log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str, since: int) -> None:
        """Wait for the event ``method`` of ``session`` (looking from ``self.events[since]`` on)."""
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events[since:]):
            self.events.append(self._message(deadline))

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {_exception_text(result['exceptionDetails'])}")
        return result["result"].get("value")

    def load(self, url: str, expressions: dict[str, str] | None = None) -> PageLoad:
        """Open ``url`` in a new tab, let it settle, evaluate ``expressions``, take a screenshot."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        first = len(self.events)
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": WINDOW[0], "height": WINDOW[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        navigation = self.call("Page.navigate", {"url": url}, session)
        assert "errorText" not in navigation, navigation
        self.wait_for("Page.loadEventFired", session, first)  # may have come with navigate's answer
        # Let timers and animation frames queued during load run (late errors land here too).
        self.evaluate(session, "new Promise(r => requestAnimationFrame(() => setTimeout(r, 100)))")
        load = PageLoad()
        for name, expression in (expressions or {}).items():
            load.values[name] = self.evaluate(session, expression)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session)
        load.screenshot = cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8), cv2.IMREAD_COLOR)
        self.evaluate(session, "new Promise(r => setTimeout(r, 50))")
        for event in self.events[first:]:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                load.errors.append("uncaught: " + _exception_text(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                words = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                load.errors.append(f"console.{params['type']}: {words}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                load.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
        self.call("Target.closeTarget", {"targetId": target})
        return load

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError, subprocess.TimeoutExpired):
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)  # the session this fixture started
                self.process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)


def _high(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _exception_text(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    return str(exception.get("description") or exception.get("value") or details.get("text"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    binary = _browser_binary()
    folder = tmp_path_factory.mktemp("chromium")
    tools = DevTools(binary, folder / "profile", folder / "chromium.log")
    try:
        yield tools
    finally:
        tools.close()


def _ink(image: np.ndarray) -> tuple[float, float]:
    """Grey-level standard deviation, and the share of pixels that are not near-white."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(grey.std()), float((grey < 235).mean())


def test_the_error_detector_catches_deliberate_errors(browser: DevTools, tmp_path: Path) -> None:
    """A page that throws (at load and in a timer), logs an error and breaks an image is caught;
    a blank page is seen to be blank, and a clean one raises nothing."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>broken</p><img src='missing.png'>"
                      "<script>console.error('deliberate console error');</script>"
                      "<script>setTimeout(function () { null.boom(); }, 0);</script>"
                      "<script>throw new Error('deliberate throw');</script></body></html>", encoding="utf-8")
    load = browser.load(broken.as_uri())
    joined = "\n".join(load.errors)
    assert "deliberate throw" in joined, load.errors
    assert "deliberate console error" in joined, load.errors
    assert "TypeError" in joined, load.errors  # the timer's
    assert "ERR_FILE_NOT_FOUND" in joined, load.errors  # the broken image
    assert any(url.endswith("missing.png") for url in load.requests), load.requests

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    load = browser.load(blank.as_uri())
    assert load.errors == [] and load.screenshot is not None
    assert _ink(load.screenshot)[0] < 1, "a blank page should look blank"


def test_the_report_renders_in_chromium(browser: DevTools, batch: dict[str, Any]) -> None:
    started = time.monotonic()
    sort = ("(() => { const th = document.querySelectorAll('#predictions th')[3];"  # P(tumour)
            " th.click(); const up = Array.from(document.querySelectorAll('#predictions tbody tr'),"
            " r => r.cells[0].textContent); th.click(); const down = Array.from("
            "document.querySelectorAll('#predictions tbody tr'), r => r.cells[0].textContent);"
            " return [up, down]; })()")
    images = ("Promise.all(Array.from(document.images, i => i.decode().then(() => [i.naturalWidth, "
              "i.naturalHeight])))")
    load = browser.load(batch["report"].as_uri(), {"images": images, "sort": sort,
                                                   "title": "document.title", "rows": "document.querySelectorAll("
                                                   "'#predictions tbody tr').length"})
    assert load.errors == [], load.errors
    assert all(url.startswith(("file:", "data:")) for url in load.requests), load.requests
    assert load.values["rows"] == 4
    assert len(load.values["images"]) == 2 + TOP_TILES and all(w > 0 and h > 0 for w, h in load.values["images"])
    ids = batch["ids"]
    up, down = load.values["sort"]
    # P(tumour) ascending: 0.12, 0.5, 0.87, then the failure's empty cell last; descending reverses the numbers.
    assert up == [ids["deleted"], ids["empty"], ids["kept"], ids["failed"]], up
    assert down == [ids["kept"], ids["empty"], ids["deleted"], ids["failed"]], down
    assert "slide-" in load.values["title"]

    assert load.screenshot is not None and load.screenshot.shape[:2] == (WINDOW[1], WINDOW[0])
    deviation, inked = _ink(load.screenshot)
    assert deviation > 15 and inked > 0.02, (deviation, inked)
    print(f"Chromium: report loaded, checked and captured in {time.monotonic() - started:.1f} s")
