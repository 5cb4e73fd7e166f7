"""PocketSR-style single-step generators: LiteED encoder, pruned U-Net, LiteED decoder
(or, preset ``pix``, GenDR-Pix's pixel-space ends: x8 pixel-(un)shuffles, no LiteED).

Public API:

- :data:`FAMILY`: the ``pocketsr`` architecture family (detect a state dict, load it,
  build from a manifest's ``[build]`` table), listed in ``registry.py``;
- :class:`PocketSRConfig`, :data:`CONFIGS` (``nano``, ``tiny``, ``base``, ``pix``) and
  :func:`build` ``(config | preset | [build] table, scale) -> PocketSR``;
- :func:`detect` / :func:`infer`: recognise a state dict and read its hyper-parameters
  (``infer`` returns ``[build]`` parameters plus ``"scale"``);
- :func:`count_macs`, :func:`count_params`: cost.

Training reaches inside the network from ``train/`` (feature taps in ``train.taps``, the
blocks annealing swaps in ``train.anneal``).  See ``network.py`` for the data flow and
``lited.py`` for the upsampling choices, ``pixel.py`` for the pixel-space layout, and
``stats.py`` for the whole image's attention statistics every tile of an image shares.
"""

from pocketsr_cli.archs.pocketsr.config import CONFIGS, PocketSRConfig
from pocketsr_cli.archs.pocketsr.detection import detect, infer
from pocketsr_cli.archs.pocketsr.network import PocketSR, build
from pocketsr_cli.archs.pocketsr.profile import count_macs, count_params, macs_per_lr_pixel
from pocketsr_cli.descriptor import Family

FAMILY = Family("pocketsr", build=build, detect=detect, infer=infer)

__all__ = [
    "CONFIGS",
    "FAMILY",
    "PocketSR",
    "PocketSRConfig",
    "build",
    "count_macs",
    "count_params",
    "detect",
    "infer",
    "macs_per_lr_pixel",
]
