"""Cost of a network: multiply-accumulates for a given input size, and parameters.

MACs are counted by forward hooks on ``nn.Conv2d`` and ``nn.Linear`` plus the sub-pixel
head, whose convolution is functional.  The forward pass runs on a copy of the model on the
``meta`` device, so counting the cost of a 4K output takes milliseconds and no memory.
Elementwise work (activations, interpolation, pixel shuffles) is not counted; on a CPU it
is not free, which is why speed is measured separately (``scripts/bench_arch.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pocketsr_cli.archs.pocketsr.lited import SubPixelHead


def _conv_macs(out: torch.Tensor, weight: torch.Tensor) -> int:
    # Each output element takes in_channels/groups * kh * kw products, which is exactly the
    # weight's size divided by the number of output channels.
    return out.numel() * (weight.numel() // weight.shape[0])


def count_macs(model: nn.Module, lr_h: int, lr_w: int) -> int:
    """Multiply-accumulates of one forward pass on a ``(1, 3, lr_h, lr_w)`` input.

    Sides are first rounded up to the model's ``multiple_of`` (if it has one), as the tiler
    pads them: 960 x 540 costs what 960 x 544 costs for a model needing multiples of 8.
    """
    m = int(getattr(model, "multiple_of", 1))
    lr_h, lr_w = -(-lr_h // m) * m, -(-lr_w // m) * m
    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d | nn.Linear):
            total += _conv_macs(out, module.weight)
        elif isinstance(module, SubPixelHead):
            # The head's convolution output, before the pixel shuffle, has the LR grid.
            n, _, h, w = out.shape
            r = module.scale
            conv_out = torch.empty(n, 3 * r * r, h // r, w // r, device="meta")
            total += _conv_macs(conv_out, module.effective_weight())

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, lr_h, lr_w, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total


def macs_per_lr_pixel(model: nn.Module, lr_h: int = 540, lr_w: int = 960) -> float:
    """:func:`count_macs` divided by the number of input pixels (default: a 4K output at x4)."""
    return count_macs(model, lr_h, lr_w) / (lr_h * lr_w)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
