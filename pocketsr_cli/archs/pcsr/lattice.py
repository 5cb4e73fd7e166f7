"""The upsamplers at a whole integer scale, phase by phase over the LR grid.

At an integer scale ``s`` with ``H = s h`` and ``W = s w`` (``QueryAxis.whole`` on both
axes), output pixel ``(n, s i + a, s j + b)`` reads LR pixel ``(n, i, j)`` with a relative
coordinate that depends only on its *phase* ``(a, b)``.  So the output splits into ``s**2``
phase planes, each one value per LR pixel: plane ``a s + b`` holds the output pixels
``(n, s i + a, s j + b)`` at position ``(n h + i) w + j``, which is exactly the row of
:attr:`~pocketsr_cli.archs.pcsr.sampler.Prepared.features` they read.

What that saves against the general path (``network.py``), for the same function:

- no per-pixel index arithmetic and no gather of the feature table in the dense paths (the
  classifier, the light upsampler, an all-heavy call): a plane's first-layer sums are the
  table plus one row term and one column term, broadcast;
- the heavy pixels of a plane are found by one ``nonzero`` over the plane mask, and their
  positions index the feature table directly; their coordinate terms are one broadcast row;
- the residual is laid out by planes ``(s*s, 3, P)``, the bilinear base is computed by
  planes too (:func:`base_planes`: LR-sized passes, not ``F.interpolate`` over the
  output), and their sum becomes the image by one strided copy (:func:`to_image`).

The dense sums are formed in the same order as ``LiifSampler.rows`` (table, then row
term, then column term), the gathered ones as ``LiifSampler.query`` (table, then the
precomputed row + column sum), so each path rounds as its general counterpart does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pocketsr_cli.archs.pcsr.grid import QueryAxis
from pocketsr_cli.archs.pcsr.sampler import LiifSampler


@dataclass(frozen=True)
class Lattice:
    """The phase planes of an ``(N, h, w)`` LR grid at the whole integer scale ``s``."""

    scale: int
    n: int
    h: int
    w: int

    @property
    def planes(self) -> int:
        """``s**2``: phases ``a s + b``."""
        return self.scale * self.scale

    @property
    def pixels(self) -> int:
        """``P = N h w``: positions in a plane."""
        return self.n * self.h * self.w

    def to_raster(self, planes: torch.Tensor) -> torch.Tensor:
        """``(s*s, P)`` per-plane values -> ``(N, H, W)`` (a copy)."""
        s, n, h, w = self.scale, self.n, self.h, self.w
        return planes.view(s, s, n, h, w).permute(2, 3, 0, 4, 1).reshape(n, h * s, w * s)

    def from_raster(self, raster: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)`` -> ``(s*s, P)`` (a copy): the inverse of :meth:`to_raster`."""
        s, n, h, w = self.scale, self.n, self.h, self.w
        return raster.reshape(n, h, s, w, s).permute(2, 4, 0, 1, 3).reshape(s * s, -1)


def lattice_for(feat: torch.Tensor, rows: QueryAxis, cols: QueryAxis) -> Lattice | None:
    """The lattice of features ``(N, C, h, w)`` queried at ``rows x cols``, or None when
    the query grid is not a whole integer scale of the LR grid on both axes, or when its
    planes would be more than the positions in each (a few LR pixels at a large factor:
    the per-plane passes then cost more than they save; a 1-pixel image drawn at x100 ran
    10,000 planes of one pixel, about 600,000 small operations, and its memory probe,
    which watches each, took 60-90 s)."""
    if not (rows.whole and cols.whole):
        return None
    n, _, h, w = feat.shape
    scale = len(rows) // h
    if len(cols) != scale * w:
        return None
    grid = Lattice(scale, n, h, w)
    return grid if grid.planes <= grid.pixels else None


@dataclass(frozen=True)
class Terms:
    """One MLP's first layer on a lattice.

    Attributes:
        table: the feature part at every LR position: ``(width, P)`` channel-major (the
            dense paths), ``(P, width)`` by rows (the classifier's margins) or
            ``(P, width + 1)`` by rows with a ones column (the gathered path).
        rows / cols: ``(s, width)``: the coordinate terms of phase rows / columns ``0..s-1``
            (the row terms carry the cell's term and the bias).
    """

    table: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    def offsets(self) -> torch.Tensor:
        """``(s*s, width)``: row + column term of each plane."""
        s = len(self.rows)
        return (self.rows[:, None] + self.cols[None]).reshape(s * s, -1)


