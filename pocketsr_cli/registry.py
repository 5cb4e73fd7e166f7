"""The explicit list of architecture families pocketsr builds itself.

Each ``archs/<family>/`` package exports its :class:`~pocketsr_cli.descriptor.Family` as
``FAMILY`` (build from a manifest's ``[build]`` table; for families with weights, detect a
state dict and load it).  Files of any other architecture go through spandrel
(``weights/community.py``).  No folder scanning: adding a family means adding a line to
:data:`FAMILIES`.  The packages are imported on first use, since they import torch and
``--help``, completion and ``models list`` read this list too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pocketsr_cli.descriptor import Family

if TYPE_CHECKING:
    import torch

__all__ = ["FAMILIES", "Family", "detect_family", "get_family"]


def _resize() -> Family:
    from pocketsr_cli.archs.resize import FAMILY

    return FAMILY


def _pocketsr() -> Family:
    from pocketsr_cli.archs.pocketsr import FAMILY

    return FAMILY


def _pcsr() -> Family:
    from pocketsr_cli.archs.pcsr import FAMILY

    return FAMILY


def _compact() -> Family:
    from pocketsr_cli.archs.compact import FAMILY

    return FAMILY


def _adcsr() -> Family:
    from pocketsr_cli.archs.adcsr import FAMILY  # needs diffusers only to build

    return FAMILY


# Family name -> its package's FAMILY; detection tries them in this order.
FAMILIES: dict[str, Callable[[], Family]] = {
    "resize": _resize,
    "pocketsr": _pocketsr,
    "pcsr": _pcsr,
    "adcsr": _adcsr,
    "compact": _compact,
}


def get_family(name: str) -> Family:
    """The family called ``name``; ``KeyError`` lists the known ones."""
    try:
        loader = FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown architecture family {name!r}; known: {sorted(FAMILIES)}") from None
    return loader()


def detect_family(state_dict: Mapping[str, torch.Tensor]) -> Family | None:
    """The first family whose ``detect`` accepts ``state_dict``, or ``None``."""
    for loader in FAMILIES.values():
        family = loader()
        if family.detect is not None and family.detect(state_dict):
            return family
    return None
