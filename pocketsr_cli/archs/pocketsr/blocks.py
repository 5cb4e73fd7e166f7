"""U-Net building blocks of the PocketSR-style generator.

Every block maps ``(N, C, h, w)`` to the same shape, so that PocketSR's online annealing can
put a light replacement beside any of them (``AnnealedBlock(original, replacement, alpha)``)
and later swap it in: see :func:`pocketsr_cli.train.anneal.swappable_blocks`.
No block normalises over space (no BatchNorm/GroupNorm): statistics taken over a tile would
make the output depend on how the image was tiled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.2


def act() -> nn.Module:
    """The network's one nonlinearity: cheap on CPUs (no exp), as used by ESRGAN."""
    return nn.LeakyReLU(LEAK, inplace=True)


class ResBlock(nn.Module):
    """``x + conv(act(conv(x)))`` with two dense 3x3 convolutions (shallow levels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = act()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class DWBlock(nn.Module):
    """Depthwise-separable block: ``x + pw2(act(pw1(dw(x))))``.

    PocketSR's replacement for ResBlocks at the deepest levels: the 3x3 spatial mixing is
    depthwise, channel mixing is a pointwise feed-forward of ``expand * channels`` hidden
    width.
    """

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pw1 = nn.Conv2d(channels, channels * expand, 1)
        self.act = act()
        self.pw2 = nn.Conv2d(channels * expand, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(self.act(self.pw1(self.dw(x))))


def make_block(kind: str, channels: int, expand: int) -> nn.Module:
    """A block of ``kind`` (``"res"`` or ``"dw"``)."""
    if kind == "res":
        return ResBlock(channels)
    if kind == "dw":
        return DWBlock(channels, expand)
    raise ValueError(f"unknown block kind {kind!r}")


class LinearAttention(nn.Module):
    """Multi-head linear attention, global or over a local neighbourhood, plus a residual.

    With feature map ``phi = elu + 1`` the output at pixel ``n`` is
    ``phi(q_n) . S_n / (phi(q_n) . z_n)`` where ``S_n`` and ``z_n`` are the means of
    ``phi(k) v^T`` and ``phi(k)`` over all pixels (``window == 0``, PocketSR's choice) or over
    the ``window x window`` neighbourhood of ``n``.  Both cost time linear in the pixels,
    but the local form keeps a ``d x d`` matrix per pixel and head, about fifteen passes
    over a tensor of ``heads * d * d`` channels: 0.3-0.4 s per 4K output for nano on a
    2-core CPU, against milliseconds for the global form.  The global form makes the
    output depend on the tile the model is shown (5-14 levels for nano-x2) unless it is
    given the whole image's sums, as the tiler does (below); the local one does not.

    The statistics are computed in float32 whatever the input dtype, so fp16/bf16
    inference cannot overflow here.

    Image-wide statistics: the global form may be given ``sums`` (:class:`AttentionSums`,
    from :meth:`sums` over every pixel of the whole image's lowest level, taken window by
    window), and then uses their means in place of the input's own, so that every tile of
    an image attends as the whole image does (``stats.ImageAttention``).
    """

    def __init__(self, channels: int, heads: int, window: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"{heads} heads do not divide {channels} channels")
        self.heads = heads
        self.window = window
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, sums: AttentionSums | None = None) -> torch.Tensor:
        """``x`` plus attention over it; with ``sums`` (global form only) the keys and
        values are those ``sums`` were taken over instead of ``x``'s own."""
        n, c, h, w = x.shape
        if sums is not None and self.window:
            raise ValueError("image-wide sums apply to global attention (window 0) only")
        q, k, v = self._qkv(x)
        if self.window:
            out = self._local(q, k, v)
        else:
            out = self._attend(q, *(self._means(k, v) if sums is None else sums.means(q.device)))
        return x + self.proj(out.reshape(n, c, h, w).to(x.dtype))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``phi(q)``, ``phi(k)`` and ``v`` of ``x``, float32, ``(n, heads, d, h, w)``."""
        n, c, h, w = x.shape
        heads, d = self.heads, c // self.heads
        q, k, v = self.qkv(x).float().chunk(3, dim=1)
        q = F.elu(q).add_(1).view(n, heads, d, h, w)
        k = F.elu(k).add_(1).view(n, heads, d, h, w)
        v = v.reshape(n, heads, d, h, w)
        return q, k, v

    def sums(self, x: torch.Tensor) -> AttentionSums:
        """The sums over every pixel of ``x`` (``(n, C, h, w)``: all ``n`` count) that
        global attention takes its means of, in float64 on the host."""
        _, k, v = self._qkv(x)
        n, heads, d, h, w = k.shape
        k = k.transpose(0, 1).reshape(heads, d, n * h * w)
        v = v.transpose(0, 1).reshape(heads, d, n * h * w)
        kv = torch.bmm(k, v.transpose(1, 2))  # (heads, d, d): sum phi(k) v^T
        # Added up on the host: float64 is not on every device (MPS).
        kv64, k64 = (t.to("cpu", torch.float64) for t in (kv, k.sum(dim=2)))
        return AttentionSums(kv64, k64, n * h * w)

    @staticmethod
    def _means(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each input's own means over its pixels of ``phi(k) v^T`` ``(n, heads, d, d)``
        and of ``phi(k)`` ``(n, heads, d)``, for ``k`` and ``v`` ``(n, heads, d, h, w)``."""
        n, heads, d, h, w = k.shape
        k, v = (t.reshape(n * heads, d, h * w) for t in (k, v))
        kv = torch.bmm(k, v.transpose(1, 2)) / (h * w)
        return kv.view(n, heads, d, d), k.mean(dim=2).view(n, heads, d)

    @staticmethod
    def _attend(q: torch.Tensor, kv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Global attention of ``q`` ``(n, heads, d, h, w)`` with means ``kv`` of
        ``phi(k) v^T`` and ``z`` of ``phi(k)``: each input's own (``(n, heads, d, d)`` and
        ``(n, heads, d)``: :meth:`_means`) or one image's for all (``(heads, d, d)`` and
        ``(heads, d)``: :meth:`AttentionSums.means`)."""
        n, heads, d, h, w = q.shape
        q = q.reshape(n, heads, d, h * w)
        num = torch.matmul(kv.transpose(-2, -1), q)  # (n, heads, d, hw)
        den = (q * z.unsqueeze(-1)).sum(dim=2, keepdim=True)
        return num / (den + 1e-6)

    def _local(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, heads, d, h, w = q.shape
        kv = k.unsqueeze(3) * v.unsqueeze(2)  # (n, heads, d, d, h, w): phi(k) v^T per pixel
        stats = torch.cat([kv.view(n, -1, h, w), k.reshape(n, -1, h, w)], dim=1)
        r = self.window // 2
        stats = _box_mean(_box_mean(stats, r, 2), r, 3)
        kv = stats[:, : heads * d * d].view(n, heads, d, d, h, w)
        z = stats[:, heads * d * d :].view(n, heads, d, h, w)
        num = (q.unsqueeze(3) * kv).sum(dim=2)
        den = (q * z).sum(dim=2, keepdim=True)
        return num / (den + 1e-6)


@dataclass(frozen=True)
class AttentionSums:
    """What global linear attention takes the mean of, summed over ``count`` pixels:
    ``kv`` ``(heads, d, d)``, the sum of ``phi(k) v^T``, and ``k`` ``(heads, d)``, the sum
    of ``phi(k)``; float64 on the host, so that sums of many windows add up without loss."""

    kv: torch.Tensor
    k: torch.Tensor
    count: int

    def __add__(self, other: AttentionSums) -> AttentionSums:
        return AttentionSums(self.kv + other.kv, self.k + other.k, self.count + other.count)

    def means(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The means of ``phi(k) v^T`` and of ``phi(k)``, float32 on ``device``."""
        return (
            (self.kv / self.count).float().to(device),
            (self.k / self.count).float().to(device),
        )


