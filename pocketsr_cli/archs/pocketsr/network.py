"""The PocketSR-style generator: LiteED encoder -> U-Net -> LiteED decoder -> sub-pixel head.

Data flow for an LR image ``(N, 3, H, W)`` (``u`` = ``config.unshuffle``)::

    encoder   pixel-unshuffle(u) + 2 convs          -> widths[0]     @ LR/u   (the latent)
    unet      levels at LR/u, LR/2u, ...; linear attention at the lowest level
    decoder   log2(u) x2 stages (bilinear + convs)  -> dec_widths[-1] @ LR
    head      one conv + pixel shuffle(scale), plus bilinear(LR)     @ LR * scale

PocketSR (arXiv 2510.03012) puts its latent at 1/8 of the *output*; that is LR/2 for x4,
which we keep.  For x2 the same rule would put it at LR/4 and throw away half of the LR
detail a x2 residual needs most, so the presets use LR/2 for both scales: x2 and x4 models
share everything but the head.  Hyper-parameters that leave no trace in tensor shapes
(format version, attention heads and window, anti-lattice filter) live in the persistent
``pocketsr_arch`` buffer, which is also what identifies these state dicts.

With ``config.pixel`` (preset ``pix``) the encoder and head are GenDR-Pix's pixel-space
ones instead (``pixel.py``): bicubic upsampling, x8 pixel-unshuffle and one conv into the
same U-Net, one conv and a x8 pixel shuffle out, no decoder.  The scale then leaves no
trace in the shapes either, so it is recorded in ``pocketsr_arch`` as a fifth entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any, cast

import torch
from torch import nn

from pocketsr_cli.archs.pocketsr.blocks import (
    AttentionSums,
    Downsample,
    LinearAttention,
    Upsample,
    make_block,
)
from pocketsr_cli.archs.pocketsr.config import CONFIGS, PocketSRConfig
from pocketsr_cli.archs.pocketsr.detection import ARCH_KEY, FORMAT_VERSION
from pocketsr_cli.archs.pocketsr.lited import DecoderStage, LiteEncoder, SubPixelHead
from pocketsr_cli.archs.pocketsr.pixel import PixelEncoder, PixelHead, upsample
from pocketsr_cli.archs.pocketsr.stats import ImageAttention


def _blocks(kind: str, channels: int, depth: int, expand: int) -> nn.Sequential:
    return nn.Sequential(*(make_block(kind, channels, expand) for _ in range(depth)))


class DownLevel(nn.Module):
    """A U-Net level on the way down: blocks, then a strided conv to the next level."""

    blocks: nn.Sequential
    downsample: Downsample

    def __init__(self, kind: str, c: int, c_next: int, depth: int, expand: int) -> None:
        super().__init__()
        self.blocks = _blocks(kind, c, depth, expand)
        self.downsample = Downsample(c, c_next)


class MidLevel(nn.Module):
    """The lowest level: blocks, then (optionally) linear attention."""

    blocks: nn.Sequential
    attn: LinearAttention | None

    def __init__(self, cfg: PocketSRConfig) -> None:
        super().__init__()
        c = cfg.widths[-1]
        self.blocks = _blocks(cfg.kinds[-1], c, cfg.depths[-1], cfg.expand)
        self.attn = LinearAttention(c, cfg.attn_heads, cfg.attn_window) if cfg.attn_heads else None


class UpLevel(nn.Module):
    """A U-Net level on the way up: upsample from the level below, add the skip, blocks."""

    upsample: Upsample
    blocks: nn.Sequential

    def __init__(self, kind: str, c: int, c_below: int, depth: int, expand: int) -> None:
        super().__init__()
        self.upsample = Upsample(c_below, c)
        self.blocks = _blocks(kind, c, depth, expand)


class UNet(nn.Module):
    """Additive-skip U-Net over the latent grid.

    ``down[i]`` and ``up[i]`` belong to level ``i``; ``up`` runs from the deepest level back
    to level 0.  Each block is its own small module (``unet.down.0.blocks.1``...), which is
    what PocketSR's annealing swaps (``train.anneal.swappable_blocks``).
    """

    def __init__(self, cfg: PocketSRConfig) -> None:
        super().__init__()
        w, d, k, e = cfg.widths, cfg.depths, cfg.kinds, cfg.expand
        self.down = nn.ModuleList(
            DownLevel(k[i], w[i], w[i + 1], d[i], e) for i in range(cfg.levels - 1)
        )
        self.mid = MidLevel(cfg)
        self.up = nn.ModuleList(
            UpLevel(k[i], w[i], w[i + 1], d[i], e) for i in range(cfg.levels - 1)
        )

    def forward(self, x: torch.Tensor, sums: AttentionSums | None = None) -> torch.Tensor:
        """The U-Net on ``x``; ``sums``: the image-wide sums its global attention uses
        instead of ``x``'s own (``stats.ImageAttention``)."""
        skips: list[torch.Tensor] = []
        x = self.descend(x, skips)
        if sums is not None:
            x = cast(LinearAttention, self.mid.attn)(x, sums)
        elif self.mid.attn is not None:
            x = self.mid.attn(x)
        ups = self.up_levels()
        for i in reversed(range(len(ups))):
            x = ups[i].blocks(ups[i].upsample(x) + skips[i])
        return x

    def descend(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The way down and the lowest level's blocks: what its attention reads.  Each
        level's output before its downsampling is appended to ``skips`` when given."""
        for down in self.down_levels():
            x = down.blocks(x)
            if skips is not None:
                skips.append(x)
            x = down.downsample(x)
        return cast(torch.Tensor, self.mid.blocks(x))

    def down_levels(self) -> list[DownLevel]:
        """``down`` with its element type (a ModuleList forgets it)."""
        return [cast(DownLevel, level) for level in self.down]

    def up_levels(self) -> list[UpLevel]:
        """``up`` with its element type, indexed by level."""
        return [cast(UpLevel, level) for level in self.up]


class PocketSR(nn.Module):
    """``(N, 3, H, W)`` in ``[0, 1]`` -> ``(N, 3, H * scale, W * scale)``.

    ``H`` and ``W`` must be multiples of :attr:`multiple_of` (the tiler pads to it).  At
    initialisation the output equals bilinear upsampling of the input (bicubic for the
    pixel layout; the head is zero-initialised).  fp16 and bf16 are safe: there is no
    normalisation, activations stay at image scale, and the attention's sums are taken in
    float32.
    """

    supports_half = True
    supports_bf16 = True
    pocketsr_arch: torch.Tensor
    encoder: LiteEncoder | PixelEncoder
    head: SubPixelHead | PixelHead

    def __init__(self, config: PocketSRConfig, scale: int) -> None:
        super().__init__()
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.config = config
        self.scale = int(scale)
        widths = (config.widths[0], *config.dec_widths)
        arch = [FORMAT_VERSION, config.attn_heads, config.attn_window, int(config.antilattice)]
        if config.pixel:
            self.encoder = PixelEncoder(config.unshuffle, config.widths[0])
            arch.append(self.scale)
        else:
            self.encoder = LiteEncoder(config.unshuffle, config.enc_width, config.widths[0])
        self.unet = UNet(config)
        self.decoder = nn.ModuleList(
            DecoderStage(a, b, config.dec_depth) for a, b in pairwise(widths)
        )
        if config.pixel:
            self.head = PixelHead(config.widths[0], config.unshuffle)
        else:
            self.head = SubPixelHead(widths[-1], self.scale, config.antilattice)
        self.register_buffer(ARCH_KEY, torch.tensor(arch, dtype=torch.int32))

    def macs(self, lr_h: int, lr_w: int) -> int:
        """Multiply-accumulates of one forward pass at this LR size (head included)."""
        from pocketsr_cli.archs.pocketsr.profile import count_macs

        return count_macs(self, lr_h, lr_w)

    @property
    def multiple_of(self) -> int:
        """Input sides must be multiples of this."""
        return self.config.input_multiple(self.scale)

    @property
    def minimum_size(self) -> int:
        """Smallest input side (one pixel at the lowest U-Net level)."""
        return self.multiple_of

    @property
    def seamless_overlap(self) -> int | None:
        """The tile overlap measured to make this network's tiles seamless (within 2
        levels of the untiled result, the tiles given the image's attention statistics:
        ``stats.py``): 12 for the nano preset at ×2, what pocketsr-nano-x2 ships
        (pocketsr-nano-x2.md, "Tiling"); None for the presets and scales not measured."""
        return 12 if self.config == CONFIGS["nano"] and self.scale == 2 else None

    def forward(self, x: torch.Tensor, stats: ImageAttention | None = None) -> torch.Tensor:
        """Upscale ``x``.  Without ``stats`` it is the whole input (training's crops, a
        whole image); with ``stats`` from :meth:`image_stats` it is a window of that image,
        whose global attention then uses the whole image's statistics."""
        m = self.multiple_of
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"input sides must be multiples of {m}, got {tuple(x.shape[-2:])} "
                "(pad the input; the tiler does this from the model's size requirements)"
            )
        sums = None
        global_attention = isinstance(self.unet.mid.attn, LinearAttention)  # (not annealed)
        if stats is not None and global_attention and self.config.global_attention:
            sums = stats.sums_for(self, x)
        if self.config.pixel:
            up = upsample(x, self.scale)
            return self.head(self.unet(self.encoder(up), sums), up)
        h = self.unet(self.encoder(x), sums)
        for stage in self.decoder:
            h = stage(h)
        return self.head(h, x)

    def lowest_features(self, x: torch.Tensor) -> torch.Tensor:
        """What the lowest level's attention reads for input ``x`` (sides multiples of
        :attr:`multiple_of`): the encoder, the way down, the lowest blocks."""
        return self.unet.descend(self.encoder(upsample(x, self.scale) if self.config.pixel else x))

    @property
    def image_stats(self) -> Callable[[torch.Tensor], ImageAttention] | None:
        """The tiler's statistics hook (``ModelDescriptor.image_stats``): for a network
        with global attention, ``image -> ImageAttention``, so that every tile attends
        with the whole image's statistics (``stats.py``); None for one without."""
        if not self.config.global_attention:
            return None
        return ImageAttention


def build(config: PocketSRConfig | str | Mapping[str, Any], scale: int) -> PocketSR:
    """A freshly initialised generator.

    ``config`` is a :class:`PocketSRConfig`, a preset name (``nano``, ``tiny``, ``base``,
    ``pix``) or a manifest ``[build]`` table (``preset`` and/or explicit fields).
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown PocketSR preset {config!r}; known: {sorted(CONFIGS)}")
        config = CONFIGS[config]
    elif not isinstance(config, PocketSRConfig):
        config = PocketSRConfig.from_params(config)
    return PocketSR(config, scale)
