"""Tile renderer for synthetic slides (private to :mod:`slidescope.wsi.synthetic`).

``TileRenderer.render(x0, y0, w, h)`` paints any level-0 box of a :class:`SlideModel` as an
H&E-like RGB uint8 image: near-white background, pink fibrous stroma, a purple tumour
epithelium, haematoxylin-dark nuclei (``cv2.ellipse``) and translucent pen ink. A pixel's value
depends only on its absolute position, so tiles of any size join without seams. Textures are
small periodic arrays addressed by absolute coordinates, which keeps memory flat however large
the slide is.

``model.stain_shift`` (0 to 1) repaints the slide as another lab's H&E would look: each stain
colour the renderer uses (the stroma and epithelium palette, every nucleus colour) is unmixed by
Beer-Lambert colour deconvolution into haematoxylin, eosin and a residual, and remixed with the
haematoxylin vector turned towards blue/violet (and stronger), the eosin vector towards orange
(and paler), both by the strength. Glass and pen ink are not stain and stay as they are; at 0 the
palette is the original one, untouched.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from slidescope.wsi._synthetic_model import CH_PEN0, CH_STAIN, CH_TISSUE, CH_TUMOUR, SlideModel, block_state, sample_grid

_NOISE_PERIOD = 509  # pixel-noise texture side (prime, so it does not beat with tile sizes)
_FIBRE_PERIOD = 1024  # fibre texture side (FFT-friendly; the texture is periodic by construction)
_BACKGROUND = np.array([241.0, 240.0, 242.0], dtype=np.float32)
_STROMA_PALE = np.array([246.0, 196.0, 220.0], dtype=np.float32)
_STROMA_DEEP = np.array([212.0, 112.0, 168.0], dtype=np.float32)
_TUMOUR_PALE = np.array([222.0, 168.0, 210.0], dtype=np.float32)
_TUMOUR_DEEP = np.array([172.0, 100.0, 166.0], dtype=np.float32)
_BUCKET = 256  # level-0 pixels per side of a nucleus-index bucket

# Stain optical-density vectors (rows: haematoxylin, eosin, residual; columns R, G, B): Ruifrok &
# Johnston's H&E(DAB) vectors, as skimage.color uses. The shifted lab's vectors at full strength:
# haematoxylin absorbing more red (bluer), eosin absorbing blue too (orange); the residual keeps
# whatever of the palette is not H or E. Gains scale the stain amounts at full strength.
_STAINS = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_STAINS_SHIFTED = np.array([[0.78, 0.60, 0.18], [0.03, 0.80, 0.60], [0.27, 0.57, 0.78]])
_STAIN_GAINS_SHIFTED = np.array([1.25, 0.80, 1.0])


def shift_stains(rgb: np.ndarray, strength: float) -> np.ndarray:
    """RGB colours ``(..., 3)`` as stained by the shifted lab at ``strength`` in [0, 1] -> float64 RGB.

    Beer-Lambert: optical density ``-ln(rgb / 255)`` is unmixed into stain amounts with
    :data:`_STAINS`, the amounts are scaled by the gains and remixed with the stain vectors moved
    towards :data:`_STAINS_SHIFTED` (renormalised), all linearly in ``strength``; 0 returns the
    colours unchanged (as float64). White stays white (no stain, no optical density).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if strength == 0:
        return rgb.copy()
    od = -np.log(np.clip(rgb, 1.0, 255.0) / 255.0)
    amounts = od @ np.linalg.inv(_STAINS)
    vectors = (1.0 - strength) * _STAINS + strength * _STAINS_SHIFTED
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gains = 1.0 + strength * (_STAIN_GAINS_SHIFTED - 1.0)
    return np.clip(255.0 * np.exp(-(amounts * gains) @ vectors), 0.0, 255.0)


def _palette(colour: np.ndarray, strength: float) -> np.ndarray:
    """A float32 palette colour under the stain shift (the constant itself when there is none)."""
    return colour if strength == 0 else shift_stains(colour, strength).astype(np.float32)