def terms(
    sampler: LiifSampler,
    feat: torch.Tensor,
    rows: QueryAxis,
    cols: QueryAxis,
    cell: float,
    lattice: Lattice,
    channel_major: bool,
    ones_column: bool = False,
) -> Terms:
    """``sampler``'s :class:`Terms` for features ``(N, C, h, w)`` on ``lattice``.

    The coordinate terms are those of ``LiifSampler.prepare`` (output rows ``a, a + s, ...``
    share row ``a``'s relative coordinate, so its first ``s`` rows are all there is).
    ``ones_column``: the table by rows with a column of ones appended (what :func:`sparse`
    takes).
    """
    table = sampler.feature_table(feat, channel_major, ones_column)
    s = lattice.scale
    row_terms, col_terms = sampler.coordinate_terms(rows.rel[:s], cols.rel[:s], cell, table.dtype)
    return Terms(table, row_terms, col_terms)


def _plane_sums(
    terms: Terms, lattice: Lattice, block: int
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """The first-layer sums of every plane, block by block: ``(plane, start, with_row,
    col)`` where the sums of LR positions ``start:start + m`` are ``with_row + col`` (table
    plus row term, then the column term: ``LiifSampler.rows``'s order); ``terms``
    channel-major.

    Blocks of ``block`` LR positions; within a block every phase, so that the block of the
    feature table stays in cache while the ``s**2`` planes read it.
    """
    s = lattice.scale
    row_terms, col_terms = terms.rows[..., None], terms.cols[..., None]
    for start in range(0, lattice.pixels, block):
        part = terms.table[:, start : start + block]
        for a in range(s):
            with_row = part + row_terms[a]
            for b in range(s):
                yield a * s + b, start, with_row, col_terms[b]


def dense(
    sampler: LiifSampler, terms: Terms, lattice: Lattice, block: int, out: torch.Tensor
) -> torch.Tensor:
    """``sampler`` at every output pixel, into ``out`` ``(s*s, out_dim, P)``; ``terms``
    channel-major (the sums of :func:`_plane_sums`)."""
    mlp = sampler.folded(min(block, lattice.pixels))
    for plane, start, with_row, col in _plane_sums(terms, lattice, block):
        m = with_row.shape[1]
        torch.add(with_row, col, out=mlp.input(m))
        mlp.run(m, out=out[plane, :, start : start + m])
    return out


def margins(classifier: LiifSampler, terms: Terms, lattice: Lattice, block: int) -> torch.Tensor:
    """The classifier's ``z_heavy - z_light`` on every plane, ``(s*s, P)`` float32.

    A classifier of one linear layer (the official one) needs no MLP pass: each plane's two
    logits are the table plus its row and column terms, summed as :func:`dense` sums them (so
    the same numbers), and their difference is written straight into the result.
    """
    table = terms.table
    if len(classifier.widths) > 1:  # hidden layers: the MLP at every pixel
        logits = torch.empty(
            lattice.planes, 2, lattice.pixels, dtype=table.dtype, device=table.device
        )
        dense(classifier, terms, lattice, block, logits)
        logits = logits.float()
        return logits[:, 1] - logits[:, 0]
    out = torch.empty(lattice.planes, lattice.pixels, dtype=torch.float32, device=table.device)
    for plane, start, with_row, col in _plane_sums(terms, lattice, block):
        logits = (with_row + col).float()
        torch.sub(logits[1], logits[0], out=out[plane, start : start + with_row.shape[1]])
    return out


def sparse(
    sampler: LiifSampler,
    terms: Terms,
    lattice: Lattice,
    mask: torch.Tensor,
    block: int,
    out: torch.Tensor,
) -> torch.Tensor:
    """``sampler`` at the output pixels where ``mask`` ``(s*s, P)`` is True, written into
    ``out`` ``(s*s, out_dim, P)`` there; ``terms`` by rows.

    Gather -> MLP -> scatter, ``block`` pixels at a time; the first-layer sums are formed
    as ``LiifSampler.query`` forms them: gathered table rows plus the plane's summed
    coordinate terms.  ``terms`` must be by rows with a ones column
    (``terms(..., channel_major=False, ones_column=True)``), so that the gathered rows are
    the MLP's input as they are.
    """
    offsets = terms.offsets()
    table = terms.table
    width = offsets.shape[1]
    if table.shape[1] != width + 1:
        raise ValueError("sparse() takes the table by rows with a ones column (terms(..., True))")
    offsets = torch.cat([offsets, offsets.new_zeros(len(offsets), 1)], dim=1)  # ones stay ones
    capacity = min(block, lattice.pixels)
    mlp = sampler.folded(capacity)
    # One gather buffer for every batch: index_select into it runs about twice as fast as
    # into a fresh tensor (measured: 2.6 ms against 5.4 for 100k rows of 58 numbers).
    gathered = table.new_empty(capacity, width + 1)
    for plane in range(lattice.planes):
        where = mask[plane].nonzero().squeeze(1)
        for start in range(0, where.numel(), block):
            index = where[start : start + block]
            m = index.numel()
            h = torch.index_select(table, 0, index, out=gathered[:m])
            h.add_(offsets[plane])
            out[plane].index_copy_(1, index, mlp.run(m, source=h.t()).to(out.dtype))
    return out


def phase_taps(scale: int) -> list[tuple[int, float]]:
    """The bilinear base's taps of each phase ``a`` along an axis at integer ``scale``:
    ``(offset, frac)`` such that output pixel ``s i + a`` is LR pixel ``i + offset`` and the
    next mixed with weight ``frac`` on the latter (``grid.query_axis`` away from the
    borders: ``pos = 2 s i + 2a + 1 - s`` in units of ``1 / 2s``)."""
    taps = []
    for a in range(scale):
        d = 2 * a + 1 - scale
        offset = d // (2 * scale)
        taps.append((offset, (d - offset * 2 * scale) / (2 * scale)))
    return taps


def base_planes(x: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """The bilinear base of ``x`` ``(N, C, h, w)`` by phase planes, ``(s*s, C, P)``.

    Each plane mixes two shifted copies of the border-replicated LR per axis (``lerp``), so
    the base costs a few passes over LR-sized arrays instead of ``F.interpolate`` over the
    output (about 9x faster on the CPU); equal to :func:`~pocketsr_cli.archs.pcsr.grid.bilinear`
    to float rounding.  Every pixel reads only its own neighbours: a tile gets the values
    the whole image does.
    """
    s, n, h, w = lattice.scale, lattice.n, lattice.h, lattice.w
    c = x.shape[1]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    planes = x.new_empty(lattice.planes, c, lattice.pixels)
    taps = phase_taps(s)
    for a, (row_offset, row_frac) in enumerate(taps):
        top = 1 + row_offset
        rows = torch.lerp(
            padded[:, :, top : top + h], padded[:, :, top + 1 : top + 1 + h], row_frac
        )
        for b, (col_offset, col_frac) in enumerate(taps):
            left = 1 + col_offset
            into = planes[a * s + b].view(c, n, h, w).transpose(0, 1)
            torch.lerp(
                rows[..., left : left + w], rows[..., left + 1 : left + 1 + w], col_frac, out=into
            )
    return planes


def to_image(planes: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Per-plane values ``(s*s, C, P)`` -> the image ``(N, C, H, W)`` (one strided copy)."""
    s, n, h, w = lattice.scale, lattice.n, lattice.h, lattice.w
    c = planes.shape[1]
    out = planes.new_empty(n, c, h * s, w * s)
    out.view(n, c, h, s, w, s).copy_(planes.view(s, s, c, n, h, w).permute(3, 2, 4, 0, 5, 1))
    return out


__all__ = [
    "Lattice",
    "Terms",
    "base_planes",
    "dense",
    "lattice_for",
    "margins",
    "phase_taps",
    "sparse",
    "terms",
    "to_image",
]
