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

Memory: two copies of the colour planes in the image's own dtype at full size, the rest
at half size and below in float32 (a 6 MP RGBA image: about 40 MB more).
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
    visible = (~hidden).astype(np.uint8)
    half = ((width + 1) // 2, (height + 1) // 2)
    # The first level in the image's dtype: averaging (INTER_AREA) rounds each sum to the
    # dtype's step, which the fill of invisible pixels can afford.
    total = _shaped(cv2.resize(colour, half, interpolation=cv2.INTER_AREA), colour)
    total = total.astype(np.float32)
    coverage = cv2.resize(visible.astype(np.float32), half, interpolation=cv2.INTER_AREA)
    pyramid = [(total, coverage)]
    while max(coverage.shape) > 1:
        size = ((coverage.shape[1] + 1) // 2, (coverage.shape[0] + 1) // 2)
        total = _shaped(cv2.resize(total, size, interpolation=cv2.INTER_AREA), total)
        coverage = cv2.resize(coverage, size, interpolation=cv2.INTER_AREA)
        pyramid.append((total, coverage))
    # ``total`` of a level is the mean over a cell of colour·visible: divided by the
    # cell's visible share it is the mean visible colour there.
    filled = total / np.maximum(coverage, 1e-12)[:, :, None]
    for total, coverage in reversed(pyramid[:-1]):
        size = (coverage.shape[1], coverage.shape[0])
        coarse = _shaped(cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR), total)
        known = total / np.maximum(coverage, 1e-12)[:, :, None]
        share = np.minimum(coverage, 1.0)[:, :, None]  # how much of the cell is visible
        filled = known * share + coarse * (1.0 - share)
    peak = np.iinfo(pixels.dtype).max
    small = np.clip(np.rint(filled), 0, peak).astype(pixels.dtype)
    full = _shaped(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), colour)
    colour[hidden] = full[hidden]
    return out


def _shaped(resized: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a single channel's axis: put it back (``H x W x C`` throughout)."""
    return resized.reshape(resized.shape[0], resized.shape[1], like.shape[2])
