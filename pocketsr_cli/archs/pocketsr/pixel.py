"""GenDR-Pix's pixel-space ends of the U-Net: no LiteED, only pixel (un)shuffles.

GenDR-Pix (arXiv 2602.10630) drops the VAE: the U-Net reads the ×8 pixel-unshuffled image
and its output is ×8 pixel-shuffled back.  Here the image is the LR upsampled to the output
size by bicubic interpolation, so the U-Net's grid sits at 1/8 of the output whatever the
scale (LR/2 at ×4, like nano's latent), and the shuffled output is a residual on that
upsampled image:

    encoder   bicubic(scale) -> pixel-unshuffle(8) -> 3x3 conv  -> widths[0] @ out/8
    head      3x3 conv -> pixel shuffle(8), + the bicubic image  -> 3 @ out

A shuffle's sub-pixel phases are separate output channels, so nothing in the layout stops
them from drifting apart into an 8×8 grid: the masked Fourier loss of training
(``train.losses.masked_fourier_loss``) is what GenDR-Pix sets against it.  Two sources are
removed structurally, as in the LiteED head: the residual is zero at initialisation and
its bias is one per colour (a per-phase bias *is* a grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PixelEncoder(nn.Module):
    """Pixel-unshuffle the upsampled image by ``factor``; one conv to the U-Net's width."""

    def __init__(self, factor: int, out_channels: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(3 * factor * factor, out_channels, 3, padding=1)

    def forward(self, upsampled: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pixel_unshuffle(upsampled, self.factor))


class PixelHead(nn.Module):
    """U-Net features -> a residual pixel-shuffled by ``factor``, added to ``upsampled``.

    Parameters: ``conv.weight`` ``(3 * factor**2, C, 3, 3)`` (no bias, zero at
    initialisation) and ``bias`` ``(3,)``, one per colour.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(channels, 3 * factor * factor, 3, padding=1, bias=False)
        nn.init.zeros_(self.conv.weight)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, features: torch.Tensor, upsampled: torch.Tensor) -> torch.Tensor:
        residual = F.pixel_shuffle(self.conv(features), self.factor)
        return upsampled + residual + self.bias.view(1, 3, 1, 1).to(residual.dtype)


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The image the pixel layout works on: bicubic upsampling of ``lr`` by ``scale``."""
    if scale == 1:
        return lr
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
