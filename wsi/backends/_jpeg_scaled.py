"""Reduced-resolution decoding of TIFF JPEG tiles: libjpeg-turbo's scaled IDCT at 1/2, 1/4, 1/8.

A JPEG decoder can produce an image ``k`` times smaller straight from the DCT coefficients,
skipping most of the inverse transform, upsampling and colour conversion: a 256 px tile decodes
at 1/2 in about 60 % of the time of a full decode (the entropy decoding, about 35 %, stays).
Output pixel ``(i, j)`` approximates the mean of stored pixels ``[k i, k i + k) x [k j, k j + k)``
of the tile (at 1/8 it *is* that mean, the DC coefficient; at 1/2 and 1/4 it is the low
frequencies of the block, which can ring by up to about 35 grey levels beside a hard edge).

The decoder is simplejpeg, not imagecodecs or OpenCV:

* imagecodecs' ``jpeg8_decode`` (the full decoder used elsewhere) has no scaling option;
* OpenCV's ``IMREAD_REDUCED_COLOR_*`` scales, but returns ``None`` without a reason for a bad
  stream and decodes recoverable damage silently, with a message on stderr;
* simplejpeg ships libjpeg-turbo inside its wheel (no system package), exposes TurboJPEG's
  scaling factors, decodes into a caller's buffer, releases the GIL, and with ``strict=True``
  raises ``ValueError`` with libjpeg's message for any damage, even what libjpeg can decode
  past (the caller then asks the full decoder, whose verdict both paths share: with
  ``strict=False`` simplejpeg turns even a scan of garbage into pixels).

Where some components are stored at half resolution (4:2:0), a full decode upsamples them with
libjpeg's "fancy" (triangle) filter before the caller's area average; a scaled decode gives them
at their native resolution instead, without that filter: sharper, and up to 47 grey levels away
from full decode + ``cv2.INTER_AREA`` beside a nucleus on generated Aperio-style slides, whose G
and B are stored at half resolution. :func:`soften_like_upsampling` applies what the triangle
filter followed by a ``k`` x ``k`` area average does to such a component, ``[w, 1 - 2w, w]`` with
``w = 1 / (4k)`` along each halved axis (exact for ``k = 2``), which brings them back within 22
grey levels. Only components that come out as channels of their own (RGB, no colour transform)
can be treated this way; YCbCr 4:2:0 tiles measured within 21 without it.

TIFF JPEG tiles are often *abbreviated*: the quantisation and Huffman tables live once in the
page's JPEGTables tag. TurboJPEG decodes only whole streams, so the tables are spliced in after
the tile's start-of-image marker. Aperio writes RGB samples (no colour transform) without a
JFIF or Adobe marker, and with component ids that libjpeg would take for YCbCr (0, 1, 2 or
1, 2, 3); where the full decoder is told "RGB", an Adobe APP14 marker with transform 0 tells
libjpeg the same here.
"""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

__all__ = ["SCALED_REDUCTIONS", "spliced_stream", "decode_scaled", "component_sampling", "soften_like_upsampling"]

#: Reductions TurboJPEG decodes directly (besides 1: a full decode).
SCALED_REDUCTIONS = (2, 4, 8)

_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
#: Start-of-frame markers (SOF0-SOF15 less DHT, JPG and DAC, which share the range).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
#: APP14 "Adobe", version 100, no flags, transform 0: the three components are R, G, B.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def spliced_stream(data: bytes, tables: bytes | None, rgb: bool) -> bytes:
    """One self-contained JPEG stream from a tile's bytes and its page's JPEGTables.

    Parameters
    ----------
    data : bytes
        The stored tile: a JPEG stream, possibly abbreviated (no tables).
    tables : bytes, optional
        The page's JPEGTables: a stream of table markers between SOI and EOI.
    rgb : bool
        Whether the components are R, G, B (no colour transform), as the TIFF says.

    Raises
    ------
    ValueError
        ``data`` or ``tables`` does not start with a JPEG start-of-image marker.
    """
    if data[:2] != _SOI:
        raise ValueError(f"the tile does not start with a JPEG SOI marker (starts with {data[:2].hex()})")
    body = b""
    if tables:
        if tables[:2] != _SOI:
            raise ValueError(f"JPEGTables does not start with a JPEG SOI marker (starts with {tables[:2].hex()})")
        body = tables[2:-2] if tables.endswith(_EOI) else tables[2:]
    return b"".join((_SOI, body, _ADOBE_RGB if rgb else b"", data[2:]))


