"""Counting a network's multiply-accumulates (MACs) with forward hooks.

Only ``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d`` and ``nn.Linear`` modules are
counted, from the shapes they see on one forward pass of a probe input, plus any module
that states its own cost with a ``macs_of(inputs, output) -> int`` method (one that
convolves with ``F.conv2d`` inside its ``forward``, like pocketsr's sub-pixel head); biases,
activations, normalisation, pixel (un)shuffles and other functional calls are not.  The
probe may live on the ``meta`` device: only shapes are read.  That is the convention of
the SR papers' "MACs" columns, where the convolutions are nearly all of the cost.  A
network with no countable module gives ``None`` ("not countable") rather than a
misleading 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _module_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    own = getattr(module, "macs_of", None)
    if callable(own):
        return int(own(inputs, output))
    if isinstance(module, _CONV):
        # Each output element is a dot product over (C_in / groups) × kernel taps.
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return int(output.numel()) * per_output
    if isinstance(module, _TRANSPOSED):
        # Each input element is scattered into (C_out / groups) × kernel taps outputs.
        per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
        return int(inputs[0].numel()) * per_input
    if isinstance(module, nn.Linear):
        return int(output.numel()) * module.in_features
    return 0


def count_macs(
    module: nn.Module,
    probe: torch.Tensor,
    call: Callable[[torch.Tensor], Any] | None = None,
) -> int | None:
    """MACs of one forward pass of ``module`` on ``probe`` (batch included).

    Args:
        module: the network; hooks are added to its countable sub-modules (itself included)
            and always removed again.
        probe: the input tensor, on the module's device and in its dtype.
        call: how to run the forward pass (default ``module(probe)``), for networks that
            take extra arguments.

    Returns:
        The count, or ``None`` when no countable module ran.
    """
    total = 0
    seen = 0

    def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal total, seen
        total += _module_macs(mod, inputs, output)
        seen += 1

    countable = (*_CONV, *_TRANSPOSED, nn.Linear)
    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, countable) or callable(getattr(m, "macs_of", None))
    ]
    try:
        with torch.inference_mode():
            (call or module)(probe)
    finally:
        for handle in handles:
            handle.remove()
    return total if seen else None


def macs_per_pixel(
    module: nn.Module,
    side: int = 64,
    *,
    channels: int = 3,
    device: torch.device | str = "cpu",
    call: Callable[[torch.Tensor], Any] | None = None,
) -> float | None:
    """MACs per input (LR) pixel, from one pass on a ``side × side`` probe of seeded noise.

    For a fully convolutional network this does not depend on ``side`` except at the
    borders (padding is counted as if it were image), so a small probe is enough.  A module
    with a ``macs(h, w)`` method (pocketsr's own networks, whose head convolves with
    ``F.conv2d``) is asked instead of hooked.

    Returns:
        MACs ÷ ``side²``, or ``None`` when not countable (see :func:`count_macs`).
    """
    own = getattr(module, "macs", None)
    if callable(own):  # a network that computes outside nn.Conv2d/nn.Linear counts itself
        return float(own(side, side)) / (side * side)
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand((1, channels, side, side), generator=generator).to(device)
    macs = count_macs(module, probe, call)
    return None if macs is None else macs / (side * side)
