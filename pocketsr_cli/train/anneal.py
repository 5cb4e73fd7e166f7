"""PocketSR's online annealing pruning.

A heavy block and its light replacement run side by side; the output is
``alpha * heavy(x) + (1 - alpha) * light(x)`` with ``alpha`` falling linearly from 1 to 0
over ``steps`` optimiser steps, after which the heavy block is dropped and the light one
takes its place.  The network never sees an abrupt change, so it keeps working while it
is being slimmed (PocketSR uses T = 8,000 steps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from pocketsr_cli.archs.pocketsr import PocketSR


class AnnealedBlock(nn.Module):
    """``alpha * heavy + (1 - alpha) * light``; ``alpha`` is a buffer (saved in checkpoints)."""

    def __init__(self, heavy: nn.Module, light: nn.Module) -> None:
        super().__init__()
        self.heavy = heavy
        self.light = light
        self.alpha: torch.Tensor
        self.register_buffer("alpha", torch.ones(()))

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        a = float(self.alpha)
        if a <= 0.0:
            return self.light(*args)
        return a * self.heavy(*args) + (1.0 - a) * self.light(*args)


def wrap(model: nn.Module, replacements: Mapping[str, nn.Module]) -> list[AnnealedBlock]:
    """Replace each named submodule by an :class:`AnnealedBlock` (heavy = the original).

    Raises:
        AttributeError: a name does not exist in ``model``.
    """
    blocks = []
    for name, light in replacements.items():
        block = AnnealedBlock(model.get_submodule(name), light)
        replace_block(model, name, block)
        blocks.append(block)
    return blocks


def set_progress(model: nn.Module, step: int, start: int, steps: int) -> float:
    """Set every block's ``alpha`` for optimiser ``step``; returns it (1 before ``start``)."""
    alpha = 1.0 if step < start else max(0.0, 1.0 - (step - start) / max(1, steps))
    for m in model.modules():
        if isinstance(m, AnnealedBlock):
            m.alpha.fill_(alpha)
    return alpha


def finalize(model: nn.Module) -> int:
    """Swap every finished block (``alpha == 0``) for its light module; returns how many."""
    done = 0
    for name, m in list(model.named_modules()):
        if isinstance(m, AnnealedBlock) and float(m.alpha) <= 0.0:
            replace_block(model, name, m.light)
            done += 1
    return done


def pocketsr_replacements(
    model: nn.Module, kind: str = "dw", expand: int = 2
) -> dict[str, nn.Module]:
    """Light stand-ins for every dense ``ResBlock`` of a pocketsr U-Net.

    PocketSR's pruning choice: dense 3×3 residual blocks become depthwise-separable ones of
    the same width (``kind="dw"``), freshly initialised; annealing then moves the work
    over to them.  Blocks that are already light are left alone.
    """
    from pocketsr_cli.archs.pocketsr.blocks import ResBlock, make_block

    return {
        name: make_block(kind, block.conv1.out_channels, expand)
        for name, block in swappable_blocks(model)  # type: ignore[arg-type]
        if isinstance(block, ResBlock)
    }


def swappable_blocks(model: PocketSR) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every U-Net block of a pocketsr generator that
    annealing may replace, in forward order.

    Each maps ``(N, C, h, w)`` to the same shape.  Swap one with :func:`replace_block`.
    """
    unet = model.unet
    found: list[tuple[str, nn.Module]] = []
    for i, down in enumerate(unet.down_levels()):
        found += [(f"unet.down.{i}.blocks.{j}", b) for j, b in enumerate(down.blocks)]
    found += [(f"unet.mid.blocks.{j}", b) for j, b in enumerate(unet.mid.blocks)]
    if unet.mid.attn is not None:
        found.append(("unet.mid.attn", unet.mid.attn))
    ups = unet.up_levels()
    for i in reversed(range(len(ups))):
        found += [(f"unet.up.{i}.blocks.{j}", b) for j, b in enumerate(ups[i].blocks)]
    return found


def replace_block(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule ``name`` is; returns the module it replaced.

    Raises:
        AttributeError: ``model`` has no submodule ``name``.
    """
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = parent.get_submodule(child)
    if isinstance(parent, nn.ModuleList | nn.Sequential):
        parent[int(child)] = new
    else:
        setattr(parent, child, new)
    return old
