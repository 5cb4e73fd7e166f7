"""The colour under fully transparent pixels, replaced by the visible colour around it.

An image with alpha keeps some colour under its fully transparent pixels: nothing shows
it, and editors leave anything there (black, white, the colour before an erase, red).  An
upscaler that treats colour and alpha apart (the models cannot take alpha, the resamplers
interpolate each channel) mixes that hidden colour into the half-transparent pixels it
draws along every edge: a white disc on a transparent red background came out with a dark
red rim.  :func:`fill_hidden_colour` gives every fully transparent pixel the colour of the
visible pixels nearest to it first (a push-pull fill: averaged down a pyramid of the
visible pixels, filled back up), so what an edge mixes in is the edge's own colour.
Visible pixels (alpha above 0) are never changed.

Cost: a 12 MP RGBA photo, about 1.1 s on one core and 370 MB at the peak (the copy
returned, masks and float32 pyramids of half size and below); only images with some
alpha 0 pay it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fill_hidden_colour(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (``H x W x C``, C 2 or 4, alpha last; uint8/uint16) with the colour of
    every pixel whose alpha is 0 replaced by that of the visible pixels around it.

    Returns ``pixels`` itself when no pixel is fully transparent or none is visible (there
    is nothing to fill or nothing to fill from), else a new array.

    Raises:
        MemoryError: the copies do not fit (OpenCV's allocation failure, as Python's).
    """
    hidden = pixels[:, :, -1] == 0
    if not hidden.any() or hidden.all():
        return pixels
    import cv2

    try:
        return _filled(pixels, hidden, cv2)
    except cv2.error as exc:
        if "memory" in str(exc).lower():
            message = f"not enough memory to fill the colour under alpha 0: {exc}"
            raise MemoryError(message) from None
        raise


def _filled(pixels: np.ndarray, hidden: np.ndarray, cv2: Any) -> np.ndarray:
    height, width = hidden.shape
    out = pixels.copy()
    colour = out[:, :, :-1]  # the copy's colour planes, hidden ones zeroed for the sums
    colour[hidden] = 0
    # A pyramid of exact sums over 2x2 blocks (colour of the visible pixels, and how many
    # there are), each level half the one below; its top cell has some visible pixel.
    pyramid = [(_halve(colour), _halve((~hidden)[:, :, None]))]
    while max(pyramid[-1][1].shape[:2]) > 1:
        total, count = pyramid[-1]
        pyramid.append((_halve(total), _halve(count)))
    total, count = pyramid[-1]
    filled = total / count  # the mean visible colour
    for level in range(len(pyramid) - 2, -1, -1):
        total, count = pyramid[level]
        size = (count.shape[1], count.shape[0])
        coarse = _shaped(cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR), total)
        share = np.minimum(count / float(4 ** (level + 1)), 1.0)  # of the cell visible
        filled = total / np.maximum(count, 1.0)  # the visible colour where there is some
        filled -= coarse  # in place, as coarse + share * (known - coarse): fewer copies
        filled *= share
        filled += coarse
    peak = np.iinfo(pixels.dtype).max
    small = np.clip(np.rint(filled), 0, peak).astype(pixels.dtype)
    full = _shaped(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), colour)
    colour[hidden] = full[hidden]
    return out


def _halve(a: np.ndarray) -> np.ndarray:
    """Sums over the 2x2 blocks of ``a`` (``H x W x C``; an odd last row or column makes
    blocks of its own), as float32: exact for sums of 16-bit samples."""
    height, width = a.shape[:2]
    out = np.zeros(((height + 1) // 2, (width + 1) // 2, a.shape[2]), np.float32)
    out += a[0::2, 0::2]
    out[: height // 2] += a[1::2, 0::2]
    out[:, : width // 2] += a[0::2, 1::2]
    out[: height // 2, : width // 2] += a[1::2, 1::2]
    return out


def _shaped(resized: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a single channel's axis: put it back (``H x W x C`` throughout)."""
    return resized.reshape(resized.shape[0], resized.shape[1], like.shape[2])
