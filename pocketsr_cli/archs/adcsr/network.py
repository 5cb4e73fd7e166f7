"""The AdcSR network, built from diffusers' U-Net and VAE-decoder blocks.

Data flow (``x`` is ``(N, 3, h, w)`` in [0, 1], sides multiples of 16)::

    x * 2 - 1 -> PixelUnshuffle(2)                          12 channels, h/2 x w/2
      -> pruned SD2.1-base U-Net without time or text       conv_in 12 -> 240 ... conv_out -> 256
      -> the half VAE decoder's mid block                   (trained with the U-Net)
      -> its up blocks (three 2x), GroupNorm, SiLU, conv    -> 3 channels, 4h x 4w
      -> / 2 + 0.5, then the colour match to the LR         (ColourStats)

Module names are the official ones (``body.1`` = U-Net, ``body.2`` = mid block, then
``decoder.*``), so the official files load with their own keys (``official.py``).

The U-Net is diffusers' ``UNet2DConditionModel`` built from SD2.1-base's configuration
(``config.py``) on the meta device, then cut down as in the official ``model.py``: the time
embedding, every ResNet's ``time_emb_proj`` and every transformer's cross-attention
(``attn2``, ``norm2``) removed, every Conv2d / Linear / GroupNorm / LayerNorm replaced by one
with 75 % of its channels (created on the current default device: ``torch.device("meta")``
counts parameters without allocating them).  Its forward pass is the official one, written
out below: no timestep, no text, skip connections kept on a local stack, and attention as
diffusers' default processor computes it (``scaled_dot_product_attention`` with its default
scale, i.e. ``1/sqrt(48)`` for the pruned heads).

Image-wide statistics.  Two things in AdcSR look at the whole image, so a tile on its own
would get them wrong, and differently from its neighbours:

- the official test script ends with a per-channel mean/std match of the output to the
  LR over the whole image;
- every GroupNorm (the U-Net's, the decoder's) normalises by statistics of all the
  positions it sees: a tile of sky alone would be stretched to full contrast.

:meth:`AdcSR.image_stats` (the tiler's statistics hook, run once per image) runs the
network once on the whole image when it is at most :attr:`AdcSR.stats_side` pixels, else on
a copy area-downscaled to that size, recording every GroupNorm's per-group mean and
variance and the colour statistics of input and output (:class:`ImageStats`).  Every tile
is then normalised with those recorded statistics and matched with that colour transform,
so tiles agree with each other and, for an image of at most ``stats_side`` pixels, with the
untiled official result.  Only attention still sees just its tile.  Without statistics
(``module(x)``) the tensor is treated as the whole image, as the official script does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

from pocketsr_cli import libwarnings
from pocketsr_cli.archs.adcsr.config import (
    DECODER_GROUPS,
    SCALE,
    UNSHUFFLE,
    AdcSRConfig,
    group_count,
    pruned,
)

MULTIPLE = 16
"""Input sides must be multiples of this: the unshuffle, then three stride-2 downsamples."""


NormStats = tuple[torch.Tensor, torch.Tensor]
"""One GroupNorm call's per-group mean and (biased) variance, ``(N, groups)`` each."""


@dataclass(frozen=True)
class ImageStats:
    """What one image's tiles share (see the module docs).

    ``lr_*`` / ``sr_*``: per-channel mean and standard deviation (``(N, 3, 1, 1)``) of the
    LR input and of the network's raw output, both in [0, 1] units; the standard deviations
    are the unbiased ones, as in the official script.  ``norms``: every GroupNorm call's
    statistics, in the order the forward pass makes them (empty: each input its own).
    """

    lr_mean: torch.Tensor
    lr_std: torch.Tensor
    sr_mean: torch.Tensor
    sr_std: torch.Tensor
    norms: tuple[NormStats, ...] = ()

    @classmethod
    def measure(
        cls, lr: torch.Tensor, sr: torch.Tensor, norms: Sequence[NormStats] = ()
    ) -> ImageStats:
        lr, sr = lr.float(), sr.float()
        return cls(
            lr_mean=lr.mean(dim=(2, 3), keepdim=True),
            lr_std=lr.std(dim=(2, 3), keepdim=True),
            sr_mean=sr.mean(dim=(2, 3), keepdim=True),
            sr_std=sr.std(dim=(2, 3), keepdim=True),
            norms=tuple(norms),
        )

    def match(self, sr: torch.Tensor) -> torch.Tensor:
        """``sr`` moved to the LR's per-channel mean and spread (the official formula;
        the same affine map in [0, 1] units as in its [-1, 1] ones)."""
        device = sr.device
        # A flat output channel has no spread to rescale: it becomes the LR's mean.
        gain = self.lr_std.to(device) / self.sr_std.to(device).clamp_min(1e-6)
        return (sr.float() - self.sr_mean.to(device)) * gain + self.lr_mean.to(device)


