"""The procedural model behind synthetic slides (private to :mod:`slidescope.wsi.synthetic`).

A slide is described by a few smooth *fields* on a coarse grid (one grid cell covers
``grid_ds`` x ``grid_ds`` level-0 pixels) plus a list of nuclei. A level-0 pixel belongs to
a region (tissue, tumour, a pen stroke) when the bilinearly interpolated field at that pixel
exceeds 0.5. Interpolation is written out here (not ``cv2.remap``/``cv2.resize``) so that one
formula, evaluated with the same float32 operations in the same order, serves both the tile
renderer and the ground-truth sampler: a pixel's region is bit-for-bit the same whichever
batch of pixels it is evaluated with, which is what makes the ground truth exact.

Everything is a pure function of the seed: each component draws from its own child of
``numpy.random.SeedSequence(seed)``, so ``tumour=False`` or ``pen_marks=False`` leave the
tissue of the same seed unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

NOMINAL_MPP = 0.25  # physical scale assumed for sizes when a slide is written without mpp
MODEL_GRID_LONG_SIDE = 1024  # the field grid has about this many cells on the slide's long side
TYPE_NAMES = ("normal", "tumour", "lymphocyte")
NORMAL, TUMOUR, LYMPHOCYTE = 0, 1, 2
CH_TISSUE, CH_TUMOUR, CH_STAIN, CH_PEN0 = 0, 1, 2, 3
PEN_TINTS = {  # multiplicative ink transmittance per RGB channel
    "blue": (0.30, 0.42, 0.86),
    "green": (0.34, 0.70, 0.44),
    "black": (0.22, 0.22, 0.26),
}
# nuclei per mm^2 of each region; semi-axes in micrometres; RGB colour
_DENSITY_STROMA = {NORMAL: 900.0, LYMPHOCYTE: 250.0}
_DENSITY_TUMOUR = {TUMOUR: 4200.0, LYMPHOCYTE: 300.0}
_SHAPE = {  # (major semi-axis range um, minor/major ratio range, colour, colour jitter)
    NORMAL: ((3.5, 5.5), (0.35, 0.55), (112, 70, 152), 10.0),
    TUMOUR: ((4.0, 6.5), (0.65, 0.95), (74, 42, 124), 12.0),
    LYMPHOCYTE: ((2.6, 3.4), (0.85, 1.0), (46, 26, 96), 8.0),
}
_MARGIN = 1e-3  # a grid block whose values all sit this far from 0.5 is uniformly in or out


@dataclass(frozen=True)
class Nuclei:
    """Nucleus table: centres in level-0 pixels (multiples of 1/16), shapes and colours."""

    xy: np.ndarray  # (N, 2) float64
    kind: np.ndarray  # (N,) int16 codes into TYPE_NAMES
    axes: np.ndarray  # (N, 2) float32 semi-axes in level-0 pixels
    angle: np.ndarray  # (N,) float32 degrees
    colour: np.ndarray  # (N, 3) uint8 RGB


@dataclass(frozen=True)
class SlideModel:
    """Everything needed to render any pixel of a synthetic slide."""

    width: int
    height: int
    scale_mpp: float  # microns per level-0 pixel used for physical sizes
    grid_ds: int  # level-0 pixels per field-grid cell
    fields: np.ndarray  # (grid_h, grid_w, 3 + n_pens) float32
    pen_tints: tuple[tuple[float, float, float], ...]
    fibre_angle: float  # degrees, main stroma fibre direction
    texture_seed: int
    nuclei: Nuclei
    stain_shift: float = 0.0  # 0 (none) to 1: strength of the other-lab stain colours (see the renderer)

    @property
    def n_pens(self) -> int:
        return len(self.pen_tints)


# ----------------------------------------------------------------------------- sampling


def _axis(coords: np.ndarray, grid_ds: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid index and float32 weight of the bilinear sample for each level-0 coordinate."""
    u = (np.asarray(coords, dtype=np.float64) + 0.5) / grid_ds - 0.5
    u = np.clip(u, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(u).astype(np.int64), n - 2)
    return i0, (u - i0).astype(np.float32)


