"""Planning: cutting an axis into even tiles, and the feather weights that blend them.

See the package docstring for the vocabulary (tile, core, overlap, feather).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Span:
    """One tile along one axis: its core ``[start, stop)`` inside its window, in input px."""

    start: int
    stop: int
    window_start: int
    window_stop: int


def plan_axis(length: int, tile: int, overlap: int, multiple_of: int = 1) -> tuple[Span, ...]:
    """Cut an axis into even tiles.

    Contract: cores partition ``[0, length)``; every window has the same size, at most
    ``SizeRequirements(multiple_of=m).padded(tile)``, lies inside ``[0, length)``, contains
    its core, and extends at least ``overlap`` pixels past each core border that is not the
    image edge (or reaches the image edge).  ``tile <= 0`` or ``tile >= length`` gives one
    tile.

    When ``length`` is a multiple of ``m = multiple_of`` (the tiler pads the image to one)
    and the tile leaves room, the plan is *aligned*: every window starts at a multiple of
    ``m`` and is a multiple of ``m`` long.  A model that needs multiples of ``m`` usually
    works on a grid of that pitch (a pixel-unshuffle, strided levels), so only aligned
    windows put every pixel at the phase it has in the untiled run.  Cores then start at
    multiples of ``m`` and differ in size by at most ``m``, and each window reaches
    ``overlap`` rounded up to a multiple of ``m`` past its core.  Otherwise cores differ in
    size by at most one pixel and windows are made a multiple of ``m`` when the axis is
    long enough, so that only short axes need padding.

    Raises:
        ValueError: ``length < 1``, ``overlap < 0``, or ``0 < tile <= 2 * overlap`` on an
            axis that needs more than one tile.
    """
    if length < 1:
        raise ValueError(f"cannot tile an axis of length {length}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile <= 0 or tile >= length:
        return (Span(0, length, 0, length),)
    if tile - 2 * overlap < 1:
        raise ValueError(f"tile {tile} must be larger than twice the overlap ({overlap})")
    m = max(1, multiple_of)
    reach = -(-overlap // m) * m  # the overlap, in whole grid steps
    usable = (-(-tile // m) * m - 2 * reach) // m  # core side, in grid steps
    if m > 1 and length % m == 0 and usable >= 1:
        return _aligned(length, m, reach, usable)
    return _even(length, tile, overlap, m)


def _aligned(length: int, m: int, reach: int, usable: int) -> tuple[Span, ...]:
    """The aligned plan (see :func:`plan_axis`): everything in steps of ``m``."""
    units = length // m
    count = -(-units // usable)
    bounds = [m * (i * units // count) for i in range(count + 1)]
    biggest = max(b - a for a, b in pairwise(bounds))
    window = min(length, biggest + 2 * reach)
    spans = []
    for a, b in pairwise(bounds):
        # Centred, then moved down onto the grid: the window still reaches ``overlap``
        # past both core borders, because it is at least ``2 * reach`` wider than the core.
        start = (a - (window - (b - a)) // 2) // m * m
        start = min(max(start, 0), length - window)
        spans.append(Span(a, b, start, start + window))
    return tuple(spans)


def _even(length: int, tile: int, overlap: int, m: int) -> tuple[Span, ...]:
    """The unaligned plan: cores within one pixel of each other, windows anywhere."""
    usable = tile - 2 * overlap
    count = -(-length // usable)
    bounds = [i * length // count for i in range(count + 1)]
    biggest = max(b - a for a, b in pairwise(bounds))
    window = min(length, biggest + 2 * overlap)
    rounded = -(-window // m) * m
    if rounded <= length:
        window = rounded
    spans = []
    for a, b in pairwise(bounds):
        # Centre the core in its window; clamping at an edge only adds real image edge.
        start = min(max(a - (window - (b - a)) // 2, 0), length - window)
        spans.append(Span(a, b, start, start + window))
    return tuple(spans)


@dataclass(frozen=True)
class Feather:
    """Weights of one span along one axis over its output extent ``[lo, hi)``."""

    lo: int
    hi: int
    weights: torch.Tensor  # float32, length hi - lo


def feathers(spans: Sequence[Span], length: int, scale: int, overlap: int) -> list[Feather]:
    """Raised-cosine weights per span.

    Neighbours' ramps are complementary and never reach past the neighbouring core, so at
    every output pixel the weights of an axis sum to one (to float rounding) and, being
    separable, so do the 2-D weights: the blend is normalised by construction and the
    tiler needs no weight-sum buffer.
    """
    import torch

    smallest_core = min(s.stop - s.start for s in spans)
    # Ramps never reach past the neighbouring core, so at most two tiles meet anywhere.
    half = min(overlap * scale // 2, smallest_core * scale // 2)
    out_len = length * scale
    result = []
    for span in spans:
        first, last = span.start > 0, span.stop < length
        lo = max(0, span.start * scale - half) if first else 0
        hi = min(out_len, span.stop * scale + half) if last else out_len
        centres = torch.arange(lo, hi, dtype=torch.float64) + 0.5
        weights = torch.ones_like(centres)
        if first and half > 0:
            weights *= _rising((centres - (span.start * scale - half)) / (2 * half))
        if last and half > 0:
            weights *= 1.0 - _rising((centres - (span.stop * scale - half)) / (2 * half))
        result.append(Feather(lo, hi, weights.to(torch.float32)))
    return result


def _rising(t: torch.Tensor) -> torch.Tensor:
    """0 -> 1 raised-cosine ramp over ``t`` in [0, 1]; flat outside."""
    import torch

    return 0.5 - 0.5 * torch.cos(math.pi * t.clamp(0.0, 1.0))
