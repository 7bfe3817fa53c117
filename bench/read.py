"""Read benchmark: tiles per second of slidescope's reader against OpenSlide, on one thread.

What is measured, on the *same* level-0 tiles for every reader (unique tiles, no repeats, OpenSlide's
tile cache switched off, so no reader ever gets a cache hit; the OS page cache is warm for all):

Tile-aligned reads (tile = the stored tile size), on a generated 40,000 x 30,000 Aperio-style slide
(``make_slide``, cached under ``bench/.data/``) and on the real ``CMU-1-Small-Region.svs`` (all its
108 whole stored tiles; found through ``SLIDESCOPE_TEST_DATA``, default ``<repo>/../shared/data``):

  (a) raw     ``os.pread`` of the stored tile bytes + ``imagecodecs.jpeg8_decode`` (libjpeg-turbo) with
              the page's JPEGTables and Aperio's RGB colour space, into a preallocated buffer: the
              per-core limit of any reader of these files.
  (b) openslide ``OpenSlide.read_region`` loop, two variants: the PIL RGBA image alone, and that image
              as an RGB numpy array (``cv2.cvtColor(np.asarray(img), COLOR_RGBA2RGB)``, the fastest
              conversion we found). The numpy variant is **the baseline**: it is what a user needs.
  (c) slidescope ``open_slide(path, backend="auto")`` (which picks the tiff backend), ``read_tiles`` in
              batches of 128 tiles.
  (d) slidescope ``backend="openslide"`` (bypasses PIL), ``read_tiles`` in batches of 128 (extra line).

Targets: (c)/(b) >= 5 and (c)/(a) >= 0.6. (a)/(b) is printed too: it is the ceiling of (c)/(b).

Unaligned reads on the generated 0.25 mpp slide: 224 x 224 px at 0.5 mpp from random non-aligned
level-0 positions. slidescope: ``read_tiles(locations, (224, 224), mpp=0.5)`` in batches of 128;
baseline: ``OpenSlide.read_region`` of 448 x 448 at level 0 + ``np.asarray`` + ``cv2.resize`` to
224 (INTER_AREA). Each box lies in its own 3 x 3 block of stored tiles, so no two boxes share a
stored tile (no reader gains from overlap). Target: slidescope / baseline >= 2.

Reduced-resolution decoding (issue 11), on the same generated slide, boxes on the read's tile grid as a
tile plan lays them (random distinct grid cells, so no two boxes share a stored tile):

  (R1) 224 x 224 px at 0.5 mpp from the 0.25 mpp level 0 (a 448 px level box, JPEG tiles decoded at 1/2);
  (R2) 256 x 256 px at 2 mpp from the 1 mpp level 1 (a 512 px level box, decoded at 1/2);
  (R3) for information, 112 px at twice CMU-1-Small-Region.svs's 0.499 mpp (a real Aperio file,
       whose RGB components are all stored at full resolution: no softening, see _jpeg_scaled).

  (e) today's reader: ``open_slide(path, exact_resample=True).read_tiles`` (full decode + INTER_AREA);
  (f) ``open_slide(path).read_tiles`` (the default: reduced-resolution decoding);
  (b) ``OpenSlide.read_region`` of the level box + ``np.asarray`` + ``cv2.resize`` (INTER_AREA).

Targets: (f)/(e) >= 1.8 and (f)/(b) >= 7.5 for both. The largest per-channel difference (f) vs (e)
is printed. For information, (f)/(e) on random non-aligned 0.5 mpp boxes (which reduced decoding
leaves to the full decode, see ``slidescope.wsi.reduced``) shows what such boxes cost now.

Timing: one warm-up pass per reader (opens files, fills the page cache), then ``--repeat`` rounds;
each round times every reader once, interleaved, so background load hits all readers alike. A
reader's figure is its best round; ratios are taken between figures of the same run. Everything is
pinned to one thread. The table goes to stdout, the figures to ``bench/results/read.json``.

Run from the repository root: ``.venv/bin/python bench/read.py [--quick] [--out FILE]``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy / OpenCV load their thread pools

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import imagecodecs
import numpy as np
import openslide
import simplejpeg
import tifffile

from slidescope.wsi import open_slide
from slidescope.wsi.synthetic import make_slide

cv2.setNumThreads(1)

REPO = Path(__file__).resolve().parent.parent
BATCH = 128
UNALIGNED_OUT, UNALIGNED_L0 = (224, 224), 448  # 224 px at 0.5 mpp read from 448 px at 0.25 mpp
TARGET_VS_OPENSLIDE, TARGET_VS_RAW, TARGET_UNALIGNED = 5.0, 0.6, 2.0
TARGET_REDUCED_VS_TODAY, TARGET_REDUCED_VS_OPENSLIDE = 1.8, 7.5
_RGB = 2  # TIFF Photometric RGB: Aperio JPEG tiles hold RGB samples with no colour transform

Reader = Callable[[np.ndarray], None]  # reads every (x, y) level-0 location of an (N, 2) array


# ----------------------------------------------------------------------------- inputs


def synthetic_slide(quick: bool, seed: int) -> Path:
    """The generated slide, made once and cached under bench/.data (about a minute at full size)."""
    width, height = (8000, 6000) if quick else (40000, 30000)
    path = REPO / "bench" / ".data" / f"synthetic-{width}x{height}-seed{seed}.svs"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.relative_to(REPO)} (once; cached) ...", flush=True)
        make_slide(path, width, height, seed=seed)
    return path


def cmu_slide() -> Path | None:
    """The real Aperio file, or None where the shared data folder is absent."""
    folder = Path(os.environ.get("SLIDESCOPE_TEST_DATA", REPO.parent / "shared" / "data"))
    path = folder / "CMU-1-Small-Region.svs"
    return path if path.is_file() else None


@dataclass(frozen=True)
class Layout:
    """Level 0 of a tiled TIFF: size, tile size, where the stored tiles are and how they are coded."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    compression: int
    offsets: np.ndarray
    counts: np.ndarray
    tables: bytes | None
    colorspace: int | None


