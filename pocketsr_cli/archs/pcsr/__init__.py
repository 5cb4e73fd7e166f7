"""PCSR (ECCV 2024): pixel-level routing between a heavy and a light upsampler, any scale.

A backbone (CARN-M or FSRCNN) makes LR features; LIIF-style MLPs query them at every output
pixel: a classifier decides which pixels are hard, the heavy MLP runs on those only and the
light one on the rest (gather -> MLP -> scatter, so the FLOPs saved are time saved), and
light pixels touching heavy ones are smoothed.  Official code: github 3587jjh/PCSR (no
licence file: pocketsr reads its checkpoints, it does not ship them).

Public API:

- :data:`FAMILY`: the ``pcsr`` architecture family (detect an official-layout state dict,
  load it, build from a manifest's ``[build]`` table), listed in ``registry.py``;
- :class:`PCSR` and :func:`build` ``(config | preset | [build] table, scale) -> PCSR``;
  :class:`PCSRConfig`, :data:`CONFIGS` (``carn``, ``fsrcnn``: the official ones);
- run-time settings :class:`Routing` (``module.routing``: ``k``, ``adaptive``,
  ``refine``) and the heavy-pixel counts :class:`RoutingStats` (``module.last_stats``,
  ``module.total_stats``);
- :class:`Packing`: any scale through the integer-scale tiler, exactly;
- :func:`detect` / :func:`infer`: recognise a state dict and read its hyper-parameters.

Modules: ``config`` (hyper-parameters, no torch), ``backbones``, ``grid`` (where each
output pixel reads the LR, exact for any ``p/q``), ``sampler`` (the per-pixel MLPs),
``routing``, ``network`` (the data flow), ``lattice`` (the same flow by phase planes at
whole integer scales), ``packing``, ``detection``.
"""

from pocketsr_cli.archs.pcsr.config import CONFIGS, PCSRConfig
from pocketsr_cli.archs.pcsr.detection import detect, infer
from pocketsr_cli.archs.pcsr.network import PCSR, build
from pocketsr_cli.archs.pcsr.packing import Packing
from pocketsr_cli.archs.pcsr.routing import Routing, RoutingStats
from pocketsr_cli.descriptor import Family

FAMILY = Family("pcsr", build=build, detect=detect, infer=infer)

__all__ = [
    "CONFIGS",
    "FAMILY",
    "PCSR",
    "PCSRConfig",
    "Packing",
    "Routing",
    "RoutingStats",
    "build",
    "detect",
    "infer",
]
