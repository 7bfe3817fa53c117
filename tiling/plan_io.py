"""Plan tables on disk: Parquet, with the plan's scales and slide as JSON in the schema metadata.

This module knows the table layout (:data:`PLAN_COLUMNS`) and the file format, nothing of
:class:`~slidescope.tiling.plan.TilePlan`, which builds on it (so the two do not import each other).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from slidescope.wsi.atomic import atomic_path
from slidescope.wsi.validation import parse_path

from .errors import TilePlanError

__all__ = ["PLAN_COLUMNS", "FORMAT_VERSION", "write_plan_table", "read_plan_table"]

#: Columns of a plan table, each named for its space.
PLAN_COLUMNS = ("tile_id", "scale", "mpp", "l0_x", "l0_y", "l0_width", "l0_height", "read_level",
                "tissue_fraction", "parent_id")
#: Version of the layout written by :func:`write_plan_table`; :func:`read_plan_table` refuses others.
FORMAT_VERSION = 1

_METADATA_KEY = b"slidescope.plan"


def write_plan_table(table: pd.DataFrame, metadata: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Write the :data:`PLAN_COLUMNS` of ``table`` and the JSON ``metadata`` to ``path`` as Parquet, atomically.

    ``metadata`` gets a ``"version"`` key. Returns the path written.
    """
    target = parse_path(path)
    frame = pa.Table.from_pandas(table[list(PLAN_COLUMNS)], preserve_index=False)
    text = json.dumps({**metadata, "version": FORMAT_VERSION})
    frame = frame.replace_schema_metadata({**(frame.schema.metadata or {}), _METADATA_KEY: text})
    with atomic_path(target) as temporary:
        pq.write_table(frame, temporary)
    return target


def read_plan_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The plan table (columns :data:`PLAN_COLUMNS`) and metadata of a file written by :func:`write_plan_table`.

    Raises
    ------
    TilePlanError
        No such file, not Parquet, no slidescope metadata, another format version, missing columns.
    """
    text = parse_path(path)
    if not os.path.isfile(text):
        raise TilePlanError(f"{text}: no such plan file")
    try:
        table = pq.read_table(text)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TilePlanError(f"{text}: not a Parquet tile plan ({exc})") from exc
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    if raw is None:
        raise TilePlanError(f"{text}: Parquet file without slidescope plan metadata (key {_METADATA_KEY.decode()})")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise TilePlanError(f"{text}: plan metadata is not JSON ({exc})") from exc
    if not isinstance(metadata, dict) or metadata.get("version") != FORMAT_VERSION:
        version = metadata.get("version") if isinstance(metadata, dict) else None
        raise TilePlanError(f"{text}: plan format version {version!r}; expected {FORMAT_VERSION}")
    missing = [c for c in PLAN_COLUMNS if c not in table.column_names]
    if missing:
        raise TilePlanError(f"{text}: plan table lacks columns {missing}; expected {list(PLAN_COLUMNS)}")
    frame: pd.DataFrame = table.to_pandas()
    return frame[list(PLAN_COLUMNS)], metadata