def sample_grid(model: SlideModel, xs: np.ndarray, ys: np.ndarray, channels: slice) -> np.ndarray:
    """Fields at every pixel of the grid ``ys x xs`` -> ``(len(ys), len(xs), n_channels)`` float32."""
    grid_h, grid_w = model.fields.shape[:2]
    c0, fx = _axis(xs, model.grid_ds, grid_w)
    r0, fy = _axis(ys, model.grid_ds, grid_h)
    r_lo = int(r0.min())
    sub = model.fields[r_lo : int(r0.max()) + 2, :, channels]
    gx = (np.float32(1.0) - fx)[None, :, None]
    rows = sub[:, c0] * gx + sub[:, c0 + 1] * fx[None, :, None]
    gy = (np.float32(1.0) - fy)[:, None, None]
    return rows[r0 - r_lo] * gy + rows[r0 + 1 - r_lo] * fy[:, None, None]


def sample_points(model: SlideModel, px: np.ndarray, py: np.ndarray, channels: slice) -> np.ndarray:
    """Fields at the pixels ``(px[i], py[i])`` -> ``(N, n_channels)``; same arithmetic as sample_grid."""
    grid_h, grid_w = model.fields.shape[:2]
    c0, fx = _axis(px, model.grid_ds, grid_w)
    r0, fy = _axis(py, model.grid_ds, grid_h)
    f = model.fields[:, :, channels]
    gx, fxc = (np.float32(1.0) - fx)[:, None], fx[:, None]
    top = f[r0, c0] * gx + f[r0, c0 + 1] * fxc
    bottom = f[r0 + 1, c0] * gx + f[r0 + 1, c0 + 1] * fxc
    return top * (np.float32(1.0) - fy)[:, None] + bottom * fy[:, None]


def block_state(model: SlideModel, channel: int, x0: int, y0: int, w: int, h: int) -> int:
    """-1 if the channel is below 0.5 everywhere in the box, +1 if above everywhere, else 0."""
    grid_h, grid_w = model.fields.shape[:2]
    c0, _ = _axis(np.array([x0, x0 + w - 1]), model.grid_ds, grid_w)
    r0, _ = _axis(np.array([y0, y0 + h - 1]), model.grid_ds, grid_h)
    block = model.fields[r0[0] : r0[1] + 2, c0[0] : c0[1] + 2, channel]
    if block.max() < 0.5 - _MARGIN:
        return -1
    if block.min() > 0.5 + _MARGIN:
        return 1
    return 0


# ----------------------------------------------------------------------------- generation


def _smooth_noise(rng: np.random.Generator, grid_h: int, grid_w: int, cells: int) -> np.ndarray:
    """Unit-variance random field with about ``cells`` bumps along the long side."""
    long_side = max(grid_h, grid_w)
    cy = max(2, round(cells * grid_h / long_side))
    cx = max(2, round(cells * grid_w / long_side))
    coarse = rng.standard_normal((cy + 2, cx + 2)).astype(np.float32)
    up = cv2.resize(coarse, (grid_w, grid_h), interpolation=cv2.INTER_CUBIC)
    return up / max(float(up.std()), 1e-6)


def _ellipse_distance(
    xx: np.ndarray, yy: np.ndarray, centre: tuple[float, float], radii: tuple[float, float], theta: float
) -> np.ndarray:
    dx, dy = xx - centre[0], yy - centre[1]
    c, s = math.cos(theta), math.sin(theta)
    return np.sqrt(((dx * c + dy * s) / radii[0]) ** 2 + ((-dx * s + dy * c) / radii[1]) ** 2)


