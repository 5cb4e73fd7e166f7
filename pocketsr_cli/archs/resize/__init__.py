"""Parameter-free resamplers (``bicubic``, ``lanczos``) as models.

They make the whole pipeline usable and testable without weights, and serve as the quality
floor in ``pocketsr eval``.  Both are separable filters applied per output phase (one small
1-D filter per output phase and axis, as weighted sums of shifted views), so their cost is
linear in the output size and they tile exactly like a convolutional network with a
receptive field of a few pixels.

:data:`FAMILY` is the ``resize`` architecture family (no weights: built from the
manifest's ``[build]`` ``kernel`` and any scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.descriptor import Family

KERNELS = ("bicubic", "lanczos")


def _cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    # Keys' cubic with a = -0.5, the convention of Pillow and Matlab's imresize.
    t = t.abs()
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def _lanczos3(t: torch.Tensor) -> torch.Tensor:
    out = torch.sinc(t) * torch.sinc(t / 3)
    return torch.where(t.abs() < 3, out, torch.zeros_like(t))


_SUPPORT = {"bicubic": (2, _cubic), "lanczos": (3, _lanczos3)}


def _phase_weights(scale: int, kernel: str) -> torch.Tensor:
    """Filter taps ``(scale, 2R + 1)``: output phase ``p`` of input pixel ``i`` reads
    ``i - R .. i + R`` (pixel centres aligned, ``align_corners=False``), rows sum to 1."""
    radius, fn = _SUPPORT[kernel]
    phase = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = fn(phase[:, None] - offsets[None, :])
    return (w / w.sum(dim=1, keepdim=True)).float()


def _resample(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """Upsample ``(B, H, W)`` by ``scale`` along ``dim`` (1: height, 2: width);
    ``weights`` is ``(scale, taps)`` (see :func:`_phase_weights`).

    Each output phase is a weighted sum of ``taps`` shifted views of the edge-replicated
    input, accumulated in place into its interleaved slot of the result: a few passes over
    memory, no im2col and no transposes — several times faster on the CPU than the same
    filter as a one-channel convolution.
    """
    scale, taps = weights.shape
    radius = taps // 2
    b, h, w = x.shape
    length = x.shape[dim]
    pad = (radius, radius, 0, 0) if dim == 2 else (0, 0, radius, radius)
    padded = F.pad(x.unsqueeze(1), pad, mode="replicate").squeeze(1)
    # Phase p of input position i lands at output position i * scale + p.
    shape = (b, h, w, scale) if dim == 2 else (b, h, scale, w)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    for phase, row in enumerate(weights.tolist()):
        acc = out[..., phase] if dim == 2 else out[:, :, phase, :]
        for k, weight in enumerate(row):
            view = padded.narrow(dim, k, length)
            if k == 0:
                torch.mul(view, weight, out=acc)
            else:
                acc.add_(view, alpha=weight)
    return out.reshape((b, h, w * scale) if dim == 2 else (b, h * scale, w))


class Resize(nn.Module):
    """Upscale ``(N, C, H, W)`` by an integer ``scale`` with a bicubic or Lanczos-3 filter."""

    def __init__(self, kernel: str = "bicubic", scale: int = 4) -> None:
        super().__init__()
        if kernel not in _SUPPORT:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
        if scale < 1 or int(scale) != scale:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.kernel = kernel
        self.scale = int(scale)

    @property
    def receptive_radius(self) -> int:
        """Input pixels either side that influence an output pixel."""
        return int(_SUPPORT[self.kernel][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x.clone()
        n, c, h, w = x.shape
        weights = _phase_weights(self.scale, self.kernel)
        # Along the width first, while the image is small, then along the height.
        y = _resample(x.reshape(n * c, h, w), weights, dim=2)
        y = _resample(y, weights, dim=1)
        return y.reshape(n, c, h * self.scale, w * self.scale)


def _build(params: Mapping[str, Any], scale: int) -> Resize:
    return Resize(kernel=str(params.get("kernel", "bicubic")), scale=scale)


FAMILY = Family("resize", build=_build)
