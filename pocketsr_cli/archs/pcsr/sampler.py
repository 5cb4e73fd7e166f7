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
    """

    features: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor


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

    def macs_per_query(self) -> int:
        """Multiply-accumulates of the MLP for one pixel, as evaluated naively (the
        official cost list counts this)."""
        return sum(m.in_features * m.out_features for m in self._linears())

    def _linears(self) -> list[nn.Linear]:
        return [m for m in self.imnet.layers if isinstance(m, nn.Linear)]

    def prepare(
        self, feat: torch.Tensor, rows: QueryAxis, cols: QueryAxis, cell: float
    ) -> Prepared:
        """The first layer's shareable parts for features ``(N, C, h, w)``, the query grid
        ``rows x cols`` and the relative cell (``2 / scale``, both axes)."""
        first = self._linears()[0]
        c = self.feat_dim
        weight = first.weight
        features = torch.matmul(feat.permute(0, 2, 3, 1).reshape(-1, c), weight[:, :c].t())
        dtype = features.dtype
        const = weight[:, c + 2] * cell + weight[:, c + 3] * cell
        if first.bias is not None:
            const = const + first.bias
        row_terms = rows.rel.to(dtype)[:, None] * weight[:, c] + const
        col_terms = cols.rel.to(dtype)[:, None] * weight[:, c + 1]
        return Prepared(features, row_terms.to(dtype), col_terms.to(dtype))

    def query(self, prepared: Prepared, queries: Queries) -> torch.Tensor:
        """The MLP's output ``(M, out_dim)`` at the ``M`` pixels of ``queries``."""
        h = prepared.features.index_select(0, queries.lr_index)
        h.add_(prepared.rows.index_select(0, queries.row))
        h.add_(prepared.cols.index_select(0, queries.col))
        return self.imnet.layers[1:](h)
