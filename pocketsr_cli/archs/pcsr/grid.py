"""Where each output pixel of a PCSR run looks in the LR image, in exact arithmetic.

Vocabulary.  The scale is a fraction ``p/q`` (:func:`as_ratio`).  Along one axis the LR has
``n`` pixels, pixel ``j`` covering ``[j, j + 1)`` in LR units; output pixel ``i`` has its
centre at ``u_i = (i + 1/2) * q / p``: a grid of spacing exactly ``1/scale`` anchored at
the LR's first edge, whatever the axis length.  A query at ``u`` reads

- the *nearest* LR feature: the pixel containing ``u`` (``floor(u)``; a centre exactly on
  a boundary belongs to the pixel after it), clamped into ``[0, n)``;
- the *relative coordinate* ``2 * (u - index) - 1`` in ``[-1, 1)`` (LIIF's ``rel_coord``
  times the feature size: the offset from that pixel's centre in half-pixels);
- the *bilinear base*: LR pixels ``floor(u - 1/2)`` and the next, clamped at the borders
  (``grid_sample(..., padding_mode="border", align_corners=False)``).

Everything is computed from integers (``(2i + 1) q`` against ``2p``), so a window that
starts ``k * q`` LR pixels into the image sees the same indices shifted by ``k * q`` and
the same offsets and weights bit for bit: a tile computes exactly what the whole image
does.  The official code derives the same quantities from float32 coordinates normalised
to the image; it agrees wherever ``n * scale`` is a whole number and no centre lies on a
pixel boundary (boundaries are hit only when ``q`` is even, and float32 rounding then
decides the official side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from pocketsr_cli.sizing import scaled_length

MAX_DENOMINATOR = 100  # any scale with two decimals is exact


def as_ratio(scale: float | Fraction) -> Fraction:
    """``scale`` as a fraction ``p/q`` with ``q <= 100`` (exact for two-decimal scales).

    Raises:
        ValueError: not a finite number >= 1.
    """
    if isinstance(scale, Fraction):
        ratio = scale
    else:
        value = float(scale)
        if not math.isfinite(value):
            raise ValueError(f"scale must be a finite number, got {scale}")
        # repr() is the shortest decimal that reads back as the float: 3.7, not 3.70000000000000017.
        ratio = Fraction(repr(value))
    ratio = ratio.limit_denominator(MAX_DENOMINATOR)
    if ratio < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return ratio


def output_length(n: int, ratio: Fraction) -> int:
    """Output pixels along an axis of ``n`` LR pixels: ``n * scale`` rounded half up, at
    least one: pocketsr's rule for every output size (``sizing.scaled_length``), so that
    the size a run asks for is the size drawn.  The official ``round(h * scale)`` rounds
    half to even: one pixel fewer where ``n * scale`` is an even number and a half (32.5
    makes 32, not 33), a pixel whose centre lies on the LR's far edge, which it draws at
    odd ones."""
    return scaled_length(n, ratio)


@dataclass(frozen=True)
class QueryAxis:
    """The LR lookups of every output pixel along one axis (all tensors ``(out_len,)``).

    Attributes:
        index: LR pixel whose feature the query reads (int64).
        rel: relative coordinate, ``2 * (u - index) - 1`` (float32).
        lo / hi: the two LR pixels of the bilinear base (int64, border-clamped).
        frac: weight of ``hi`` in the base (float32; ``lo`` gets ``1 - frac``).
        whole: the axis is exactly ``n * p`` outputs at an integer scale ``p`` (no
            overhang), so the base is plain ``align_corners=False`` bilinear upsampling.
    """

    index: torch.Tensor
    rel: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    frac: torch.Tensor
    whole: bool = False

    def __len__(self) -> int:
        return int(self.index.shape[0])


def query_axis(
    n: int, out_len: int, ratio: Fraction, device: torch.device | str = "cpu"
) -> QueryAxis:
    """Lookups for ``out_len`` output pixels over an LR axis of ``n`` pixels at ``ratio``.

    ``out_len`` may exceed :func:`output_length`: queries past the LR end read its last
    pixel (the packed tiling adapter asks for whole blocks and crops).
    """
    p, q = ratio.numerator, ratio.denominator
    two_p = 2 * p
    i = torch.arange(out_len, dtype=torch.int64, device=device)
    centre = (2 * i + 1) * q  # u * 2p
    index = torch.div(centre, two_p, rounding_mode="floor").clamp_(0, n - 1)
    rel = ((centre - two_p * index).double() / p - 1.0).float()
    # Bilinear: pixel coordinate u - 1/2 (times 2p), clamped to [0, n - 1] like "border".
    pos = (centre - p).clamp_(0, (n - 1) * two_p)
    lo = torch.div(pos, two_p, rounding_mode="floor")
    frac = ((pos - lo * two_p).double() / two_p).float()
    hi = (lo + 1).clamp_(max=n - 1)
    whole = q == 1 and out_len == n * p
    return QueryAxis(index=index, rel=rel, lo=lo, hi=hi, frac=frac, whole=whole)


def bilinear(x: torch.Tensor, rows: QueryAxis, cols: QueryAxis) -> torch.Tensor:
    """The bilinear base: ``(N, C, h, w)`` sampled at the query grid, ``(N, C, H, W)``.

    Separable (rows, then columns) with the exact weights of :func:`query_axis`; equal to
    ``grid_sample(x, grid, "bilinear", padding_mode="border", align_corners=False)``.
    At a whole integer scale on both axes that is ``F.interpolate``'s bilinear mode (equal
    to float rounding, about 5 times faster on the CPU than the gathers below).
    """
    if rows.whole and cols.whole:
        return F.interpolate(x, size=(len(rows), len(cols)), mode="bilinear", align_corners=False)
    wy = rows.frac.to(x.dtype).view(1, 1, -1, 1)
    y = x.index_select(2, rows.lo) * (1 - wy) + x.index_select(2, rows.hi) * wy
    wx = cols.frac.to(x.dtype).view(1, 1, 1, -1)
    return y.index_select(3, cols.lo) * (1 - wx) + y.index_select(3, cols.hi) * wx
