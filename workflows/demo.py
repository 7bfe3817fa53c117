"""The built-in default job (``make demo``): generated slides through the batch run.

Generates a handful of slides (with and without tumour regions, and one corrupt file), then runs
:func:`~slidescope.workflows.batch.run_batch` over them with the shipped merged slide model on a local
Dask cluster (its dashboard URL printed while it runs), and prints the predictions table and where
the report is. The demo is the batch run itself, on data it makes; it needs no data and no network.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from slidescope.wsi.synthetic import make_slide

__all__ = ["run_demo", "make_demo_slides", "DEMO_SLIDES"]

#: name -> (seed, tumour) of the generated demo slides; ``demo-corrupt`` is a tumour slide cut short.
DEMO_SLIDES = {"tumour-a": (11, True), "normal-a": (12, False), "tumour-b": (13, True), "normal-b": (14, False)}


def make_demo_slides(folder: Path, *, width: int = 8192, height: int = 6144, stream: TextIO | None = None) -> list[Path]:
    """The demo's slides in ``folder`` (made once, kept for the next run), the corrupt one last."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (seed, tumour) in DEMO_SLIDES.items():
        path = folder / f"demo-{name}.svs"
        if not path.exists():
            started = time.perf_counter()
            make_slide(path, width, height, seed=seed, tumour=tumour)
            if stream is not None:
                print(f"generated {path} ({'with' if tumour else 'without'} tumour) in "
                      f"{time.perf_counter() - started:.1f} s", file=stream, flush=True)
        paths.append(path)
    corrupt = folder / "demo-corrupt.svs"
    if not corrupt.exists():
        data = paths[0].read_bytes()
        corrupt.write_bytes(data[: len(data) // 3])  # the tile data ends a third of the way in
        if stream is not None:
            print(f"generated {corrupt} (a slide cut short: the batch reports it and goes on)", file=stream, flush=True)
    paths.append(corrupt)
    return paths


def run_demo(out_dir: Path, *, width: int = 8192, height: int = 6144, workers: int | None = None,
             stream: TextIO, events: Any = None) -> pd.DataFrame:
    """Generate the demo slides into ``out_dir/slides`` and run the batch into ``out_dir/run``.

    Returns
    -------
    pandas.DataFrame
        The batch's ``predictions.csv``.
    """
    from .batch import run_batch

    slides = make_demo_slides(out_dir / "slides", width=width, height=height, stream=stream)
    print(f"running the shipped slide model over {len(slides)} slides on a local Dask cluster ...", file=stream,
          flush=True)
    return run_batch([str(p) for p in slides], out_dir / "run", workers=workers, events=events)
