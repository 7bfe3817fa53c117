"""``Slide``: one whole-slide image, whatever its backend, with the one shared read path.

Reads go: resolve the level (``level=`` or nearest finer level for ``mpp=``), map level-0
locations to level boxes, clip to the level (outside is white), let the backend fill the inside,
then shrink with ``cv2.INTER_AREA`` when the level is finer than asked.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends.base import Box, SlideBackend
from .errors import ClosedSlideError, MissingMppError, RegionError
from .dask_levels import level_to_dask
from .geometry import best_level_for_mpp, coarsest_level_within
from .levels import Level, SlideInfo
from .reading import read_resampled
from .validation import parse_locations, parse_mpp, parse_positive_int, parse_size
from .whole_slide import thumbnail

if TYPE_CHECKING:
    import dask.array

__all__ = ["Slide", "SlideSpec"]


@dataclass(frozen=True)
class SlideSpec:
    """What it takes to reopen a slide anywhere: backend class, its arguments, caller options."""

    backend: type[SlideBackend]
    args: tuple[Any, ...]
    mpp: tuple[float, float] | None = None
    require_mpp: bool = True
    #: Decode stored tiles in full for every shrinking read (no reduced-resolution decoding).
    exact_resample: bool = False

    def open(self) -> SlideBackend:
        return self.backend(*self.args)


def _file_version(path: Any) -> tuple[int, int] | None:
    """Size and modification time: a slide rewritten at the same path gets a fresh handle."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError):
        return None
    return stat.st_size, stat.st_mtime_ns


def level_origin(l0_xy: np.ndarray, downsample: float) -> np.ndarray:
    """The level pixels whose level-0 footprints start at ``l0_xy``: ``floor((l0 + 0.5) / downsample)``.

    For a whole-number downsample this is ``l0 // downsample``. For a fractional one (2.0005,
    4.016) level pixel ``k`` starts at level-0 ``k * downsample``, which a caller rounds to an
    integer: the half-pixel shift maps ``round(k * downsample)`` back to ``k``, where a plain
    floor would read one level pixel early.
    """
    return np.floor((l0_xy + 0.5) / downsample).astype(np.int64)


class _BackendCache:
    """Open backends per process, so Dask tasks that unpickle a slide reuse one handle."""

    def __init__(self, size: int = 32):
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], SlideBackend] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: SlideSpec) -> SlideBackend:
        if not spec.backend.shared:
            return spec.open()
        key = (spec.backend, spec.args, _file_version(spec.args[0]))
        with self._lock:
            backend = self._items.get(key)
            if backend is not None:
                self._items.move_to_end(key)
                return backend
        backend = spec.open()
        with self._lock:
            self._items[key] = backend
            while len(self._items) > self._size:
                self._items.popitem(last=False)  # closed by SlideBackend.__del__ once no slide uses it
        return backend


_PROCESS_BACKENDS = _BackendCache()


class _AssociatedImages(Mapping[str, np.ndarray]):
    """Associated images (label, macro, thumbnail), decoded on first access."""

    def __init__(self, slide: "Slide"):
        self._slide = slide
        self._decoded: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._decoded:
            with self._slide._reading() as backend:
                self._decoded[name] = backend.associated_image(name)
        return self._decoded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._slide._info().associated_names)

    def __len__(self) -> int:
        return len(self._slide._info().associated_names)


