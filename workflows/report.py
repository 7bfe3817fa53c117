"""The batch report: one self-contained HTML page a pathologist opens offline.

:func:`write_report` turns the ``predictions.csv`` table of a ``slidescope run`` (failures
included) and its ``run.json`` into ``report.html``:

- a header: model, start and end, slides ok and failed, agreement with the reference labels
  when there are any, the configuration hash, and the whole ``run.json`` under a fold;
- the predictions table, every row, failed slides highlighted with their message (a click on a
  column heading sorts it: the page's only script, a few lines inline);
- one section per slide that succeeded: its figures (probability, label, areas, nuclei per type),
  the tumour overlay (``overlay.png`` shrunk with ``cv2.INTER_AREA``, embedded as JPEG) and the
  coarse tiles the model attended to most, read from the slide file again;
- the failures, each slide with its error message.

Nothing is fetched when the page is opened: images are ``data:`` URIs, the style and the script
are inline, and every text that came from a user (slide ids, paths, messages) is escaped. A
slide's missing or damaged outputs, or a slide file that cannot be opened anymore, become a note
in its section; they never fail the report. The page is written atomically.

>>> write_report(out / "report.html", predictions, run=run, out_dir=out)     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np
import pandas as pd

from slidescope.wsi import open_slide
from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.errors import ParameterError
from slidescope.wsi.geometry import coarsest_level_within
from slidescope.wsi.validation import parse_int, parse_path

__all__ = ["write_report", "TILE_PX", "JPEG_QUALITY"]

#: Longest side, in pixels, of the attention tiles shown for each slide.
TILE_PX = 160
#: JPEG quality of the embedded overlays and tiles.
JPEG_QUALITY = 85

#: Columns of the predictions table on the page, in order (those absent from the frame are left out).
_TABLE_COLUMNS = ("slide_id", "status", "label", "probability", "reference_label", "tissue_area_mm2",
                  "tumour_area_mm2", "nuclei_total", "nuclei_per_mm2", "flagged_tiles", "seconds_total", "error")
_HEADINGS = {
    "slide_id": "slide", "probability": "P(tumour)", "reference_label": "reference", "tissue_area_mm2": "tissue mm²",
    "tumour_area_mm2": "tumour mm²", "nuclei_total": "nuclei", "nuclei_per_mm2": "nuclei / mm²",
    "flagged_tiles": "flagged tiles", "seconds_total": "seconds",
}
#: Decimals shown for float columns (others: 3 significant figures).
_DECIMALS = {"probability": 3, "tissue_area_mm2": 2, "tumour_area_mm2": 2, "nuclei_per_mm2": 0, "seconds_total": 1}
#: Columns holding counts, shown as integers with thousands separators.
_COUNTS = ("nuclei_total", "coarse_tiles", "flagged_tiles", "fine_tiles", "attempts")

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0 auto;
max-width:1240px;padding:0 20px 40px;background:#fff}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
.muted{color:#6e6e73}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:10px 0}
dl.summary dt{color:#6e6e73}dl.summary dd{margin:0;word-break:break-all}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #e5e5ea;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;background:#f5f5f7;position:sticky;top:0}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{background:#fdecea}tr.failed td.error{color:#b3261e;white-space:pre-wrap;word-break:break-word}
td.error{max-width:420px}tr.mismatch td{background:#fff4e5}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#e5e5ea;margin-left:6px}
.badge.tumour{background:#f4c7c3}.badge.failed{background:#b3261e;color:#fff}
section.slide{border:1px solid #e5e5ea;border-radius:8px;padding:14px;margin:18px 0}
.cols{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#6e6e73}
img.overlay{max-width:100%;height:auto;border:1px solid #e5e5ea}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tiles figure{width:168px}
.tiles img{width:160px;height:auto;border:1px solid #e5e5ea;image-rendering:auto}
pre{white-space:pre-wrap;word-break:break-word;background:#f5f5f7;padding:8px;margin:4px 0;font-size:12px}
details{margin:8px 0}summary{cursor:pointer}
"""

