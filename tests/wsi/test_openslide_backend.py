"""OpenSlide's premultiplied ARGB becomes RGB over white without PIL."""

from __future__ import annotations

import numpy as np

from slidescope.wsi.backends.openslide_backend import argb_to_rgb


def pack(r, g, b, a) -> np.uint32:
    return np.uint32((a << 24) | (r << 16) | (g << 8) | b)


def test_opaque_and_translucent_pixels():
    argb = np.array([[pack(10, 20, 30, 255), pack(0, 0, 0, 0)],
                     [pack(50, 40, 20, 128), pack(200, 100, 0, 255)]], dtype=np.uint32)
    out = np.empty((2, 2, 3), np.uint8)
    argb_to_rgb(argb, out)
    np.testing.assert_array_equal(out[0, 0], (10, 20, 30))
    np.testing.assert_array_equal(out[0, 1], (255, 255, 255))  # transparent glass is white
    np.testing.assert_array_equal(out[1, 0], (50 + 127, 40 + 127, 20 + 127))  # premultiplied over white
    np.testing.assert_array_equal(out[1, 1], (200, 100, 0))


def test_non_contiguous_destination():
    argb = np.full((3, 4), pack(1, 2, 3, 255), dtype=np.uint32)
    canvas = np.zeros((5, 6, 3), np.uint8)
    argb_to_rgb(argb, canvas[1:4, 1:5])
    assert (canvas[1:4, 1:5] == (1, 2, 3)).all() and (canvas[0] == 0).all()
