"""Which output pixels take the heavy upsampler, and the refinement where paths meet.

The classifier gives two logits per output pixel, ``(light, heavy)``; with ``p`` their
softmax, PCSR routes a pixel to ``argmax_j p_j / cost_j ** k`` where ``cost_j`` is the
FLOPs of backbone + upsampler ``j`` on a 16x16 LR input at the run's scale, normalised to
sum to one (:func:`path_costs`).  Written on the logit margin ``m = z_heavy - z_light``
that is ``m > k * ln(cost_heavy / cost_light)`` (:func:`route_by_cost`): no overflow for
any ``k``, and ties go to the light path as ``argmax`` sends them to index 0.  ``k = 0``
follows the classifier; larger ``k`` sends more pixels to the light path, negative ``k``
more to the heavy one.

The adaptive mode (:func:`route_adaptive`) instead splits ``p_heavy`` of each image in two
with 1-D K-means after min-max normalisation; the upper cluster is heavy.

:func:`refine` replaces a light pixel that has a heavy pixel among its eight neighbours by
the mean of its 3x3 neighbourhood (all from the unrefined output), the image's outermost
rows and columns excepted, as the official code does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

KMEANS_ITERATIONS = 20  # the official fast_pytorch_kmeans settings: max_iter 20, tol 1e-4
KMEANS_TOLERANCE = 1e-4
COST_PROBE = 16  # LR side of the input the official cost list is measured on
REFINE_STRIP = 1 << 16  # numbers per row strip of the refinement (256 KB of float32)


@dataclass(frozen=True)
class Routing:
    """Run-time routing settings of a PCSR network (its ``routing`` attribute).

    Attributes:
        k: speed/quality knob: ``0`` follows the classifier, larger is faster.
        adaptive: route by K-means on each image's heavy probabilities instead (``k``
            unused).  Image-wide, so under tiling each tile is clustered on its own.
        refine: smooth light pixels that touch heavy ones (3x3 mean).
    """

    k: float = 0.0
    adaptive: bool = False
    refine: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.k):
            raise ValueError(f"k must be a finite number, got {self.k}")


@dataclass(frozen=True)
class RoutingStats:
    """How many output pixels took the heavy path, of how many."""

    heavy: int = 0
    total: int = 0

    @property
    def heavy_fraction(self) -> float:
        """``heavy / total`` (0.0 before any pixel was routed)."""
        return self.heavy / self.total if self.total else 0.0

    def __add__(self, other: RoutingStats) -> RoutingStats:
        return RoutingStats(self.heavy + other.heavy, self.total + other.total)


def path_costs(
    encoder_flops: float, light_macs: int, heavy_macs: int, ratio: Fraction
) -> tuple[float, float]:
    """Normalised ``(light, heavy)`` costs at ``ratio``, as the official cost list.

    ``encoder_flops`` is the backbone's FLOPs on a 16x16 input
    (:func:`~pocketsr_cli.archs.pcsr.backbones.official_flops`); the samplers count
    ``2 * MACs`` per query over the ``round(16 * scale)**2`` queries of that input.
    """
    queries = round(COST_PROBE * ratio) ** 2
    light = encoder_flops + 2 * light_macs * queries
    heavy = encoder_flops + 2 * heavy_macs * queries
    return light / (light + heavy), heavy / (light + heavy)


def route_by_cost(margin: torch.Tensor, k: float, costs: tuple[float, float]) -> torch.Tensor:
    """Heavy (True) where ``p_heavy / cost_heavy**k > p_light / cost_light**k``.

    ``margin`` holds the logit margins ``z_heavy - z_light`` (any shape).
    """
    threshold = k * math.log(costs[1] / costs[0]) if k else 0.0
    return margin > threshold


def route_adaptive(p_heavy: torch.Tensor) -> torch.Tensor:
    """Heavy (True) for the upper of two K-means clusters of each image's ``p_heavy``.

    ``p_heavy`` is ``(N, ...)``; each image is min-max normalised and clustered on its own
    (the official code clusters a whole batch together).  The centres start where the
    official call ends its first pass (the mean and 0) and move at most
    :data:`KMEANS_ITERATIONS` - 1 times, stopping once they move less than the tolerance.
    An image whose probabilities are all equal has nothing to tell apart: all light.
    """
    heavy = torch.zeros(p_heavy.shape, dtype=torch.bool, device=p_heavy.device)
    for n in range(p_heavy.shape[0]):
        d = p_heavy[n].float()
        low, high = d.min(), d.max()
        if not bool(high > low):
            continue
        d = (d - low) / (high - low)
        upper, lower = float(d.mean()), 0.0
        for _ in range(KMEANS_ITERATIONS - 1):
            near_upper = (d - upper).abs() <= (d - lower).abs()
            count = int(near_upper.sum())
            new_upper = float(d[near_upper].mean()) if count else 0.0
            new_lower = float(d[~near_upper].mean()) if count < d.numel() else 0.0
            moved = (new_upper - upper) ** 2 + (new_lower - lower) ** 2
            upper, lower = new_upper, new_lower
            if moved <= KMEANS_TOLERANCE:
                break
        heavy[n] = near_upper
    return heavy


def refine(out: torch.Tensor, heavy: torch.Tensor) -> torch.Tensor:
    """``out`` ``(N, C, H, W)`` with each interior light pixel that touches a heavy one
    replaced by its 3x3 mean; ``heavy`` is ``(N, H, W)``.  Works in place and returns
    ``out``.

    The mean is computed only on the band of rows that holds such pixels (nothing at all
    when there are none), as separable sums of shifted slices: each pixel's value is the
    same wherever the band starts, so a tile refines exactly as the whole image does.
    """
    if out.shape[-2] < 3 or out.shape[-1] < 3:
        return out
    # Interior positions (1..H-2, 1..W-2) that are light and have a heavy neighbour.
    across = heavy[:, :-2] | heavy[:, 1:-1] | heavy[:, 2:]
    near = across[..., :-2] | across[..., 1:-1] | across[..., 2:]
    change = near & ~heavy[:, 1:-1, 1:-1]
    # amax over the bytes: bool any() reductions are ~40x slower on the CPU.
    rows = change.view(torch.uint8).amax(dim=2).amax(dim=0).nonzero()
    if not rows.numel():
        return out
    top, bottom = int(rows[0]), int(rows[-1]) + 1  # interior rows top..bottom-1
    # Strips of rows small enough for the temporaries to stay in cache, in place where
    # possible.  A strip's means are written only once the next strip's are computed: a
    # strip reads one row that the strip before it changes (the means are of the
    # unrefined output), and none that earlier strips change.
    step = max(1, REFINE_STRIP // max(1, out.shape[0] * out.shape[1] * out.shape[-1]))
    pending: tuple[int, int, torch.Tensor] | None = None
    for start in range(top, bottom, step):
        stop = min(start + step, bottom)
        band = out[:, :, start : stop + 2]  # the rows the 3x3 windows of start..stop-1 read
        across_sum = band[..., :-2] + band[..., 1:-1]
        across_sum += band[..., 2:]
        mean = across_sum[:, :, :-2] + across_sum[:, :, 1:-1]
        mean += across_sum[:, :, 2:]
        mean /= 9
        if pending is not None:
            _replace(out, change, *pending)
        pending = (start, stop, mean)
    if pending is not None:
        _replace(out, change, *pending)
    return out


def _replace(
    out: torch.Tensor, change: torch.Tensor, start: int, stop: int, mean: torch.Tensor
) -> None:
    """Interior rows ``start..stop-1`` of ``out`` take ``mean`` where ``change`` holds.

    As ``lerp_`` with a 0/1 weight, which gives ``mean`` or the old value exactly (for
    finite values) and on the CPU runs about 6x faster than ``torch.where`` into this
    strided view (8 against 53 ms on a 2160 x 2880 output, one thread).
    """
    inner = out[:, :, start + 1 : stop + 1, 1:-1]
    inner.lerp_(mean, change[:, None, start:stop].to(inner.dtype))