def decode_scaled(stream: bytes, reduction: int, shape: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Decode a whole JPEG stream ``reduction`` times smaller, as ``(H, W, 3)`` uint8 RGB.

    Parameters
    ----------
    stream : bytes
        A self-contained JPEG stream (:func:`spliced_stream`).
    reduction : int
        2, 4 or 8.
    shape : (int, int)
        ``(height, width)`` of the full-size image; the result is ``shape // reduction``.
    out : ndarray, optional
        A C-contiguous ``(H // reduction, W // reduction, 3)`` uint8 destination.

    Raises
    ------
    ValueError
        The stream cannot be decoded, or decodes to another size than ``shape``.
    """
    if reduction not in SCALED_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {SCALED_REDUCTIONS}, got {reduction!r}")
    height, width = shape[0] // reduction, shape[1] // reduction
    # min_factor picks the scaling factor; min_width/height keep TurboJPEG from going coarser.
    image = simplejpeg.decode_jpeg(stream, "RGB", min_factor=reduction, min_width=width, min_height=height,
                                   buffer=out, strict=True)
    if image.shape[:2] != (height, width):
        raise ValueError(f"expected a {width}x{height} px image at 1/{reduction}, got {image.shape[1]}x{image.shape[0]}")
    return image


def component_sampling(data: bytes) -> tuple[tuple[int, int], ...] | None:
    """The ``(horizontal, vertical)`` sampling factors of each component, from a JPEG stream's frame header.

    Walks the marker segments from the start; ``None`` when there is no readable frame header
    before the scan (a stream cut short, or not JPEG).
    """
    at = 2 if data[:2] == _SOI else 0
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF_MARKERS:
            count = data[at + 9] if at + 10 <= len(data) else 0
            fields = data[at + 10 : at + 10 + 3 * count]
            if count == 0 or len(fields) < 3 * count:
                return None
            return tuple((fields[3 * i + 1] >> 4, fields[3 * i + 1] & 0x0F) for i in range(count))
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        at += 2 + length
    return None


def soften_like_upsampling(image: np.ndarray, halved: tuple[tuple[bool, bool], ...], reduction: int,
                           rect: tuple[int, int, int, int] | None = None) -> None:
    """Filter, in place, the channels of a scaled decode that a full decode would have upsampled.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8, one channel per JPEG component (no colour transform): a whole tile.
    halved : tuple of (bool, bool)
        Per channel, whether the component is stored at half resolution along x and along y.
    reduction : int
        The decode's reduction ``k``; the filter is ``[w, 1 - 2w, w]`` with ``w = 1 / (4k)``.
    rect : (x0, y0, x1, y1), optional
        The pixels the caller will use: they are filtered from their neighbours in the tile (the
        tile's own edges extended, as libjpeg's upsampling extends them); those beside them may
        change too, the rest stays as decoded. Default: the whole tile.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = rect or (0, 0, width, height)
    mx0, my0, mx1, my1 = max(0, x0 - 1), max(0, y0 - 1), min(width, x1 + 1), min(height, y1 + 1)
    source = image[my0:my1, mx0:mx1]
    w = 1.0 / (4 * reduction)
    kernels = {False: np.array([0.0, 1.0, 0.0], np.float32), True: np.array([w, 1 - 2 * w, w], np.float32)}
    patterns = sorted({h for h in halved if any(h)})
    if len(patterns) == 1 and sum(h == patterns[0] for h in halved) == len(halved) - 1:
        # the usual case (G and B halved): filter in place, then put back the one other channel
        # (numpy copies one channel of three fast, two of three slowly); the margin, filtered
        # against the edge of ``source``, is not the caller's to use
        keep = next(c for c, h in enumerate(halved) if h != patterns[0])
        kept = image[y0:y1, x0:x1, keep].copy()
        cv2.sepFilter2D(source, -1, kernels[patterns[0][0]], kernels[patterns[0][1]], dst=source,
                        borderType=cv2.BORDER_REPLICATE)
        image[y0:y1, x0:x1, keep] = kept
        return
    inner = (slice(y0 - my0, y1 - my0), slice(x0 - mx0, x1 - mx0))
    for pattern in patterns:
        filtered = cv2.sepFilter2D(source, -1, kernels[pattern[0]], kernels[pattern[1]],
                                   borderType=cv2.BORDER_REPLICATE)[inner]
        for channel, channel_halved in enumerate(halved):
            if channel_halved == pattern:
                image[y0:y1, x0:x1, channel] = filtered[..., channel]
