"""Sub-pixel convolutions kept in fp32 when a network computes in bfloat16.

A sub-pixel (pixel-shuffle) upsampler's last convolution draws each of the ``s × s`` output
phases from its own output channels.  In bf16 its weights are rounded to 8 significant
bits, each channel differently, so every phase gets a slightly different gain and offset:
an error that repeats every ``s`` pixels, which the eye sees as a faint mesh and the lattice
ratio (``evaluation.metrics.lattice_ratio``) measures.  On the ten validation photos
(``data/val10``, ``real`` degradation, ×4) the default model's mean lattice ratio went
from 2.49 in fp32 to 2.84 in bf16; with that one convolution in fp32 it is 2.43, at about
5 % of the network's work.

:func:`keep_subpixel_fp32` finds the convolution registered last before each
``nn.PixelShuffle`` (Real-ESRGAN's compact network, the default model's, and others that
spandrel loads), or the layers a network names itself (``archs/compact``'s, the ×2
model's: its last body convolution and its skip, and its input and output filters, whose
bf16 rounding would be block-shaped too), and hooks them so that, while autocast computes
in bf16, they run in fp32 on an fp32 input; the pixel shuffle and anything after it then
run in fp32 too.  Under any other precision the hooks do nothing, so one module can serve
upscalers of different precisions.  Networks that shuffle through ``F.pixel_shuffle`` and
name nothing are left as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_MARK = "_pocketsr_subpixel_fp32"


def subpixel_convs(module: torch.nn.Module) -> list[str]:
    """Names of the convolutions that feed ``module``'s pixel shuffles: those a network
    names in a ``subpixel_layers`` attribute (one that shuffles with ``F.pixel_shuffle``
    must), else for each ``nn.PixelShuffle`` the last ``nn.Conv2d`` registered before it."""
    import torch

    named = getattr(module, "subpixel_layers", None)
    if named is not None:
        return [str(name) for name in named]
    found: list[str] = []
    last_conv: str | None = None
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.Conv2d):
            last_conv = name
        elif (
            isinstance(child, torch.nn.PixelShuffle)
            and last_conv is not None
            and last_conv not in found
        ):
            found.append(last_conv)
    return found


def keep_subpixel_fp32(module: torch.nn.Module) -> list[str]:
    """Hook :func:`subpixel_convs` so that they compute in fp32 under bf16 autocast; returns
    their names.  Idempotent: a convolution is hooked once however often this is called."""
    names = subpixel_convs(module)
    for name in names:
        conv = module.get_submodule(name)
        if not getattr(conv, _MARK, False):
            _hook(conv)
            setattr(conv, _MARK, True)
    return names


def _hook(conv: torch.nn.Module) -> None:
    import torch

    # One entry per call in progress: the autocast-off context it entered, or None.  (An
    # exception inside the convolution skips ``after`` and leaves its entry behind; the
    # caller's autocast block restores the state as it exits, and the next call's entry
    # is the one its ``after`` takes.)
    calls: list[Any] = []

    def before(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0] if args else None
        off = None
        if isinstance(x, torch.Tensor):
            device = x.device.type
            if (
                torch.is_autocast_enabled(device)
                and torch.get_autocast_dtype(device) == torch.bfloat16
            ):
                off = torch.autocast(device, enabled=False)
        calls.append(off)
        if off is None:
            return None
        off.__enter__()
        return (x.float(), *args[1:])  # type: ignore[union-attr]

    def after(_module: torch.nn.Module, _args: tuple[Any, ...], _out: Any) -> None:
        off = calls.pop() if calls else None
        if off is not None:
            off.__exit__(None, None, None)

    conv.register_forward_pre_hook(before)
    conv.register_forward_hook(after)
