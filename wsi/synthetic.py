"""Synthetic H&E-like whole-slide images with exact ground truth, for tests and benchmarks.

>>> from slidescope.wsi.synthetic import make_slide, load_truth
>>> slide = make_slide(tmp_path / "s.svs", 2048, 1536, seed=3, pen_marks=True)   # doctest: +SKIP
>>> truth = load_truth(slide.path)                                                 # doctest: +SKIP

``make_slide`` writes a pyramidal tiled-JPEG TIFF, either an Aperio SVS (what OpenSlide opens
as vendor ``aperio``) or a generic tiled TIFF, plus ``<slide minus suffix>.truth.npz`` beside it.

What is painted: a near-white background with slight noise; a few smooth irregular blobs of pink
fibrous stroma (30-60 % of the slide, or ``tissue_fraction``); purple nuclei (fibroblast-like "normal" ones and small dark
lymphocytes); optionally tumour regions inside the tissue with denser, larger, darker nuclei on a
purple epithelium; optionally blue / green / black pen strokes crossing tissue and background.
Physical sizes (nuclei, fibres) follow ``mpp``; the layout (blobs, strokes) follows the slide size.

Domain shift (slides that look as if from another lab): ``stain_shift`` in [0, 1] recolours the
stains (haematoxylin bluer and stronger, eosin more orange and paler, by Beer-Lambert colour
deconvolution of the palette; glass and ink unchanged), ``nucleus_scale`` multiplies nucleus
sizes and ``nucleus_density`` the number of nuclei per area. Their defaults change nothing (same
bytes as before they existed); the truth masks of a seed never depend on them.

Everything is a function of ``seed`` (``numpy.random.SeedSequence``); the same arguments give the
same bytes. Generation is streamed tile by tile: memory stays bounded by a row of tiles whatever
the slide size, and reduced levels are exact 4x4 area averages of level 0.

Ground truth (:class:`GroundTruth`) is exact: mask cell ``(r, c)`` holds the region of the level-0
pixel ``(x, y) = (min(c*d + d//2, W-1), min(r*d + d//2, H-1))`` where ``d = mask_downsample``,
decided by the very arithmetic the renderer used. Nucleus centres are level-0 pixel coordinates in
the OpenCV convention: the nucleus is centred in pixel ``(floor(x + 0.5), floor(y + 0.5))``, which is tissue.
"""

from __future__ import annotations

import io
import math
import numbers
import tempfile
import zipfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from slidescope.wsi._synthetic_model import NOMINAL_MPP, TYPE_NAMES, build_model, truth_masks
from slidescope.wsi._synthetic_render import TileRenderer
from slidescope.wsi._synthetic_tiff import WriteOptions, write_pyramid
from slidescope.wsi.atomic import atomic_paths
from slidescope.wsi.errors import CorruptSlideError, SlideError, SlideNotFoundError
from slidescope.wsi.validation import parse_bool

__all__ = [
    "SyntheticSlide",
    "GroundTruth",
    "SyntheticSlideError",
    "make_slide",
    "load_truth",
    "truth_path_for",
    "FORMATS",
    "TYPE_NAMES",
    "MIN_SIZE",
    "MAX_SIZE",
    "MASK_MPP",
    "NOMINAL_MPP",
    "MAX_NUCLEUS_SCALE",
    "MAX_NUCLEUS_DENSITY",
]

FORMATS = ("aperio", "generic-tiff")
MIN_SIZE = 64  # smallest width/height accepted, in level-0 pixels
MAX_SIZE = 2**18  # largest width/height accepted (beyond any real scan)
MASK_MPP = 8.0  # nominal microns per pixel of the ground-truth masks
MAX_NUCLEUS_SCALE = 4.0  # largest nucleus_scale accepted
MAX_NUCLEUS_DENSITY = 8.0  # largest nucleus_density accepted
TRUTH_SUFFIX = ".truth.npz"
_TRUTH_VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps keep the truth file byte-identical per seed
_NO_SHIFT = {"stain_shift": 0.0, "nucleus_scale": 1.0, "nucleus_density": 1.0}  # and files without them


