"""Batch runs on Dask, outputs a lab opens, reports, the command line and the Python API.

>>> from slidescope.workflows import run_batch, Pipeline             # doctest: +SKIP
>>> table = run_batch(["slides/"], "results/")                         # doctest: +SKIP
>>> prediction = Pipeline().predict("slide.svs")                       # doctest: +SKIP

Names are imported on first use, so ``import slidescope.workflows`` (and with it the command line)
stays fast and loads neither Dask nor a framework.
"""

from __future__ import annotations

import importlib
from typing import Any

from slidescope.wsi import errors as _wsi

from .errors import ConfigurationError, InputError, SlideFailure, WorkflowError

_wsi_errors = list(_wsi.__all__)
globals().update({name: getattr(_wsi, name) for name in _wsi_errors})  # the one hierarchy, re-exported

#: Public name -> module that defines it (imported on first use).
_LAZY = {
    "run_batch": "batch", "BatchEvents": "batch", "prediction_columns": "batch", "configuration_hash": "batch",
    "Pipeline": "pipeline", "Settings": "pipeline", "SlidePrediction": "pipeline",
    "SlideInput": "inputs", "resolve_inputs": "inputs",
    "write_report": "report", "dry_run": "dry_run",
    "read_ome_zarr_maps": "maps", "read_geojson": "geojson",
}

__all__ = [*_wsi_errors, "WorkflowError", "InputError", "ConfigurationError", "SlideFailure", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slidescope.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
