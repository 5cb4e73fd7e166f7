"""LiteED: the light encoder and decoder around the U-Net, and the sub-pixel output head.

Upsampling choices, all made so that no pixel-shuffle grid can form (a GAN-trained
decoder made of plain pixel shuffles reached a lattice ratio of ~14 against ~1.2 for the
teacher: ``docs/measurement.md``):

- from the latent (LR/2) back to LR resolution: bilinear x2 followed by convolutions
  (resize-convolution).  Bilinear's response is zero at the coarse grid's period-2
  frequency, so a flat latent cannot imprint the 8-pixel output grid measured there.
- from LR to the output: one sub-pixel convolution (x ``scale`` pixel shuffle), because on
  a CPU every pass at the output resolution costs more than the whole U-Net.  Its grid
  sources are removed structurally: the learned residual is zero at initialisation, its
  bias is per colour (a per-phase bias *is* a grid), and with ``antilattice`` the residual is
  filtered after the shuffle by ``box(scale)`` (times ``box(2)`` for even scales, to stay
  centred: :func:`antilattice_taps`), whose zeros sit on every
  frequency that a period-``scale`` pattern can have, so any such pattern comes out flat.
  The filter is folded into the convolution's kernel (3x3 -> 5x5 at LR resolution), which
  is much cheaper than filtering at the output resolution.
- the global residual is bilinear upsampling of the LR, folded into the same convolution
  (a fixed kernel on the LR channels): at initialisation the network *is* bilinear
  upsampling, and no extra pass over the full-size output is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.archs.pocketsr.blocks import act


class LiteEncoder(nn.Module):
    """Pixel-unshuffle the LR by ``factor`` and map it to the U-Net's width (2 convs)."""

    def __init__(self, factor: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv1 = nn.Conv2d(3 * factor * factor, hidden, 3, padding=1)
        self.act = act()
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(lr, self.factor) if self.factor > 1 else lr
        return self.conv2(self.act(self.conv1(x)))


class DecoderStage(nn.Module):
    """One x2 step of the decoder: 1x1 to the new width, bilinear x2, then 3x3 convs.

    The 1x1 convolution commutes with bilinear upsampling, so it runs on the coarse grid;
    the 3x3 convolutions then work on the upsampled features (resize-convolution).
    """

    def __init__(self, c_in: int, c_out: int, depth: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c_in, c_out, 1)
        self.convs = nn.ModuleList(nn.Conv2d(c_out, c_out, 3, padding=1) for _ in range(depth))
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2, mode="bilinear", align_corners=False)
        for conv in self.convs:
            x = self.act(conv(x))
        return x


def _box(n: int) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=torch.float64)


def antilattice_taps(scale: int) -> torch.Tensor:
    """Symmetric low-pass taps (odd length) that are zero at every ``k / scale`` cycle/px.

    ``box(scale)`` alone has those zeros; for even ``scale`` it has an even length (a half
    pixel shift), so it is convolved with ``box(2)``.
    """
    taps = _box(scale)
    if scale % 2 == 0:
        pair = torch.zeros(scale + 1, dtype=torch.float64)
        pair[:-1] += taps / 2
        pair[1:] += taps / 2
        taps = pair
    return taps


def _fold_matrix(scale: int, taps: torch.Tensor, reach: int) -> torch.Tensor:
    """``M[q, A, p, a]``: filtering the shuffled output along one axis, in phase terms.

    Output phase ``q`` at LR offset ``A`` (``-reach-1 .. reach+1``) receives
    ``M[q, A, p, a]`` times what the 3-tap kernel's offset ``a`` (``-1 .. 1``) contributed to
    input phase ``p``.
    """
    half = len(taps) // 2
    size = 2 * (reach + 1) + 1
    m = torch.zeros(scale, size, scale, 3, dtype=torch.float64)
    for q in range(scale):
        for s in range(-half, half + 1):
            shift, p = divmod(q + s, scale)
            for a in (-1, 0, 1):
                m[q, shift + a + reach + 1, p, a + 1] += taps[s + half]
    return m


