"""Running PCSR at any scale through pocketsr's integer-scale tiler, exactly.

The tiler (:func:`pocketsr_cli.tiling.upscale_tiled`) maps ``h x w`` pixels to
``h S x w S`` for an integer ``S`` and cuts windows at any pixel.  At a scale ``p/q``,
``q`` LR pixels make exactly ``p`` output pixels, so a :class:`Packing` makes each ``q x q``
LR block one pixel of a *packed* image:

- ``q == 1`` (integer scales): nothing to pack; the tiler runs at ``S = p``.
- ``q > 1``: :meth:`Packing.pack` pads the LR to whole blocks and pixel-unshuffles it to
  ``3 q**2`` channels, adds four channels that mark, in the last block row/column, how
  many of its LR rows/columns are padding and how many of its output rows/columns lie
  past ``h s`` / ``w s`` (rounded, ``grid.output_length``), and zeros up to ``3 p**2``
  channels (the tiler wants as many channels out as in).  The tiler runs at ``S = 1`` on
  blocks; the tile function (:meth:`Packing.tile_fn`) unpacks a window, drops the
  padding, runs the network on it for the window's output rows and columns (so a window
  at the image's end ends where the image's output does, and the refinement treats its
  last row as the untiled run does), and packs the ``p x p`` output block of each LR
  block back into ``3 p**2`` channels.  :meth:`Packing.unpack` pixel-shuffles the
  tiler's result and crops it to that size.

Windows then start at multiples of ``q`` LR pixels, where the query grid repeats exactly
(``grid.py``), so with ``overlap >= Packing.overlap(module.receptive_radius)`` blocks the
tiled result equals the untiled one for ``k`` routing (the adaptive mode clusters each
window on its own).  The packed image holds as many numbers as the output, in the
output's dtype if the tiler is asked for one.

The inference layer uses it as::

    packing = Packing.for_scale(2.5)
    packed = packing.pack(lr)                       # (1, C, hb, wb), C = packing.channels
    out = upscale_tiled(packed, packing.tile_fn(module), scale=packing.tiler_scale,
                        tile=packing.blocks(tile_px), overlap=packing.overlap(radius))
    sr = packing.unpack(out, *lr.shape[-2:])        # (1, 3, 2.5 h, 2.5 w), rounded half up
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pocketsr_cli.archs.pcsr.grid import as_ratio, output_length

if TYPE_CHECKING:
    from pocketsr_cli.archs.pcsr.network import PCSR

# Mark channels after the 3 q**2 LR channels (see Packing.pack).
_PAD_ROWS, _PAD_COLS, _DROP_ROWS, _DROP_COLS = range(4)


@dataclass(frozen=True)
class Packing:
    """How a PCSR run at ``ratio = p/q`` meets an integer-scale tiler (see module doc)."""

    ratio: Fraction

    @classmethod
    def for_scale(cls, scale: float | Fraction) -> Packing:
        """The packing for ``scale`` (as :func:`~pocketsr_cli.archs.pcsr.grid.as_ratio`).

        Raises:
            ValueError: ``scale`` is not a finite number >= 1.
        """
        return cls(as_ratio(scale))

    @property
    def p(self) -> int:
        """Output pixels per block side."""
        return self.ratio.numerator

    @property
    def q(self) -> int:
        """LR pixels per block side."""
        return self.ratio.denominator

    @property
    def tiler_scale(self) -> int:
        """The integer scale to give the tiler."""
        return self.p if self.q == 1 else 1

    @property
    def channels(self) -> int:
        """Channels of the packed image (and of the tiler's output)."""
        return 3 if self.q == 1 else 3 * self.p * self.p

    def blocks(self, lr_pixels: int) -> int:
        """A tile side given in LR pixels as whole blocks (``0``, one tile, stays ``0``)."""
        return 0 if lr_pixels <= 0 else max(1, lr_pixels // self.q)

    def overlap(self, radius: int) -> int:
        """Tiler overlap, in blocks, that makes tiles exact for a network whose output
        depends on LR pixels up to ``radius`` away (``PCSR.receptive_radius``)."""
        return 2 * math.ceil(radius / self.q)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H, W)`` of the result for an ``h x w`` LR image."""
        return output_length(h, self.ratio), output_length(w, self.ratio)

    def pack(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` -> the tiler's input ``(N, channels, ceil(h/q), ceil(w/q))``."""
        if self.q == 1:
            return image
        n, _, h, w = image.shape
        q, lr_channels = self.q, 3 * self.q * self.q
        hb, wb = -(-h // q), -(-w // q)
        blocks = F.pixel_unshuffle(F.pad(image, (0, wb * q - w, 0, hb * q - h)), q)
        height, width = self.output_size(h, w)
        packed = image.new_zeros(n, self.channels, hb, wb)
        packed[:, :lr_channels] = blocks
        packed[:, lr_channels + _PAD_ROWS, hb - 1, :] = hb * q - h
        packed[:, lr_channels + _PAD_COLS, :, wb - 1] = wb * q - w
        packed[:, lr_channels + _DROP_ROWS, hb - 1, :] = hb * self.p - height
        packed[:, lr_channels + _DROP_COLS, :, wb - 1] = wb * self.p - width
        return packed

    def unpack(self, out: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The tiler's output for an ``h x w`` LR image -> ``(N, 3, H, W)`` (any dtype)."""
        if self.q == 1:
            return out
        height, width = self.output_size(h, w)
        return F.pixel_shuffle(out, self.p)[:, :, :height, :width]

    def tile_fn(self, module: PCSR) -> Callable[[torch.Tensor], torch.Tensor]:
        """The tiler's ``fn``: packed windows in, packed results out (``module`` at
        :attr:`ratio`; its routing settings and statistics apply per window)."""
        ratio, p, q = self.ratio, self.p, self.q
        if q == 1:
            return lambda x: module(x, scale=ratio)
        lr_channels = 3 * q * q

        def run(x: torch.Tensor) -> torch.Tensor:
            _, _, hb, wb = x.shape
            results = []
            for window in x.split(1):
                # The marks sit in the last block row/column: zero unless the window ends
                # where the image does.
                marks_row = window[0, lr_channels:, hb - 1, 0]
                marks_col = window[0, lr_channels:, 0, wb - 1]
                lr_rows = hb * q - _count(marks_row[_PAD_ROWS], q)
                lr_cols = wb * q - _count(marks_col[_PAD_COLS], q)
                height = hb * p - _count(marks_row[_DROP_ROWS], p)
                width = wb * p - _count(marks_col[_DROP_COLS], p)
                lr = F.pixel_shuffle(window[:, :lr_channels], q)[:, :, :lr_rows, :lr_cols]
                y = module(lr, scale=ratio, out_size=(height, width))
                y = F.pad(y, (0, wb * p - width, 0, hb * p - height))
                results.append(F.pixel_unshuffle(y, p))
            return torch.cat(results)

        return run


def _count(value: torch.Tensor, limit: int) -> int:
    """A count read back from a mark channel, kept in ``[0, limit)`` (a memory probe feeds
    the tile function arbitrary values)."""
    return min(max(round(float(value)), 0), limit - 1)
