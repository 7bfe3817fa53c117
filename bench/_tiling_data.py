"""Slides for the tiling benchmark: generated once with :func:`make_slide`, cached on disk.

The cache folder (``bench/.data/`` by default) holds one ``.svs`` + ``.truth.npz`` per slide,
named for the arguments that made it, so a slide is regenerated only when its file is missing.
An 80,000 x 60,000 slide takes minutes to write; keep the folder between runs. It is not part of
the repository: the folder ignores itself (it writes a ``.gitignore`` of ``*``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from slidescope.wsi.synthetic import make_slide

__all__ = ["SlideCase", "DEFAULT_CACHE", "ensure_slide", "warm_page_cache"]

DEFAULT_CACHE = Path(__file__).resolve().parent / ".data"
_MPP = 0.25  # level 0 of a 40x scan; 0.5 µm/px tiles are then read from level 0 and halved


@dataclass(frozen=True)
class SlideCase:
    """Arguments of one generated slide."""

    name: str
    width: int
    height: int
    tissue_fraction: float
    seed: int = 0

    @property
    def file_name(self) -> str:
        percent = round(self.tissue_fraction * 100)
        return f"{self.name}-{self.width}x{self.height}-t{percent:03d}-s{self.seed}.svs"


def ensure_slide(case: SlideCase, cache: Path = DEFAULT_CACHE, log=print) -> tuple[Path, float | None]:
    """Path of the slide for ``case``, generating it if missing.

    Returns
    -------
    (path, seconds)
        ``seconds`` is how long generation took, or None when the cached file was used.
    """
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    path = cache / case.file_name
    if path.is_file() and path.with_name(path.stem + ".truth.npz").is_file():
        return path, None
    log(f"generating {path.name} (once; cached in {cache}) ...")
    start = time.perf_counter()
    make_slide(path, case.width, case.height, seed=case.seed, mpp=_MPP, tissue_fraction=case.tissue_fraction)
    seconds = time.perf_counter() - start
    log(f"  {seconds:.0f} s")
    return path, seconds


def warm_page_cache(path: str | os.PathLike[str], chunk: int = 8 << 20) -> int:
    """Read the file once so every timed case starts with it in the OS page cache.

    Without this the first case to touch a freshly opened file pays the disk and the later ones
    do not, which biases comparisons. Returns the number of bytes read.
    """
    total = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                return total
            total += len(data)
