"""The official files' key layout, and how a state dict of this family is recognised.

AdcSR is published as two files (Hugging Face ``Guaishou74851/AdcSR``), read as the
official ``test.py`` reads them:

``net_params_200.pkl``
    ``torch.save`` of the training ``DataParallel`` model's ``state_dict()``.  Every key
    starts with ``module.body.``: ``module.body.1.*`` is the pruned U-Net (``conv_in``,
    ``down_blocks``, ``mid_block``, ``up_blocks``, ``conv_norm_out``, ``conv_out``) and
    ``module.body.2.*`` the decoder's mid block (trained with the U-Net).  The official
    U-Net also holds its blocks a second time in a ``Sequential`` named ``body``, so every
    U-Net tensor but ``conv_in``'s appears again under ``module.body.1.body.<i>.*``
    (``0-3`` down blocks, ``4`` mid block, ``5-8`` up blocks, ``9`` conv_norm_out, ``11``
    conv_out): the same tensors, dropped here.
``halfDecoder.ckpt``
    A PyTorch Lightning checkpoint of the pretrained half VAE: ``{"state_dict": {...},
    ...}``.  The official loader keeps the keys containing ``decoder``, without their
    ``decoder.`` prefix, as a diffusers ``Decoder``'s; of those the network uses the up
    blocks and the output layers (``conv_in`` and ``mid_block`` are superseded).

``weights.load`` has already unwrapped ``state_dict`` and stripped ``module.`` when
:func:`merge` sees them, so the merged dict has the network's own names: ``body.1.*``,
``body.2.*`` and ``decoder.{up_blocks,conv_norm_out,conv_out}.*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pocketsr_cli.archs.adcsr.config import (
    HEAD_DIM,
    PRUNE,
    SCALE,
    UNSHUFFLE,
    AdcSRConfig,
    pruned,
)
from pocketsr_cli.spelling import MODEL

if TYPE_CHECKING:
    import torch

FILES = ("net_params_200.pkl", "halfDecoder.ckpt")
_UNET = "body.1."
_MID = "body.2."
_ALIAS = "body.1.body."
_DECODER_PARTS = ("up_blocks.", "conv_norm_out.", "conv_out.")


def merge(parts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The network's state dict from the two official files' (in :data:`FILES` order).

    Raises:
        ValueError: not two files, or files without the expected keys.
    """
    if len(parts) != 2:
        raise ValueError(f"AdcSR comes as two files ({' and '.join(FILES)}), not {len(parts)}")
    net, half = parts
    own = {k: v for k, v in net.items() if k.startswith((_UNET, _MID)) and not k.startswith(_ALIAS)}
    if not detect(own):
        raise ValueError(f"{FILES[0]} holds no AdcSR U-Net (no {_UNET}conv_in.weight)")
    decoder = {k.replace("decoder.", ""): v for k, v in half.items() if "decoder" in k}
    kept = {f"decoder.{k}": v for k, v in decoder.items() if k.startswith(_DECODER_PARTS)}
    if "decoder.conv_out.weight" not in kept:
        raise ValueError(f"{FILES[1]} holds no VAE decoder (no decoder.conv_out.weight)")
    return own | kept


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is an AdcSR network's (its U-Net and decoder mid block)."""
    return f"{_UNET}conv_in.weight" in state_dict and f"{_MID}resnets.0.conv1.weight" in state_dict


def infer(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``[build]`` parameters plus ``"scale"`` for a state dict :func:`detect` accepts.

    Raises:
        ValueError: the decoder's up blocks are missing (the U-Net file alone), or shapes
            that do not fit together.
    """
    sd = state_dict
    if "decoder.conv_out.weight" not in sd:
        raise ValueError(
            f"this is the U-Net alone ({FILES[0]}); AdcSR also needs the VAE decoder of "
            f"{FILES[1]}: use {MODEL.given('adcsr-x4')}, whose manifest lists both"
        )
    in_channels = _shape(sd, f"{_UNET}conv_in.weight")[1]
    if in_channels != 3 * UNSHUFFLE**2:
        raise ValueError(f"the U-Net reads {in_channels} channels, not {3 * UNSHUFFLE**2}")
    unet_widths = []
    for i in range(4):
        width = _shape(sd, f"{_UNET}down_blocks.{i}.resnets.0.conv1.weight")[0]
        unpruned = round(width / PRUNE)
        if pruned(unpruned) != width or unpruned % HEAD_DIM:
            raise ValueError(f"U-Net block {i} is {width} wide: not a pruned SD width")
        unet_widths.append(unpruned)
    # Up block i of the decoder works at decoder_widths[3 - i].
    decoder_widths = [
        _shape(sd, f"decoder.up_blocks.{3 - i}.resnets.0.conv2.weight")[0] for i in range(4)
    ]
    config = AdcSRConfig(unet_widths=tuple(unet_widths), decoder_widths=tuple(decoder_widths))
    return {**config.to_params(), "scale": SCALE}


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"missing tensor {key}")
    return tuple(sd[key].shape)