def _box_mean(t: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Mean of ``(N, C, H, W)`` ``t`` over ``[i - radius, i + radius]`` along ``dim`` (2 or
    3), clipped to the tensor.

    Running sums cost a few passes whatever the radius, where pooling costs ``2r + 1``
    reads per element (5-10x slower for the bottleneck's thousand channels).  The zero
    padding makes windows at the edges sum only real pixels.
    """
    n = t.shape[dim]
    pad = (radius + 1, radius) if dim == 3 else (0, 0, radius + 1, radius)
    sums = F.pad(t, pad).cumsum(dim)  # sums[j] = padded[0..j]; padded[0] is a zero
    total = sums.narrow(dim, 2 * radius + 1, n) - sums.narrow(dim, 0, n)
    idx = torch.arange(n, device=t.device)
    count = (idx + radius + 1).clamp(max=n) - (idx - radius).clamp(min=0)
    shape = [1] * t.dim()
    shape[dim] = n
    return total / count.to(t.dtype).view(shape)


class Downsample(nn.Module):
    """Halve the grid with a strided 3x3 convolution, changing the width."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the grid: 1x1 convolution to the new width, then bilinear x2.

    The order is free (both are linear and the convolution is pointwise), so the
    convolution runs on the smaller grid.  Bilinear rather than a pixel shuffle: it cannot
    imprint a pattern with the period of the coarser grid.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2, mode="bilinear", align_corners=False)
