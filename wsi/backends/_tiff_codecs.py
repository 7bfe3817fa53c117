"""Decoders the tiff backend needs beyond tifffile's: Aperio's JPEG 2000 tiles and alpha.

Aperio stores JPEG 2000 tiles as raw codestreams under two private TIFF compression codes,
and decodes them as OpenSlide does (``openslide-vendor-aperio.c``):

* ``33005``: the three components are R, G, B.
* ``33003``: the three components are Y, Cb, Cr, coded *without* the codestream's colour
  transform, so a plain JPEG 2000 decoder returns YCbCr that must still be converted.

imagecodecs (OpenJPEG) already converts a codestream whose chroma components are subsampled
(it treats those as sYCC), so only full-resolution chroma is converted here.
"""

from __future__ import annotations

import imagecodecs
import numpy as np

__all__ = [
    "APERIO_J2K_YCBCR",
    "APERIO_J2K_RGB",
    "decode_aperio_j2k",
    "ycbcr_to_rgb",
    "chroma_is_subsampled",
]

APERIO_J2K_YCBCR = 33003
APERIO_J2K_RGB = 33005

_SOC_SIZ = b"\xff\x4f\xff\x51"  # start of codestream, then the image and tile size marker


def _c_round(values: np.ndarray) -> np.ndarray:
    """C's ``round()``: halves away from zero (numpy rounds them to even)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _ycbcr_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # OpenSlide's own integer tables (make-tables.c), not cv2.cvtColor: cv2 rounds differently,
    # and these make the pixels equal OpenSlide's to the last bit.
    chroma = np.arange(256, dtype=np.float64) - 128.0
    r_cr = _c_round(1.402 * chroma).astype(np.int16)
    g_cb = _c_round(65536.0 * (0.5 - 0.34414 * chroma)).astype(np.int32)
    g_cr = _c_round(65536.0 * -0.71414 * chroma).astype(np.int32)
    b_cb = _c_round(1.772 * chroma).astype(np.int16)
    return r_cr, g_cb, g_cr, b_cb


_R_CR, _G_CB, _G_CR, _B_CB = _ycbcr_tables()


def ycbcr_to_rgb(ycbcr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Full-range (JFIF) YCbCr to RGB with OpenSlide's integer arithmetic.

    Parameters
    ----------
    ycbcr : ndarray
        ``(H, W, 3)`` uint8 Y, Cb, Cr.
    out : ndarray, optional
        ``(H, W, 3)`` uint8 destination (may be a non-contiguous view, or ``ycbcr`` itself).
    """
    # copies: ``out`` may be ``ycbcr`` itself
    luma, cb, cr = ycbcr[..., 0].astype(np.int16), ycbcr[..., 1].copy(), ycbcr[..., 2].copy()
    if out is None:
        out = np.empty(ycbcr.shape, dtype=np.uint8)
    np.clip(luma + _R_CR[cr], 0, 255, out=out[..., 0], casting="unsafe")
    np.clip(luma + ((_G_CB[cb] + _G_CR[cr]) >> 16), 0, 255, out=out[..., 1], casting="unsafe")
    np.clip(luma + _B_CB[cb], 0, 255, out=out[..., 2], casting="unsafe")
    return out


def chroma_is_subsampled(data: bytes) -> bool:
    """Whether a JPEG 2000 codestream samples its 2nd or 3rd component coarser than its 1st.

    Reads the SIZ marker (ISO/IEC 15444-1 A.5.1): after the 38 bytes of Lsiz..Csiz come three
    bytes per component, precision then horizontal and vertical separation. A stream without a
    readable SIZ (a JP2 box file, say) counts as not subsampled.
    """
    start = data.find(_SOC_SIZ, 0, 4096)
    if start < 0:
        return False
    components_at = start + 4 + 36  # SOC, SIZ marker, then Lsiz..YTOsiz; Csiz is 2 bytes
    if len(data) < components_at + 2 + 9:
        return False
    count = int.from_bytes(data[components_at : components_at + 2], "big")
    if count < 3:
        return False
    first = components_at + 2
    separations = [(data[first + 3 * i + 1], data[first + 3 * i + 2]) for i in range(3)]
    return separations[1] != separations[0] or separations[2] != separations[0]


def decode_aperio_j2k(data: bytes, compression: int) -> np.ndarray:
    """Decode one Aperio JPEG 2000 tile (compression 33003 or 33005) to ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    ValueError
        The codestream does not hold three 8-bit components.
    imagecodecs.Jpeg2kError
        The codestream cannot be decoded.
    """
    decoded = imagecodecs.jpeg2k_decode(data)
    if decoded.dtype != np.uint8 or decoded.ndim != 3 or decoded.shape[2] != 3:
        raise ValueError(f"expected three 8-bit components, got {decoded.dtype} {decoded.shape}")
    if compression == APERIO_J2K_YCBCR and not chroma_is_subsampled(data):
        return ycbcr_to_rgb(decoded, out=decoded)
    return decoded
