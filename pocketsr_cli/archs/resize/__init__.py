"""Parameter-free resamplers (``bicubic``, ``lanczos``) as models.

They make the whole pipeline usable and testable without weights, and serve as the quality
floor in ``pocketsr eval``.  Both are separable filters applied with gathers (``taps`` reads
per output pixel per axis), so their cost is linear in the output size and they tile exactly
like a convolutional network with a receptive field of a few pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

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


def _taps(
    size_in: int, scale: int, kernel: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices ``(out, taps)`` (edge-clamped) and normalised weights for one axis."""
    radius, fn = _SUPPORT[kernel]
    out = torch.arange(size_in * scale, device=device, dtype=torch.float64)
    centre = (out + 0.5) / scale - 0.5
    first = torch.floor(centre).long() - radius + 1
    offsets = torch.arange(2 * radius, device=device)
    idx = first[:, None] + offsets[None, :]
    weights = fn(centre[:, None] - idx.to(torch.float64))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return idx.clamp_(0, size_in - 1), weights.float()


def _resample_axis(x: torch.Tensor, dim: int, scale: int, kernel: str) -> torch.Tensor:
    idx, w = _taps(x.shape[dim], scale, kernel, x.device)
    shape = [1] * x.dim()
    shape[dim] = idx.shape[0]
    out = None
    for k in range(idx.shape[1]):
        term = x.index_select(dim, idx[:, k]) * w[:, k].to(x.dtype).view(shape)
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


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
        return math.ceil(_SUPPORT[self.kernel][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x.clone()
        y = _resample_axis(x, x.dim() - 2, self.scale, self.kernel)
        return _resample_axis(y, x.dim() - 1, self.scale, self.kernel)
