"""Recognise PocketSR state dicts and read their hyper-parameters from tensor shapes.

Identification rests on the ``pocketsr_arch`` buffer (``[format version, attention heads,
attention window, anti-lattice]``: the hyper-parameters shapes cannot show), which no other
architecture has, together with the ``encoder.conv1`` / ``head`` parameters.  Everything
else is read from shapes and key names:

    encoder.conv1.weight         (enc_width, 3 * unshuffle**2, 3, 3)
    unet.down.{i}.downsample     (widths[i+1], widths[i], 3, 3)  -> levels, widths
    unet.{down,mid,up}.*.blocks.{j}.{conv1|dw}                   -> depths, kinds
    ...blocks.{j}.pw1.weight     (expand * width, width, 1, 1)
    decoder.{j}.reduce.weight    (dec_widths[j], ...); decoder.0.convs.{k} -> dec_depth
    head.weight                  (3 * scale**2, dec_widths[-1] + 3, 3, 3)

The pixel layout (``pixel``, preset ``pix``) has ``encoder.conv`` instead of
``encoder.conv1``/``conv2`` and ``head.conv`` instead of ``head.weight``; its scale is the
fifth entry of ``pocketsr_arch``::

    encoder.conv.weight          (widths[0], 3 * unshuffle**2, 3, 3)
    head.conv.weight             (3 * unshuffle**2, widths[0], 3, 3)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pocketsr_cli.archs.pocketsr.config import PocketSRConfig

ARCH_KEY = "pocketsr_arch"
FORMAT_VERSION = 1
_LATENT_KEYS = ("encoder.conv1.weight", "encoder.conv2.weight", "head.weight", "head.bias")
_PIXEL_KEYS = ("encoder.conv.weight", "head.conv.weight", "head.bias")


def _is_pixel(state_dict: Mapping[str, Any]) -> bool:
    return all(k in state_dict for k in _PIXEL_KEYS)


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is a PocketSR generator's (either layout)."""
    if ARCH_KEY not in state_dict:
        return False
    if not (_is_pixel(state_dict) or all(k in state_dict for k in _LATENT_KEYS)):
        return False
    arch = state_dict[ARCH_KEY]
    return len(arch.shape) == 1 and arch.shape[0] >= 1 and not arch.is_floating_point()


def infer(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``[build]`` parameters plus ``"scale"`` for a state dict that :func:`detect` accepts.

    Raises:
        ValueError: a newer format version, or shapes that do not fit together.
    """
    sd = state_dict
    pixel = _is_pixel(sd)
    arch = [int(v) for v in sd[ARCH_KEY].tolist()]
    if arch[0] != FORMAT_VERSION or len(arch) != (5 if pixel else 4):
        raise ValueError(
            f"PocketSR weights in format {arch[0]}; this pocketsr reads format "
            f"{FORMAT_VERSION} (upgrade pocketsr)"
        )
    attn_heads, attn_window, antilattice = arch[1:4]

    enc_key = "encoder.conv.weight" if pixel else "encoder.conv1.weight"
    enc_width, enc_in = _shape(sd, enc_key)[:2]
    unshuffle = math.isqrt(enc_in // 3)
    if 3 * unshuffle * unshuffle != enc_in:
        raise ValueError(f"encoder input has {enc_in} channels, not 3 * a square")

    widths = [enc_width if pixel else _shape(sd, "encoder.conv2.weight")[0]]
    while f"unet.down.{len(widths) - 1}.downsample.conv.weight" in sd:
        widths.append(_shape(sd, f"unet.down.{len(widths) - 1}.downsample.conv.weight")[0])
    levels = len(widths)

    depths: list[int] = []
    kinds: list[str] = []
    expands: set[int] = set()
    for i in range(levels):
        if i == levels - 1:
            paths = ["unet.mid.blocks"]
        else:
            paths = [f"unet.{d}.{i}.blocks" for d in ("down", "up")]
        found = [_blocks(sd, p) for p in paths]
        if any(f != found[0] for f in found):
            raise ValueError(f"U-Net level {i}: the down and up paths differ ({found})")
        level_kinds = found[0]
        if len(set(level_kinds)) > 1:
            raise ValueError(f"U-Net level {i} mixes block kinds {level_kinds}")
        depths.append(len(level_kinds))
        kinds.append(level_kinds[0] if level_kinds else "res")
        if level_kinds and level_kinds[0] == "dw":
            expands.add(_shape(sd, f"{paths[0]}.0.pw1.weight")[0] // widths[i])
    if len(expands) > 1:
        raise ValueError(f"depthwise blocks disagree on their expansion: {sorted(expands)}")

    dec_widths: list[int] = []
    while f"decoder.{len(dec_widths)}.reduce.weight" in sd:
        dec_widths.append(_shape(sd, f"decoder.{len(dec_widths)}.reduce.weight")[0])
    dec_depth = _count(sd, r"decoder\.0\.convs\.(\d+)\.weight")
    if pixel:  # no decoder: the fields that would describe it keep their defaults
        dec_depth = PocketSRConfig.dec_depth

    if pixel:
        scale = arch[4]
        head_out = _shape(sd, "head.conv.weight")[0]
        if head_out != enc_in:
            raise ValueError(f"head has {head_out} outputs, the encoder {enc_in} inputs")
    else:
        head_out = _shape(sd, "head.weight")[0]
        scale = math.isqrt(head_out // 3)
        if 3 * scale * scale != head_out:
            raise ValueError(f"head has {head_out} outputs, not 3 * a square")

    config = PocketSRConfig(
        unshuffle=unshuffle,
        enc_width=PocketSRConfig.enc_width if pixel else enc_width,
        widths=tuple(widths),
        depths=tuple(depths),
        kinds=tuple(kinds),
        expand=expands.pop() if expands else PocketSRConfig.expand,
        attn_heads=attn_heads,
        attn_window=attn_window,
        dec_widths=tuple(dec_widths),
        dec_depth=dec_depth,
        antilattice=bool(antilattice),
        pixel=pixel,
    )
    return {**config.to_params(), "scale": scale}


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"PocketSR state dict lacks {key}")
    return tuple(int(s) for s in sd[key].shape)


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.fullmatch(k))})


def _blocks(sd: Mapping[str, Any], prefix: str) -> list[str]:
    """Kinds of the blocks ``{prefix}.0``, ``{prefix}.1``... in order."""
    kinds: list[str] = []
    while True:
        j = len(kinds)
        if f"{prefix}.{j}.conv1.weight" in sd:
            kinds.append("res")
        elif f"{prefix}.{j}.dw.weight" in sd:
            kinds.append("dw")
        else:
            return kinds
