"""PocketSR-style single-step generators: LiteED encoder, pruned U-Net, LiteED decoder.

Public API:

- :class:`PocketSRConfig`, :data:`CONFIGS` (``nano``, ``tiny``, ``base``) and
  :func:`build` ``(config | preset | [build] table, scale) -> PocketSR``;
- :func:`detect` / :func:`infer`: recognise a state dict and read its hyper-parameters
  (``infer`` returns ``[build]`` parameters plus ``"scale"``);
- :func:`feature_taps`, :func:`tap_names`, :func:`tap_channels`: intermediate features for
  multi-layer feature distillation;
- :func:`swappable_blocks`, :func:`replace_block`: the U-Net blocks annealing may swap;
- :func:`count_macs`, :func:`count_params`: cost.

See ``network.py`` for the data flow and ``lited.py`` for the upsampling choices.
"""

from pocketsr_cli.archs.pocketsr.config import CONFIGS, PocketSRConfig
from pocketsr_cli.archs.pocketsr.descriptor import detect, infer
from pocketsr_cli.archs.pocketsr.network import (
    PocketSR,
    build,
    feature_taps,
    replace_block,
    swappable_blocks,
    tap_channels,
    tap_names,
)
from pocketsr_cli.archs.pocketsr.profile import count_macs, count_params, macs_per_lr_pixel

__all__ = [
    "CONFIGS",
    "PocketSR",
    "PocketSRConfig",
    "build",
    "count_macs",
    "count_params",
    "detect",
    "feature_taps",
    "infer",
    "macs_per_lr_pixel",
    "replace_block",
    "swappable_blocks",
    "tap_channels",
    "tap_names",
]
