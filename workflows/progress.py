"""Progress of tile batches running on Dask's local schedulers, counted in tiles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["tile_progress", "terminal_bar", "training_bar"]


@contextmanager
def tile_progress(total: int, report: Callable[[int, int], None] | None) -> Iterator[None]:
    """Call ``report(done, total)`` each time a task returns a table of tile results.

    Uses Dask's local-scheduler callbacks (threads, sync, processes), which see each task's result
    in this process; a task's tiles are the rows of its table.
    """
    if report is None:
        yield
        return
    from dask.callbacks import Callback

    done = [0]

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if hasattr(result, "columns") and "tile_id" in getattr(result, "columns", ()):
            done[0] += len(result)
            report(done[0], total)

    with Callback(posttask=posttask):
        yield


@contextmanager
def terminal_bar(description: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar of tiles on stderr when ``enabled`` (a terminal), else None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


@contextmanager
def training_bar(enabled: bool) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A rich progress bar of training steps on stderr (epoch, loss, tiles/s) when ``enabled``, else None."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} tiles/s"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("training", total=None, epoch="-", loss=float("nan"), rate=0.0)

        def report(state: dict[str, Any]) -> None:
            bar.update(task, completed=state["step"], total=state["steps"],
                       epoch=f"{state['epoch']}/{state['epochs']}", loss=state["loss"], rate=state["tiles_per_second"])

        yield report
