"""``slidescope run --dry-run``: what a batch would do, without running a model.

For each slide: its tissue area and the tile counts per scale of the plan the batch would run (the
coarse tiles the tissue part reads, and the fine tiles under them: all of them with
``--cell-everywhere``, at most all of them with the cascade, which reads only those under flagged
tiles), and an estimate of the time, from the model-only rates measured on one CPU core
(``bench/README.md``): the cascade's estimate is a range, from no flagged tile to all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = ["dry_run", "TISSUE_TILES_PER_CORE_SECOND", "CELL_TILES_PER_CORE_SECOND"]

#: Model-only throughput of the shipped parts on one CPU core (tiles per second; bench/models.py: 102 and
#: 13 tiles/s on 2 threads, read and rounded down).
TISSUE_TILES_PER_CORE_SECOND = 45.0
CELL_TILES_PER_CORE_SECOND = 6.0


def dry_run(inputs: Sequence[Any], *, model: Any = None, settings: Any = None, cores: int | None = None) -> pd.DataFrame:
    """Plan every slide (mask and tiles, no model) and estimate the work.

    Returns
    -------
    pandas.DataFrame
        ``slide_id, path, status, error, tissue_area_mm2, coarse_tiles, fine_tiles, estimated_seconds_min,
        estimated_seconds_max`` (a slide that cannot be planned has ``status`` error and its message).
    """
    from slidescope.merge.merged import MergedCard

    from .batch import resolve_model_directory
    from .inputs import resolve_inputs
    from .pipeline import Settings, plan_slide

    settings = settings or Settings()
    card = MergedCard.load(resolve_model_directory(model))
    cores = max(1, cores or os.cpu_count() or 1)
    rows = []
    for slide in resolve_inputs(list(inputs)):
        try:
            plan = plan_slide(slide.path, card, settings, slide.mpp)
        except Exception as exc:  # reported per slide, as the batch would
            rows.append({"slide_id": slide.slide_id, "path": slide.path, "status": "error",
                         "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        coarse = len(plan.coarse)
        fine = int((plan.plan.table.scale == plan.plan.scale_index("cell")).sum())
        tissue_s = coarse / TISSUE_TILES_PER_CORE_SECOND / cores
        cell_s = fine / CELL_TILES_PER_CORE_SECOND / cores
        rows.append({"slide_id": slide.slide_id, "path": slide.path, "status": "ok", "error": "",
                     "tissue_area_mm2": plan.tissue_area_mm2, "coarse_tiles": coarse, "fine_tiles": fine,
                     "estimated_seconds_min": tissue_s + (0.0 if settings.cascade else cell_s),
                     "estimated_seconds_max": tissue_s + cell_s})
    return pd.DataFrame(rows, columns=["slide_id", "path", "status", "error", "tissue_area_mm2", "coarse_tiles",
                                       "fine_tiles", "estimated_seconds_min", "estimated_seconds_max"])
