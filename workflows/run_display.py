"""What ``slidescope run`` shows while a batch runs: bars of slides and tiles, a line per slide, a summary.

On a terminal (stderr a TTY) rich draws two bars (slides, and tiles of the slides in flight, with
elapsed time and rate); each finished slide prints one line above them; the end prints a summary
table. Output that is not a terminal gets the same lines as plain text and no bars. ``quiet`` prints
only the summary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import pandas as pd

from .batch import BatchEvents

__all__ = ["BatchDisplay", "slide_line", "summary_lines"]


def slide_line(row: dict[str, Any]) -> str:
    """One line for a finished slide."""
    if row["status"] != "ok":
        return f"error    {row['slide_id']}: {row['error']}"
    nuclei = row.get("nuclei_total")
    seconds = row.get("seconds_total")
    resumed = "  (resumed: outputs of an earlier run)" if row.get("resumed") else ""
    timing = f"  {seconds:.1f} s" if isinstance(seconds, (int, float)) and seconds == seconds else ""
    return (f"ok       {row['slide_id']}: {row['label']} (p={row['probability']:.3f}), tissue "
            f"{row['tissue_area_mm2']:.1f} mm², {nuclei} nuclei{timing}{resumed}")


def summary_lines(frame: pd.DataFrame) -> list[str]:
    """The summary as plain lines: a table of the slides and a last line with the failures."""
    lines = [f"{'slide':<24} {'status':<7} {'label':<10} {'p':>6} {'tissue mm²':>11} {'nuclei':>8}  error"]
    for row in frame.itertuples(index=False):
        ok = row.status == "ok"
        lines.append(f"{str(row.slide_id)[:24]:<24} {row.status:<7} {(row.label if ok else '-'):<10} "
                     f"{(f'{row.probability:.3f}' if ok else '-'):>6} "
                     f"{(f'{row.tissue_area_mm2:.1f}' if ok else '-'):>11} "
                     f"{(str(int(row.nuclei_total)) if ok else '-'):>8}  {'' if ok else row.error}")
    lines.append(last_line(frame))
    return lines


def where_line(out: Any) -> str:
    """Where the batch's table and report are (``out`` as the user gave it, a trailing slash or not)."""
    return (f"predictions: {os.path.join(out, 'predictions.csv')}   "
            f"report: {os.path.join(out, 'report.html')}")


def last_line(frame: pd.DataFrame) -> str:
    failed = int((frame.status != "ok").sum())
    resumed = int(frame.resumed.fillna(False).astype(bool).sum()) if len(frame) else 0
    done = f"{len(frame)} slide{'' if len(frame) == 1 else 's'}: {len(frame) - failed} ok ({resumed} resumed)"
    return f"{done}, {failed} failed" if failed else f"{done}, none failed"


class BatchDisplay:
    """The batch's events drawn for a person (see the module docstring).

    Parameters
    ----------
    quiet : bool
        Print only the summary.
    bars : bool, optional
        Draw rich bars (default: when stderr is a terminal).
    stream : file
        Where lines go (default stdout).
    """

    def __init__(self, quiet: bool = False, bars: bool | None = None, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.bars = (not quiet) and (sys.stderr.isatty() if bars is None else bars)
        self._progress: Any = None
        self._slides_task = self._tiles_task = None
        self._tiles: dict[str, tuple[int, int]] = {}
        self._finished = 0

    def events(self) -> BatchEvents:
        return BatchEvents(started=self.started, tiles=self.tiles, finished=self.finished, message=self.message)

    @contextmanager
    def running(self) -> Iterator["BatchDisplay"]:
        if not self.bars:
            yield self
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        from rich.progress import ProgressColumn
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{speed:.1f}/s" if speed else "-/s")

        with Progress(TextColumn("{task.description:<7}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                      TimeElapsedColumn(), Rate(), console=Console(stderr=True)) as progress:
            self._progress = progress
            self._slides_task = progress.add_task("slides", total=None)
            self._tiles_task = progress.add_task("tiles", total=None)
            try:
                yield self
            finally:
                self._progress = None

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def started(self, total: int, dashboard: str | None, to_run: int) -> None:
        if dashboard:
            self._print(f"Dask dashboard: {dashboard}")
        self._print(f"{total} slide{'' if total == 1 else 's'}: {to_run} to run, {total - to_run} done already")
        if self._progress is not None:
            self._progress.update(self._slides_task, total=total, completed=self._finished)

    def tiles(self, slide_id: str, done: int, total: int) -> None:
        self._tiles[slide_id] = (done, total)
        if self._progress is not None:
            self._progress.update(self._tiles_task, completed=sum(d for d, _ in self._tiles.values()),
                                  total=sum(t for _, t in self._tiles.values()))

    def finished(self, row: dict[str, Any]) -> None:
        self._finished += 1
        self._print(slide_line(row))
        if self._progress is not None:
            self._progress.update(self._slides_task, completed=self._finished)

    def message(self, text: str) -> None:
        self._print(text)

    def summary(self, frame: pd.DataFrame, out: str) -> None:
        """The summary table and where the outputs are (printed even when quiet)."""
        if sys.stdout.isatty() and self.stream is sys.stdout:
            from rich.console import Console
            from rich.table import Table

            table = Table(title="slidescope run")
            for column in ("slide", "status", "label", "p", "tissue mm²", "nuclei", "error"):
                table.add_column(column, justify="right" if column in ("p", "tissue mm²", "nuclei") else "left")
            for row in frame.itertuples(index=False):
                ok = row.status == "ok"
                table.add_row(str(row.slide_id), row.status, row.label if ok else "-",
                              f"{row.probability:.3f}" if ok else "-", f"{row.tissue_area_mm2:.1f}" if ok else "-",
                              str(int(row.nuclei_total)) if ok else "-", "" if ok else str(row.error),
                              style=None if ok else "red")
            console = Console()
            console.print(table)
            print(where_line(out), file=self.stream)
            print(last_line(frame), file=self.stream, flush=True)
            return
        for line in summary_lines(frame)[:-1]:
            print(line, file=self.stream)
        print(where_line(out), file=self.stream)
        print(last_line(frame), file=self.stream, flush=True)
