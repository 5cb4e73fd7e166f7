"""The PCSR network: backbone -> classifier -> routed heavy/light upsamplers -> refinement.

Data flow of :meth:`PCSR.forward` for an LR batch ``(N, 3, h, w)`` at scale ``s``:

1. the backbone turns ``x - rgb_mean`` into LR features ``(N, C, h, w)``;
2. the query grid (``grid.py``) places the ``H x W = h s x w s`` output pixels (rounded
   half up, ``grid.output_length``) on the LR;
3. the classifier runs at every output pixel, giving the heavy-vs-light logit margin;
4. routing (``routing.py``) turns the margins into a heavy mask (``k`` or adaptive);
5. the light upsampler runs densely, row block by row block, unless no pixel is light;
   the heavy one only on its own pixels: their indices are gathered, the MLP runs on
   that batch of rows, the result is scattered over the light one (in chunks of
   :data:`CHUNK` pixels, which bounds memory and keeps the MLP's activations in cache).
   When every pixel is heavy it too runs densely, with no index work;
6. the bilinear base is added, and light pixels touching heavy ones are refined.

At a whole integer scale (``H = s h``, ``W = s w``: every ``module(x)`` call and every
integer-scale tile) steps 3-6 run by phase planes instead (``lattice.py``): the same
function without per-pixel index arithmetic or feature gathers in the dense paths.

Why the light path is dense: its MLP is a fraction of the heavy one's width (10 against
58 in the FSRCNN configuration), so run sparsely most of its time went to index arithmetic
and gathers; running it everywhere costs less than finding its pixels.  The heavy MLP is
what routing saves.

``sparse = False`` runs both upsamplers at every pixel and selects by the mask: the same
function, as the tests check, at the cost of the all-heavy network.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from pocketsr_cli.archs.pcsr import lattice
from pocketsr_cli.archs.pcsr.backbones import build_backbone, official_flops
from pocketsr_cli.archs.pcsr.config import CONFIGS, PCSRConfig
from pocketsr_cli.archs.pcsr.grid import (
    QueryAxis,
    as_ratio,
    bilinear,
    output_length,
    query_axis,
)
from pocketsr_cli.archs.pcsr.lattice import Lattice, base_planes, lattice_for, to_image
from pocketsr_cli.archs.pcsr.routing import (
    COST_PROBE,
    Routing,
    RoutingStats,
    path_costs,
    refine,
    route_adaptive,
    route_by_cost,
)
from pocketsr_cli.archs.pcsr.sampler import LiifSampler, Queries

# Numbers in the widest activation of one MLP batch (512 KB of float32): the batch's
# activations then stay in the CPU's cache from layer to layer.  For the official heavy MLP
# (58 wide) that is 2,259 pixels: 3-4x faster per pixel than batches of 65,536, and 10-20%
# faster than batches of 4,519 (1 MB); narrow MLPs get larger batches, which saves Python
# overhead (measured on a 2-core Xeon, one thread).
CHUNK = 1 << 17
LIGHT, HEAVY = 0, 1  # the classifier's logits, in the official order


class PCSR(nn.Module):
    """``(N, 3, h, w)`` in ``[0, 1]`` -> ``(N, 3, h s, w s)`` (rounded half up) for any ``s >= 1``.

    Run-time settings (plain attributes, read at every call):

    - ``routing``: a :class:`~pocketsr_cli.archs.pcsr.routing.Routing` (``k``,
      ``adaptive``, ``refine``); replace it to change the speed/quality trade-off;
    - ``sparse``: gather/scatter execution (default) or both paths everywhere.

    After every call ``last_stats`` holds the call's
    :class:`~pocketsr_cli.archs.pcsr.routing.RoutingStats` and ``total_stats`` the sum
    since :meth:`reset_stats`.  Called as ``module(x)`` it upscales by :attr:`scale`, the
    integer scale the weights were trained for, so it fits any integer-scale caller.

    A fractional ``scale`` is taken as the nearest fraction with denominator at most 100
    (:func:`~pocketsr_cli.archs.pcsr.grid.as_ratio`).  ``forward`` always has inference
    semantics (hard routing), whatever ``training`` says.
    """

    supports_half = True
    supports_bf16 = True
    rgb_mean: torch.Tensor

    def __init__(self, config: PCSRConfig, scale: int = 4) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.config = config
        self.scale = int(scale)
        self.encoder = build_backbone(config)
        c = config.channels
        self.heavy_sampler = LiifSampler(c, 3, config.heavy)
        self.light_sampler = LiifSampler(c, 3, config.light)
        self.classifier = LiifSampler(c, 2, config.classifier)
        # Not in the state dict: the official checkpoints do not carry it (see config.py).
        self.register_buffer(
            "rgb_mean", torch.tensor(config.rgb_mean).view(1, 3, 1, 1), persistent=False
        )
        self.routing = Routing()
        self.sparse = True
        self.last_stats = RoutingStats()
        self.total_stats = RoutingStats()
        self._encoder_flops: float | None = None

    @property
    def receptive_radius(self) -> int:
        """LR pixels either side of an output pixel's position that it can depend on: the
        backbone's radius, one for the bilinear base and one more for the refinement's
        neighbours.  A tiler overlap of twice this makes tiles exact (k routing)."""
        return int(self.encoder.radius) + 2

    @property
    def seamless_overlap(self) -> int | None:
        """The tile overlap measured for its configuration
        (:attr:`PCSRConfig.seamless_overlap`), or None: not measured."""
        return self.config.seamless_overlap

    def reset_stats(self) -> None:
        """Start a new sum in ``total_stats`` (say, before each image)."""
        self.total_stats = RoutingStats()

    def costs(self, scale: float | Fraction | None = None) -> tuple[float, float]:
        """Normalised ``(light, heavy)`` path costs at ``scale`` (the ``k`` routing's)."""
        if self._encoder_flops is None:
            self._encoder_flops = official_flops(self.encoder, COST_PROBE, COST_PROBE)
        ratio = as_ratio(self.scale if scale is None else scale)
        light = self.light_sampler.macs_per_query()
        return path_costs(self._encoder_flops, light, self.heavy_sampler.macs_per_query(), ratio)

    def forward(
        self,
        x: torch.Tensor,
        scale: float | Fraction | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Upscale ``x`` by ``scale`` (default :attr:`scale`).

        ``out_size`` overrides the output ``(H, W)``; the grid keeps its spacing, so extra
        rows/columns continue past the LR edge (read from its last pixels).
        """
        ratio = as_ratio(self.scale if scale is None else scale)
        feat, rows, cols = self._features(x, ratio, out_size)
        with _no_autocast(feat):
            return self._sample(x, feat.to(x.dtype), rows, cols, ratio)

    def _sample(
        self, x: torch.Tensor, feat: torch.Tensor, rows: QueryAxis, cols: QueryAxis, ratio: Fraction
    ) -> torch.Tensor:
        """:meth:`forward` past the backbone: routing, both samplers, base and refinement."""
        cell = 2 / float(ratio)
        grid = lattice_for(feat, rows, cols)
        margin = self._margins(feat, rows, cols, cell, grid)
        if self.routing.adaptive:
            raster = margin if grid is None else grid.to_raster(margin)
            heavy = route_adaptive(torch.sigmoid(raster))
            routed = heavy if grid is None else grid.from_raster(heavy)
        else:
            routed = route_by_cost(margin, self.routing.k, self.costs(ratio))
            heavy = routed if grid is None else grid.to_raster(routed)
        # One count decides all-heavy / any-heavy and the stats; count_nonzero, because a
        # bool sum() on the CPU is ~20x slower (22 against 1.3 ms for 6.2M pixels).
        count = int(torch.count_nonzero(routed))
        if grid is None:
            out = bilinear(x, rows, cols)
            out += self._upsample(feat, rows, cols, cell, heavy, count).permute(0, 3, 1, 2)
        else:
            planes = self._upsample_planes(feat, rows, cols, cell, routed, grid, count)
            planes += base_planes(x, grid)
            out = to_image(planes, grid)
        if self.routing.refine:
            refine(out, heavy)
        self.last_stats = RoutingStats(count, routed.numel())
        self.total_stats = self.total_stats + self.last_stats
        return out

    def heavy_probability(
        self,
        x: torch.Tensor,
        scale: float | Fraction | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The classifier's ``p_heavy`` at every output pixel, ``(N, 1, H, W)`` (what the
        official demo paints red and green), without running the upsamplers."""
        ratio = as_ratio(self.scale if scale is None else scale)
        feat, rows, cols = self._features(x, ratio, out_size)
        with _no_autocast(feat):
            feat = feat.to(x.dtype)
            grid = lattice_for(feat, rows, cols)
            margin = self._margins(feat, rows, cols, 2 / float(ratio), grid)
            return torch.sigmoid(margin if grid is None else grid.to_raster(margin))[:, None]

    # -- stages -------------------------------------------------------------------------
    def _features(
        self, x: torch.Tensor, ratio: Fraction, out_size: tuple[int, int] | None
    ) -> tuple[torch.Tensor, QueryAxis, QueryAxis]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (N, 3, h, w), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        out_h, out_w = out_size or (output_length(h, ratio), output_length(w, ratio))
        rows = query_axis(h, out_h, ratio, x.device)
        cols = query_axis(w, out_w, ratio, x.device)
        return self.encoder(x - self.rgb_mean.to(x.dtype)), rows, cols

    def _margins(
        self,
        feat: torch.Tensor,
        rows: QueryAxis,
        cols: QueryAxis,
        cell: float,
        grid: Lattice | None = None,
    ) -> torch.Tensor:
        """``z_heavy - z_light`` at every output pixel, float32: ``(N, H, W)``, or by
        phase planes ``(s*s, N h w)`` on a ``grid``."""
        if grid is not None:
            # Channel-major: the same numbers as prepare()'s table by rows (one GEMM makes
            # both, see LiifSampler.feature_table).
            terms = lattice.terms(self.classifier, feat, rows, cols, cell, grid, True)
            return lattice.margins(self.classifier, terms, grid, _batch(self.classifier))
        prepared = self.classifier.prepare(feat, rows, cols, cell)
        n, h, w = feat.shape[0], feat.shape[-2], feat.shape[-1]
        margin = torch.empty(n, len(rows), len(cols), dtype=torch.float32, device=feat.device)
        for start, stop in _row_blocks(_batch(self.classifier), n, rows, cols):
            logits = self.classifier.rows(prepared, (n, h, w), rows, cols, start, stop).float()
            margin[:, start:stop] = logits[..., HEAVY] - logits[..., LIGHT]
        return margin

    def _upsample(
        self,
        feat: torch.Tensor,
        rows: QueryAxis,
        cols: QueryAxis,
        cell: float,
        heavy: torch.Tensor,
        count: int,
    ) -> torch.Tensor:
        """The routed MLP residual, ``(N, H, W, 3)``: the light path everywhere (unless no
        pixel is light), the heavy one gathered, run and scattered over it.  ``count`` is
        the number of heavy pixels (``heavy.sum()``)."""
        if not self.sparse:
            light = self._everywhere(self.light_sampler, feat, rows, cols, cell)
            heavy_rgb = self._everywhere(self.heavy_sampler, feat, rows, cols, cell)
            return torch.where(heavy[..., None], heavy_rgb, light)
        if count == heavy.numel():
            return self._everywhere(self.heavy_sampler, feat, rows, cols, cell)
        out = self._everywhere(self.light_sampler, feat, rows, cols, cell)
        index = heavy.reshape(-1).nonzero().squeeze(1)
        if index.numel():
            prepared = self.heavy_sampler.prepare(feat, rows, cols, cell)
            flat = out.view(-1, 3)
            step = _batch(self.heavy_sampler)
            for start in range(0, index.numel(), step):
                chunk = index[start : start + step]
                rgb = self.heavy_sampler.query(prepared, _locate(chunk, feat, rows, cols))
                flat.index_copy_(0, chunk, rgb.to(flat.dtype))
        return out

    def _upsample_planes(
        self,
        feat: torch.Tensor,
        rows: QueryAxis,
        cols: QueryAxis,
        cell: float,
        heavy: torch.Tensor,
        grid: Lattice,
        count: int,
    ) -> torch.Tensor:
        """:meth:`_upsample` on a whole integer-scale ``grid``: the residual by phase planes
        ``(s*s, 3, N h w)``; ``heavy`` is the mask by planes ``(s*s, N h w)``."""
        out = torch.empty(grid.planes, 3, grid.pixels, dtype=feat.dtype, device=feat.device)
        heavy_sampler, light_sampler = self.heavy_sampler, self.light_sampler

        def everywhere(sampler: LiifSampler, into: torch.Tensor) -> torch.Tensor:
            terms = lattice.terms(sampler, feat, rows, cols, cell, grid, True)
            return lattice.dense(sampler, terms, grid, _batch(sampler), into)

        if not self.sparse:
            light = everywhere(light_sampler, out)
            heavy_rgb = everywhere(heavy_sampler, torch.empty_like(out))
            return torch.where(heavy[:, None], heavy_rgb, light)
        if count == heavy.numel():
            return everywhere(heavy_sampler, out)
        everywhere(light_sampler, out)
        if count:
            terms = lattice.terms(heavy_sampler, feat, rows, cols, cell, grid, False, True)
            lattice.sparse(heavy_sampler, terms, grid, heavy, _batch(heavy_sampler), out)
        return out

    def _everywhere(
        self,
        sampler: LiifSampler,
        feat: torch.Tensor,
        rows: QueryAxis,
        cols: QueryAxis,
        cell: float,
    ) -> torch.Tensor:
        """``sampler``'s output at every output pixel, ``(N, H, W, 3)``, by row blocks."""
        prepared = sampler.prepare(feat, rows, cols, cell)
        lr_shape = (feat.shape[0], feat.shape[-2], feat.shape[-1])
        out = torch.empty(
            *lr_shape[:1],
            len(rows),
            len(cols),
            3,
            dtype=prepared.features.dtype,
            device=feat.device,
        )
        for start, stop in _row_blocks(_batch(sampler), lr_shape[0], rows, cols):
            out[:, start:stop] = sampler.rows(prepared, lr_shape, rows, cols, start, stop)
        return out


def _no_autocast(feat: torch.Tensor) -> torch.autocast:
    """Autocast off for the samplers: their ``out=`` GEMMs, which autocast does not cast,
    would meet the fp16/bf16 operands of the GEMMs it does cast (``--precision fp16`` runs
    the module under autocast).  The backbone keeps half precision."""
    return torch.autocast(device_type=feat.device.type, enabled=False)


def _batch(sampler: LiifSampler) -> int:
    """Output pixels per MLP batch of ``sampler`` (see :data:`CHUNK`)."""
    return max(1, CHUNK // max(sampler.widths))


def _row_blocks(pixels: int, n: int, rows: QueryAxis, cols: QueryAxis) -> list[tuple[int, int]]:
    """Output row ranges of about ``pixels`` pixels over all ``n`` images (a row at least)."""
    step = max(1, pixels // max(1, n * len(cols)))
    return [(r, min(r + step, len(rows))) for r in range(0, len(rows), step)]


def _locate(index: torch.Tensor, feat: torch.Tensor, rows: QueryAxis, cols: QueryAxis) -> Queries:
    """Queries for flat output indices ``n * H * W + r * W + c``."""
    h, w = feat.shape[-2:]
    width, pixels = len(cols), len(rows) * len(cols)
    image = torch.div(index, pixels, rounding_mode="floor")
    row = torch.div(index - image * pixels, width, rounding_mode="floor")
    col = index - image * pixels - row * width
    lr_index = (image * h + rows.index.index_select(0, row)) * w + cols.index.index_select(0, col)
    return Queries(lr_index=lr_index, row=row, col=col)


def build(config: PCSRConfig | str | Mapping[str, Any], scale: int = 4) -> PCSR:
    """A freshly initialised PCSR network whose ``module(x)`` upscales by ``scale``.

    ``config`` is a :class:`PCSRConfig`, a preset name (``carn``, ``fsrcnn``) or a
    manifest ``[build]`` table (``preset`` and/or explicit fields).
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown PCSR preset {config!r}; known: {sorted(CONFIGS)}")
        config = CONFIGS[config]
    elif not isinstance(config, PCSRConfig):
        config = PCSRConfig.from_params(config)
    return PCSR(config, scale)
