"""``combine_checkpoints``: several checkpoints into one, each under its own scope, for any architecture.

The merge the talk describes, without a graph to fill: each source's names are remapped (by default
:func:`~slidescope.merge.sources.standard_remap`: training state dropped, torch wrappers and
``module.`` stripped, names and layouts ported to the output's framework, the scope added), every
source planned against what its remap makes of it (so every entry is accounted for: mapped or
ignored with its reason), names colliding across sources refused, and the result written one
tensor at a time (:func:`~slidescope.merge.writing.write_checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from slidescope.wsi.errors import ParameterError

from .checkpoint import Checkpoint, TensorInfo
from .errors import RemapError
from .reading import read_checkpoint
from .remap import Remap
from .report import RemapReport, plan
from .sources import standard_remap
from .writing import WRITE_FORMATS, write_checkpoint

__all__ = ["combine_checkpoints", "FORMAT_FRAMEWORK"]

#: The names and layouts each output format is written in.
FORMAT_FRAMEWORK = {"safetensors": "torch", "torch": "torch", "tf": "tf"}


def combine_checkpoints(sources: Mapping[str, Any], out: Any, *, format: str,
                        remaps: Mapping[str, Remap] | None = None) -> dict[str, RemapReport]:
    """Write the checkpoints ``scope -> path or Checkpoint`` as one ``format`` checkpoint at ``out``.

    Returns each scope's report. Raises :class:`RemapError` (with a report listing every
    collision) when two sources would write one name, and whatever the readers and writer raise.
    """
    if format not in WRITE_FORMATS:
        raise ParameterError(f"format: expected one of {', '.join(WRITE_FORMATS)}, got {format!r}")
    if not sources:
        raise ParameterError("sources: expected at least one scope -> checkpoint, got none")
    framework = FORMAT_FRAMEWORK[format]
    entries: list[tuple[TensorInfo, Any]] = []
    owners: dict[str, str] = {}
    reports: dict[str, RemapReport] = {}
    opened: list[Checkpoint] = []
    try:
        for scope, source in sources.items():
            checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source)
            opened.append(checkpoint)
            own = checkpoint.framework if checkpoint.framework in ("torch", "tf") else framework
            remap = (remaps or {}).get(scope) or standard_remap(checkpoint, own, framework, scope)
            targets = []
            for mapped, info in zip(remap.map(checkpoint.infos), checkpoint.infos):
                if mapped.target is None:
                    continue
                shape = info.shape
                for transform in mapped.transforms:
                    shape = transform.shape(shape)
                targets.append(TensorInfo(mapped.target, shape, info.dtype, info.kind))
            mapping, reports[scope] = plan(checkpoint, remap, targets, strict=True, source_name=checkpoint.path,
                                           target_name=f"{os.fspath(out)}, scope {scope}")
            for info in targets:
                if info.name in owners:
                    report = RemapReport(checkpoint.path, os.fspath(out))
                    report.collisions.append({"target": info.name, "sources": [owners[info.name], scope]})
                    raise RemapError(f"{info.name}: written by the sources {owners[info.name]!r} and {scope!r}; give "
                                     f"them distinct scopes or rules", report)
                owners[info.name] = scope
                entries.append((info, _loader(checkpoint, mapping[info.name])))
        write_checkpoint(out, entries, format=format, metadata={"scopes": ",".join(sources)})
    finally:
        for checkpoint in opened:
            checkpoint.close()
    return reports


def _loader(checkpoint: Checkpoint, mapped: Any) -> Any:
    def load() -> Any:
        array = checkpoint[mapped.source]
        for transform in mapped.transforms:
            array = transform.apply(array)
        return array

    return load