class Slide:
    """A whole-slide image.

    Use :func:`slidescope.wsi.open_slide` to make one. A slide is a context manager; after
    :meth:`close` every read raises :class:`ClosedSlideError`. It pickles as its path and
    options, and reopens lazily (one shared handle per process) wherever it is unpickled.

    Examples
    --------
    >>> with open_slide("slide.svs") as slide:                       # doctest: +SKIP
    ...     tile = slide.read_region((1000, 2000), (256, 256), mpp=0.5)
    """

    def __init__(self, spec: SlideSpec, backend: SlideBackend | None = None):
        self._spec = spec
        self._backend_obj = backend
        self._owns_backend = backend is not None
        self._closed = False
        self._levels: tuple[Level, ...] | None = None
        self._lock = threading.Lock()  # guards the lazy open of the backend
        self._state = threading.Condition()  # guards _closed and _in_flight
        self._in_flight = 0
        if backend is not None:
            self._levels = self._build_levels(backend.info)

    # -- lifecycle ---------------------------------------------------------------------------

    def _backend(self) -> SlideBackend:
        if self._closed:
            raise ClosedSlideError(f"{self.path}: the slide is closed; open it again to read it")
        backend = self._backend_obj
        if backend is None:
            with self._lock:
                if self._backend_obj is None:
                    self._backend_obj = _PROCESS_BACKENDS.get(self._spec)
                backend = self._backend_obj
        return backend

    @contextmanager
    def _reading(self) -> Iterator[SlideBackend]:
        """The backend, held open for the duration of one read: :meth:`close` waits for it."""
        with self._state:
            if self._closed:
                raise ClosedSlideError(f"{self.path}: the slide is closed; open it again to read it")
            self._in_flight += 1
        try:
            yield self._backend()
        finally:
            with self._state:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._state.notify_all()

    def _info(self) -> SlideInfo:
        return self._backend().info

    def _build_levels(self, info: SlideInfo) -> tuple[Level, ...]:
        mpp = self._spec.mpp or info.mpp
        if mpp is None and self._spec.require_mpp:
            raise MissingMppError(self.path)
        return tuple(
            Level(i, dims, ds, None if mpp is None else (mpp[0] * ds, mpp[1] * ds), tile)
            for i, (dims, ds, tile) in enumerate(zip(info.level_dimensions, info.level_downsamples, info.tile_sizes))
        )

    def close(self) -> None:
        """Release the file handle; further use raises :class:`ClosedSlideError`.

        Safe to call from any thread while others read: reads already running finish with their
        pixels (close waits for them), reads that start afterwards raise :class:`ClosedSlideError`.
        Calling it again does nothing. Do not call it from inside a read of the same slide.
        """
        with self._state:
            if self._closed:
                return
            self._closed = True
            while self._in_flight:
                self._state.wait()
            backend, self._backend_obj = self._backend_obj, None
        if self._owns_backend and backend is not None:
            backend.close()

    def lazy_copy(self) -> "Slide":
        """A handle on the same slide that opens (via the per-process cache) on first use.

        What travels into Dask tasks: unlike this slide, it does not close when this one does.
        """
        if self._closed:
            raise ClosedSlideError(f"{self.path}: the slide is closed; open it again to read it")
        return Slide(self._spec)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        if self._closed:
            raise ClosedSlideError(f"{self.path}: a closed slide cannot be pickled")
        return (Slide, (self._spec,))

    def __dask_tokenize__(self) -> tuple[str, Any]:
        return ("slidescope.Slide", self._backend().token(), self._spec.mpp, self._spec.exact_resample)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._spec.backend.name
        exact = ", exact_resample" if self._spec.exact_resample else ""
        return f"<Slide {self.path!r} ({state}{exact})>"

    # -- metadata ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Path of the slide file (a name for in-memory slides)."""
        return self._spec.backend.path_of(self._spec.args)

    @property
    def backend_name(self) -> str:
        return self._spec.backend.name

    @property
    def exact_resample(self) -> bool:
        """Whether shrinking reads decode every stored tile in full (see :func:`open_slide`)."""
        return self._spec.exact_resample

    @property
    def levels(self) -> tuple[Level, ...]:
        """Stored pyramid levels, finest first."""
        if self._levels is None:
            self._levels = self._build_levels(self._info())
        self._backend()  # a closed slide raises even when levels are cached
        return self._levels

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return self.levels[0].dimensions

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Microns per pixel ``(x, y)`` of level 0 (the caller's ``mpp=`` wins over metadata).

        ``None`` only for a slide opened with ``require_mpp=False`` whose file does not say.
        """
        return self.levels[0].mpp

    def _require_mpp(self) -> tuple[float, float]:
        mpp = self.levels[0].mpp
        if mpp is None:
            raise MissingMppError(self.path)
        return mpp

    @property
    def objective_power(self) -> float | None:
        return self._info().objective_power

    @property
    def vendor(self) -> str:
        return self._info().vendor

    @property
    def properties(self) -> Mapping[str, str]:
        """Raw metadata as the backend reports it (OpenSlide-style namespaced keys)."""
        return self._info().properties

    @property
    def associated_images(self) -> Mapping[str, np.ndarray]:
        """Label, macro, thumbnail... as ``(H, W, 3)`` uint8 arrays, decoded on access."""
        self._backend()
        return _AssociatedImages(self)

    def best_level_for_mpp(self, mpp: float) -> Level:
        """The coarsest stored level at least as fine as ``mpp`` µm/px."""
        self._require_mpp()
        return best_level_for_mpp(self.levels, parse_mpp(mpp, f"{self.path}: mpp")[0], self.path)

    # -- pixels ------------------------------------------------------------------------------

    def _resolve(self, level: int | None, mpp: Any) -> tuple[Level, float, float]:
        """The level to read and the shrink factors from it to the output."""
        levels = self.levels
        if level is not None and mpp is not None:
            raise RegionError(f"{self.path}: pass either level= or mpp=, not both (got level={level}, mpp={mpp})")
        if mpp is not None:
            target_x, target_y = parse_mpp(mpp, f"{self.path}: mpp")
            self._require_mpp()
            chosen = best_level_for_mpp(levels, target_x, self.path)
            return chosen, target_x / chosen.mpp[0], target_y / chosen.mpp[1]
        index = 0 if level is None else level
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(levels):
            raise RegionError(f"{self.path}: level: expected an integer in [0, {len(levels) - 1}], got {level!r}")
        return levels[int(index)], 1.0, 1.0

    def read_region(
        self, location: tuple[int, int], size: tuple[int, int], *, level: int | None = None, mpp: Any = None
    ) -> np.ndarray:
        """Read one region as an ``(H, W, 3)`` uint8 RGB array.

        Parameters
        ----------
        location : (int, int)
            Top-left corner in level-0 pixels.
        size : (int, int)
            ``(width, height)`` of the output in output pixels.
        level : int, optional
            Stored level to read. Level 0 when neither ``level`` nor ``mpp`` is given.
        mpp : float or (float, float), optional
            Output resolution in µm per pixel. The nearest finer stored level is read and
            shrunk with ``cv2.INTER_AREA``; a resolution finer than level 0 is an error. When
            the shrink is 2x or more and the level's tiles are JPEG, they are decoded 2, 4 or 8
            times smaller first (mean difference to a full decode about 0.1 grey levels);
            a slide opened with ``exact_resample=True`` decodes them in full.

        Returns
        -------
        ndarray
            Pixels; parts of the region outside the slide are white (255).

        Raises
        ------
        OutOfBoundsError
            When the region lies wholly outside the slide.
        """
        return self.read_tiles([location], size, level=level, mpp=mpp)[0]

    def read_tiles(
        self, locations: Any, size: tuple[int, int], *, level: int | None = None, mpp: Any = None
    ) -> np.ndarray:
        """Read many same-sized regions at once: the batched fast path.

        Parameters are as for :meth:`read_region`, with ``locations`` an ``(N, 2)`` array-like of
        level-0 ``(x, y)``. Each stored tile is decoded at most once per group of tiles; a group
        holds at most :data:`slidescope.wsi.reading.READ_BUDGET_PIXELS` source pixels, so memory
        does not grow with the batch size or the shrink factor.

        Returns
        -------
        ndarray
            ``(N, H, W, 3)`` uint8 RGB.
        """
        out_size = parse_size(size, f"{self.path}: size")
        l0_xy = parse_locations(locations, f"{self.path}: locations")
        chosen, scale_x, scale_y = self._resolve(level, mpp)
        lvl_xy = level_origin(l0_xy, chosen.downsample)
        with self._reading() as backend:
            return read_resampled(backend, chosen, lvl_xy, out_size, (scale_x, scale_y), self.path,
                                  exact=self._spec.exact_resample)

    def _read_whole_level(self, size: tuple[int, int]) -> np.ndarray:
        """The whole slide shrunk onto ``size`` pixels from the coarsest level at least that fine."""
        out_w, out_h = size
        width, height = self.dimensions
        chosen = coarsest_level_within(self.levels, min(width / out_w, height / out_h))
        scale = (chosen.width / out_w, chosen.height / out_h)
        with self._reading() as backend:
            return read_resampled(backend, chosen, np.zeros((1, 2), np.int64), size, scale, self.path,
                                  exact=self._spec.exact_resample)[0]

    def read_level_box(self, level: int, box: Box) -> np.ndarray:
        """Read a box given in one level's own pixels (white outside the level)."""
        chosen = self._resolve(level, None)[0]
        if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4:
            raise RegionError(f"{self.path}: box: expected (lvl_x, lvl_y, width, height), got {box!r}")
        (x, y), = parse_locations([box[:2]], f"{self.path}: box location")
        width, height = parse_size(box[2:], f"{self.path}: box size")
        with self._reading() as backend:
            return read_resampled(backend, chosen, np.array([[x, y]]), (width, height), (1.0, 1.0), self.path)[0]

    def thumbnail(self, max_size: int | tuple[int, int] = 1024) -> np.ndarray:
        """The whole slide shrunk to fit ``max_size`` (an int or ``(width, height)``), aspect kept.

        The embedded thumbnail is used when it is at least that large; otherwise the slide is
        read from the best level in bounded memory (see :mod:`slidescope.wsi.whole_slide`).
        """
        return thumbnail(self, max_size)

    def to_dask(self, level: int = 0, *, chunk_target: int = 1024) -> "dask.array.Array":
        """Level ``level`` as a lazy ``(H, W, 3)`` uint8 Dask array.

        Chunks are whole stored tiles (a multiple of the tile size near ``chunk_target`` px), and
        each chunk task reopens the slide by path in its worker. See
        :func:`slidescope.wsi.dask_levels.level_to_dask`.
        """
        chunk_target = parse_positive_int(chunk_target, f"{self.path}: chunk_target")
        return level_to_dask(self.read_level_box, self._resolve(level, None)[0], self, chunk_target=chunk_target)