class SyntheticSlideError(SlideError):
    """An argument of :func:`make_slide` is out of range (also a ``ValueError``)."""


@dataclass(frozen=True)
class SyntheticSlide:
    """What :func:`make_slide` wrote. ``mpp`` is ``None`` when the slide carries no mpp."""

    path: Path
    truth_path: Path
    width: int
    height: int
    mpp: float | None
    seed: int


@dataclass(frozen=True, eq=False)  # arrays: equality would be ambiguous, so identity
class GroundTruth:
    """Exact ground truth of a synthetic slide.

    Attributes
    ----------
    tissue_mask, tumour_mask, pen_mask : numpy.ndarray
        bool ``(ceil(H/d), ceil(W/d))`` masks with ``d = mask_downsample`` (see the module notes
        for which level-0 pixel each cell stands for). ``tumour_mask`` implies ``tissue_mask``.
    mask_mpp : float
        Microns per mask pixel, ``mask_downsample * mpp`` (about 8); for a slide written without
        mpp the nominal 0.25 µm/px the sizes were drawn with is used.
    nuclei_xy : numpy.ndarray
        float64 ``(N, 2)`` nucleus centres ``(x, y)`` in level-0 pixels.
    nuclei_type : numpy.ndarray
        int16 ``(N,)`` codes into ``type_names``.
    type_names : tuple[str, ...]
        ``("normal", "tumour", "lymphocyte")``.
    mask_downsample : int
        Level-0 pixels per mask pixel along each axis.
    dimensions : tuple[int, int]
        Level-0 ``(width, height)`` of the slide.
    stain_shift, nucleus_scale, nucleus_density : float
        The domain-shift options the slide was made with (0, 1 and 1, i.e. none, for a file
        that does not record them).
    """

    tissue_mask: np.ndarray
    tumour_mask: np.ndarray
    mask_mpp: float
    nuclei_xy: np.ndarray
    nuclei_type: np.ndarray
    type_names: tuple[str, ...]
    pen_mask: np.ndarray
    mask_downsample: int
    dimensions: tuple[int, int]
    stain_shift: float = 0.0
    nucleus_scale: float = 1.0
    nucleus_density: float = 1.0


def truth_path_for(slide_path: str | PathLike[str]) -> Path:
    """``<slide path minus suffix>.truth.npz`` (a path already ending so is returned as is)."""
    path = Path(slide_path)
    if path.name.endswith(TRUTH_SUFFIX):
        return path
    return path.with_name(path.stem + TRUTH_SUFFIX)


# ----------------------------------------------------------------------------- validation