# Sorts a table.sortable by the clicked column: numbers by their data-v, text otherwise; empty last.
_SCRIPT = """
"use strict";
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column];
        var v = cell ? cell.getAttribute("data-v") : null;
        return v === null ? (cell ? cell.textContent : "") : v;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _text(value: Any) -> str:
    """A cell as plain text: empty for missing values."""
    if _missing(value):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return str(value)


def _number(column: str, value: Any) -> str:
    """A number as shown on the page (its raw value goes into ``data-v`` for sorting)."""
    if _missing(value) or isinstance(value, (bool, np.bool_)):
        return _text(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if column in _COUNTS or column.startswith("nuclei_") and column not in _DECIMALS:
        return f"{number:,.0f}"
    if column in _DECIMALS:
        return f"{number:,.{_DECIMALS[column]}f}"
    return f"{number:.3g}"


def _esc(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _cell(column: str, value: Any) -> str:
    """One ``<td>``; numbers right-aligned with their raw value in ``data-v`` for sorting."""
    if _is_number(value) and not _missing(value):
        return f'<td class="num" data-v="{float(value)!r}">{html.escape(_number(column, value))}</td>'
    if column == "error":
        return f'<td class="error">{_esc(value)}</td>'
    return f"<td>{_esc(value)}</td>"


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` present (``"model.name"`` looks into ``mapping["model"]``)."""
    for key in keys:
        value: Any = mapping
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            return value
    return None


