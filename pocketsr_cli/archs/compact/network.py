"""The SRVGG body plus a linear sub-pixel skip (see the package docstring)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketsr_cli.descriptor import derived_overlap

BODY_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")  # SRVGG's body.N tensors
SKIP_KEYS = ("skip.weight", "skip.bias")
POST_KEY = "post.weight"  # the optional filter after the shuffle (depthwise, no bias)
PRE_KEY = "pre.weight"  # the optional filter on the input (depthwise, no bias)

# Body convolutions -> the smallest --tile-overlap whose tiles came within 2 levels (largest
# difference) and 1 (99.9th percentile) of the untiled result (scripts/tile_seams.py, fp32
# on the CPU, photo crops and noise).  16: Real-ESRGAN animevideov3 (noise: 8 17/6, 12 3/1,
# 16 1/1), pocketsr-compact-x4 (SRVGG, 12 up to 4-6) and pocketsr-compact-x2 (with its
# 13-tap input filter, 12 up to 6).  Other depths are not measured: they get an overlap
# derived from these (srvgg_overlap).  The SRVGG body is spandrel's ``Compact`` too, which
# weights/community.py looks up here.
SRVGG_OVERLAPS: dict[int, int] = {16: 16}
# Input pixels the filters around the body reached in the networks measured: the ×2's
# 13-tap input filter (6 either side) left its overlap at its body's.  Filters that reach
# further are not measured.
MEASURED_FILTER_REACH = 6


class SkipCompact(nn.Module):
    """SRVGG-compact ×``scale`` with a 3x3 linear path from the input to the sub-pixels, and
    optionally a filter on the input and one on the enlarged image.

    ``forward(x) = post(shuffle(body(p) + skip(p)) + nearest(p))`` with ``p = pre(x)``, for
    ``x`` in ``[0, 1]``, ``(N, C, H, W)`` -> ``(N, C, sH, sW)``.  ``body`` is SRVGG's: a 3x3
    convolution to ``num_feat`` channels, ``num_conv`` more 3x3 convolutions, each followed
    by a PReLU, and a 3x3 convolution to ``C·s²`` sub-pixel channels.  ``skip`` starts at
    zero.  ``post`` (``post_size`` > 0) is a ``post_size``² depthwise convolution at the
    output's resolution, one kernel per colour, starting as the identity: it sees the
    sub-pixel phases side by side, so it can hold what no layer before the shuffle can, such
    as a notch at the input's pixel pitch (the mesh) or a gain in the visible band.  ``pre``
    (``pre_size`` > 0) is the same kind of filter at the input's resolution: what the ×2
    variant uses to meet inputs blurrier, per input pixel, than the ×4 network learnt
    (models/pocketsr-compact-x2.md).  Both pad by replication, so a flat area stays flat
    whatever a kernel sums to.

    It states the tile overlap measured for its body (:data:`SRVGG_OVERLAPS`) as
    :attr:`seamless_overlap`.
    """

    def __init__(
        self,
        num_feat: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        channels: int = 3,
        post_size: int = 0,
        pre_size: int = 0,
    ):
        super().__init__()
        if scale < 1 or num_feat < 1 or num_conv < 0 or channels < 1:
            raise ValueError(f"bad compact shape: feat {num_feat}, conv {num_conv}, ×{scale}")
        for name, size in (("post", post_size), ("pre", pre_size)):
            if size < 0 or (size and size % 2 == 0):
                raise ValueError(f"the {name} filter's size must be odd (or 0: none), got {size}")
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
        self.post = _identity_filter(channels, post_size)
        self.pre = _identity_filter(channels, pre_size)
        # What draws the sub-pixels, and the filters around them (the input's feeds the
        # enlarged base): kept in fp32 under bf16 (pocketsr_cli.subpixel).
        self.subpixel_layers = (
            *(["pre"] if self.pre is not None else []),
            f"body.{len(layers) - 1}",
            "skip",
            *(["post"] if self.post is not None else []),
        )

    @property
    def seamless_overlap(self) -> int | None:
        """The tile overlap of an SRVGG body of its depth (:func:`srvgg_overlap`: measured
        for 16 convolutions, 16; derived for other depths), when its filters reach no
        further past the body, in input pixels, than those measured with it
        (:data:`MEASURED_FILTER_REACH`); else None: not known.  (The skip's 3x3 sees less
        far than the body.)"""
        pre = self.pre.kernel_size[0] // 2 if self.pre is not None else 0
        post = self.post.kernel_size[0] // 2 if self.post is not None else 0
        filter_reach = pre + -(-post // self.scale)
        if filter_reach > MEASURED_FILTER_REACH:
            return None
        return srvgg_overlap(self.num_conv, filter_reach)

    @property
    def overlap_derived(self) -> bool:
        """Whether :attr:`seamless_overlap` is derived for a body depth not measured
        (not in :data:`SRVGG_OVERLAPS`), an estimate, rather than measured."""
        return self.seamless_overlap is not None and self.num_conv not in SRVGG_OVERLAPS

    @property
    def num_conv(self) -> int:
        """The body's convolutions between its first and its last."""
        return (len(self.body) - 3) // 2  # conv + PReLU in, num_conv pairs, conv out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = _filtered(self.pre, x)
        h = x
        for layer in self.body:
            h = layer(h)
        h = F.pixel_shuffle(h + self.skip(x), self.scale)
        h = h + F.interpolate(x, scale_factor=self.scale, mode="nearest")
        if self.post is not None:
            h = _filtered(self.post, h)
        return h


