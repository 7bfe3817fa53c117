"""The built-in default job: generated slides, their info, a timed tile read, and tiling.

For each generated slide: its info, tissue mask, a two-scale tile plan, a Dask read of the
tissue tiles with a stitched heatmap, and the read throughput against OpenSlide. Later issues
grow this into the full batch run (models, reports); it needs no data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import numpy as np

from slidescope.wsi import open_slide
from slidescope.wsi.synthetic import make_slide

from .demo_tiling import run_tiling_demo
from .info import format_summary, slide_summary

__all__ = ["run_demo"]


#: Tiles per read_tiles call, as the tiling tasks use them.
BATCH = 128


def _tiles_per_second(read, count: int, rounds: int = 3) -> float:
    """Best of ``rounds`` timings (the first warms the page cache and the decoder)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - start)
    return count / best


def _in_batches(read, locations: np.ndarray) -> None:
    for start in range(0, len(locations), BATCH):
        read(locations[start:start + BATCH])


def run_demo(out_dir: Path, *, slides: int = 2, width: int = 12000, height: int = 9000, tiles: int = 512,
             seed: int = 0, stream: TextIO) -> dict[str, float]:
    """Generate ``slides`` synthetic slides in ``out_dir`` and read ``tiles`` tiles from each.

    Returns
    -------
    dict
        Tiles per second of ``read_tiles`` at level 0 (aligned) and at 0.5 µm/px (unaligned),
        and of a plain ``openslide.read_region`` loop on the same aligned tiles.
    """
    import openslide

    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[float]] = {"aligned": [], "unaligned_0.5mpp": [], "openslide_loop": []}
    for index in range(slides):
        path = out_dir / f"demo-{index}.svs"
        start = time.perf_counter()
        made = make_slide(path, width, height, seed=seed + index, tumour=index % 2 == 0)
        print(f"generated {made.path} in {time.perf_counter() - start:.1f} s", file=stream)
        with open_slide(path) as slide:
            print(format_summary(slide_summary(slide)), file=stream)
            tile_w, tile_h = slide.levels[0].tile_size or (256, 256)
            rng = np.random.default_rng(seed)
            grid = np.stack(np.meshgrid(np.arange(width // tile_w), np.arange(height // tile_h)), -1).reshape(-1, 2)
            picked = grid[rng.permutation(len(grid))[:tiles]] * (tile_w, tile_h)
            figures["aligned"].append(_tiles_per_second(
                lambda: _in_batches(lambda chunk: slide.read_tiles(chunk, (tile_w, tile_h)), picked), len(picked)))
            corners = rng.integers(0, (width - 448, height - 448), size=(len(picked), 2))
            figures["unaligned_0.5mpp"].append(_tiles_per_second(
                lambda: _in_batches(lambda chunk: slide.read_tiles(chunk, (224, 224), mpp=0.5), corners),
                len(corners)))
            run_tiling_demo(slide, out_dir / path.stem, stream=stream)
            reference = openslide.OpenSlide(str(path))
            try:
                figures["openslide_loop"].append(_tiles_per_second(
                    lambda: [np.asarray(reference.read_region((int(x), int(y)), 0, (tile_w, tile_h)))[..., :3]
                             for x, y in picked],
                    len(picked)))
            finally:
                reference.close()
    summary = {name: float(np.mean(values)) for name, values in figures.items()}
    print(
        f"read throughput (one thread, batches of {BATCH}, best of 3): {summary['aligned']:.0f} tiles/s aligned "
        f"({summary['aligned'] / summary['openslide_loop']:.1f}x an openslide.read_region loop at "
        f"{summary['openslide_loop']:.0f} tiles/s), {summary['unaligned_0.5mpp']:.0f} tiles/s for 224 px at 0.5 µm/px",
        file=stream,
    )
    return summary
