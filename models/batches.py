"""Training batches: read planned tiles, augment them, render the cell model's targets.

A :class:`BatchMaker` is small and picklable (the tile table, the nuclei of each slide, the
augmentation and the seed); the loader sends it once to each worker process, which opens its
slides once (through the slide cache) and then turns keys ``(epoch, batch)`` into batch dicts of
numpy arrays (the format :mod:`slidescope.models.trainer` documents). A batch is a pure function of
its key: the tiles come from :func:`~slidescope.models.sampling.epoch_batches`, the augmentation
from a generator seeded by ``(seed, epoch, batch)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .augment import NO_AUGMENTATION, Augmentation
from .sampling import epoch_batches, validation_batches

__all__ = ["BatchMaker", "render_targets", "VALIDATION"]

#: The epoch part of a validation key: validation batches are every tile once, unaugmented.
VALIDATION = -1


def render_targets(points: np.ndarray, types: np.ndarray, size: int, sigma: float,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The cell model's targets for nuclei at ``points`` (``(K, 2)`` x, y in tile pixels).

    Returns ``heatmap`` float32 ``(size, size)``, the maximum of Gaussian blobs of ``sigma`` px
    centred on the pixel holding each nucleus (exactly 1.0 there), and ``types`` int64
    ``(size, size)``, the type of the nearest nucleus within ``radius`` px, ``-1`` elsewhere.
    Nuclei whose centre pixel lies outside the tile still mark the pixels they reach.
    """
    heatmap = np.zeros((size, size), np.float32)
    labels = np.full((size, size), -1, np.int64)
    nearest = np.full((size, size), np.inf, np.float32)
    reach = int(np.ceil(max(3 * sigma, radius)))
    for (x, y), kind in zip(np.floor(points + 0.5).astype(np.int64), types):
        x0, x1, y0, y1 = max(0, x - reach), min(size, x + reach + 1), max(0, y - reach), min(size, y + reach + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1]
        distance2 = ((gx - x) ** 2 + (gy - y) ** 2).astype(np.float32)
        np.maximum(heatmap[y0:y1, x0:x1], np.exp(-distance2 / (2 * sigma * sigma)), out=heatmap[y0:y1, x0:x1])
        closer = (distance2 <= radius * radius) & (distance2 < nearest[y0:y1, x0:x1])
        nearest[y0:y1, x0:x1][closer] = distance2[closer]
        labels[y0:y1, x0:x1][closer] = kind
    return heatmap, labels


