"""Turn the raw figures of the tiling benchmark into judged :class:`Target` rows (thresholds here)."""

from __future__ import annotations

from typing import Any

from _tiling_report import Target

__all__ = ["mask_target", "scaling_targets", "end_to_end_target", "memory_target", "peer_target", "busy"]

_MIB = 1 << 20


def busy(*runs: list[float] | float) -> str:
    """How busy other programs kept the machine during the runs behind a figure (max, in cores)."""
    values = [v for r in runs for v in (r if isinstance(r, list) else [r])]
    return f"other programs busy up to {max(values):.2f} cores" if values else ""


def mask_target(mask: dict[str, Any]) -> Target:
    """(4) The slower of the two slides' median ``tissue_mask`` time, under 1 s."""
    worst = max(m["seconds"]["median"] for m in mask.values())
    detail = ", ".join(f"{name} {m['seconds']['median']:.3f} s (read level {m['read_level']}, "
                       f"{'x'.join(map(str, m['read_level_dimensions']))} px)" for name, m in mask.items())
    return Target("4", "tissue_mask per slide (slowest)", worst, 1.0, "<", "s", detail)


def scaling_targets(s: dict[str, Any]) -> list[Target]:
    """(1a) 2 workers >= 1.7x the tiles/s of 1; (1b) 1 worker <= 1.15x the plain loop's time."""
    speedup = s["dask2_tiles_per_s"] / s["dask1_tiles_per_s"]
    overhead = s["dask1_s"]["median"] / s["loop_s"]["median"]
    common = f"{s['tiles']} tiles in {s['batches']} batches of {s['batch_size']}"
    return [
        Target("1a", "2 workers vs 1 worker, tiles/s", speedup, 1.7, ">=", "x",
               f"{s['dask2_tiles_per_s']:.0f} vs {s['dask1_tiles_per_s']:.0f} tiles/s; {common}; "
               + busy(s["outside_cores"]["dask1"], s["outside_cores"]["dask2"])),
        Target("1b", "Dask 1 worker vs plain loop, time", overhead, 1.15, "<=", "x",
               f"{s['dask1_s']['median']:.2f} s vs {s['loop_s']['median']:.2f} s; same results: {s['same_results']}; "
               + busy(s["outside_cores"]["loop"], s["outside_cores"]["dask1"])),
    ]


def end_to_end_target(e: dict[str, Any]) -> Target:
    """(2) The 25 % tissue slide's pipeline time <= 0.4x the all-tissue slide's."""
    ratio = e["sparse"]["seconds"]["median"] / e["dense"]["seconds"]["median"]
    return Target("2", "25 % tissue vs all tissue, end to end", ratio, 0.4, "<=", "x",
                  f"{e['sparse']['seconds']['median']:.2f} s ({e['sparse']['tiles']} tiles) vs "
                  f"{e['dense']['seconds']['median']:.2f} s ({e['dense']['tiles']} tiles), 2 workers; "
                  + busy(e["sparse"]["outside_cores"], e["dense"]["outside_cores"]))


def memory_target(m: dict[str, Any]) -> Target:
    """(3) Driver + workers peak RSS on the large slide within 15 % of the small slide's."""
    large, small = m["large"], m["small"]
    detail = (f"driver+workers {large['sum_maxrss'] / _MIB:.0f} vs {small['sum_maxrss'] / _MIB:.0f} MiB "
              f"(driver {large['driver_maxrss'] / _MIB:.0f} vs {small['driver_maxrss'] / _MIB:.0f}, "
              f"worker max {max(large['worker_maxrss']) / _MIB:.0f} vs {max(small['worker_maxrss']) / _MIB:.0f}; "
              f"sampled total {large['sampled_peak'] / _MIB:.0f} vs {small['sampled_peak'] / _MIB:.0f}); "
              f"{large['tiles']} vs {small['tiles']} tiles")
    return Target("3", "peak RSS large vs small slide", large["sum_maxrss"] / small["sum_maxrss"], 1.15, "<=",
                  "x", detail)


def peer_target(key: str, r: dict[str, Any], what: str) -> Target:
    """(5) Our tiles/s on one core >= 3x histolab's on the same tiles (2 workers shown too)."""
    return Target(
        key, f"vs histolab, {what}, same 1 core", r["ratio_1core"], 3.0, ">=", "x",
        f"{r['ours_1core_tiles_per_s']:.0f} vs {r['peer']['tiles_per_s']:.1f} tiles/s over {r['tiles']} tiles "
        f"(same tiles: {r['same_tiles']}); ours on 2 workers {r['ours_2workers_tiles_per_s']:.0f} tiles/s "
        f"= {r['ratio_2workers']:.1f}x; " + busy(r["peer"]["outside_cores"], r["ours_outside_cores"]))