def srvgg_reach(num_conv: int) -> int:
    """How far, in input pixels, an SRVGG body of ``num_conv`` convolutions sees: its
    ``num_conv + 2`` 3x3 convolutions, all at the input's resolution."""
    return num_conv + 2


def srvgg_overlap(num_conv: int, filter_reach: int = 0) -> int | None:
    """The tile overlap of an SRVGG body of ``num_conv`` convolutions, with filters around
    it that reach ``filter_reach`` input pixels further (no more than
    :data:`MEASURED_FILTER_REACH`, which were measured not to need more): measured for
    the depths of :data:`SRVGG_OVERLAPS` (16 for 16), else *derived* from them, not
    measured (``descriptor.derived_overlap``: in proportion to :func:`srvgg_reach` for a
    deeper body, 31 for realesr-general-x4v3's 32 convolutions; the measured 16 for a
    shallower one, but no more than twice how far it sees: 6 for 1 convolution)."""
    measured = {srvgg_reach(n): o for n, o in SRVGG_OVERLAPS.items()}
    reach = srvgg_reach(num_conv)
    return derived_overlap(reach, measured, radius=reach + filter_reach)


def _identity_filter(channels: int, size: int) -> nn.Conv2d | None:
    """A ``size``² depthwise filter starting as the identity (None for size 0); it is padded
    in :func:`_filtered`."""
    if not size:
        return None
    conv = nn.Conv2d(channels, channels, size, groups=channels, bias=False)
    with torch.no_grad():
        conv.weight.copy_(identity_kernel(channels, size))
    return conv


def _filtered(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on ``x`` padded by replication: the output keeps ``x``'s size."""
    pad = conv.kernel_size[0] // 2
    return conv(F.pad(x, (pad,) * 4, mode="replicate"))


def identity_kernel(channels: int, size: int) -> torch.Tensor:
    """``(channels, 1, size, size)``: the depthwise kernel that passes every colour as it is."""
    kernel = torch.zeros(channels, 1, size, size)
    kernel[:, :, size // 2, size // 2] = 1.0
    return kernel


def build(params: Mapping[str, Any], scale: int) -> SkipCompact:
    """A fresh network from a manifest's ``[build]`` (``num_feat``, ``num_conv``,
    ``channels``, ``post_size``, ``pre_size``; SRVGG's defaults 64, 16, 3, and no filters).

    Raises:
        ValueError: an unknown key or a bad shape.
    """
    known = {"num_feat", "num_conv", "channels", "post_size", "pre_size"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown [build] keys {sorted(unknown)}; known: {sorted(known)}")
    return SkipCompact(
        num_feat=int(params.get("num_feat", 64)),
        num_conv=int(params.get("num_conv", 16)),
        scale=scale,
        channels=int(params.get("channels", 3)),
        post_size=int(params.get("post_size", 0)),
        pre_size=int(params.get("pre_size", 0)),
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
    params = {"num_feat": num_feat, "num_conv": (last - 2) // 2, "channels": channels}
    for key, name in ((POST_KEY, "post_size"), (PRE_KEY, "pre_size")):
        if key in state_dict:
            params[name] = int(state_dict[key].shape[-1])
    return {**params, "scale": scale}


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


def with_post(
    state_dict: Mapping[str, torch.Tensor], size: int, kernel: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """``state_dict`` (SRVGG, or compact with a skip) plus a ``size``² post filter (and a
    zero skip if it had none).  Without ``kernel`` the filter is the identity: the same
    output, and a filter to train; otherwise every colour gets ``kernel`` ``(size, size)``.

    Raises:
        ValueError: not an SRVGG/compact state dict, it has a post filter already, or
            ``size`` is not a positive odd number.
    """
    return _with_filter(state_dict, POST_KEY, "post", size, kernel)


def with_pre(
    state_dict: Mapping[str, torch.Tensor], size: int, kernel: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """:func:`with_post` for the filter on the input (``pre.weight``)."""
    return _with_filter(state_dict, PRE_KEY, "pre", size, kernel)


def _with_filter(
    state_dict: Mapping[str, torch.Tensor],
    key: str,
    name: str,
    size: int,
    kernel: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    if key in state_dict:
        raise ValueError(f"the state dict has a {name} filter already")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the {name} filter's size must be a positive odd number, got {size}")
    out = dict(state_dict) if all(k in state_dict for k in SKIP_KEYS) else from_srvgg(state_dict)
    channels = infer(out)["channels"]
    weight = identity_kernel(channels, size)
    if kernel is not None:
        weight[:, 0] = kernel
    out[key] = weight.to(state_dict["body.0.weight"].dtype)
    return out
