"""Intermediate features of a PocketSR generator, for multi-layer feature distillation.

The shipped network knows nothing of this: :func:`feature_taps` hooks the modules whose
outputs are the taps for one forward pass, then removes the hooks.  Hooks are put on the
modules the network holds at call time, so a block swapped in by annealing
(``train.anneal``) is tapped like the one it replaced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from pocketsr_cli.archs.pocketsr import PocketSR, PocketSRConfig


def feature_taps(model: PocketSR, x: torch.Tensor) -> list[torch.Tensor]:
    """Intermediate features for multi-layer feature distillation, in :func:`tap_names`
    order (encoder output, U-Net levels down, bottleneck, levels up, decoder stages).

    The tensors keep their autograd history, so losses on them train the generator.
    """
    points = _tap_points(model)
    taps: dict[str, torch.Tensor] = {}

    def store(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            taps[name] = output

        return hook

    handles = [module.register_forward_hook(store(name)) for name, module in points]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [taps[name] for name, _ in points]


def _tap_points(model: PocketSR) -> list[tuple[str, nn.Module]]:
    """``(tap name, module whose output it is)`` in forward order."""
    unet = model.unet
    points: list[tuple[str, nn.Module]] = [("encoder", model.encoder)]
    points += [(f"down{i}", down.blocks) for i, down in enumerate(unet.down_levels())]
    points.append(("mid", unet.mid.attn if unet.mid.attn is not None else unet.mid.blocks))
    ups = unet.up_levels()
    points += [(f"up{i}", ups[i].blocks) for i in reversed(range(len(ups)))]
    points += [(f"decoder{j}", stage) for j, stage in enumerate(model.decoder)]
    return points


def tap_names(config: PocketSRConfig) -> list[str]:
    """Names of :func:`feature_taps`' tensors, in order."""
    below = range(config.levels - 1)
    return [
        "encoder",
        *(f"down{i}" for i in below),
        "mid",
        *(f"up{i}" for i in reversed(below)),
        *(f"decoder{j}" for j in range(len(config.dec_widths))),
    ]


def tap_channels(config: PocketSRConfig) -> dict[str, int]:
    """Channels of each tap (what a distillation projector must accept)."""
    w = config.widths
    below = range(config.levels - 1)
    return {
        "encoder": w[0],
        **{f"down{i}": w[i] for i in below},
        "mid": w[-1],
        **{f"up{i}": w[i] for i in reversed(below)},
        **{f"decoder{j}": c for j, c in enumerate(config.dec_widths)},
    }