def _tissue_field(rng: np.random.Generator, grid_h: int, grid_w: int, fraction: float | None = None) -> np.ndarray:
    """Tissue field: > 0.5 on tissue. ``fraction`` (0, 1] fixes the tissue fraction, else it is drawn."""
    yy, xx = np.mgrid[0:grid_h, 0:grid_w].astype(np.float32)
    field = np.full((grid_h, grid_w), -np.inf, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        centre = (rng.uniform(0.25, 0.75) * grid_w, rng.uniform(0.25, 0.75) * grid_h)
        radii = (rng.uniform(0.16, 0.30) * grid_w, rng.uniform(0.16, 0.30) * grid_h)
        blob = 1.0 - _ellipse_distance(xx, yy, centre, radii, rng.uniform(0.0, math.pi))
        np.maximum(field, blob, out=field)
    field += 0.30 * _smooth_noise(rng, grid_h, grid_w, 6) + 0.10 * _smooth_noise(rng, grid_h, grid_w, 24)
    target = rng.uniform(0.36, 0.50)  # tissue fraction of the slide (always drawn: same stream either way)
    if fraction is not None:
        target = fraction
    if target >= 1.0:  # all tissue: lift the minimum clear of 0.5 so every block renders as solid tissue
        return field - field.min() + np.float32(0.5 + 100 * _MARGIN)
    return field - np.float32(np.quantile(field, 1.0 - target)) + np.float32(0.5)


def _tumour_field(rng: np.random.Generator, tissue: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    grid_h, grid_w = tissue.shape
    yy, xx = np.mgrid[0:grid_h, 0:grid_w].astype(np.float32)
    inside = tissue > np.quantile(tissue[tissue > 0.5], 0.5) if (tissue > 0.5).any() else tissue > -np.inf
    candidates = np.flatnonzero(inside)
    field = np.full((grid_h, grid_w), -np.inf, dtype=np.float32)
    centres = []
    for _ in range(int(rng.integers(1, 3))):
        r, c = divmod(int(candidates[rng.integers(0, candidates.size)]), grid_w)
        centres.append((float(c), float(r)))
        radius = rng.uniform(0.10, 0.17) * min(grid_h, grid_w)
        blob = 1.0 - _ellipse_distance(xx, yy, (c, r), (radius, radius * rng.uniform(0.6, 1.0)), rng.uniform(0, 3.2))
        np.maximum(field, blob, out=field)
    field += 0.25 * _smooth_noise(rng, grid_h, grid_w, 12)
    in_tissue = field[tissue > 0.5] if (tissue > 0.5).any() else field.ravel()
    threshold = np.quantile(in_tissue, 1.0 - rng.uniform(0.20, 0.35))
    return field - np.float32(threshold) + np.float32(0.5), centres[0]


def _bare_border_point(rng: np.random.Generator, tissue: np.ndarray) -> tuple[float, float]:
    """A random border cell without tissue (any border cell if the tissue touches all of it)."""
    grid_h, grid_w = tissue.shape
    cols, rows = np.arange(grid_w), np.arange(grid_h)
    border = np.concatenate([
        np.stack([cols, np.zeros_like(cols)], 1), np.stack([cols, np.full_like(cols, grid_h - 1)], 1),
        np.stack([np.zeros_like(rows), rows], 1), np.stack([np.full_like(rows, grid_w - 1), rows], 1),
    ])
    bare = border[tissue[border[:, 1], border[:, 0]] < 0.3]
    pool = bare if len(bare) else border
    x, y = pool[int(rng.integers(0, len(pool)))]
    return float(x), float(y)


def _pen_fields(
    rng: np.random.Generator, tissue: np.ndarray, focus: tuple[float, float]
) -> tuple[list[np.ndarray], list[tuple[float, float, float]]]:
    """1-3 strokes; the first always runs from bare glass at the border into the tissue."""
    grid_h, grid_w = tissue.shape
    short = min(grid_h, grid_w)
    width = max(2, round(0.016 * short))
    names = list(PEN_TINTS)
    r, c = divmod(int(np.argmax(tissue)), grid_w)
    centroid = (float(c), float(r))  # the most interior tissue cell
    fields, tints = [], []
    for k in range(int(rng.integers(1, 4))):
        if k == 0:  # from bare glass at the border, through the tissue's core, gently curved
            start = _bare_border_point(rng, tissue)
            end = (centroid[0] + (centroid[0] - start[0]) * rng.uniform(0.2, 0.5),
                   centroid[1] + (centroid[1] - start[1]) * rng.uniform(0.2, 0.5))
            bend = rng.normal(0.0, 0.08 * short, 2)
            ctrl = ((start[0] + end[0]) / 2 + bend[0], (start[1] + end[1]) / 2 + bend[1])
            s = np.linspace(0.0, 1.0, 64)[:, None]
            pts = (1 - s) ** 2 * np.array(start) + 2 * s * (1 - s) * np.array(ctrl) + s**2 * np.array(end)
        elif k == 1:  # an open loop around the region of interest, as pathologists draw
            a0 = rng.uniform(0, 2 * math.pi)
            ang = np.linspace(a0, a0 + math.radians(rng.uniform(230, 330)), 96)
            rad = rng.uniform(0.15, 0.28) * short * (1 + 0.06 * np.sin(3 * ang + rng.uniform(0, 6)))
            pts = np.stack([focus[0] + rad * np.cos(ang) * rng.uniform(1.0, 1.4), focus[1] + rad * np.sin(ang)], 1)
        else:  # a short tick mark
            p = np.array([rng.uniform(0.1, 0.9) * grid_w, rng.uniform(0.1, 0.9) * grid_h])
            d = rng.normal(0.0, 1.0, 2)
            pts = np.stack([p, p + d / max(np.linalg.norm(d), 1e-6) * 0.12 * short])
        canvas = np.zeros((grid_h, grid_w), dtype=np.uint8)
        cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, width, cv2.LINE_AA, 4)
        blurred = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), max(0.6, width / 4))
        fields.append(blurred / max(float(blurred.max()), 1e-6))
        tints.append(PEN_TINTS[names[int(rng.integers(0, len(names)))]])
    return fields, tints


