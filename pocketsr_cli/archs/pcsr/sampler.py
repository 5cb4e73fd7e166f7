"""LIIF-style per-pixel MLPs: the heavy and light upsamplers and the pixel classifier.

Each reads, for one output pixel, ``[nearest LR feature (C), relative coordinate (y, x),
relative cell (y, x)]`` (the official ``liif-sampler`` input, ``C + 4`` numbers) and runs
an MLP (``imnet.layers``: Linear, ReLU, ..., Linear; the official key names).

The first layer is linear, so it splits into a feature part, evaluated once per *LR*
pixel (:meth:`LiifSampler.prepare`), and per-row and per-column coordinate terms; a query
then costs a gather and two adds before the hidden layers (:meth:`LiifSampler.query`).
This is the same function as concatenating the input per pixel, ``scale**2`` times
cheaper in its first layer, and it lets any subset of pixels be evaluated on its own: the
gather -> MLP -> scatter that makes PCSR's routing save time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pocketsr_cli.archs.pcsr.grid import QueryAxis

MAX_OFFSETS = 1 << 12  # row x column term pairs tabulated (4,096 x width numbers at most)


def _first_of_each(kind: torch.Tensor, kinds: int) -> torch.Tensor:
    """For each of ``kinds`` values, one position of ``kind`` that holds it."""
    positions = torch.arange(kind.numel(), device=kind.device)
    return torch.zeros(kinds, dtype=torch.int64, device=kind.device).scatter_(0, kind, positions)


class Mlp(nn.Module):
    """``in_dim -> hidden... -> out_dim`` with ReLU between layers (official ``mlp``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU(inplace=True)]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class Prepared:
    """One MLP's first layer, evaluated where it can be shared.

    Attributes:
        features: ``(N * h * w, width)``: the feature part at every LR pixel.
        rows: ``(H, width)``: relative-coordinate term of each output row, plus the cell
            term and the bias (the same for every pixel).
        cols: ``(W, width)``: relative-coordinate term of each output column.
        offsets: ``(A * B, width)``: ``rows + cols`` for each pair of the ``A`` distinct
            row terms and ``B`` distinct column terms (a scale ``p/q`` has about ``p`` of
            each), so that a query adds one gathered row instead of two; None when
            there are more than :data:`MAX_OFFSETS` pairs.
        row_pick / col_pick: ``(H,)`` / ``(W,)`` int64: the row of ``offsets`` of output
            pixel ``(r, c)`` is ``row_pick[r] + col_pick[c]`` (``B`` times the kind of its
            row term plus the kind of its column term).
    """

    features: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    offsets: torch.Tensor | None = None
    row_pick: torch.Tensor | None = None
    col_pick: torch.Tensor | None = None


@dataclass(frozen=True)
class Queries:
    """A set of output pixels: where each reads its feature and its coordinate terms.

    Attributes:
        lr_index: ``(M,)`` row of :attr:`Prepared.features` (image and LR pixel).
        row / col: ``(M,)`` output row and column.
    """

    lr_index: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor


