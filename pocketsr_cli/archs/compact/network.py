"""The SRVGG body plus a linear sub-pixel skip (see the package docstring)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BODY_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")  # SRVGG's body.N tensors
SKIP_KEYS = ("skip.weight", "skip.bias")


class SkipCompact(nn.Module):
    """SRVGG-compact ×``scale`` with a 3x3 linear path from the input to the sub-pixels.

    ``forward(x) = shuffle(body(x) + skip(x)) + nearest(x)`` for ``x`` in ``[0, 1]``,
    ``(N, C, H, W)`` -> ``(N, C, sH, sW)``.  ``body`` is SRVGG's: a 3x3 convolution to
    ``num_feat`` channels, ``num_conv`` more 3x3 convolutions, each followed by a PReLU, and
    a 3x3 convolution to ``C·s²`` sub-pixel channels.  ``skip`` starts at zero.
    """

    def __init__(self, num_feat: int = 64, num_conv: int = 16, scale: int = 4, channels: int = 3):
        super().__init__()
        if scale < 1 or num_feat < 1 or num_conv < 0 or channels < 1:
            raise ValueError(f"bad compact shape: feat {num_feat}, conv {num_conv}, ×{scale}")
        self.scale = scale
        out = channels * scale * scale
        layers: list[nn.Module] = [nn.Conv2d(channels, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, out, 3, padding=1))
        self.body = nn.ModuleList(layers)
        self.skip = nn.Conv2d(channels, out, 3, padding=1)
        for tensor in self.skip.parameters():
            nn.init.zeros_(tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.body:
            h = layer(h)
        h = F.pixel_shuffle(h + self.skip(x), self.scale)
        return h + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def build(params: Mapping[str, Any], scale: int) -> SkipCompact:
    """A fresh network from a manifest's ``[build]`` (``num_feat``, ``num_conv``,
    ``channels``; SRVGG's defaults 64, 16, 3).

    Raises:
        ValueError: an unknown key or a bad shape.
    """
    known = {"num_feat", "num_conv", "channels"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown [build] keys {sorted(unknown)}; known: {sorted(known)}")
    return SkipCompact(
        num_feat=int(params.get("num_feat", 64)),
        num_conv=int(params.get("num_conv", 16)),
        scale=scale,
        channels=int(params.get("channels", 3)),
    )


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is a :class:`SkipCompact`'s: ``body.N`` tensors and a skip."""
    return all(k in state_dict for k in SKIP_KEYS) and "body.0.weight" in state_dict


def infer(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``[build]`` parameters plus ``"scale"`` from the tensor shapes.

    Raises:
        ValueError: the shapes do not make a :class:`SkipCompact`.
    """
    indices = sorted({int(m.group(1)) for k in state_dict if (m := BODY_KEY.fullmatch(k))})
    last = indices[-1] if indices else -1
    if last < 2 or last % 2:
        raise ValueError("no SRVGG body (body.0 … body.2n+2)")
    first = state_dict["body.0.weight"]
    num_feat, channels = int(first.shape[0]), int(first.shape[1])
    sub = int(state_dict[f"body.{last}.weight"].shape[0])
    scale = math.isqrt(sub // channels)
    if scale * scale * channels != sub:
        raise ValueError(f"the head has {sub} channels, not {channels} × a square")
    return {"num_feat": num_feat, "num_conv": (last - 2) // 2, "channels": channels, "scale": scale}


def from_srvgg(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An SRVGG-compact state dict (``body.N`` only) plus a zero skip: a
    :class:`SkipCompact` that computes exactly what the SRVGG network did.

    Raises:
        ValueError: not an SRVGG state dict, or it has a skip already.
    """
    if any(k in state_dict for k in SKIP_KEYS):
        raise ValueError("the state dict has a skip already")
    params = infer(state_dict)
    channels, scale = params["channels"], params["scale"]
    out = dict(state_dict)
    dtype = state_dict["body.0.weight"].dtype
    out["skip.weight"] = torch.zeros(channels * scale * scale, channels, 3, 3, dtype=dtype)
    out["skip.bias"] = torch.zeros(channels * scale * scale, dtype=dtype)
    return out
