"""Cost of a network: multiply-accumulates for a given input size, and parameters.

MACs are counted by the package's one counter, ``evaluation.macs.count_macs`` (forward
hooks on ``nn.Conv2d`` and ``nn.Linear``; the sub-pixel head, whose convolution is
functional, states its own cost).  The forward pass runs on a copy of the model on the
``meta`` device, so counting the cost of a 4K output takes milliseconds and no memory.
Elementwise work (activations, interpolation, pixel shuffles) is not counted; on a CPU it
is not free, which is why speed is measured separately (``scripts/bench_arch.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def count_macs(model: nn.Module, lr_h: int, lr_w: int) -> int:
    """Multiply-accumulates of one forward pass on a ``(1, 3, lr_h, lr_w)`` input, counted
    by :func:`pocketsr_cli.evaluation.macs.count_macs` (the head states its own cost).

    Sides are first rounded up to the model's ``multiple_of`` (if it has one), as the tiler
    pads them: 960 x 540 costs what 960 x 544 costs for a model needing multiples of 8.
    """
    from pocketsr_cli.evaluation.macs import count_macs as count_hooked

    m = int(getattr(model, "multiple_of", 1))
    lr_h, lr_w = -(-lr_h // m) * m, -(-lr_w // m) * m
    meta = copy.deepcopy(model).to("meta")
    return count_hooked(meta, torch.empty(1, 3, lr_h, lr_w, device="meta")) or 0


def macs_per_lr_pixel(model: nn.Module, lr_h: int = 540, lr_w: int = 960) -> float:
    """:func:`count_macs` divided by the number of input pixels (default: a 4K output at x4)."""
    return count_macs(model, lr_h, lr_w) / (lr_h * lr_w)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