class FoldedMlp:
    """An MLP past its first layer for inference, channel-major, biases folded into the GEMMs.

    Each layer's input sits in a reused buffer of ``width + 1`` rows whose last row is ones,
    and each weight carries its bias as a last column, so a layer is one ``mm`` straight
    into the next buffer plus an in-place ReLU: no copy of the bias into every output (what
    ``addmm`` does) and no allocation per batch.  About 20% faster than
    :meth:`LiifSampler.channel_major` on the CPU, for the 58-wide heavy MLP on 2,259 pixels
    and the 10-wide light one on 13,107.  No autograd (``out=`` buffers).

    Use: write the first-layer sums of ``m <= capacity`` pixels into :meth:`input`, then
    :meth:`run`.
    """

    def __init__(self, linears: Sequence[nn.Linear], capacity: int) -> None:
        first = linears[0].weight.detach()
        self.first_width = linears[0].out_features
        self.capacity = capacity
        self.weights = [
            torch.cat([m.weight, _bias_column(m)], dim=1).detach().to(first.dtype)
            for m in linears[1:]
        ]
        widths = [m.in_features for m in linears[1:]] or [self.first_width]
        self._buffers = [
            first.new_empty((width + 1) * capacity) for width in widths
        ]  # flat: a batch of m pixels is the (width + 1, m) view of its start
        self._filled = [0] * len(widths)  # the m whose ones row each buffer holds

    def input(self, m: int) -> torch.Tensor:
        """``(first_width, m)``: where the first-layer sums of the next batch go."""
        return self._view(0, m)[:-1]

    def run(
        self, m: int, out: torch.Tensor | None = None, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The MLP's output ``(out_dim, m)`` for the sums in :meth:`input` (overwritten),
        into ``out`` when given (a ``(out_dim, m)`` view with unit column stride, such as a
        column range of a larger array).

        ``source`` replaces :meth:`input`: the sums as a ``(first_width + 1, m)`` view whose
        last row is ones, such as the transpose of rows gathered from a
        ``feature_table(..., ones_column=True)`` (overwritten too).  The first GEMM reads
        it transposed at no extra cost, so gathered rows need no copy.
        """
        x = self._view(0, m) if source is None else source
        if not self.weights:  # one linear layer: the sums are the output
            return x[:-1] if out is None else out.copy_(x[:-1])
        last = len(self.weights) - 1
        for i, weight in enumerate(self.weights):
            torch.relu_(x)  # the ones row stays ones
            if i == last:
                break
            following = self._view(i + 1, m)
            torch.mm(weight, x, out=following[:-1])
            x = following
        return torch.mm(weight, x) if out is None else torch.mm(weight, x, out=out)

    def _view(self, i: int, m: int) -> torch.Tensor:
        if m > self.capacity:
            raise ValueError(f"a batch of {m} pixels exceeds the capacity {self.capacity}")
        buffer = self._buffers[i]
        rows = buffer.numel() // self.capacity
        view = buffer[: rows * m].view(rows, m)
        if self._filled[i] != m:
            view[-1].fill_(1)
            self._filled[i] = m
        return view


def _bias_column(linear: nn.Linear) -> torch.Tensor:
    if linear.bias is None:
        return linear.weight.new_zeros(linear.out_features, 1)
    return linear.bias[:, None]


class LiifSampler(nn.Module):
    """One per-pixel MLP over LR features (official ``liif-sampler``, ``imnet`` inside)."""

    def __init__(self, feat_dim: int, out_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.imnet = Mlp(feat_dim + 4, out_dim, hidden)

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden widths of the MLP."""
        return tuple(m.out_features for m in self._linears()[:-1])

    @property
    def widths(self) -> tuple[int, ...]:
        """Output widths of every layer, the first (``hidden[0]``, or ``out_dim``) included."""
        return tuple(m.out_features for m in self._linears())

    def macs_per_query(self) -> int:
        """Multiply-accumulates of the MLP for one pixel, as evaluated naively (the
        official cost list counts this)."""
        return sum(m.in_features * m.out_features for m in self._linears())

    def _linears(self) -> list[nn.Linear]:
        return [m for m in self.imnet.layers if isinstance(m, nn.Linear)]

    def folded(self, capacity: int) -> FoldedMlp:
        """The MLP past its first layer as a :class:`FoldedMlp` for batches of up to
        ``capacity`` pixels (inference only; build it after the weights last changed)."""
        return FoldedMlp(self._linears(), capacity)

    def prepare(
        self, feat: torch.Tensor, rows: QueryAxis, cols: QueryAxis, cell: float
    ) -> Prepared:
        """The first layer's shareable parts for features ``(N, C, h, w)``, the query grid
        ``rows x cols`` and the relative cell (``2 / scale``, both axes)."""
        features = self.feature_table(feat)
        row_terms, col_terms = self.coordinate_terms(rows.rel, cols.rel, cell, features.dtype)
        row_rel, row_kind = torch.unique(rows.rel, return_inverse=True)
        col_rel, col_kind = torch.unique(cols.rel, return_inverse=True)
        if len(row_rel) * len(col_rel) > MAX_OFFSETS:
            return Prepared(features, row_terms, col_terms)
        row_first = _first_of_each(row_kind, len(row_rel))
        col_first = _first_of_each(col_kind, len(col_rel))
        offsets = row_terms[row_first][:, None] + col_terms[col_first][None]
        return Prepared(
            features,
            row_terms,
            col_terms,
            offsets.reshape(-1, offsets.shape[-1]),
            row_kind * len(col_rel),
            col_kind,
        )

    def feature_table(
        self, feat: torch.Tensor, channel_major: bool = False, ones_column: bool = False
    ) -> torch.Tensor:
        """The first layer's feature part at every LR pixel of ``feat`` ``(N, C, h, w)``:
        ``(N h w, width)``, or ``(width, N h w)`` when ``channel_major``.

        ``ones_column`` (rows only) appends a column of ones, ``(N h w, width + 1)``: gathered
        rows of it are a :class:`FoldedMlp` input as they are (see :meth:`FoldedMlp.run`).

        Both plain layouts come from the same GEMM, ``weight @ feat[n]`` per image, so the
        classifier's margins are the same numbers whichever layout a path reads.  With the
        pixels along the long side of its output this GEMM runs at full speed for any
        width; written by rows (``rows @ weight.T``, the rows a transposed view of ``feat``)
        the narrow tables of the light MLP and the classifier ran 10-30x slower (measured
        on a 2-core Xeon, one thread: 9.2 against 0.3 ms for the 10-wide table of a 128²
        input), more than the light MLP itself.  The table with a ones column is made by
        rows: it is the wide heavy MLP's, for which that GEMM is as fast.
        """
        c = self.feat_dim
        weight = self._linears()[0].weight[:, :c]
        if channel_major and ones_column:
            raise ValueError("a ones column is for the table by rows")
        if ones_column:
            # Straight into its rows: no transposed copy of a table this wide (the heavy
            # MLP's, the only one that takes this path, runs at full speed by rows).
            rows = feat.permute(0, 2, 3, 1).reshape(-1, c)
            table = rows.new_empty(rows.shape[0], len(weight) + 1)
            table[:, -1] = 1
            torch.mm(rows, weight.t(), out=table[:, :-1])
            return table
        n = feat.shape[0]
        parts = [torch.mm(weight, feat[i].reshape(c, -1)) for i in range(n)]
        table = parts[0] if n == 1 else torch.cat(parts, dim=1)  # (width, N h w)
        return table if channel_major else table.t().contiguous()

    def coordinate_terms(
        self, row_rel: torch.Tensor, col_rel: torch.Tensor, cell: float, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's coordinate part: ``(len(row_rel), width)`` row terms (the
        relative row coordinate's term, plus the cell's and the bias, which every pixel
        shares) and ``(len(col_rel), width)`` column terms."""
        first = self._linears()[0]
        c = self.feat_dim
        weight = first.weight
        const = weight[:, c + 2] * cell + weight[:, c + 3] * cell
        if first.bias is not None:
            const = const + first.bias
        row_terms = (row_rel.to(dtype)[:, None] * weight[:, c] + const).to(dtype)
        col_terms = (col_rel.to(dtype)[:, None] * weight[:, c + 1]).to(dtype)
        return row_terms, col_terms

    def query(self, prepared: Prepared, queries: Queries) -> torch.Tensor:
        """The MLP's output ``(M, out_dim)`` at the ``M`` pixels of ``queries``."""
        h = prepared.features.index_select(0, queries.lr_index)
        if prepared.offsets is None or prepared.row_pick is None or prepared.col_pick is None:
            h.add_(prepared.rows.index_select(0, queries.row))
            h.add_(prepared.cols.index_select(0, queries.col))
        else:  # one gather of the summed coordinate terms: a third less index work
            pick = prepared.row_pick.index_select(0, queries.row)
            pick.add_(prepared.col_pick.index_select(0, queries.col))
            h.add_(prepared.offsets.index_select(0, pick))
        return self.after_first(h)

    def rows(
        self,
        prepared: Prepared,
        lr_shape: tuple[int, int, int],
        rows: QueryAxis,
        cols: QueryAxis,
        start: int,
        stop: int,
    ) -> torch.Tensor:
        """The MLP's output ``(N, stop - start, W, out_dim)`` at every pixel of output rows
        ``start:stop`` (``lr_shape`` is the features' ``(N, h, w)``).

        The dense form of :meth:`query` (the same first-layer terms, summed in another
        order, so equal to float rounding); it needs no per-pixel index arithmetic, which
        is most of the cost of a narrow MLP run sparsely.
        """
        features = prepared.features.view(*lr_shape, -1)
        h = features.index_select(1, rows.index[start:stop]).index_select(2, cols.index)
        h.add_(prepared.rows[start:stop, None])
        h.add_(prepared.cols)
        return self.after_first(h.view(-1, h.shape[-1])).view(*h.shape[:-1], -1)

    def after_first(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP past its first layer: ``(M, hidden[0])`` first-layer sums -> ``(M, out)``
        (the result is a transposed view; ``h`` is overwritten).

        The layers run channel-major (:meth:`channel_major`).  The same function as
        ``imnet.layers[1:]``.
        """
        if len(self._linears()) == 1:
            return h
        return self.channel_major(h.t()).t()

    def channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`after_first` on channel-major sums: ``(hidden[0], M)`` -> ``(out, M)``
        (``x`` is overwritten, and returned itself when the MLP is one linear layer).

        ``W @ x`` rather than ``x @ W.T``: for these narrow layers a GEMM with the pixels
        along its long side runs 1.5-3x faster on the CPU (the 10-wide light MLP gains the
        most).
        """
        for linear in self._linears()[1:]:
            x = torch.relu_(x)
            if linear.bias is None:
                x = torch.mm(linear.weight, x)
            else:
                x = torch.addmm(linear.bias[:, None], linear.weight, x)
        return x
