"""The files of one slide of a batch, written into its staging folder (renamed into place by the batch).

``OUT/slides/<slide_id>/``:

- ``prediction.json``: slide id and path, status, slide-level probability and label, every class's
  probability, tissue and tumour area in mm², nuclei by type and per mm², tile counts, timings per
  stage, the model (name, card sha256), the configuration and slide hashes, slidescope version;
- ``tiles.parquet``: every coarse and analysed fine tile (see :class:`~slidescope.workflows.pipeline.SlidePrediction`);
- ``cells.parquet``: every nucleus (``l0_x, l0_y, type, score, tile_id``), streamed batch by batch
  (:class:`CellsWriter`);
- ``maps.zarr``: OME-Zarr multiscale maps (class probabilities, attention, nuclei density);
- ``regions.geojson``: the tumour regions as polygons, and ``cells.geojson.gz``: the nuclei, both
  as QuPath imports them (``objectType``, ``classification`` with name and colour, ``measurements``);
- ``overlay.png``: the tumour probability over the slide's thumbnail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SLIDE_FILES", "PREDICTION_KEY", "CellsWriter", "write_slide_outputs", "read_prediction", "summary_of"]

#: The files of a complete slide folder; ``prediction.json`` is written last.
SLIDE_FILES = ("tiles.parquet", "cells.parquet", "maps.zarr", "regions.geojson", "cells.geojson.gz", "overlay.png",
               "prediction.json")
#: Key that marks a ``prediction.json`` as a batch slide's (its value is the format version).
PREDICTION_KEY = "slidescope_slide_prediction"
#: Nucleus outline radius in the QuPath GeoJSON, µm.
NUCLEUS_RADIUS_UM = 3.0


def _cell_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("l0_x", pa.float64()), ("l0_y", pa.float64()), ("type", pa.string()),
                      ("score", pa.float32()), ("tile_id", pa.int64())])


class CellsWriter:
    """``cells.parquet`` written a batch at a time (a row group each), so a slide's nuclei never sit in memory."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.rows = 0
        self._writer = pq.ParquetWriter(str(path), _cell_schema())

    def __call__(self, cells: pd.DataFrame) -> None:
        import pyarrow as pa

        if not len(cells):
            return
        table = pa.Table.from_pandas(cells[["l0_x", "l0_y", "type", "score", "tile_id"]].astype(
            {"l0_x": np.float64, "l0_y": np.float64, "type": str, "score": np.float32, "tile_id": np.int64}),
            schema=_cell_schema(), preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(cells)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def chunks(self) -> Any:
        """The written nuclei again, a row group at a time (after :meth:`close`)."""
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(str(self.path)).iter_batches(batch_size=65536):
            yield batch.to_pandas()


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def summary_of(prediction: Any, card: Any) -> dict[str, Any]:
    """The figures of a slide that ``prediction.json`` and its ``predictions.csv`` row share."""
    coarse = prediction.coarse
    return {
        "probability": prediction.probability, "label": prediction.label,
        "probabilities": prediction.probabilities,
        "tissue_area_mm2": prediction.tissue_area_mm2, "tumour_area_mm2": prediction.tumour_area_mm2,
        "analysed_area_mm2": prediction.analysed_area_mm2,
        "nuclei": prediction.nuclei, "nuclei_per_mm2": prediction.nuclei_per_mm2,
        "tiles": {"coarse": int(len(coarse)), "flagged": int(coarse.flagged.sum()),
                  "fine": int((prediction.tiles.scale == "cell").sum())},
        "seconds": {k: round(float(v), 3) for k, v in prediction.seconds.items()},
    }


def write_slide_outputs(folder: Path, prediction: Any, card: Any, record: dict[str, Any], cells: CellsWriter) -> None:
    """Write every file but ``cells.parquet`` (streamed already by ``cells``) into ``folder``, the manifest last.

    ``record`` holds what the batch knows of the slide (id, path, hashes, model, timings), merged
    into ``prediction.json``.
    """
    from slidescope.tiling import overlay
    from slidescope.wsi import open_slide

    from .geojson import region_features, write_cells_geojson_gz, write_geojson
    from .maps import write_ome_zarr_maps

    cells.close()
    _write_table(prediction.tiles, folder / "tiles.parquet")
    write_ome_zarr_maps(folder / "maps.zarr", prediction.maps, mpp=prediction.map_mpp, name=record["slide_id"])
    l0_per_px = prediction.map_mpp / min(prediction.mpp)
    tissue = card.tissue
    cascade = tissue.cascade_class
    colour = next(c.color for c in tissue.classes if c.name == cascade)
    regions = region_features(np.nan_to_num(prediction.maps[f"prob_{cascade}"], nan=0.0), l0_per_px=l0_per_px,
                              threshold=0.5, name=cascade.capitalize(), color=_rgb(colour), mpp=min(prediction.mpp),
                              extent=prediction.dimensions)
    write_geojson(folder / "regions.geojson", regions)
    classes = {c.name: _rgb(c.color) for c in card.cell.classes}
    write_cells_geojson_gz(folder / "cells.geojson.gz", cells.chunks(), classes=classes,
                           radius_l0=NUCLEUS_RADIUS_UM / min(prediction.mpp), mpp=min(prediction.mpp))
    with open_slide(prediction.path, mpp=record.get("slide_mpp")) as slide:
        heat = prediction.maps[f"prob_{cascade}"]
        overlay(slide, heat, vmin=0.0, vmax=1.0, out=folder / "overlay.png")
    data = {PREDICTION_KEY: 1, **record, "status": "ok", **summary_of(prediction, card), "regions": len(regions),
            "outputs": list(SLIDE_FILES)}
    (folder / "prediction.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, index=False)


def read_prediction(folder: Path) -> dict[str, Any] | None:
    """A slide folder's ``prediction.json`` when the folder is complete (every file there), else None."""
    try:
        with open(folder / "prediction.json", encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get(PREDICTION_KEY) != 1 or data.get("status") != "ok":
        return None
    if not all(os.path.lexists(folder / name) for name in SLIDE_FILES):
        return None
    return data