def _jpeg_uri(bgr: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _shrunk(image: np.ndarray, edge: int) -> np.ndarray:
    """``image`` shrunk with ``cv2.INTER_AREA`` so that its longest side is at most ``edge``."""
    height, width = image.shape[:2]
    scale = edge / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


#: What the report says when the shipped slide model ran.
SHIPPED_MODEL_WARNING = ("These predictions come from slidescope's shipped model, trained on generated slides only: "
                         "they show the pipeline working, and have no diagnostic value on real slides.")


def _is_shipped(directory: str) -> bool:
    """Whether ``directory`` is a model slidescope ships (under its ``models/shipped/``)."""
    if not directory:
        return False
    from slidescope.models.loading import SHIPPED_DIR

    shipped = os.path.realpath(SHIPPED_DIR)
    return os.path.realpath(directory).startswith(shipped + os.sep)


def _summary(run: dict[str, Any], predictions: pd.DataFrame, ok: pd.Series) -> str:
    items: list[tuple[str, Any]] = [
        ("model", _first(run, "model.name", "model_card.name", "card.name", "model_name", "model")),
        ("model card sha256", _first(run, "model.sha256", "model.hash", "model.card_sha256", "model_card.sha256",
                                     "model_card.hash", "card.sha256", "model_sha256", "model_hash", "card_sha256")),
        ("started", _first(run, "started", "start", "start_time", "started_at", "times.start", "times.started")),
        ("ended", _first(run, "ended", "end", "end_time", "ended_at", "finished", "finished_at", "times.end",
                         "times.ended")),
        ("slides", f"{len(predictions)}: {int(ok.sum())} ok, {int((~ok).sum())} failed"),
        ("configuration hash", _first(run, "config_hash", "configuration_hash", "configuration.hash", "config.hash")),
        ("host", _first(run, "host.name", "host.hostname", "hostname", "host")),
        ("slidescope", _first(run, "versions.slidescope", "version", "slidescope_version")),
    ]
    if {"label", "reference_label"} <= set(predictions.columns):
        labelled = ok & predictions["reference_label"].map(lambda v: _text(v) != "")
        if labelled.any():
            chosen = predictions.loc[labelled]
            agree = chosen["label"].map(_label_key) == chosen["reference_label"].map(_label_key)
            items.append(("agreement with reference", f"{int(agree.sum())} of {int(labelled.sum())} slides"))
    head: Any = run
    for part in ("model", "card", "training", "head"):
        head = head.get(part) if isinstance(head, dict) else None
    if isinstance(head, dict) and head.get("slides"):
        items.insert(1, ("head trained on", f"{len(head['slides'])} slides, labels: {_text(head.get('labels'))}"))
    rows = "".join(f"<dt>{html.escape(name)}</dt><dd>{_esc(value)}</dd>" for name, value in items if _text(value))
    dump = json.dumps(run, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    warning = _note(SHIPPED_MODEL_WARNING) if _is_shipped(_text(_first(run, "model.directory"))) else ""
    return (f'{warning}<dl class="summary">{rows}</dl>'
            f"<details><summary>run.json</summary><pre>{html.escape(dump)}</pre></details>")


def _row_class(row: pd.Series, ok: bool) -> str:
    if not ok:
        return ' class="failed"'
    label, reference = _text(row.get("label")), _text(row.get("reference_label"))
    return ' class="mismatch"' if label and reference and _label_key(label) != _label_key(reference) else ""


def _label_key(value: Any) -> str:
    """A label as compared with another: case and surrounding blanks ignored (``Tumour`` is ``tumour``)."""
    return _text(value).strip().casefold()


def _table(predictions: pd.DataFrame, ok: pd.Series, anchors: dict[int, str]) -> str:
    columns = [c for c in _TABLE_COLUMNS if c in predictions.columns]
    head = "".join(f"<th>{html.escape(_HEADINGS.get(c, c.replace('_', ' ')))}</th>" for c in columns)
    body = []
    for position, (_, row) in enumerate(predictions.iterrows()):
        cells = []
        for column in columns:
            value = row[column]
            if column == "slide_id" and position in anchors:
                cells.append(f'<td><a href="#{anchors[position]}">{_esc(value)}</a></td>')
            else:
                cells.append(_cell(column, value))
        body.append(f"<tr{_row_class(row, bool(ok.iloc[position]))}>{''.join(cells)}</tr>")
    return (f'<table class="sortable" id="predictions"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _full_table(predictions: pd.DataFrame) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in predictions.columns)
    body = "".join("<tr>" + "".join(_cell(str(c), row[c]) for c in predictions.columns) + "</tr>"
                   for _, row in predictions.iterrows())
    return (f'<details><summary>every column of predictions.csv</summary><div style="overflow-x:auto">'
            f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>')


def _facts(row: pd.Series) -> str:
    """The slide's figures as a two-column table: probability, label, areas, nuclei per type, tiles, time."""
    names = ["probability", "label", "reference_label", "tissue_area_mm2", "tumour_area_mm2", "nuclei_total"]
    names += [c for c in row.index if c.startswith("nuclei_") and c not in ("nuclei_total", "nuclei_per_mm2")]
    names += ["nuclei_per_mm2", "coarse_tiles", "flagged_tiles", "fine_tiles", "seconds_total", "resumed", "attempts"]
    lines = []
    for name in names:
        if name not in row.index or _text(row[name]) == "":
            continue
        value = row[name]
        shown = _number(name, value) if _is_number(value) else _text(value)
        lines.append(f"<tr><th>{html.escape(_HEADINGS.get(name, name.replace('_', ' ')))}</th>"
                     f"<td>{html.escape(shown)}</td></tr>")
        if name == "tumour_area_mm2" and _is_number(row.get("tissue_area_mm2")) and float(row["tissue_area_mm2"]) > 0:
            share = float(value) / float(row["tissue_area_mm2"])
            lines.append(f"<tr><th>tumour share of tissue</th><td>{share:.1%}</td></tr>")
    return f'<table class="facts">{"".join(lines)}</table>'


def _overlay(folder: Path, thumbnail_px: int) -> str:
    path = folder / "overlay.png"
    try:
        if not path.is_file():
            return _note(f"No overlay: {path} is missing.")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, as imencode wants it
        if image is None:
            raise ValueError(f"{path}: not an image OpenCV can read")
        image = _shrunk(image, thumbnail_px)
        uri = _jpeg_uri(image)
    except Exception as exc:  # one slide's damaged output must not lose the batch's report
        return _note(f"No overlay: {_problem(exc)}")
    height, width = image.shape[:2]
    return (f'<figure><img class="overlay" src="{uri}" width="{width}" height="{height}" alt="tumour overlay">'
            "<figcaption>tumour probability over the slide thumbnail</figcaption></figure>")


def _top_tiles(folder: Path, count: int) -> pd.DataFrame:
    """The ``count`` coarse tiles of ``tiles.parquet`` with the highest attention, highest first."""
    import pyarrow.parquet as pq

    path = folder / "tiles.parquet"
    names = pq.read_schema(path).names
    wanted = [c for c in ("tile_id", "scale", "l0_x", "l0_y", "l0_width", "l0_height", "attention", "prob_tumour")
              if c in names]
    needed = {"l0_x", "l0_y", "l0_width", "l0_height", "attention"}
    if not needed <= set(wanted):
        raise ValueError(f"{path}: expected columns {sorted(needed)}, got {names}")
    tiles = pd.read_parquet(path, columns=wanted)
    coarse = tiles["attention"].notna()
    if "scale" in tiles.columns:
        coarse &= tiles["scale"] == "tissue"
    return tiles[coarse].sort_values("attention", ascending=False, kind="stable").head(count)


def _read_tile(slide: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    """The level-0 box ``(x, y, width, height)`` shrunk to :data:`TILE_PX` on its longest side, RGB.

    Read from the coarsest level at least that fine, then shrunk with ``cv2.INTER_AREA``; needs no
    µm per pixel, so a slide without mpp metadata works too.
    """
    x, y, width, height = box
    wanted = max(width, height) / TILE_PX
    level = coarsest_level_within(slide.levels, wanted)
    size = (max(1, math.ceil(width / level.downsample)), max(1, math.ceil(height / level.downsample)))
    pixels = slide.read_region((x, y), size, level=level.index)
    return _shrunk(pixels, TILE_PX)


def _tiles_html(row: pd.Series, folder: Path, count: int) -> str:
    if count == 0:
        return ""
    heading = f"<h3>Top {count} attention tiles</h3>"
    try:
        tiles = _top_tiles(folder, count)
    except Exception as exc:  # see _overlay
        return heading + _note(f"No attention tiles: {_problem(exc)}")
    if tiles.empty:
        return heading + _note("No coarse tile has an attention value.")
    path = _text(row.get("path"))
    try:
        slide = open_slide(path, require_mpp=False)
    except Exception as exc:  # a slide moved or deleted since the run
        return heading + _note(f"The slide file cannot be opened anymore, so its tiles are not shown "
                               f"({_problem(exc)}).")
    figures = []
    with slide:
        for rank, (_, tile) in enumerate(tiles.iterrows(), start=1):
            box = (int(tile["l0_x"]), int(tile["l0_y"]), int(tile["l0_width"]), int(tile["l0_height"]))
            caption = f"#{rank} attention {float(tile['attention']):.3g}"
            if "prob_tumour" in tile.index and not _missing(tile["prob_tumour"]):
                caption += f", P(tumour) {float(tile['prob_tumour']):.2f}"
            caption += f", at ({box[0]:,}, {box[1]:,}) {box[2]}×{box[3]} px"
            try:
                pixels = _read_tile(slide, box)
                uri = _jpeg_uri(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
            except Exception as exc:  # one unreadable region: a note in its place
                figures.append(f"<figure>{_note(_problem(exc))}"
                               f"<figcaption>{html.escape(caption)}</figcaption></figure>")
                continue
            height, width = pixels.shape[:2]
            figures.append(f'<figure><img src="{uri}" width="{width}" height="{height}" alt="tile {rank}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return heading + f'<div class="tiles">{"".join(figures)}</div>'


def _slide_folder(row: pd.Series, out_dir: Path) -> Path:
    output = _text(row.get("output"))
    return out_dir / output if output else out_dir / "slides" / _text(row.get("slide_id"))


def _slide_section(row: pd.Series, anchor: str, out_dir: Path, top_tiles: int, thumbnail_px: int) -> str:
    label = _text(row.get("label"))
    badge = f'<span class="badge{" tumour" if label == "tumour" else ""}">{html.escape(label)}</span>' if label else ""
    probability = row.get("probability")
    shown = f" P(tumour) {_number('probability', probability)}" if _is_number(probability) else ""
    folder = _slide_folder(row, out_dir)
    parts = [f'<section class="slide" id="{anchor}"><h2>{_esc(row.get("slide_id"))}{badge}'
             f'<span class="muted">{html.escape(shown)}</span></h2>',
             f'<p class="muted">{_esc(row.get("path"))}</p>']
    if not folder.is_dir():
        parts.append(_note(f"The output folder {folder} is missing."))
    parts.append(f'<div class="cols"><div>{_facts(row)}</div><div>{_overlay(folder, thumbnail_px)}</div></div>')
    parts.append(_tiles_html(row, folder, top_tiles))
    parts.append("</section>")
    return "".join(parts)


def _failures(predictions: pd.DataFrame, ok: pd.Series) -> str:
    failed = predictions[~ok.to_numpy()]
    if failed.empty:
        return '<h2 id="failures">Failures</h2><p class="muted">None: every slide succeeded.</p>'
    items = []
    for _, row in failed.iterrows():
        count = _number("attempts", row["attempts"]) if _is_number(row.get("attempts")) else None
        attempts = "" if count is None else f" after {count} attempt{'' if str(count) == '1' else 's'}"
        items.append(f'<li><b>{_esc(row.get("slide_id"))}</b> <span class="muted">{_esc(row.get("path"))}'
                     f"{html.escape(attempts)}</span><pre>{_esc(row.get('error')) or 'no message'}</pre></li>")
    return f'<h2 id="failures">Failures ({len(failed)})</h2><ul>{"".join(items)}</ul>'


def _write(stream: TextIO, parts: Iterable[str]) -> None:
    for part in parts:
        stream.write(part)


def write_report(
    path: str | os.PathLike[str],
    predictions: pd.DataFrame,
    *,
    run: dict[str, Any],
    out_dir: str | os.PathLike[str],
    top_tiles: int = 6,
    thumbnail_px: int = 800,
) -> Path:
    """Write the batch report: one self-contained HTML page.

    Parameters
    ----------
    path : str or PathLike
        The HTML file to write (``OUT/report.html``); replaced atomically. Only the last level of
        its folder may be missing.
    predictions : pandas.DataFrame
        ``predictions.csv`` of the run, one row a slide, failures included: ``slide_id`` and
        ``status`` (``ok`` or anything else for a failure) are required; ``path``, ``error``,
        ``probability``, ``label``, ``reference_label``, the areas, ``nuclei_*``, the tile counts,
        ``seconds_total``, ``attempts`` and ``output`` are shown where present. Read the CSV with
        ``dtype={"slide_id": str}`` so that ids such as ``007`` keep their zeros.
    run : dict
        ``run.json``. Model name and card hash, start and end, host, versions and the
        configuration hash are picked out for the header (under the usual key names, e.g.
        ``model.name``, ``model.sha256``, ``started``, ``ended``, ``config_hash``); the whole dict
        is shown under a fold.
    out_dir : str or PathLike
        The run's output folder: a slide's ``output`` column (``slides/<slide_id>``) is relative
        to it; an empty ``output`` falls back to ``slides/<slide_id>``.
    top_tiles : int
        How many coarse tiles of highest attention to show per slide (0 for none), read from the
        slide file at ``path`` and shrunk to :data:`TILE_PX` pixels.
    thumbnail_px : int
        Longest side of the embedded overlay, in pixels (larger overlays are shrunk with
        ``cv2.INTER_AREA``; smaller ones are kept as they are).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ParameterError
        ``predictions`` is not a DataFrame or lacks ``slide_id`` or ``status``, ``run`` is not a
        dict, or ``top_tiles`` / ``thumbnail_px`` are out of range.
    OutputError
        The report cannot be written where asked.

    Notes
    -----
    A slide's missing overlay or tiles table, or a slide file that cannot be opened anymore,
    becomes a note in its section, never an error. The page grows with the batch (about 100 kB
    per slide at the defaults).
    """
    target = Path(parse_path(path, "path"))
    folder = Path(parse_path(out_dir, "out_dir"))
    top_tiles = parse_int(top_tiles, "top_tiles", minimum=0, maximum=100)
    thumbnail_px = parse_int(thumbnail_px, "thumbnail_px", minimum=16, maximum=4096)
    if not isinstance(predictions, pd.DataFrame):
        raise ParameterError(f"predictions: expected a pandas DataFrame, got {type(predictions).__name__}")
    if not {"slide_id", "status"} <= set(predictions.columns):
        raise ParameterError(f"predictions: expected the columns slide_id and status, got {list(predictions.columns)}")
    if not isinstance(run, dict):
        raise ParameterError(f"run: expected a dict (run.json), got {type(run).__name__}")

    frame = predictions.reset_index(drop=True)
    ok = frame["status"].map(_text).str.strip().str.lower().eq("ok")
    anchors = {int(i): f"slide-{int(i)}" for i in np.flatnonzero(ok.to_numpy())}
    title = "slidescope batch report"
    model = _text(_first(run, "model.name", "model_card.name", "card.name", "model_name", "model"))
    with atomic_path(target) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as stream:
        _write(stream, [
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            # No request may leave the page: images are data: URIs, style and script inline.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
            f"<title>{html.escape(title)}{' – ' + html.escape(model) if model else ''}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            _summary(run, frame, ok),
            f'<h2>Predictions</h2><p class="muted">{len(frame)} slides; failed slides are red, predictions that '
            "differ from the reference label amber. Click a heading to sort.</p>",
            _table(frame, ok, anchors),
            _full_table(frame),
            f'<p><a href="#failures">Failures ({int((~ok).sum())})</a></p>',
        ])
        for position, anchor in anchors.items():
            stream.write(_slide_section(frame.iloc[position], anchor, folder, top_tiles, thumbnail_px))
        _write(stream, [_failures(frame, ok), f"<script>{_SCRIPT}</script></body></html>\n"])
    return target
