"""The explicit list of architecture families pocketsr can build.

Each family knows how to build its network from a manifest's ``[build]`` table and a scale.
Families that carry weights will also detect their state dicts and infer hyper-parameters
from tensor shapes (issue #5 adds ``pocketsr``).  Files of any other architecture go
through spandrel (``weights/community.py``).  No folder scanning: adding a family means
adding a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Family:
    """How to build one architecture family.

    Attributes:
        name: the ``family`` value used in manifests.
        build: ``(build_params, scale) -> nn.Module``.
        detect: ``state_dict -> bool``: does this dict belong to the family? ``None`` for
            families without weights.
        infer: ``state_dict -> build_params`` read from tensor shapes.
    """

    name: str
    build: Callable[[Mapping[str, Any], int], nn.Module]
    detect: Callable[[Mapping[str, torch.Tensor]], bool] | None = None
    infer: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]] | None = None


def _build_resize(params: Mapping[str, Any], scale: int) -> nn.Module:
    from pocketsr_cli.archs.resize import Resize

    return Resize(kernel=str(params.get("kernel", "bicubic")), scale=scale)


def _build_pocketsr(params: Mapping[str, Any], scale: int) -> nn.Module:
    from pocketsr_cli.archs.pocketsr import build

    return build(params, scale)


def _detect_pocketsr(state_dict: Mapping[str, torch.Tensor]) -> bool:
    from pocketsr_cli.archs.pocketsr import detect

    return detect(state_dict)


def _infer_pocketsr(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    from pocketsr_cli.archs.pocketsr import infer

    return infer(state_dict)


FAMILIES: dict[str, Family] = {
    "resize": Family("resize", _build_resize),
    "pocketsr": Family("pocketsr", _build_pocketsr, _detect_pocketsr, _infer_pocketsr),
}


def get_family(name: str) -> Family:
    """The family called ``name``; ``KeyError`` lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown architecture family {name!r}; known: {sorted(FAMILIES)}") from None


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Family | None:
    """The first family whose ``detect`` accepts ``state_dict``, or ``None``."""
    for family in FAMILIES.values():
        if family.detect is not None and family.detect(state_dict):
            return family
    return None
