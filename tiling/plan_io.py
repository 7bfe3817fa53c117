"""Plans on disk: Parquet tables with the scales and the slide in the schema metadata."""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from slidescope.wsi.atomic import atomic_path

from .plan import PLAN_COLUMNS, SlideRef, TilePlan, TilePlanError
from .scales import Scale

__all__ = ["save_plan", "load_plan"]

_METADATA_KEY = b"slidescope.plan"
_FORMAT_VERSION = 1


def save_plan(plan: TilePlan, path: str | os.PathLike[str]) -> str:
    """Write ``plan`` to ``path`` as Parquet, atomically; returns the path."""
    table = pa.Table.from_pandas(plan.table[list(PLAN_COLUMNS)], preserve_index=False)
    metadata = {
        "version": _FORMAT_VERSION,
        "scales": [scale.to_dict() for scale in plan.scales],
        "slide": {"path": plan.slide.path, "dimensions": list(plan.slide.dimensions),
                  "mpp": list(plan.slide.mpp)},
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _METADATA_KEY: json.dumps(metadata)})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return os.fspath(path)


def load_plan(path: str | os.PathLike[str]) -> TilePlan:
    """Read a plan written by :func:`save_plan`, checking its columns and metadata."""
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise TilePlanError(f"{text}: no such plan file")
    try:
        table = pq.read_table(text)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TilePlanError(f"{text}: not a Parquet tile plan ({exc})") from exc
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise TilePlanError(f"{text}: Parquet file without slidescope plan metadata (key {_METADATA_KEY.decode()})")
    metadata = json.loads(raw)
    if metadata.get("version") != _FORMAT_VERSION:
        raise TilePlanError(f"{text}: plan format version {metadata.get('version')!r}; expected {_FORMAT_VERSION}")
    missing = [c for c in PLAN_COLUMNS if c not in table.column_names]
    if missing:
        raise TilePlanError(f"{text}: plan table lacks columns {missing}; expected {list(PLAN_COLUMNS)}")
    frame: pd.DataFrame = table.to_pandas()
    slide = metadata["slide"]
    return TilePlan(
        frame[list(PLAN_COLUMNS)],
        [Scale.from_dict(s) for s in metadata["scales"]],
        SlideRef(slide["path"], tuple(slide["dimensions"]), tuple(slide["mpp"])),
    )