def _bilinear_phases(scale: int) -> torch.Tensor:
    """``B[p, a]``: weight of LR offset ``a`` (-1..1) for output phase ``p`` (bilinear,
    ``align_corners=False``; the edge clamp comes from replicate padding)."""
    b = torch.zeros(scale, 3, dtype=torch.float64)
    for p in range(scale):
        o = (p + 0.5) / scale - 0.5  # position of the output pixel in LR pixels
        if o < 0:
            b[p, 0], b[p, 1] = -o, 1 + o
        else:
            b[p, 1], b[p, 2] = 1 - o, o
    return b


class SubPixelHead(nn.Module):
    """LR features + LR image -> upscaled image, in one convolution and a pixel shuffle.

    ``out = shuffle(conv3x3(cat(features, lr)))`` filtered by the anti-lattice filter
    (optional), plus bilinear upsampling of ``lr``.  Both the filter and the bilinear term
    are fixed linear maps, folded into one effective kernel at every call (a few thousand
    weights: negligible next to the convolution itself).

    Parameters: ``weight`` ``(3 * scale**2, C + 3, 3, 3)`` in pixel-shuffle channel order and
    ``bias`` ``(3,)`` (one per colour).  Both are zero at initialisation.  Whether the filter
    is on leaves no trace in these shapes: the network records it in ``pocketsr_arch``.
    """

    fold: torch.Tensor | None
    base: torch.Tensor

    def __init__(self, channels: int, scale: int, antilattice: bool) -> None:
        super().__init__()
        self.scale = scale
        self.channels = channels
        r2 = scale * scale
        self.weight = nn.Parameter(torch.zeros(3 * r2, channels + 3, 3, 3))
        self.bias = nn.Parameter(torch.zeros(3))
        use_filter = antilattice and scale > 1
        reach = 1 if use_filter else 0
        self.kernel = 3 + 2 * reach
        fold = _fold_matrix(scale, antilattice_taps(scale), reach) if use_filter else None
        self.register_buffer("fold", None if fold is None else fold.float(), persistent=False)
        self.register_buffer("base", self._base_kernel(channels, scale, reach).float(), False)

    @staticmethod
    def _base_kernel(channels: int, scale: int, reach: int) -> torch.Tensor:
        """Bilinear upsampling of the LR channels as a kernel in the head's layout."""
        b = _bilinear_phases(scale)
        phase2d = torch.einsum("pa,qb->pqab", b, b).reshape(scale * scale, 3, 3)
        k = 3 + 2 * reach
        base = torch.zeros(3, scale * scale, channels + 3, k, k, dtype=torch.float64)
        for c in range(3):
            base[c, :, channels + c, reach : reach + 3, reach : reach + 3] = phase2d
        return base.reshape(3 * scale * scale, channels + 3, k, k)

    def macs_of(self, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
        """The functional convolution's cost (``evaluation.macs``): its output, before the
        pixel shuffle, is on the LR grid with ``3 * scale**2`` channels."""
        n, _, h, w = output.shape
        weight = self.effective_weight()
        return n * h * w * (weight.numel() // self.scale**2)

    def effective_weight(self) -> torch.Tensor:
        """The kernel actually applied: learned (filtered) residual + bilinear term."""
        w: torch.Tensor = self.weight
        if self.fold is not None:
            r, c = self.scale, w.shape[1]
            w6 = w.view(3, r, r, c, 3, 3)
            fold = self.fold.to(w.dtype)
            w = torch.einsum("QApa,RBqb,cpqkab->cQRkAB", fold, fold, w6)
            w = w.reshape(3 * r * r, c, self.kernel, self.kernel)
        return w + self.base.to(w.dtype)

    def forward(self, features: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        pad = self.kernel // 2
        # Replicate padding: at the border the bilinear term then clamps exactly like
        # F.interpolate(align_corners=False), and learned terms see no artificial black edge.
        x = F.pad(torch.cat([features, lr], dim=1), (pad, pad, pad, pad), mode="replicate")
        bias = self.bias.repeat_interleave(self.scale * self.scale)
        y = F.conv2d(x, self.effective_weight(), bias)
        return F.pixel_shuffle(y, self.scale) if self.scale > 1 else y
