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
"""

from __future__ import annotations

import numpy as np


def fill_hidden_colour(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (``H x W x C``, C 2 or 4, alpha last; uint8/uint16) with the colour of
    every pixel whose alpha is 0 replaced by that of the visible pixels around it.

    Returns ``pixels`` itself when no pixel is fully transparent or none is visible (there
    is nothing to fill or nothing to fill from), else a new array.
    """
    alpha = pixels[:, :, -1]
    hidden = alpha == 0
    if not hidden.any() or hidden.all():
        return pixels
    import cv2

    height, width = hidden.shape
    colour = pixels[:, :, :-1].astype(np.float32)
    colour[hidden] = 0.0
    coverage = (~hidden).astype(np.float32)
    pyramid: list[tuple[np.ndarray, np.ndarray]] = []  # (colour sum, visible share) per cell
    total = colour
    while max(coverage.shape) > 1:
        size = ((coverage.shape[1] + 1) // 2, (coverage.shape[0] + 1) // 2)
        total = _shaped(cv2.resize(total, size, interpolation=cv2.INTER_AREA), total)
        coverage = cv2.resize(coverage, size, interpolation=cv2.INTER_AREA)
        pyramid.append((total, coverage))
    filled = total / np.maximum(coverage, 1e-12)[:, :, None]  # one cell: the mean colour
    for total, coverage in reversed(pyramid[:-1]):
        size = (coverage.shape[1], coverage.shape[0])
        coarse = _shaped(cv2.resize(filled, size, interpolation=cv2.INTER_LINEAR), total)
        known = total / np.maximum(coverage, 1e-12)[:, :, None]
        share = np.minimum(coverage, 1.0)[:, :, None]  # how much of the cell is visible
        filled = known * share + coarse * (1.0 - share)
    # Full size: a hidden pixel takes the coarser levels' colour; the rest are kept.
    filled = _shaped(cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR), colour)
    out = pixels.copy()
    peak = np.iinfo(pixels.dtype).max
    out[:, :, :-1][hidden] = np.clip(np.rint(filled[hidden]), 0, peak).astype(pixels.dtype)
    return out


def _shaped(resized: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a single channel's axis: put it back (``H x W x C`` throughout)."""
    return resized.reshape(resized.shape[0], resized.shape[1], like.shape[2])
