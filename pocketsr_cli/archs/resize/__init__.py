"""Parameter-free resamplers (``bicubic``, ``lanczos``) as models.

They make the whole pipeline usable and testable without weights, and serve as the quality
floor in ``pocketsr eval``.  Both are separable filters applied as polyphase convolutions (one
small 1-D filter per output phase and axis), so their cost is linear in the output size and
they tile exactly like a convolutional network with a receptive field of a few pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def _phase_weights(scale: int, kernel: str) -> torch.Tensor:
    """Filter taps ``(scale, 2R + 1)``: output phase ``p`` of input pixel ``i`` reads
    ``i - R .. i + R`` (pixel centres aligned, ``align_corners=False``), rows sum to 1."""
    radius, fn = _SUPPORT[kernel]
    phase = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = fn(phase[:, None] - offsets[None, :])
    return (w / w.sum(dim=1, keepdim=True)).float()


def _resample_rows(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Upsample ``(B, H, W)`` along H: one small convolution per output phase, interleaved.

    Edge pixels are replicated, as if the filter's taps were clamped to the image.
    """
    scale, taps = weights.shape
    radius = taps // 2
    b, h, w = x.shape
    padded = F.pad(x.unsqueeze(1), (0, 0, radius, radius), mode="replicate")
    kernel = weights.to(x.dtype).view(scale, 1, taps, 1)
    phases = F.conv2d(padded, kernel)  # (B, scale, H, W)
    return phases.permute(0, 2, 1, 3).reshape(b, h * scale, w)


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
        weights = _phase_weights(self.scale, self.kernel).to(x.device)
        y = _resample_rows(x.reshape(n * c, h, w), weights)
        y = _resample_rows(y.transpose(1, 2), weights).transpose(1, 2)
        return y.reshape(n, c, h * self.scale, w * self.scale)