def level0_layout(path: Path) -> Layout:
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[0].keyframe
        rgb_jpeg = page.photometric == _RGB and not page.is_jfif  # is_jfif reads the file: inside the with
        return Layout(int(page.imagewidth), int(page.imagelength), int(page.tilewidth), int(page.tilelength),
                      int(page.compression), np.asarray(page.dataoffsets), np.asarray(page.databytecounts),
                      page.jpegtables, _RGB if rgb_jpeg else None)


def aligned_locations(path: Path, count: int | None, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """Level-0 corners of ``count`` distinct whole stored tiles in random order (all when None)."""
    page = level0_layout(path)
    tw, th = page.tile_w, page.tile_h
    cols, rows = page.width // tw, page.height // th  # whole tiles only
    picks = rng.permutation(cols * rows)[: count or cols * rows]
    return np.stack([picks % cols * tw, picks // cols * th], axis=1).astype(np.int64), (tw, th)


def unaligned_locations(path: Path, count: int, rng: np.random.Generator) -> np.ndarray:
    """Random non-aligned 448 px boxes, each inside its own block of 3 x 3 stored tiles."""
    page = level0_layout(path)
    tile, block = page.tile_w, 3 * page.tile_w
    if UNALIGNED_L0 + tile - 1 > block or page.tile_h != tile:
        raise SystemExit(f"{path}: expected square tiles of at least {UNALIGNED_L0 // 2} px, got {tile}x{page.tile_h}")
    cols, rows = page.width // block, page.height // block
    picks = rng.permutation(cols * rows)[:count]
    offsets = rng.integers(1, tile, size=(len(picks), 2))  # never 0: the box is never tile-aligned
    return np.stack([picks % cols * block, picks // cols * block], axis=1) + offsets


def grid_locations(path: Path, level: int, box: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Level-0 corners of ``count`` random distinct cells of a grid of ``box`` px at ``level``, from the origin."""
    with open_slide(path) as slide:
        lvl = slide.levels[level]
        downsample = round(lvl.downsample)
    cols, rows = lvl.width // box, lvl.height // box
    picks = rng.permutation(cols * rows)[:count]
    return np.stack([picks % cols, picks // cols], axis=1).astype(np.int64) * box * downsample


# ----------------------------------------------------------------------------- readers


def raw_reader(path: Path, stack: contextlib.ExitStack) -> Reader:
    """(a) pread + libjpeg-turbo decode of the stored tiles, into one reused buffer."""
    page = level0_layout(path)
    if page.compression != 7:
        raise SystemExit(f"{path}: level 0: expected JPEG tiles (compression 7), got {page.compression}")
    tw, th, across = page.tile_w, page.tile_h, -(-page.width // page.tile_w)
    fd, buffer = os.open(path, os.O_RDONLY), np.empty((th, tw, 3), np.uint8)
    stack.callback(os.close, fd)

    def read(locations: np.ndarray) -> None:
        for index in (locations[:, 1] // th * across + locations[:, 0] // tw).tolist():
            data = os.pread(fd, int(page.counts[index]), int(page.offsets[index]))
            imagecodecs.jpeg8_decode(data, tables=page.tables, colorspace=page.colorspace, outcolorspace=_RGB,
                                     out=buffer)

    return read


def uncached_openslide(path: Path, stack: contextlib.ExitStack) -> openslide.OpenSlide:
    """An OpenSlide handle without tile cache: every read decodes, as for the other readers."""
    handle = stack.enter_context(openslide.OpenSlide(str(path)))
    handle.set_cache(openslide.OpenSlideCache(0))
    return handle


def openslide_reader(path: Path, size: tuple[int, int], to_numpy: bool, stack: contextlib.ExitStack) -> Reader:
    """(b) OpenSlide.read_region, the PIL image alone or converted to RGB numpy."""
    handle = uncached_openslide(path, stack)

    def read(locations: np.ndarray) -> None:
        for x, y in locations.tolist():
            image = handle.read_region((x, y), 0, size)
            if to_numpy:
                cv2.cvtColor(np.asarray(image), cv2.COLOR_RGBA2RGB)

    return read


def openslide_resize_reader(path: Path, stack: contextlib.ExitStack) -> Reader:
    """Unaligned baseline: read_region 448 px at level 0 + np.asarray + cv2.resize to 224 INTER_AREA."""
    handle = uncached_openslide(path, stack)

    def read(locations: np.ndarray) -> None:
        for x, y in locations.tolist():
            rgba = np.asarray(handle.read_region((x, y), 0, (UNALIGNED_L0, UNALIGNED_L0)))
            cv2.resize(rgba, UNALIGNED_OUT, interpolation=cv2.INTER_AREA)[..., :3]

    return read


def openslide_level_resize_reader(path: Path, level: int, box: int, out: int, stack: contextlib.ExitStack) -> Reader:
    """Reduced-case baseline: read_region of the level box + np.asarray + cv2.resize (INTER_AREA)."""
    handle = uncached_openslide(path, stack)

    def read(locations: np.ndarray) -> None:
        for x, y in locations.tolist():
            rgba = np.asarray(handle.read_region((x, y), level, (box, box)))
            cv2.resize(rgba, (out, out), interpolation=cv2.INTER_AREA)[..., :3]

    return read


def slidescope_reader(path: Path, backend: str, size: tuple[int, int], stack: contextlib.ExitStack,
                      exact_resample: bool = False, **where: Any) -> Reader:
    """(c)/(d)/(e)/(f) Slide.read_tiles in batches of 128."""
    slide = stack.enter_context(open_slide(path, backend=backend, exact_resample=exact_resample))
    expected = "tiff" if backend == "auto" else backend
    if slide.backend_name != expected:
        raise SystemExit(f"{path}: backend='{backend}': expected the {expected} backend, got {slide.backend_name}")
    if slide.backend_name == "openslide":  # private handle, reached only to turn its cache off as in (b)
        slide._backend()._slide.set_cache(openslide.OpenSlideCache(0))  # type: ignore[attr-defined]

    def read(locations: np.ndarray) -> None:
        for start in range(0, len(locations), BATCH):
            slide.read_tiles(locations[start : start + BATCH], size, **where)

    return read


def check_pixels(path: Path, locations: np.ndarray, size: tuple[int, int]) -> int:
    """Largest difference between slidescope's and OpenSlide's pixels on a few tiles (same work?)."""
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as handle:
        ours = slide.read_tiles(locations[:8], size, level=0).astype(np.int16)
        theirs = [np.asarray(handle.read_region((int(x), int(y)), 0, size))[..., :3] for x, y in locations[:8]]
    return int(np.abs(ours - np.stack(theirs)).max())


# ----------------------------------------------------------------------------- timing


def time_readers(readers: dict[str, Reader], locations: np.ndarray, rounds: int) -> dict[str, list[float]]:
    """Seconds per pass for each reader: one untimed warm-up, then ``rounds`` interleaved rounds."""
    for read in readers.values():
        read(locations[:16])
    times: dict[str, list[float]] = {name: [] for name in readers}  # one list of pass times per reader
    for _ in range(rounds):
        for name, read in readers.items():
            start = time.perf_counter()
            read(locations)
            times[name].append(time.perf_counter() - start)
    return times


def summarise(name: str, times: dict[str, list[float]], n: int, labels: dict[str, str],
              targets: list[tuple[str, str, float]]) -> dict[str, Any]:
    """Print a table for one case and return its figures (tiles/s from the best round)."""
    rate = {key: n / min(values) for key, values in times.items()}
    medians = {key: n / statistics.median(values) for key, values in times.items()}
    print(f"\n{name}  (N={n}, best of {len(next(iter(times.values())))} rounds)")
    print(f"  {'reader':<58}{'tiles/s':>9}{'median':>9}{'spread':>8}")
    for key, values in times.items():
        print(f"  {labels[key]:<58}{rate[key]:>9.0f}{medians[key]:>9.0f}{max(values) / min(values) - 1:>7.0%}")
    results = []
    for top, bottom, target in targets:
        ratio = rate[top] / rate[bottom]
        verdict = "info" if not target else ("PASS" if ratio >= target else "FAIL")
        goal = f">= {target:g}" if target > 0 else ""
        print(f"  {top + '/' + bottom:<8} = {ratio:5.2f}  {goal:<8} {verdict}")
        results.append({"ratio": f"{top}/{bottom}", "value": ratio, "target": target or None, "verdict": verdict})
    return {"case": name, "n": n, "tiles_per_s": rate, "median_tiles_per_s": medians, "seconds": times,
            "labels": labels, "ratios": results}


ALIGNED_LABELS = {
    "a": "(a) raw pread + imagecodecs.jpeg8_decode",
    "b_pil": "(b) openslide read_region -> PIL RGBA",
    "b": "(b) openslide read_region -> RGB numpy  [baseline]",
    "c": "(c) Slide.read_tiles, backend=auto (tiff), batch 128",
    "d": "(d) Slide.read_tiles, backend=openslide, batch 128",
}
UNALIGNED_LABELS = {"b": "(b) openslide 448 px + np.asarray + cv2.resize  [baseline]",
                    "c": "(c) Slide.read_tiles(mpp=0.5), tiff, batch 128"}
ALIGNED_TARGETS = [("c", "b", TARGET_VS_OPENSLIDE), ("c", "a", TARGET_VS_RAW), ("a", "b", 0.0), ("d", "b", 0.0),
                   ("b", "b_pil", 0.0)]


def aligned_case(name: str, path: Path, locations: np.ndarray, size: tuple[int, int], rounds: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        readers = {
            "a": raw_reader(path, stack),
            "b_pil": openslide_reader(path, size, False, stack),
            "b": openslide_reader(path, size, True, stack),
            "c": slidescope_reader(path, "auto", size, stack, level=0),
            "d": slidescope_reader(path, "openslide", size, stack, level=0),
        }
        times = time_readers(readers, locations, rounds)
    result = summarise(name, times, len(locations), ALIGNED_LABELS, ALIGNED_TARGETS)
    result["max_abs_diff_vs_openslide"] = diff = check_pixels(path, locations, size)
    print(f"  pixels: slidescope vs OpenSlide max |diff| = {diff} on 8 tiles (JPEG decoder tolerance)")
    return result


def unaligned_case(name: str, path: Path, locations: np.ndarray, rounds: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        readers = {"b": openslide_resize_reader(path, stack),
                   "c": slidescope_reader(path, "auto", UNALIGNED_OUT, stack, mpp=0.5)}
        times = time_readers(readers, locations, rounds)
    return summarise(name, times, len(locations), UNALIGNED_LABELS, [("c", "b", TARGET_UNALIGNED)])


REDUCED_LABELS = {"b": "(b) openslide level box + np.asarray + cv2.resize  [baseline]",
                  "e": "(e) Slide.read_tiles, exact_resample=True (today's)",
                  "f": "(f) Slide.read_tiles, reduced-resolution decoding"}
REDUCED_TARGETS = [("f", "e", TARGET_REDUCED_VS_TODAY), ("f", "b", TARGET_REDUCED_VS_OPENSLIDE), ("e", "b", 0.0)]


def reduced_case(name: str, path: Path, locations: np.ndarray, level: int, box: int, out: int, mpp: float,
                 rounds: int, baseline: bool = True, judged: bool = True) -> dict[str, Any]:
    """(R1)/(R2): reduced-resolution decoding against today's reader and OpenSlide on the same boxes."""
    size = (out, out)
    with contextlib.ExitStack() as stack:
        readers = {"e": slidescope_reader(path, "auto", size, stack, exact_resample=True, mpp=mpp),
                   "f": slidescope_reader(path, "auto", size, stack, mpp=mpp)}
        if baseline:
            readers = {"b": openslide_level_resize_reader(path, level, box, out, stack), **readers}
        times = time_readers(readers, locations, rounds)
    targets = REDUCED_TARGETS if baseline else [("f", "e", 0.0)]
    if not judged:
        targets = [(top, bottom, 0.0) for top, bottom, _ in targets]
    result = summarise(name, times, len(locations), REDUCED_LABELS, targets)
    with open_slide(path) as fast, open_slide(path, exact_resample=True) as exact:
        sample = locations[:64]
        diff = np.abs(fast.read_tiles(sample, size, mpp=mpp).astype(np.int16) - exact.read_tiles(sample, size, mpp=mpp))
    result["max_abs_diff_vs_exact"] = int(diff.max())
    result["mean_abs_diff_vs_exact"] = [round(float(v), 3) for v in diff.reshape(-1, 3).mean(axis=0)]
    print(f"  pixels: (f) vs (e) on 64 boxes: mean |diff| per channel {result['mean_abs_diff_vs_exact']}, "
          f"max {result['max_abs_diff_vs_exact']}")
    return result


# ----------------------------------------------------------------------------- main


def environment() -> dict[str, Any]:
    codecs = dict(item.split("-", 1) for item in imagecodecs.version().split(", ") if "-" in item)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
        "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
        "openslide": openslide.__library_version__, "openslide_python": openslide.__version__,
        "imagecodecs": imagecodecs.__version__, "libjpeg_turbo": codecs.get("libjpeg_turbo"),
        "simplejpeg": simplejpeg.__version__,
        "tifffile": tifffile.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small slide, few tiles: a smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "read.json", help="JSON output")
    parser.add_argument("--tiles", type=int, help="aligned tiles on the generated slide (default 1500; quick 200)")
    parser.add_argument("--repeat", type=int, help="timed rounds (default 5; quick 2; CMU, short, gets 4x)")
    parser.add_argument("--seed", type=int, default=0, help="slide and tile-choice seed")
    args = parser.parse_args(argv)
    n_tiles = args.tiles or (200 if args.quick else 1500)
    rounds = args.repeat or (2 if args.quick else 5)
    rng = np.random.default_rng(args.seed)

    env = environment()
    print(f"slidescope read benchmark - {env['date']}, {env['cpus']} CPUs, Python {env['python']}, "
          f"OpenSlide {env['openslide']}, libjpeg-turbo {env['libjpeg_turbo']}, one thread")
    synthetic = synthetic_slide(args.quick, args.seed)
    cases = []
    locations, tile = aligned_locations(synthetic, n_tiles, rng)
    cases.append(aligned_case(f"aligned {tile[0]}x{tile[1]} tiles, {synthetic.name}", synthetic, locations,
                              tile, rounds))
    cmu = cmu_slide()
    if cmu is None:
        print("\nCMU-1-Small-Region.svs not found (set SLIDESCOPE_TEST_DATA): real-file case skipped")
    else:
        locations, tile = aligned_locations(cmu, None, rng)
        cases.append(aligned_case(f"aligned {tile[0]}x{tile[1]} tiles, {cmu.name}", cmu, locations, tile,
                                  rounds * 4))
    locations = unaligned_locations(synthetic, max(1, n_tiles * 2 // 3), rng)
    cases.append(unaligned_case(f"unaligned 224 px at 0.5 mpp from 0.25 mpp, {synthetic.name}", synthetic,
                                locations, rounds))

    count = max(1, n_tiles // 3)
    cases.append(reduced_case(f"(R1) 224 px at 0.5 mpp from the 0.25 mpp level, grid boxes, {synthetic.name}",
                              synthetic, grid_locations(synthetic, 0, 448, count, rng), 0, 448, 224, 0.5, rounds))
    cases.append(reduced_case(f"(R2) 256 px at 2 mpp from the 1 mpp level, grid boxes, {synthetic.name}",
                              synthetic, grid_locations(synthetic, 1, 512, count, rng), 1, 512, 256, 2.0, rounds))
    if cmu is not None:  # a real Aperio file: RGB components at full resolution, nothing to soften
        with open_slide(cmu) as opened:
            mpp = 2 * opened.mpp[0]
        cases.append(reduced_case(f"(R3, info) 112 px at {mpp:g} mpp (2x), grid boxes, {cmu.name}", cmu,
                                  grid_locations(cmu, 0, 224, 200, rng), 0, 224, 112, mpp, rounds * 4, judged=False))
    cases.append(reduced_case(f"random non-aligned 224 px at 0.5 mpp (left to the full decode), {synthetic.name}",
                              synthetic, unaligned_locations(synthetic, count, rng), 0, 448, 224, 0.5, rounds,
                              baseline=False))

    verdicts = [r["verdict"] for case in cases for r in case["ratios"] if r["target"]]
    print(f"\ntargets: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"environment": env, "quick": args.quick, "rounds": rounds, "batch": BATCH, "cases": cases}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