@dataclass
class BatchMaker:
    """Makes the batches of one split of a training set (see the module docstring).

    Attributes
    ----------
    task : str
        ``"tissue"`` or ``"cell"``.
    tiles : pandas.DataFrame
        One row a tile: ``slide`` (path), ``read_x, read_y, read_w, read_h`` (the level-0 box to
        read, context included) and ``label`` (class index; the cell model balances on it too).
    mpp : float
        Resolution to read at (the card's).
    size : int
        Edge of the tiles read (the card's tile plus twice its context).
    batch_size : int
    seed : int
    augmentation : Augmentation
        Applied to training batches only.
    nuclei : dict
        Cell model: slide path -> ``(xy (K, 2) float64 level-0, type (K,) int64)``.
    sigma, radius : float
        Cell targets: Gaussian sigma and type radius in tile pixels.
    slide_mpp : dict
        Level-0 mpp to pass when opening a slide that lacks it (path -> mpp).
    balanced : bool
        Class-balanced sampling of training batches.
    steps : int, optional
        Batches per training epoch (default: tiles // batch_size).
    crop : int, optional
        Training batches: a random ``crop`` px window of each augmented tile (the models are fully
        convolutional; smaller windows make steps cheaper). Validation batches keep whole tiles.
    """

    task: str
    tiles: pd.DataFrame
    mpp: float
    size: int
    batch_size: int
    seed: int
    augmentation: Augmentation = NO_AUGMENTATION
    nuclei: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sigma: float = 2.0
    radius: float = 6.0
    slide_mpp: dict[str, float] = field(default_factory=dict)
    balanced: bool = True
    steps: int | None = None
    crop: int | None = None

    def __post_init__(self) -> None:
        self._slides: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_slides"] = {}  # open slides stay in their process
        return state

    # -- keys ------------------------------------------------------------------------------

    def train_keys(self, epoch: int) -> list[tuple[int, int]]:
        """The keys of training epoch ``epoch`` (0-based)."""
        count = len(epoch_batches(self.tiles.label.to_numpy(), self.batch_size, epoch, self.seed,
                                  balanced=self.balanced, steps=self.steps))
        return [(epoch, b) for b in range(count)]

    def validation_keys(self) -> list[tuple[int, int]]:
        return [(VALIDATION, b) for b in range(len(validation_batches(len(self.tiles), self.batch_size)))]

    def indices(self, key: tuple[int, int]) -> np.ndarray:
        epoch, batch = key
        if epoch == VALIDATION:
            return validation_batches(len(self.tiles), self.batch_size)[batch]
        return epoch_batches(self.tiles.label.to_numpy(), self.batch_size, epoch, self.seed,
                             balanced=self.balanced, steps=self.steps)[batch]

    # -- batches ---------------------------------------------------------------------------

    def _slide(self, path: str) -> Any:
        slide = self._slides.get(path)
        if slide is None:
            from slidescope.wsi import open_slide

            slide = self._slides[path] = open_slide(path, mpp=self.slide_mpp.get(path))
        return slide

    def read(self, rows: pd.DataFrame) -> np.ndarray:
        """uint8 ``(N, size, size, 3)`` of ``rows``, slide by slide, in row order."""
        images = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        positions = np.arange(len(rows))
        for path, group in rows.groupby("slide", sort=False):
            where = positions[(rows.slide == path).to_numpy()]
            locations = group[["read_x", "read_y"]].to_numpy(np.int64)
            images[where] = self._slide(str(path)).read_tiles(locations, (self.size, self.size), mpp=self.mpp)
        return images

    def __call__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        """The batch of ``key``: ``(epoch, batch)``, or ``(VALIDATION, batch)``."""
        rows = self.tiles.iloc[self.indices(key)]
        images = self.read(rows)
        training = key[0] != VALIDATION
        rng = np.random.default_rng([self.seed, key[0] + 1, key[1], 0xBA7C])
        augmentation = self.augmentation if training else NO_AUGMENTATION
        side = self.crop if (training and self.crop is not None and self.crop < self.size) else self.size
        out = np.empty((len(rows), side, side, 3), np.uint8)
        if self.task == "tissue":
            for i in range(len(images)):
                out[i] = self._cropped(augmentation.apply(images[i], rng)[0], None, side, rng)[0]
            return {"images": out, "labels": rows.label.to_numpy(np.int64)}
        heatmaps = np.empty((len(rows), side, side), np.float32)
        types = np.empty((len(rows), side, side), np.int64)
        for i, row in enumerate(rows.itertuples(index=False)):
            points, kinds = self.tile_points(row)
            image, points = augmentation.apply(images[i], rng, points)
            out[i], points = self._cropped(image, points, side, rng)
            heatmaps[i], types[i] = render_targets(points, kinds, side, self.sigma, self.radius)
        return {"images": out, "heatmap": heatmaps, "types": types}

    def _cropped(self, image: np.ndarray, points: np.ndarray | None, side: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """A random ``side`` px window of ``image`` and the points moved into it (the whole tile when it fits)."""
        if side >= image.shape[0]:
            return image, points
        x0, y0 = (int(v) for v in rng.integers(0, image.shape[0] - side + 1, size=2))
        moved = None if points is None else points - (x0, y0)
        return image[y0:y0 + side, x0:x0 + side], moved

    def tile_points(self, row: Any) -> tuple[np.ndarray, np.ndarray]:
        """The nuclei in (or within reach of) a tile, in tile pixel coordinates."""
        xy, kinds = self.nuclei.get(row.slide, (np.zeros((0, 2)), np.zeros(0, np.int64)))
        per_px_x, per_px_y = row.read_w / self.size, row.read_h / self.size
        margin = (3 * self.sigma + 1) * max(per_px_x, per_px_y)
        inside = ((xy[:, 0] >= row.read_x - margin) & (xy[:, 0] < row.read_x + row.read_w + margin)
                  & (xy[:, 1] >= row.read_y - margin) & (xy[:, 1] < row.read_y + row.read_h + margin))
        points = np.column_stack([(xy[inside, 0] - row.read_x) / per_px_x - 0.5,
                                  (xy[inside, 1] - row.read_y) / per_px_y - 0.5])
        return points, kinds[inside]
