"""Peer side of the tiling benchmark: histolab's GridTiler, timed in its own virtual environment.

Run with the peer interpreter (``bench/.venv-peer/bin/python``), never the project's: histolab
pins old numpy / scikit-image / openslide-python and is not a project dependency. This file
imports nothing from slidescope.

What is timed, exactly: GridTiler's own tile loop (``GridTiler._tiles_generator``: grid
coordinates, then ``Slide.extract_tile`` per tile) with ``check_tissue=False`` and an extraction
mask that is all tissue, so every grid tile is extracted; each tile's PIL image is converted to an
``(H, W, 3)`` uint8 numpy array, as a numpy pipeline needs it. Tiles are *not* saved as PNG
(``GridTiler.extract`` would do that; writing files is not what is compared). The mask is built
before the clock starts. With ``--mpp`` histolab reads through large_image at that resolution;
with ``--level`` through OpenSlide at that level.

Prints one JSON object: tiles, seconds, tiles_per_s, versions, and writes the level-0 top-left
corners of the tiles, in extraction order, to ``--coords-out`` (an ``.npy`` of int64 ``(N, 2)``),
so the slidescope side reads exactly the same tiles.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slide")
    parser.add_argument("--tile", type=int, default=256, help="tile edge in output pixels")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--level", type=int, help="pyramid level to tile (OpenSlide read_region)")
    group.add_argument("--mpp", type=float, help="target µm/px (histolab reads through large_image)")
    parser.add_argument("--coords-out", required=True, help="where to write the (N, 2) level-0 corners")
    parser.add_argument("--limit", type=int, default=0, help="extract at most this many tiles (0: all)")
    args = parser.parse_args(argv)

    import histolab
    import openslide
    import PIL
    from histolab.masks import BinaryMask
    from histolab.slide import Slide
    from histolab.tiler import GridTiler

    class WholeSlideMask(BinaryMask):
        """Every pixel is tissue: GridTiler then keeps every grid tile (no tissue filtering)."""

        def _mask(self, slide: Slide) -> np.ndarray:
            width, height = slide.dimensions
            return np.ones((max(1, height // 64), max(1, width // 64)), dtype=bool)

    use_largeimage = args.mpp is not None
    slide = Slide(args.slide, processed_path="/nonexistent-histolab-output", use_largeimage=use_largeimage)
    tiler = GridTiler((args.tile, args.tile), level=args.level or 0, check_tissue=False, mpp=args.mpp)
    # What GridTiler.extract does before its loop (tile size and overlap at the read level).
    tiler._validate_level(slide)
    tiler.tile_size = tiler._tile_size(slide)
    tiler.pixel_overlap = int(tiler._scale_factor(slide) * tiler.pixel_overlap)
    tiler._validate_tile_size(slide)
    mask = WholeSlideMask()
    mask(slide)

    coords: list[tuple[int, int]] = []
    shape = None
    start = time.perf_counter()
    for tile, tile_coords in tiler._tiles_generator(slide, mask):
        pixels = np.asarray(tile.image.convert("RGB"))
        shape = pixels.shape
        coords.append((int(tile_coords.x_ul), int(tile_coords.y_ul)))
        if args.limit and len(coords) >= args.limit:
            break
    seconds = time.perf_counter() - start

    np.save(args.coords_out, np.asarray(coords, dtype=np.int64).reshape(-1, 2))
    print(json.dumps({
        "peer": "histolab.GridTiler",
        "tiles": len(coords),
        "seconds": seconds,
        "tiles_per_s": len(coords) / seconds if seconds > 0 else None,
        "tile_shape": list(shape) if shape else None,
        "read_path": "large_image getRegion (mpp)" if use_largeimage else f"openslide read_region (level {args.level})",
        "versions": {"histolab": histolab.__version__, "openslide-python": openslide.__version__,
                     "openslide": openslide.__library_version__, "pillow": PIL.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