def _make_nuclei(
    rng: np.random.Generator, model: SlideModel, tumour: bool, scale: float = 1.0, density: float = 1.0
) -> Nuclei:
    """Poisson candidates thinned by the density of the region each falls in.

    ``density`` multiplies the expected number of candidates (so of nuclei of every type, per
    area); ``scale`` multiplies both semi-axes. At 1.0 neither touches the arithmetic, so the
    default draws are those of before the options existed."""
    w, h, mpp = model.width, model.height, model.scale_mpp
    d_max = max(sum(_DENSITY_STROMA.values()), sum(_DENSITY_TUMOUR.values()) if tumour else 0.0)
    expected = d_max * w * h * mpp * mpp / 1e6
    if density != 1.0:
        expected *= density
    n = int(rng.poisson(expected))
    xy = np.round(rng.uniform((0.0, 0.0), (w - 1.0, h - 1.0), (n, 2)) * 16.0) / 16.0
    pix = np.floor(xy + 0.5).astype(np.int64)
    vals = sample_points(model, pix[:, 0], pix[:, 1], slice(CH_TISSUE, CH_TUMOUR + 1))
    in_tissue = vals[:, 0] > 0.5
    in_tumour = in_tissue & (vals[:, 1] > 0.5) & tumour
    u = rng.random(n) * d_max
    kind = np.full(n, -1, dtype=np.int16)
    for region, dens in ((in_tissue & ~in_tumour, _DENSITY_STROMA), (in_tumour, _DENSITY_TUMOUR)):
        lo = 0.0
        for code, d in dens.items():
            kind[region & (u >= lo) & (u < lo + d)] = code
            lo += d
    keep = kind >= 0
    xy, kind = xy[keep], kind[keep]
    m = kind.size
    axes = np.empty((m, 2), dtype=np.float32)
    colour = np.empty((m, 3), dtype=np.float64)
    major_u, ratio_u, jitter = rng.random(m), rng.random(m), rng.normal(0.0, 1.0, (m, 3))
    for code, ((a_lo, a_hi), (r_lo, r_hi), rgb, sd) in _SHAPE.items():
        sel = kind == code
        major = (a_lo + (a_hi - a_lo) * major_u[sel]) / mpp
        if scale != 1.0:
            major = major * scale
        axes[sel, 0] = major
        axes[sel, 1] = major * (r_lo + (r_hi - r_lo) * ratio_u[sel])
        colour[sel] = np.asarray(rgb) + sd * jitter[sel]
    angle = rng.uniform(0.0, 180.0, m)
    fibro = kind == NORMAL  # fibroblasts follow the stroma fibres
    angle[fibro] = model.fibre_angle + rng.normal(0.0, 15.0, int(fibro.sum()))
    return Nuclei(
        xy=xy,
        kind=kind,
        axes=axes,
        angle=angle.astype(np.float32),
        colour=np.clip(np.round(colour), 0, 255).astype(np.uint8),
    )


