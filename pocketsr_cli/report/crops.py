"""Which part of an output to show at 100 %, and the before/after pixels of it.

Vocabulary: a *crop* is a window of the output in output pixels (:class:`Box`); its *after*
is those output pixels unchanged, its *before* the input pixels under it enlarged by
nearest neighbour to the same size, so the two align pixel for pixel and a slider between
them shows exactly what the model drew over each input pixel.

The most detailed window (:func:`choose_crops`) is the one with the most band-pass detail
(difference of two Gaussians, :func:`detail_map`) in the output's luma, measured on a copy
at most ``work`` pixels on its long side: one resize, two blurs and an integral image, a
few milliseconds even for a 4K output.  Windows are aligned to the scale factor when it is a
whole number, so a crop starts and ends on input-pixel boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WORK_SIDE = 512
"""Long side of the copy that detail is measured on."""


@dataclass(frozen=True)
class Box:
    """A window of an image: left, top, width, height in its pixels."""

    x: int
    y: int
    w: int
    h: int


def to_display(pixels: np.ndarray) -> np.ndarray:
    """``H×W×C`` uint8/uint16 (C in 1..4) as 8-bit RGB or RGBA, what a browser shows."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 2:
        return np.concatenate([np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:]], axis=2)
    return np.ascontiguousarray(pixels[:, :, :4])


def luma(pixels: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of 8-bit RGB(A) as float32, transparent pixels counted as black."""
    rgb = pixels[:, :, :3].astype(np.float32)
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    if pixels.shape[2] == 4:
        y *= pixels[:, :, 3].astype(np.float32) / 255.0
    return y


DETAIL_SCALE = 4.0
"""Band-pass amplitude (8-bit luma levels) at which a pixel counts as detailed."""


def detail_map(y: np.ndarray) -> np.ndarray:
    """Per-pixel detail of a luma image (same size): ``log(1 + (b / DETAIL_SCALE)²)`` of
    the band-pass ``b`` = blur σ1 − blur σ3.

    The logarithm makes the sum over a window count *how much* of it is detailed rather
    than how strong its strongest edge is: one high-contrast outline (a cup's rim against
    a dark wall) scores below a window of foliage, gravel or wood grain, where a model's
    invented or missing texture shows.
    """
    import cv2

    fine = cv2.GaussianBlur(y, (0, 0), 1.0)
    coarse = cv2.GaussianBlur(y, (0, 0), 3.0)
    band = (fine - coarse) / DETAIL_SCALE
    return np.log1p(np.asarray(band * band, dtype=np.float64))


def crop_size(
    width: int, height: int, side: int, align: tuple[int, int] = (1, 1)
) -> tuple[int, int]:
    """The crop's ``(w, h)``: ``side`` square, never larger than the image, a multiple of
    ``align`` where the image is large enough for one."""
    ax, ay = align
    w, h = min(side, width), min(side, height)
    if w >= ax:
        w -= w % ax
    if h >= ay:
        h -= h % ay
    return max(w, 1), max(h, 1)


def choose_crops(
    pixels: np.ndarray,
    side: int,
    count: int = 1,
    *,
    align: tuple[int, int] = (1, 1),
    work: int = WORK_SIDE,
) -> list[Box]:
    """Up to ``count`` non-overlapping ``side``-pixel windows of ``pixels`` (8-bit RGB(A)),
    most detailed first (see the module docs).  ``align``: window origins are multiples of
    it (the whole-number scale factor, per axis).  An image no larger than the window gives
    one window covering all of it."""
    height, width = pixels.shape[:2]
    cw, ch = crop_size(width, height, side, align)
    if (cw, ch) == (width, height) or count < 1:
        return [Box(0, 0, cw, ch)][: max(count, 1)]
    import cv2

    d = max(1.0, max(width, height) / work)
    sw, sh = max(1, round(width / d)), max(1, round(height / d))
    small = cv2.resize(luma(pixels), (sw, sh), interpolation=cv2.INTER_AREA)
    energy = detail_map(small)
    ww, wh = min(sw, max(1, round(cw / d))), min(sh, max(1, round(ch / d)))
    integral = np.zeros((sh + 1, sw + 1), np.float64)
    integral[1:, 1:] = energy.cumsum(0).cumsum(1)
    # Sum of every ww×wh window, indexed by its top-left corner.
    sums = integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]
    # Where each small-copy corner lands in the output (rounded, clamped and aligned: two
    # corners a window apart on the copy may land closer than a window there).
    xs = _origins(sums.shape[1], d, cw, width, align[0])
    ys = _origins(sums.shape[0], d, ch, height, align[1])
    boxes: list[Box] = []
    while len(boxes) < count and np.isfinite(sums).any():
        sy, sx = np.unravel_index(int(np.argmax(sums)), sums.shape)
        x, y = int(xs[sx]), int(ys[sy])
        boxes.append(Box(x, y, cw, ch))
        # No later window may overlap this one, in output pixels.
        sums[np.ix_(np.abs(ys - y) < ch, np.abs(xs - x) < cw)] = -np.inf
    return boxes


def _origins(n: int, d: float, crop: int, size: int, align: int) -> np.ndarray:
    """The output origins of the first ``n`` window corners along an axis of the small
    copy (``d`` output pixels each): in the image and on multiples of ``align``."""
    origin = np.clip(np.round(np.arange(n) * d), 0, size - crop).astype(np.int64)
    return origin - origin % align


def whole_scale(in_size: int, out_size: int) -> int:
    """The factor ``out_size / in_size`` when it is a whole number, else 1."""
    if in_size <= 0 or out_size % in_size:
        return 1
    return out_size // in_size


def after_crop(output: np.ndarray, box: Box) -> np.ndarray:
    """The output's pixels in ``box``."""
    return np.ascontiguousarray(output[box.y : box.y + box.h, box.x : box.x + box.w])


def before_crop(source: np.ndarray, out_size: tuple[int, int], box: Box) -> np.ndarray:
    """The input pixels under ``box`` of an output of ``out_size`` = ``(width, height)``,
    enlarged by nearest neighbour to ``box``'s size: output pixel ``X`` shows input pixel
    ``floor((X + ½) · w / W)`` (``X // s`` for a whole factor ``s``)."""
    height, width = source.shape[:2]
    out_w, out_h = out_size
    cols = ((np.arange(box.x, box.x + box.w) + 0.5) * width / out_w).astype(np.int64)
    rows = ((np.arange(box.y, box.y + box.h) + 0.5) * height / out_h).astype(np.int64)
    cols = np.clip(cols, 0, width - 1)
    rows = np.clip(rows, 0, height - 1)
    return np.ascontiguousarray(source[rows[:, None], cols[None, :]])


def thumbnail(pixels: np.ndarray, long_side: int) -> np.ndarray:
    """``pixels`` shrunk (area averaging) to ``long_side`` on its longer side; never
    enlarged."""
    height, width = pixels.shape[:2]
    if max(width, height) <= long_side:
        return pixels
    import cv2

    f = long_side / max(width, height)
    size = (max(1, math.floor(width * f + 0.5)), max(1, math.floor(height * f + 0.5)))
    out = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return out.reshape(size[1], size[0], pixels.shape[2]) if out.ndim == 2 else out
