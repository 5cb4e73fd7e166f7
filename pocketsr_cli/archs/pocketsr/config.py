"""Hyper-parameters of the PocketSR-style generator, the named presets, and their checks.

Two layouts share the U-Net body: the latent one (LiteED encoder and decoder around the
U-Net, PocketSR) and, with ``pixel``, GenDR-Pix's pixel-space one (no LiteED: the
bicubic-upsampled input is pixel-unshuffled straight into the U-Net and its output
pixel-shuffled back).

This module imports no torch so that manifests and the registry can validate ``[build]``
tables cheaply.  ``PocketSRConfig.to_params`` / ``from_params`` convert to and from the
plain ``[build]`` table (lists instead of tuples), which is what ``infer`` returns too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BLOCK_KINDS = ("res", "dw")


@dataclass(frozen=True)
class PocketSRConfig:
    """Shape of one generator; the upscaling factor is given separately to ``build``.

    Attributes:
        unshuffle: the LiteED encoder pixel-unshuffles the LR by this factor (1, 2 or 4), so
            the U-Net works on a grid of ``LR / unshuffle``.
        enc_width: width of the encoder's hidden convolution.
        widths: U-Net width per level; level ``i`` runs at ``LR / (unshuffle * 2**i)``.
        depths: blocks per level on the way down and again on the way up; the lowest
            level's blocks run once (the middle of the U-Net).
        kinds: block kind per level: ``"res"`` (two 3x3 convolutions) or ``"dw"``
            (depthwise 3x3 + pointwise feed-forward), PocketSR's pruning of deep levels.
        expand: hidden width of ``"dw"`` blocks as a multiple of their width.
        attn_heads: heads of the linear-attention block at the lowest level; 0 = none.
        attn_window: side of the attention's neighbourhood in lowest-level pixels (odd);
            0 = the whole input (cheap; see ``blocks.LinearAttention`` for the trade-off;
            tiles then attend with the whole image's statistics, ``stats.py``).
        dec_widths: LiteED decoder: one stage per x2 step from the latent back to LR
            resolution, so ``len(dec_widths) == log2(unshuffle)``.
        dec_depth: 3x3 convolutions per decoder stage after its upsampling.
        antilattice: filter the learned residual after the pixel shuffle so that no
            pattern repeating with the shuffle's period can reach the output.  Off by
            default: the filter also removes all detail above the LR Nyquist frequency
            (trained with it, sharpness stayed at bicubic's); the lattice loss, RandPad
            and the resize-convolution decoder keep the grid down without it.
        pixel: GenDR-Pix's pixel-space layout instead of LiteED: the LR is bicubic-upsampled
            to the output size, pixel-unshuffled by ``unshuffle`` (8, as in the paper: so
            the U-Net works at 1/8 of the output) into one 3x3 convolution to
            ``widths[0]``; the U-Net's output goes through one 3x3 convolution and a pixel
            shuffle by ``unshuffle`` and is added to the upsampled input.  ``enc_width``
            is unused, ``dec_widths`` must be empty and ``antilattice`` off (the masked
            Fourier loss is that layout's answer to the shuffle grid).
    """

    unshuffle: int = 2
    enc_width: int = 16
    widths: tuple[int, ...] = (32, 48, 64)
    depths: tuple[int, ...] = (1, 1, 2)
    kinds: tuple[str, ...] = ("res", "dw", "dw")
    expand: int = 2
    attn_heads: int = 2
    attn_window: int = 0
    dec_widths: tuple[int, ...] = (24,)
    dec_depth: int = 1
    antilattice: bool = False
    pixel: bool = False

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid PocketSR config: " + "; ".join(problems))

    @property
    def levels(self) -> int:
        """Number of U-Net levels."""
        return len(self.widths)

    @property
    def multiple_of(self) -> int:
        """Sides must be multiples of this (unshuffle, then one /2 per extra level): of the
        input for the latent layout, of the *output* for ``pixel`` (see
        :meth:`input_multiple`)."""
        return self.unshuffle * 2 ** (self.levels - 1)

    def input_multiple(self, scale: int) -> int:
        """Input sides must be multiples of this at ``scale``."""
        m = self.multiple_of
        return m // math.gcd(m, scale) if self.pixel else m

    @property
    def global_attention(self) -> bool:
        """Whether the lowest level attends over its whole input (``attn_window`` 0)."""
        return self.attn_heads > 0 and self.attn_window == 0

    def attention_reach(self, scale: int) -> int:
        """How far, in input pixels, the lowest level's features (what its attention
        reads) reach past their own cell: the receptive-field radius of the encoder, the
        way down and the lowest level's blocks, rounded up.  A window that reaches this far
        past a region gives that region's lowest-level features as the whole image does."""
        reach = {"res": 2, "dw": 1}  # 3x3 convolutions per block
        pitch = self.unshuffle  # the U-Net's grid pitch, in pixels of its encoder's input
        radius = pitch + (1 if self.pixel else 2) * pitch  # the cell, the encoder's convs
        for i in range(self.levels):
            radius += self.depths[i] * reach[self.kinds[i]] * pitch
            if i < self.levels - 1:
                radius += pitch  # the strided 3x3 down to the next level
                pitch *= 2
        if self.pixel:  # the encoder reads the bicubic upsampling (4 taps) of the input
            return -(-radius // scale) + 2
        return radius

    def problems(self) -> list[str]:
        """Human-readable reasons why this config cannot be built (empty when fine)."""
        out: list[str] = []
        if self.pixel:
            if self.unshuffle not in (2, 4, 8, 16):
                out.append(f"unshuffle must be 2, 4, 8 or 16 with pixel, got {self.unshuffle}")
            if self.dec_widths:
                out.append("dec_widths must be empty with pixel (there is no LiteED decoder)")
            if self.antilattice:
                out.append("antilattice does not apply with pixel (no sub-pixel head)")
        elif self.unshuffle not in (1, 2, 4):
            out.append(f"unshuffle must be 1, 2 or 4, got {self.unshuffle}")
        elif len(self.dec_widths) != self.unshuffle.bit_length() - 1:
            out.append(
                f"dec_widths needs one width per x2 step back to LR "
                f"({self.unshuffle.bit_length() - 1} for unshuffle {self.unshuffle}), "
                f"got {len(self.dec_widths)}"
            )
        n = len(self.widths)
        if n < 1:
            out.append("widths must name at least one level")
        if len(self.depths) != n or len(self.kinds) != n:
            out.append(f"widths, depths and kinds must have one entry per level ({n})")
        if any(k not in BLOCK_KINDS for k in self.kinds):
            out.append(f"kinds must be among {BLOCK_KINDS}, got {list(self.kinds)}")
        positive = [self.enc_width, *self.widths, *self.dec_widths, self.expand]
        if any(int(v) != v or v < 1 for v in positive):
            out.append("widths and expand must be positive integers")
        if any(d < 0 for d in self.depths) or self.dec_depth < 0:
            out.append("depths must be >= 0")
        if self.attn_heads < 0 or (self.attn_heads and self.widths[-1] % self.attn_heads):
            out.append(f"attn_heads must divide the lowest width {self.widths[-1]}")
        if self.attn_window < 0 or (self.attn_window and self.attn_window % 2 == 0):
            out.append(f"attn_window must be 0 or odd, got {self.attn_window}")
        return out

    def to_params(self) -> dict[str, Any]:
        """The config as a manifest ``[build]`` table (plain ints, strings, lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PocketSRConfig:
        """Config from a ``[build]`` table: a ``preset`` name and/or explicit fields.

        Raises:
            ValueError: unknown preset or key, or an invalid combination.
        """
        params = dict(params)
        preset = params.pop("preset", None)
        if preset is not None and preset not in CONFIGS:
            raise ValueError(f"unknown PocketSR preset {preset!r}; known: {sorted(CONFIGS)}")
        base = CONFIGS[preset] if preset is not None else cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown PocketSR build parameters: {unknown}")
        tuples = {k: tuple(v) for k, v in params.items() if isinstance(v, list | tuple)}
        return replace(base, **{**params, **tuples})


# Sizes were set by measuring seconds per 4K output on a shared 2-core CPU against an SRVGG
# "compact" (scripts/bench_arch.py): work at LR/2 and below is nearly free there (wide,
# cache-friendly GEMMs), so capacity goes into the U-Net; every pass at LR resolution costs
# tenths of a second, so the decoder keeps one narrow stage there and nothing runs at the
# output resolution except the final pixel shuffle.
CONFIGS: dict[str, PocketSRConfig] = {
    # CPU-first: well under a third of compact's time per 4K output.
    "nano": PocketSRConfig(),
    # About 2x nano's time (3x its MACs): wider U-Net, a wider and deeper decoder stage at
    # LR resolution, where the detail is made.
    "tiny": PocketSRConfig(
        enc_width=32,
        widths=(48, 96, 128),
        depths=(2, 2, 2),
        kinds=("res", "dw", "dw"),
        expand=2,
        attn_heads=4,
        dec_widths=(48,),
        dec_depth=2,
    ),
    # A GPU size: four levels, wide decoder.
    "base": PocketSRConfig(
        enc_width=64,
        widths=(96, 192, 256, 320),
        depths=(2, 2, 3, 3),
        kinds=("res", "res", "dw", "dw"),
        expand=2,
        attn_heads=8,
        attn_window=9,
        dec_widths=(64,),
        dec_depth=3,
    ),
    # GenDR-Pix's pixel-space layout around nano's U-Net: no LiteED, x8 pixel-unshuffle of
    # the bicubic-upsampled input in, x8 pixel shuffle out (the grid is LR/2 at x4, as
    # nano's latent).
    "pix": PocketSRConfig(pixel=True, unshuffle=8, dec_widths=()),
}