def _int_arg(name: str, value: object, lo: int, hi: int, extra: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise SyntheticSlideError(f"make_slide: {name}: expected an integer in [{lo}, {hi}]{extra}, got {value!r}")
    return int(value)


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise SyntheticSlideError(f"make_slide: {name}: expected a finite number > 0, got {value!r}")
    return float(value)


def _real_in(name: str, value: object, lo: float, hi: float, lo_open: bool) -> float:
    """A finite real number in ``(lo, hi]`` (``lo_open``) or ``[lo, hi]``; bools and strings refused."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
          and (lo < value if lo_open else lo <= value) and value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise SyntheticSlideError(f"make_slide: {name}: expected a number in {interval}, got {value!r}")
    return float(value)


def _bool_arg(name: str, value: object) -> bool:
    return parse_bool(value, f"make_slide: {name}", error=SyntheticSlideError)


# ----------------------------------------------------------------------------- public API


def make_slide(
    path: str | PathLike[str],
    width: int,
    height: int,
    *,
    seed: int = 0,
    tumour: bool = True,
    pen_marks: bool = False,
    mpp: float | None = 0.25,
    tile_size: int = 256,
    quality: int = 85,
    objective_power: float = 40,
    format: str = "aperio",
    tissue_fraction: float | None = None,
    stain_shift: float | None = None,
    nucleus_scale: float = 1.0,
    nucleus_density: float = 1.0,
) -> SyntheticSlide:
    """Write a synthetic pyramidal slide and its ground truth.

    Parameters
    ----------
    path : str or PathLike
        Slide file to write (its folder must exist); replaced atomically if present.
    width, height : int
        Level-0 size in pixels, each in ``[MIN_SIZE, MAX_SIZE]``.
    seed : int
        Non-negative seed; the same arguments give byte-identical files.
    tumour, pen_marks : bool
        Paint tumour regions / pen strokes.
    mpp : float or None
        Microns per level-0 pixel written to the metadata; ``None`` writes none (the slide then
        needs an explicit mpp to open) and sizes are drawn at a nominal 0.25 µm/px.
    tile_size : int
        Tile side, a multiple of 16 in ``[16, 4096]``.
    quality : int
        JPEG quality, 1-100.
    objective_power : float
        Written as Aperio ``AppMag`` (the generic-tiff format has no place for it).
    format : {"aperio", "generic-tiff"}
        Aperio SVS layout, or a plain tiled pyramid with the mpp in the resolution tags.
    tissue_fraction : float or None
        Share of the slide covered by tissue, in (0, 1]; 1 makes a slide that is all tissue
        (benchmarks). None (the default) draws it from the seed (about 36-50 %), exactly as before
        the option existed: the same seed gives the same bytes.
    stain_shift : float or None
        Domain shift of the stain colours, in [0, 1]: as another lab's H&E, haematoxylin bluer
        and stronger, eosin more orange and paler (Beer-Lambert colour deconvolution of every
        stain colour painted; glass and pen ink unchanged). None or 0 (the default): no shift.
    nucleus_scale : float
        Multiplies the size of every nucleus, in (0, MAX_NUCLEUS_SCALE]; centres and types stay
        those of the unscaled slide of the same seed.
    nucleus_density : float
        Multiplies the number of nuclei per area (every type), in (0, MAX_NUCLEUS_DENSITY]; the
        nuclei are redrawn, the tissue and tumour layout is kept.

        With all three at their defaults the bytes are those of a slide made without them; any
        other value is recorded in the ground truth (:class:`GroundTruth` ``stain_shift`` ...),
        and the masks never depend on them.

    Returns
    -------
    SyntheticSlide

    Raises
    ------
    SyntheticSlideError
        For an out-of-range argument (the message names it and the value).
    SlideNotFoundError
        When the folder of ``path`` does not exist.
    """
    width = _int_arg("width", width, MIN_SIZE, MAX_SIZE)
    height = _int_arg("height", height, MIN_SIZE, MAX_SIZE)
    seed = _int_arg("seed", seed, 0, 2**63 - 1)
    tumour = _bool_arg("tumour", tumour)
    pen_marks = _bool_arg("pen_marks", pen_marks)
    mpp = None if mpp is None else _positive_float("mpp", mpp)
    tile_size = _int_arg("tile_size", tile_size, 16, 4096)
    if tile_size % 16:
        raise SyntheticSlideError(f"make_slide: tile_size: expected a multiple of 16, got {tile_size}")
    quality = _int_arg("quality", quality, 1, 100)
    objective_power = _positive_float("objective_power", objective_power)
    if tissue_fraction is not None:
        if (isinstance(tissue_fraction, bool) or not isinstance(tissue_fraction, numbers.Real)
                or not (math.isfinite(tissue_fraction) and 0.0 < tissue_fraction <= 1.0)):
            raise SyntheticSlideError(
                f"make_slide: tissue_fraction: expected a number in (0, 1] or None, got {tissue_fraction!r}"
            )
        tissue_fraction = float(tissue_fraction)
    stain_shift = 0.0 if stain_shift is None else _real_in("stain_shift", stain_shift, 0.0, 1.0, lo_open=False)
    nucleus_scale = _real_in("nucleus_scale", nucleus_scale, 0.0, MAX_NUCLEUS_SCALE, lo_open=True)
    nucleus_density = _real_in("nucleus_density", nucleus_density, 0.0, MAX_NUCLEUS_DENSITY, lo_open=True)
    if format not in FORMATS:
        raise SyntheticSlideError(f"make_slide: format: expected one of {FORMATS}, got {format!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise SlideNotFoundError(f"{path}: cannot write the slide: folder {path.parent} does not exist")
    truth_path = truth_path_for(path)
    if truth_path == path:
        raise SyntheticSlideError(f"make_slide: path: expected a slide name not ending in {TRUTH_SUFFIX}, got {path}")

    model = build_model(width, height, seed, tumour=tumour, pen_marks=pen_marks, mpp=mpp,
                        tissue_fraction=tissue_fraction, stain_shift=stain_shift,
                        nucleus_scale=nucleus_scale, nucleus_density=nucleus_density)
    mask_ds = max(1, round(MASK_MPP / model.scale_mpp))
    tissue, tumour_mask, pen = truth_masks(model, mask_ds)
    arrays = {
        "format_version": np.int64(_TRUTH_VERSION),
        "tissue_mask": tissue,
        "tumour_mask": tumour_mask,
        "pen_mask": pen,
        "mask_mpp": np.float64(mask_ds * model.scale_mpp),
        "mask_downsample": np.int64(mask_ds),
        "nuclei_xy": model.nuclei.xy.astype(np.float64),
        "nuclei_type": model.nuclei.kind.astype(np.int16),
        "type_names": np.array(TYPE_NAMES),
        "dimensions": np.array([width, height], dtype=np.int64),
        "seed": np.int64(seed),
        "slide_mpp": np.float64(np.nan if mpp is None else mpp),
    }
    shift = {"stain_shift": stain_shift, "nucleus_scale": nucleus_scale, "nucleus_density": nucleus_density}
    if shift != _NO_SHIFT:  # recorded only when used: the default truth file keeps its bytes
        arrays.update({name: np.float64(value) for name, value in shift.items()})

    opts = WriteOptions(format, tile_size, quality, mpp, objective_power, path.stem, seed)
    renderer = TileRenderer(model)

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.levels-") as workdir:
            write_pyramid(tmp, renderer, opts, Path(workdir))

    # the truth is renamed into place just before the slide: a slide never lacks its truth
    with atomic_paths([truth_path, path]) as (truth_tmp, slide_tmp):
        _write_npz(truth_tmp, arrays)
        write(slide_tmp)
    return SyntheticSlide(path=path, truth_path=truth_path, width=width, height=height, mpp=mpp, seed=seed)


def load_truth(slide_path: str | PathLike[str]) -> GroundTruth:
    """Read the ground truth written beside ``slide_path`` by :func:`make_slide`.

    Raises
    ------
    SlideNotFoundError
        When there is no ``.truth.npz`` beside the slide.
    CorruptSlideError
        When the file is not a readable ground-truth archive.
    """
    path = truth_path_for(slide_path)
    if not path.is_file():
        raise SlideNotFoundError(f"{path}: no ground truth for slide {slide_path} (expected a file written by make_slide)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            version = int(npz["format_version"])
            if version != _TRUTH_VERSION:
                raise CorruptSlideError(f"{path}: ground-truth format_version: expected {_TRUTH_VERSION}, got {version}")
            width, height = (int(v) for v in npz["dimensions"])
            return GroundTruth(
                tissue_mask=npz["tissue_mask"].astype(bool),
                tumour_mask=npz["tumour_mask"].astype(bool),
                mask_mpp=float(npz["mask_mpp"]),
                nuclei_xy=npz["nuclei_xy"],
                nuclei_type=npz["nuclei_type"],
                type_names=tuple(str(s) for s in npz["type_names"]),
                pen_mask=npz["pen_mask"].astype(bool),
                mask_downsample=int(npz["mask_downsample"]),
                dimensions=(width, height),
                **{name: float(npz[name]) if name in npz.files else default for name, default in _NO_SHIFT.items()},
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, SlideError):
            raise
        raise CorruptSlideError(f"{path}: not a readable ground-truth file: {exc}") from exc


# ----------------------------------------------------------------------------- files


def _write_npz(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` that ``numpy.load`` reads, with fixed zip timestamps so it is reproducible
    byte for byte (``numpy.savez`` stamps the current time)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