def build_model(
    width: int,
    height: int,
    seed: int,
    *,
    tumour: bool,
    pen_marks: bool,
    mpp: float | None,
    tissue_fraction: float | None = None,
    stain_shift: float = 0.0,
    nucleus_scale: float = 1.0,
    nucleus_density: float = 1.0,
) -> SlideModel:
    """Build the procedural model of one slide (cheap: the grid has ~1024 cells on its long side).

    ``tissue_fraction`` in (0, 1] fixes the share of the slide that is tissue; None draws it
    from the seed (36-50 %). ``stain_shift`` (0-1) is kept for the renderer; ``nucleus_scale``
    multiplies nucleus semi-axes and ``nucleus_density`` the nuclei per area. None of the three
    touches the fields (tissue, tumour, pen, stain), so the truth masks of a seed never change;
    ``nucleus_scale`` keeps the nuclei table (centres, types) too, ``nucleus_density`` redraws it."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_tissue, rng_tumour, rng_pen, rng_stain, rng_nuclei, rng_texture = streams
    grid_ds = max(1, math.ceil(max(width, height) / MODEL_GRID_LONG_SIDE))
    grid_w, grid_h = max(2, math.ceil(width / grid_ds)), max(2, math.ceil(height / grid_ds))
    tissue = _tissue_field(rng_tissue, grid_h, grid_w, tissue_fraction)
    tumour_field, focus = _tumour_field(rng_tumour, tissue)
    if not tumour:
        tumour_field = np.zeros_like(tissue)
    pens, tints = _pen_fields(rng_pen, tissue, focus) if pen_marks else ([], [])
    stain = _smooth_noise(rng_stain, grid_h, grid_w, 5)
    fields = np.ascontiguousarray(np.stack([tissue, tumour_field, stain, *pens], axis=-1), dtype=np.float32)
    model = SlideModel(
        width=width,
        height=height,
        scale_mpp=float(mpp) if mpp is not None else NOMINAL_MPP,
        grid_ds=grid_ds,
        fields=fields,
        pen_tints=tuple(tints),
        fibre_angle=float(rng_texture.uniform(0.0, 180.0)),
        texture_seed=int(rng_texture.integers(0, 2**31 - 1)),
        nuclei=Nuclei(np.zeros((0, 2)), np.zeros(0, np.int16), np.zeros((0, 2), np.float32),
                      np.zeros(0, np.float32), np.zeros((0, 3), np.uint8)),
        stain_shift=float(stain_shift),
    )
    nuclei = _make_nuclei(rng_nuclei, model, tumour, nucleus_scale, nucleus_density)
    return SlideModel(**{**model.__dict__, "nuclei": nuclei})


def truth_masks(model: SlideModel, mask_ds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue, tumour and pen masks on the mask grid: cell (r, c) takes the value of level-0
    pixel ``(min(c*mask_ds + mask_ds//2, W-1), min(r*mask_ds + mask_ds//2, H-1))`` exactly as
    the renderer decided it."""
    mask_w, mask_h = math.ceil(model.width / mask_ds), math.ceil(model.height / mask_ds)
    xs = np.minimum(np.arange(mask_w) * mask_ds + mask_ds // 2, model.width - 1)
    ys = np.minimum(np.arange(mask_h) * mask_ds + mask_ds // 2, model.height - 1)
    tissue = np.zeros((mask_h, mask_w), dtype=bool)
    tumour = np.zeros_like(tissue)
    pen = np.zeros_like(tissue)
    for r in range(0, mask_h, 256):  # row chunks keep the float32 temporaries small
        f = sample_grid(model, xs, ys[r : r + 256], slice(None))
        tissue[r : r + 256] = f[..., CH_TISSUE] > 0.5
        tumour[r : r + 256] = tissue[r : r + 256] & (f[..., CH_TUMOUR] > 0.5)
        if model.n_pens:
            pen[r : r + 256] = (f[..., CH_PEN0:] > 0.5).any(axis=-1)
    return tissue, tumour, pen