class SharedGroupNorm(nn.GroupNorm):
    """A GroupNorm that can record its statistics, or normalise with recorded ones.

    Outside :class:`NormSharing`'s ``record`` and ``replay`` blocks it is a plain
    GroupNorm (and its parameters have the same names, so weights load unchanged).
    """

    sharing: NormSharing | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sharing is None or self.sharing.mode is None:
            return super().forward(x)
        return self.sharing.normalise(self, x)


class NormSharing:
    """Which statistics the network's :class:`SharedGroupNorm` layers use right now."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self._stats: list[NormStats] = []
        self._next = 0

    @contextlib.contextmanager
    def record(self) -> Iterator[list[NormStats]]:
        """Normalise as usual, appending each call's statistics to the list yielded."""
        self.mode, self._stats = "record", []
        try:
            yield self._stats
        finally:
            self.mode = None

    @contextlib.contextmanager
    def replay(self, stats: Sequence[NormStats]) -> Iterator[None]:
        """Normalise the calls in order with ``stats`` (from :meth:`record`)."""
        self.mode, self._stats, self._next = "replay", list(stats), 0
        try:
            yield
        finally:
            self.mode = None

    def normalise(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        flat = x.float().reshape(n, norm.num_groups, -1)
        if self.mode == "record":
            var, mean = torch.var_mean(flat, dim=2, correction=0)
            self._stats.append((mean, var))
            return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
        if self._next >= len(self._stats):
            raise ValueError("the recorded statistics are of another network")
        mean, var = self._stats[self._next]
        self._next += 1
        if mean.shape[-1] != norm.num_groups:
            raise ValueError("the recorded statistics are of another network")
        mean, var = mean.to(x.device)[..., None], var.to(x.device)[..., None]
        y = ((flat - mean) * torch.rsqrt(var + norm.eps)).reshape(x.shape)
        if norm.affine:
            shape = (1, c) + (1,) * (x.dim() - 2)
            y = y * norm.weight.float().reshape(shape) + norm.bias.float().reshape(shape)
        return y.to(x.dtype)


class AdcSR(nn.Module):
    """AdcSR's one-step diffusion-GAN generator, x4 (see the module docs).

    Called as ``module(x)`` or ``module(x, stats)`` with ``stats`` from
    :meth:`image_stats`; returns ``(N, 3, 4h, 4w)`` in [0, 1] (not clamped).
    """

    scale = SCALE
    multiple_of = MULTIPLE
    minimum_size = MULTIPLE
    supports_half = True  # under the NaN guard: the half decoder can overflow in fp16
    supports_bf16 = True
    max_tile = 128
    """Largest tile side ``--tile auto`` picks, in LR pixels (512 output pixels): the
    size AdcSR was trained at; attention makes larger windows quadratically dearer."""
    stats_side = 128
    """Longest side the colour statistics are measured at: one tile's worth of work."""

    def __init__(self, config: AdcSRConfig | None = None) -> None:
        super().__init__()
        self.config = config or AdcSRConfig()
        decoder = _half_decoder(self.config)
        mid_block = decoder.mid_block
        # The student feeds the mid block itself: the decoder's conv_in is not used.
        del decoder.conv_in, decoder.mid_block
        unet = _pruned_unet(self.config)
        self.body = nn.Sequential(nn.PixelUnshuffle(UNSHUFFLE), unet, mid_block)
        self.decoder = decoder
        self.norms = NormSharing()
        _share_group_norms(self, self.norms)

    def forward(self, x: torch.Tensor, stats: ImageStats | None = None) -> torch.Tensor:
        if stats is None:
            y = self.generate(x)
            return ImageStats.measure(x, y).match(y)
        replay = self.norms.replay(stats.norms) if stats.norms else contextlib.nullcontext()
        with replay:
            y = self.generate(x)
        return stats.match(y)

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw output in [0, 1] units, float32, before the colour match.

        Sides that are not multiples of 16 are padded (reflect) and cropped back.
        """
        h, w = x.shape[-2:]
        z = _pad_to_multiple(x, MULTIPLE) * 2 - 1
        unshuffle, unet, mid_block = self.body
        z = mid_block(_unet_forward(unet, unshuffle(z)))
        for up_block in self.decoder.up_blocks:
            z = up_block(z)
        z = self.decoder.conv_out(self.decoder.conv_act(self.decoder.conv_norm_out(z)))
        return z[..., : h * SCALE, : w * SCALE].float() / 2 + 0.5

    @torch.no_grad()
    def image_stats(self, image: torch.Tensor) -> ImageStats:
        """The statistics every tile of a whole image ``(1, 3, H, W)`` in [0, 1] shares
        (see the module docs).  Runs the network once, in float32, on the image or its
        :attr:`stats_side` copy."""
        device = next(self.parameters()).device
        lr = image.float().to(device)
        h, w = lr.shape[-2:]
        if max(h, w) > self.stats_side:
            ratio = self.stats_side / max(h, w)
            size = (max(1, round(h * ratio)), max(1, round(w * ratio)))
            lr = F.interpolate(lr, size=size, mode="area")
        with torch.autocast(device_type=device.type, enabled=False), self.norms.record() as norms:
            sr = self.generate(lr)
        return ImageStats.measure(lr, sr, norms)


# --- building -----------------------------------------------------------------------------


def _pruned_unet(config: AdcSRConfig) -> UNet2DConditionModel:
    """SD2.1-base's U-Net (at ``config.unet_widths``) without time or text conditioning,
    every layer pruned to 75 % of its channels, conv_in 12 -> w and conv_out w -> decoder."""
    # The full-width skeleton only supplies the structure: on the meta device it costs
    # nothing, and every layer holding tensors is replaced below.
    with torch.device("meta"), libwarnings.collecting([]):
        unet = UNet2DConditionModel(**config.unet_config())
    del unet.time_embedding, unet.conv_in, unet.conv_out
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            del module.time_emb_proj
        elif isinstance(module, BasicTransformerBlock):
            del module.attn2, module.norm2
    targets = [
        (parent, name, child)
        for parent in unet.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Conv2d | nn.Linear | nn.GroupNorm | nn.LayerNorm)
    ]
    for parent, name, child in targets:
        setattr(parent, name, _pruned_layer(child))
    for module in unet.modules():
        if isinstance(module, Downsample2D | Upsample2D):
            module.channels = pruned(module.channels)  # their forward checks it
            module.out_channels = pruned(module.out_channels)
    width = config.pruned_widths[0]
    unet.conv_in = nn.Conv2d(3 * UNSHUFFLE**2, width, 3, padding=1)
    unet.conv_out = nn.Conv2d(width, config.decoder_widths[-1], 3, padding=1)
    return unet


def _pruned_layer(layer: nn.Module) -> nn.Module:
    """A fresh layer like ``layer`` with 75 % of its channels (the official rule)."""
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(
            pruned(layer.in_channels),
            pruned(layer.out_channels),
            _pair(layer.kernel_size),
            stride=_pair(layer.stride),
            padding=layer.padding if isinstance(layer.padding, str) else _pair(layer.padding),
            dilation=_pair(layer.dilation),
            groups=layer.groups,
            bias=layer.bias is not None,
        )
    if isinstance(layer, nn.Linear):
        return nn.Linear(
            pruned(layer.in_features), pruned(layer.out_features), bias=layer.bias is not None
        )
    if isinstance(layer, nn.GroupNorm):
        channels = pruned(layer.num_channels)
        return nn.GroupNorm(group_count(channels), channels, eps=layer.eps, affine=layer.affine)
    assert isinstance(layer, nn.LayerNorm)
    return nn.LayerNorm(
        pruned(layer.normalized_shape[0]),
        eps=layer.eps,
        elementwise_affine=layer.elementwise_affine,
    )


def _share_group_norms(network: nn.Module, sharing: NormSharing) -> None:
    """Make every GroupNorm of ``network`` a :class:`SharedGroupNorm` using ``sharing``."""
    targets = [
        (parent, name, child)
        for parent in network.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.GroupNorm)
    ]
    for parent, name, child in targets:
        shared = SharedGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
        shared.sharing = sharing
        setattr(parent, name, shared)


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    return int(value[0]), int(value[1])


def _half_decoder(config: AdcSRConfig) -> Decoder:
    """The "half" VAE decoder of the official code (diffusers ``Decoder``)."""
    with libwarnings.collecting([]):
        return Decoder(
            in_channels=4,
            out_channels=3,
            up_block_types=("UpDecoderBlock2D",) * len(config.decoder_widths),
            block_out_channels=tuple(config.decoder_widths),
            layers_per_block=2,
            norm_num_groups=DECODER_GROUPS,
            act_fn="silu",
            norm_type="group",
            mid_block_add_attention=True,
        )


# --- the U-Net's forward pass (the official one) -------------------------------------------
# diffusers' blocks are walked through their attributes, typed ``Any``: which ones a block
# has (``attentions``, ``downsamplers``) is what the code asks.


def _unet_forward(unet: Any, x: torch.Tensor) -> torch.Tensor:
    x = unet.conv_in(x)
    skips = [x]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            x = _resnet(resnet, x)
            if attentions is not None:
                x = _transformer(attentions[i], x)
            skips.append(x)
        if block.downsamplers is not None:
            x = block.downsamplers[0](x)
            skips.append(x)
    mid = unet.mid_block
    x = _resnet(mid.resnets[0], x)
    x = _transformer(mid.attentions[0], x)
    x = _resnet(mid.resnets[1], x)
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            x = _resnet(resnet, torch.cat([x, skips.pop()], dim=1))
            if attentions is not None:
                x = _transformer(attentions[i], x)
        if block.upsamplers is not None:
            x = block.upsamplers[0](x)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(x)))


def _resnet(block: Any, x: torch.Tensor) -> torch.Tensor:
    h = block.conv1(block.nonlinearity(block.norm1(x)))
    h = block.conv2(block.nonlinearity(block.norm2(h)))
    return h + (x if block.conv_shortcut is None else block.conv_shortcut(x))


def _transformer(model: Any, x: torch.Tensor) -> torch.Tensor:
    """A Transformer2DModel with self-attention and feed-forward only (no text)."""
    n, c, h, w = x.shape
    t = model.norm(x).permute(0, 2, 3, 1).reshape(n, h * w, c)
    t = model.proj_in(t)
    for block in model.transformer_blocks:
        t = t + _self_attention(block.attn1, block.norm1(t))
        t = t + block.ff(block.norm3(t))
    t = model.proj_out(t)
    return t.reshape(n, h, w, c).permute(0, 3, 1, 2) + x


def _self_attention(attn: Any, t: torch.Tensor) -> torch.Tensor:
    n, length, _ = t.shape
    heads = int(attn.heads)

    def split(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(n, length, heads, -1).transpose(1, 2)

    q, k, v = split(attn.to_q(t)), split(attn.to_k(t)), split(attn.to_v(t))
    out = F.scaled_dot_product_attention(q, k, v)
    return attn.to_out[0](out.transpose(1, 2).reshape(n, length, -1))


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to multiples of ``multiple`` as the tiler does (reflect, or
    replicate where a side is too short to reflect)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < w else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < h else "replicate")
    return x
