"""What ``slidescope info`` reports about a slide, as a plain dict and as text."""

from __future__ import annotations

from typing import Any

from slidescope.wsi import Slide

__all__ = ["slide_summary", "format_summary"]


def _pair(values: tuple[float, float] | None) -> list[float] | None:
    return None if values is None else list(values)


def slide_summary(slide: Slide) -> dict[str, Any]:
    """A JSON-ready description: vendor, dimensions, levels, mpp, objective, associated images.

    ``mpp`` (of the slide and of each level) is ``None`` for a slide opened with
    ``require_mpp=False`` whose file has no resolution metadata.
    """
    return {
        "path": slide.path,
        "backend": slide.backend_name,
        "vendor": slide.vendor,
        "dimensions": list(slide.dimensions),
        "mpp": _pair(slide.mpp),
        "objective_power": slide.objective_power,
        "levels": [
            {
                "index": level.index,
                "dimensions": list(level.dimensions),
                "downsample": level.downsample,
                "mpp": _pair(level.mpp),
                "tile_size": list(level.tile_size) if level.tile_size else None,
            }
            for level in slide.levels
        ],
        "associated_images": {
            name: list(image.shape[1::-1]) for name, image in slide.associated_images.items()
        },
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable table of :func:`slide_summary`."""
    width, height = summary["dimensions"]
    objective = summary["objective_power"]
    mpp = summary["mpp"]
    lines = [
        f"{summary['path']}",
        f"  vendor            {summary['vendor']} (read with the {summary['backend']} backend)",
        f"  dimensions        {width} x {height} px",
        f"  mpp               {mpp[0]:.4f} x {mpp[1]:.4f} µm/px" if mpp else
        "  mpp               unknown (no resolution metadata; give it with --slide-mpp)",
        f"  objective power   {objective:g}x" if objective else "  objective power   unknown",
        "  levels",
        "    level  width x height      downsample   µm/px     tile",
    ]
    for level in summary["levels"]:
        w, h = level["dimensions"]
        tile = "x".join(map(str, level["tile_size"])) if level["tile_size"] else "-"
        level_mpp = f"{level['mpp'][0]:<8.4f}" if level["mpp"] else f"{'unknown':<8}"
        lines.append(f"    {level['index']:>5}  {w:>7} x {h:<9}  {level['downsample']:>10.3f}   {level_mpp}  {tile}")
    images = summary["associated_images"]
    listed = ", ".join(f"{name} ({w}x{h})" for name, (w, h) in images.items()) or "none"
    lines.append(f"  associated images {listed}")
    return "\n".join(lines)
