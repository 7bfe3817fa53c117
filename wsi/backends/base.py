"""The contract every slide backend fulfils: metadata plus a raw, in-bounds box read.

Backends know nothing of level selection, clipping, padding or resampling; the shared read
path in :mod:`slidescope.wsi.slide` does all of that once, for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..levels import SlideInfo

__all__ = ["SlideBackend", "Box", "composite_on_white", "composite_premultiplied_on_white"]

#: A box in one level's pixel space: ``(lvl_x, lvl_y, width, height)``.
Box = tuple[int, int, int, int]


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight (not premultiplied) RGBA over a white background, as OpenSlide shows glass.

    TIFF ExtraSamples 2 (unassociated alpha): ``colour * alpha + 255 * (1 - alpha)``.
    """
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def composite_premultiplied_on_white(rgba: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA over a white background: ``colour + (255 - alpha)``, saturating.

    TIFF ExtraSamples 1 (associated alpha), and 0 (unspecified), which libtiff and so
    OpenSlide also read as associated. The colour already carries the alpha factor; a colour
    above its alpha (invalid premultiplied data) saturates at 255 instead of wrapping.
    """
    background = (255 - rgba[..., 3:4]).astype(np.uint16)
    return np.minimum(rgba[..., :3] + background, 255).astype(np.uint8)


class SlideBackend(ABC):
    """Raw access to one slide file.

    Subclasses set :attr:`name`, open the file in ``__init__`` (raising slidescope errors that
    name the file), fill :attr:`info`, and implement :meth:`read_boxes`.
    """

    name: ClassVar[str]
    #: Whether a process may share one open backend between the slides that reopen it (a file
    #: handle is worth sharing; an in-memory backend travels with its own data).
    shared: ClassVar[bool] = True
    path: str
    info: SlideInfo

    @abstractmethod
    def read_boxes(self, level: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        """Read level boxes into preallocated arrays.

        Parameters
        ----------
        level : int
            Pyramid level index.
        boxes : sequence of (lvl_x, lvl_y, width, height)
            Boxes in the level's pixel space, each wholly inside the level.
        outs : sequence of ndarray
            One writable ``(height, width, 3)`` uint8 view per box (possibly non-contiguous),
            to be filled with RGB pixels. Implementations decode each stored tile at most once
            per call.
        """

    def reductions(self, level: int) -> tuple[int, ...]:
        """Factors ``k`` by which :meth:`read_reduced_boxes` decodes level ``level`` directly.

        Always starts with 1. A backend whose stored tiles can be decoded smaller than stored,
        for less work than a full decode (JPEG's scaled IDCT), adds those factors; the shared
        read path uses them where each output pixel covers whole ``k`` x ``k`` blocks
        (:mod:`slidescope.wsi.reduced`).
        """
        return (1,)

    def read_reduced_boxes(self, level: int, reduction: int, boxes: Sequence[Box], outs: Sequence[np.ndarray]) -> None:
        """Read boxes of the level's grid of ``reduction`` x ``reduction`` pixel blocks.

        Pixel ``(i, j)`` of that grid stands for the mean of level pixels
        ``[k j, k j + k) x [k i, k i + k)`` (``k = reduction``; a decoder's approximation of it).
        Boxes lie wholly inside the grid's whole blocks: ``level_width // k`` by
        ``level_height // k``. Otherwise as :meth:`read_boxes`.

        Raises
        ------
        ValueError
            ``reduction`` is not in :meth:`reductions` for this level.
        """
        if reduction == 1:
            self.read_boxes(level, boxes, outs)
            return
        raise ValueError(f"{self.path}: the {self.name} backend decodes level {level} only at full "
                         f"resolution, not at 1/{reduction}")

    @abstractmethod
    def associated_image(self, name: str) -> np.ndarray:
        """Return the associated image ``name`` as an ``(H, W, 3)`` uint8 RGB array.

        Raises
        ------
        AssociatedImageNotFoundError
            The slide has no image of that name (a ``KeyError``, so mappings behave); the
            message names the file and the names it has.
        CorruptSlideError
            The image is stored but cannot be decoded; the message names the file and the image.
        """

    def reopen_args(self) -> tuple[Any, ...]:
        """Arguments that reopen this backend in another process: ``type(self)(*args)``."""
        return (self.path,)

    @classmethod
    def path_of(cls, args: tuple[Any, ...]) -> str:
        """The :attr:`path` a backend opened with ``type(self)(*args)`` reports, without opening it."""
        return str(args[0]) if args else ""

    def token(self) -> str:
        """A string that identifies the slide's contents, for Dask graph keys."""
        return f"{self.name}:{self.path}"

    def close(self) -> None:  # noqa: B027 - backends without handles need no close
        """Release file handles; safe to call more than once."""

    def __del__(self) -> None:
        # A backend dropped from the per-process cache (or never closed by its caller) must not
        # keep its file descriptor: a batch over hundreds of slides would run out of them.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown or a half-built backend
            pass
