"""What ``slidescope info`` reports about a slide, as a plain dict and as text."""

from __future__ import annotations

from typing import Any

from slidescope.wsi import Slide

__all__ = ["slide_summary", "format_summary"]


def slide_summary(slide: Slide) -> dict[str, Any]:
    """A JSON-ready description: vendor, dimensions, levels, mpp, objective, associated images."""
    return {
        "path": slide.path,
        "backend": slide.backend_name,
        "vendor": slide.vendor,
        "dimensions": list(slide.dimensions),
        "mpp": list(slide.mpp),
        "objective_power": slide.objective_power,
        "levels": [
            {
                "index": level.index,
                "dimensions": list(level.dimensions),
                "downsample": level.downsample,
                "mpp": list(level.mpp),
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
    lines = [
        f"{summary['path']}",
        f"  vendor            {summary['vendor']} (read with the {summary['backend']} backend)",
        f"  dimensions        {width} x {height} px",
        f"  mpp               {summary['mpp'][0]:.4f} x {summary['mpp'][1]:.4f} µm/px",
        f"  objective power   {objective:g}x" if objective else "  objective power   unknown",
        "  levels",
        "    level  width x height      downsample   µm/px     tile",
    ]
    for level in summary["levels"]:
        w, h = level["dimensions"]
        tile = "x".join(map(str, level["tile_size"])) if level["tile_size"] else "-"
        lines.append(
            f"    {level['index']:>5}  {w:>7} x {h:<9}  {level['downsample']:>10.3f}   {level['mpp'][0]:<8.4f}  {tile}"
        )
    images = summary["associated_images"]
    listed = ", ".join(f"{name} ({w}x{h})" for name, (w, h) in images.items()) or "none"
    lines.append(f"  associated images {listed}")
    return "\n".join(lines)
