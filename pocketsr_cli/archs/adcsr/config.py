"""Hyper-parameters of an AdcSR network (no torch import).

AdcSR's U-Net is Stable Diffusion 2.1-base's, built from its configuration
(:data:`SD21_BASE_UNET`, diffusers' ``unet/config.json`` of ``stabilityai/
stable-diffusion-2-1-base``: no Stable Diffusion download is needed, its weights are never
used) and then cut down the way the official code does (github Guaishou74851/AdcSR,
``model.py``): every convolution, linear layer and norm keeps its first :data:`PRUNE` of
channels.  Its decoder is the "half" VAE decoder, diffusers' ``Decoder`` at
``decoder_widths``.

So two lists describe a network, and they are the manifest's ``[build]`` table:

- ``unet_widths``: the U-Net's ``block_out_channels`` *before* pruning (SD2.1-base:
  320/640/1280/1280, so 240/480/960/960 after).  Attention keeps SD's head count
  (width / 64: 5/10/20/20), so pruned heads are 48 wide;
- ``decoder_widths``: the decoder's ``block_out_channels`` (64/128/256/256); its last one
  is the width the U-Net's ``conv_out`` hands to the decoder's mid block.

Smaller widths give the same graph at a fraction of the cost (the tests use
``unet_widths = [64, 128, 256, 256]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# diffusers' configuration of stabilityai/stable-diffusion-2-1-base's U-Net ("attention_head_dim"
# is, in diffusers' naming, the number of heads per block).
SD21_BASE_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "use_linear_projection": True,
}

PRUNE = 0.75
"""Share of channels every U-Net layer keeps (its first ones)."""

HEAD_DIM = 64
"""SD's attention head width before pruning: a block of width ``w`` has ``w / 64`` heads."""

GROUP_CHOICES = (32, 24, 16, 12, 8, 6, 4, 2, 1)
"""A pruned GroupNorm takes the first of these group counts that divides its channels
(the official rule: 240 channels get 24 groups, 480 get 32)."""

DECODER_GROUPS = 32
"""The half decoder's GroupNorms keep 32 groups, so its widths are multiples of 32."""

SCALE = 4
"""PixelUnshuffle(2) in, three 2x upsamples in the decoder out: x4."""

UNSHUFFLE = 2


def pruned(channels: int) -> int:
    """Channels a layer of ``channels`` keeps (the official ``int(c * 0.75)``)."""
    return int(channels * PRUNE)


def group_count(channels: int) -> int:
    """GroupNorm groups for a pruned layer of ``channels`` (see :data:`GROUP_CHOICES`)."""
    return next(g for g in GROUP_CHOICES if channels % g == 0)


@dataclass(frozen=True)
class AdcSRConfig:
    """Shape of one AdcSR network (see the module docs).

    Attributes:
        unet_widths: the U-Net's four block widths before pruning; multiples of 64.
        decoder_widths: the half decoder's four block widths; multiples of 32.
    """

    unet_widths: tuple[int, ...] = (320, 640, 1280, 1280)
    decoder_widths: tuple[int, ...] = (64, 128, 256, 256)

    def __post_init__(self) -> None:
        problems = []
        for name, widths, step in (
            ("unet_widths", self.unet_widths, HEAD_DIM),
            ("decoder_widths", self.decoder_widths, DECODER_GROUPS),
        ):
            ok = all(isinstance(w, int) and not isinstance(w, bool) for w in widths)
            if len(widths) != 4 or not ok or any(w < step or w % step for w in widths):
                problems.append(f"{name} must be 4 positive multiples of {step}, not {widths}")
        if problems:
            raise ValueError("invalid AdcSR config: " + "; ".join(problems))

    @property
    def heads(self) -> tuple[int, ...]:
        """Attention heads per U-Net block (kept by pruning)."""
        return tuple(w // HEAD_DIM for w in self.unet_widths)

    @property
    def pruned_widths(self) -> tuple[int, ...]:
        """The U-Net's block widths after pruning (SD2.1-base: 240/480/960/960)."""
        return tuple(pruned(w) for w in self.unet_widths)

    def unet_config(self) -> dict[str, Any]:
        """diffusers' ``UNet2DConditionModel`` configuration of the U-Net before pruning."""
        return {
            **SD21_BASE_UNET,
            "block_out_channels": list(self.unet_widths),
            "attention_head_dim": list(self.heads),
        }

    def to_params(self) -> dict[str, Any]:
        """The config as a manifest ``[build]`` table."""
        return {"unet_widths": list(self.unet_widths), "decoder_widths": list(self.decoder_widths)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AdcSRConfig:
        """Config from a ``[build]`` table (missing keys: SD2.1-base's AdcSR).

        Raises:
            ValueError: an unknown key or invalid widths.
        """
        unknown = sorted(set(params) - {"unet_widths", "decoder_widths"})
        if unknown:
            raise ValueError(f"unknown AdcSR build parameters: {unknown}")
        default = cls()
        return cls(
            unet_widths=tuple(params.get("unet_widths", default.unet_widths)),
            decoder_widths=tuple(params.get("decoder_widths", default.decoder_widths)),
        )
