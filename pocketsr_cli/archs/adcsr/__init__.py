"""AdcSR (CVPR 2025): a one-step diffusion-GAN distilled from OSEDiff, x4.

PixelUnshuffle(2) of the LR goes straight into Stable Diffusion 2.1-base's U-Net, pruned
to 75 % of its channels and stripped of time and text conditioning, whose output feeds a
halved VAE decoder; the result is colour-matched to the LR.  456M parameters.  Official
code and weights: github / Hugging Face ``Guaishou74851/AdcSR`` (Apache-2.0).

The network is made of diffusers' building blocks, so this family needs the optional
``diffusion`` extra (``pip install "pocketsr[diffusion]"``); without it, everything else
works and asking for an AdcSR model says what to install (:func:`check_available`).
Importing this package does not import diffusers or torch.

Public API:

- :data:`FAMILY`: the ``adcsr`` architecture family, listed in ``registry.py``: build from
  a manifest's ``[build]`` table, detect and load a state dict, and ``merge`` the two
  official files into one;
- :class:`AdcSRConfig` (``config.py``) and :func:`build` ``([build] table, scale) -> AdcSR``;
  :func:`build_empty`, the same network on the meta device, into which weights are loaded
  (initialising 456M parameters only to overwrite them took longer than reading them);
- :func:`detect`, :func:`infer`, :func:`merge` (``official.py``: the official key layout).

Modules: ``config`` (shapes, no torch), ``official`` (the files' layout), ``network`` (the
network, its forward pass and the colour match; imports diffusers).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pocketsr_cli.archs.adcsr.config import SCALE, AdcSRConfig
from pocketsr_cli.archs.adcsr.official import FILES, detect, infer, merge
from pocketsr_cli.descriptor import Family
from pocketsr_cli.errors import ModelError, first_line

if TYPE_CHECKING:
    from pocketsr_cli.archs.adcsr.network import AdcSR

EXTRA_HINT = 'AdcSR models need the optional extra: pip install "pocketsr[diffusion]"'


def check_available() -> None:
    """Raise :class:`ModelError` naming the extra to install when diffusers is missing
    (looked up, not imported: importing it takes seconds)."""
    try:
        found = importlib.util.find_spec("diffusers") is not None
    except (ImportError, ValueError):  # ``sys.modules["diffusers"] = None`` blocks it
        found = False
    if not found:
        raise ModelError(EXTRA_HINT)


def build(params: AdcSRConfig | Mapping[str, Any], scale: int = SCALE) -> AdcSR:
    """A freshly initialised AdcSR network from a config or a ``[build]`` table.

    Raises:
        ValueError: a scale other than 4, or an invalid config.
        ModelError: diffusers is not installed.
    """
    if scale != SCALE:
        raise ValueError(f"AdcSR is a x{SCALE} model, not x{scale}")
    config = params if isinstance(params, AdcSRConfig) else AdcSRConfig.from_params(params)
    return _network_class()(config)


def build_empty(params: AdcSRConfig | Mapping[str, Any], scale: int = SCALE) -> AdcSR:
    """The network :func:`build` makes, its tensors on the meta device (no memory, no
    initialisation): for ``load_state_dict(..., assign=True)``, as ``Family`` loads weights.

    Raises:
        as :func:`build`.
    """
    if scale != SCALE:
        raise ValueError(f"AdcSR is a x{SCALE} model, not x{scale}")
    config = params if isinstance(params, AdcSRConfig) else AdcSRConfig.from_params(params)
    network = _network_class()  # imported first: no module-level tensor of it lands on meta
    import torch

    with torch.device("meta"):
        return network(config)


def _network_class() -> type[AdcSR]:
    check_available()
    try:
        from pocketsr_cli.archs.adcsr.network import AdcSR
    except ImportError as exc:  # installed, but not a version that works here
        raise ModelError(f"{EXTRA_HINT} (diffusers did not import: {first_line(exc)})") from exc
    return AdcSR


FAMILY = Family(
    "adcsr",
    build=build,
    detect=detect,
    infer=infer,
    merge=merge,
    check=check_available,
    build_empty=build_empty,
)

__all__ = [
    "EXTRA_HINT",
    "FAMILY",
    "FILES",
    "AdcSRConfig",
    "build",
    "build_empty",
    "check_available",
    "detect",
    "infer",
    "merge",
]