def _fibre_texture(rng: np.random.Generator, scale_mpp: float, angle_deg: float) -> np.ndarray:
    """Periodic anisotropic noise (collagen-like streaks) made by filtering white noise in the
    Fourier domain, which is periodic for free; unit standard deviation."""
    q = _FIBRE_PERIOD
    spectrum = np.fft.rfft2(rng.standard_normal((q, q)))
    ky = (2 * np.pi * np.fft.fftfreq(q))[:, None]
    kx = (2 * np.pi * np.fft.rfftfreq(q))[None, :]
    theta = math.radians(angle_deg)
    k_along = kx * math.cos(theta) + ky * math.sin(theta)
    k_across = -kx * math.sin(theta) + ky * math.cos(theta)
    s_along = min(5.0 / scale_mpp, q / 8)  # ~5 um correlation along a fibre
    s_across = min(0.8 / scale_mpp, q / 32)  # ~0.8 um across
    gain = np.exp(-0.5 * ((s_along * k_along) ** 2 + (s_across * k_across) ** 2))
    tex = np.fft.irfft2(spectrum * gain, s=(q, q))
    return (tex / max(float(tex.std()), 1e-9)).astype(np.float32)


def _periodic(tex: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The ``h x w`` window of a periodic texture whose top-left is at absolute ``(x0, y0)``."""
    p_h, p_w = tex.shape
    ys = np.arange(y0, y0 + h) % p_h
    xs = np.arange(x0, x0 + w) % p_w
    return tex[ys[:, None], xs[None, :]]


class _NucleusIndex:
    """Nuclei bucketed on a coarse grid so a tile finds its nuclei without scanning them all."""

    def __init__(self, model: SlideModel) -> None:
        nuc = model.nuclei
        self.n_bx = math.ceil(model.width / _BUCKET) + 1
        self.n_by = math.ceil(model.height / _BUCKET) + 1
        self.reach = int(math.ceil(float(nuc.axes.max()))) + 2 if nuc.axes.size else 0
        key = (nuc.xy[:, 1] // _BUCKET).astype(np.int64) * self.n_bx + (nuc.xy[:, 0] // _BUCKET).astype(np.int64)
        self.order = np.argsort(key, kind="stable")
        self.starts = np.searchsorted(key[self.order], np.arange(self.n_bx * self.n_by + 1))
        # cv2 drawing with shift=4 takes fixed-point integers: 1/16 pixel
        self.cx16 = np.round(nuc.xy[:, 0] * 16).astype(np.int64)
        self.cy16 = np.round(nuc.xy[:, 1] * 16).astype(np.int64)
        self.ax16 = np.maximum(np.round(nuc.axes * 16), 1).astype(np.int64)
        self.angle = nuc.angle.astype(np.float64)
        colour = nuc.colour if model.stain_shift == 0 else np.round(shift_stains(nuc.colour, model.stain_shift))
        self.colour = colour.astype(np.int64)

    def query(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Indices (ascending, i.e. drawing order) of nuclei whose centre bucket may reach the box."""
        if not self.order.size:
            return self.order
        bx0 = max(0, (x0 - self.reach) // _BUCKET)
        bx1 = min(self.n_bx - 1, (x0 + w + self.reach) // _BUCKET)
        by0 = max(0, (y0 - self.reach) // _BUCKET)
        by1 = min(self.n_by - 1, (y0 + h + self.reach) // _BUCKET)
        parts = [
            self.order[self.starts[by * self.n_bx + bx0] : self.starts[by * self.n_bx + bx1 + 1]]
            for by in range(by0, by1 + 1)
        ]
        return np.sort(np.concatenate(parts)) if parts else self.order[:0]


class TileRenderer:
    """Paints level-0 boxes of one :class:`SlideModel`."""

    def __init__(self, model: SlideModel) -> None:
        self.model = model
        rng = np.random.default_rng(model.texture_seed)
        self.noise = rng.standard_normal((_NOISE_PERIOD, _NOISE_PERIOD)).astype(np.float32)
        self.fibre = _fibre_texture(rng, model.scale_mpp, model.fibre_angle)
        self.nuclei = _NucleusIndex(model)
        shift = model.stain_shift
        self.stroma_pale, self.stroma_deep = _palette(_STROMA_PALE, shift), _palette(_STROMA_DEEP, shift)
        self.tumour_pale, self.tumour_deep = _palette(_TUMOUR_PALE, shift), _palette(_TUMOUR_DEEP, shift)

    def render(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 ``(h, w, 3)`` image of the level-0 box at ``(x0, y0)`` (may extend past the slide)."""
        model = self.model
        xs, ys = np.arange(x0, x0 + w), np.arange(y0, y0 + h)
        noise = _periodic(self.noise, x0, y0, w, h)
        tissue_state = block_state(model, CH_TISSUE, x0, y0, w, h)
        if tissue_state < 0:
            img = _BACKGROUND + (2.5 * noise)[..., None]
        else:
            img = self._tissue(xs, ys, noise, tissue_state)
        out = np.clip(img, 0, 255).astype(np.uint8)
        if tissue_state >= 0:
            self._draw_nuclei(out, x0, y0, w, h)
        for k, tint in enumerate(model.pen_tints):
            if block_state(model, CH_PEN0 + k, x0, y0, w, h) >= 0:
                ink = sample_grid(model, xs, ys, slice(CH_PEN0 + k, CH_PEN0 + k + 1))[..., 0] > 0.5
                if ink.any():
                    out[ink] = (out[ink] * np.asarray(tint, dtype=np.float32)).astype(np.uint8)
        return out

    def _tissue(self, xs: np.ndarray, ys: np.ndarray, noise: np.ndarray, state: int) -> np.ndarray:
        model = self.model
        f = sample_grid(model, xs, ys, slice(CH_TISSUE, CH_STAIN + 1))
        fibre = _periodic(self.fibre, int(xs[0]), int(ys[0]), xs.size, ys.size)
        eosin = np.clip(0.52 + 0.15 * fibre + 0.10 * f[..., CH_STAIN] + 0.04 * noise, 0.0, 1.0)[..., None]
        stroma = self.stroma_pale + eosin * (self.stroma_deep - self.stroma_pale)
        tumour = f[..., CH_TUMOUR] > 0.5
        if tumour.any():
            epithelium = self.tumour_pale + eosin * (self.tumour_deep - self.tumour_pale)
            stroma = np.where(tumour[..., None], epithelium, stroma)
        if state > 0:
            return stroma
        background = _BACKGROUND + (2.5 * noise)[..., None]
        return np.where((f[..., CH_TISSUE] > 0.5)[..., None], stroma, background)

    def _draw_nuclei(self, out: np.ndarray, x0: int, y0: int, w: int, h: int) -> None:
        idx = self.nuclei.query(x0, y0, w, h)
        if not idx.size:
            return
        nx = self.nuclei
        cx = (nx.cx16[idx] - x0 * 16).tolist()
        cy = (nx.cy16[idx] - y0 * 16).tolist()
        ax, ay = nx.ax16[idx, 0].tolist(), nx.ax16[idx, 1].tolist()
        angle, colour = nx.angle[idx].tolist(), nx.colour[idx].tolist()
        limit_x, limit_y = (w + nx.reach) * 16, (h + nx.reach) * 16
        reach16 = nx.reach * 16
        for i in range(idx.size):
            if -reach16 < cx[i] < limit_x and -reach16 < cy[i] < limit_y:
                cv2.ellipse(out, (cx[i], cy[i]), (ax[i], ay[i]), angle[i], 0, 360, colour[i], -1, cv2.LINE_AA, 4)
