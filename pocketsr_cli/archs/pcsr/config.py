"""Hyper-parameters of a PCSR network and the official configurations (no torch import).

A PCSR network is a backbone that turns the LR image into LR features, two LIIF-style MLP
upsamplers of different widths (heavy, light) and a pixel classifier of the same form.  The
output scale is not a hyper-parameter: any scale is a run-time argument.

:data:`CONFIGS` holds the two configurations of the official code (github 3587jjh/PCSR,
``configs/*-pcsr-phase1.yaml``) this package can read: ``carn`` (CARN-M backbone, 168,970
parameters) and ``fsrcnn`` (24,502 parameters).  ``PCSRConfig.to_params`` /
``from_params`` convert to and from a manifest ``[build]`` table, which is also what
``detection.infer`` returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BACKBONES = ("carn", "fsrcnn")

# The official CARN runs subtract the DIV2K mean from the input (``data_norm`` of its
# config, which the checkpoint does not record); the FSRCNN and SRResNet runs do not.
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
NO_MEAN = (0.0, 0.0, 0.0)

# (backbone, FSRCNN maps) -> the smallest --tile-overlap whose tiles came within 2 levels of
# the untiled result (scripts/tile_seams.py, fp32, photo crops and noise; pcsr-x4.md,
# "Tiling overlap": 6 up to 2-4, 8 within 1).  Only the backbone sees past a pixel (the
# MLPs read one LR feature each), so the widths do not change it; other backbones are
# not measured.
MEASURED_OVERLAPS: dict[tuple[str, int], int] = {("fsrcnn", 4): 8}


@dataclass(frozen=True)
class PCSRConfig:
    """Shape of one PCSR network.

    Attributes:
        backbone: ``"carn"`` (CARN-M: three cascading blocks of grouped residual units) or
            ``"fsrcnn"`` (5x5 feature extraction, 1x1 shrink, ``maps`` 3x3 maps, 1x1 expand).
        channels: width of the LR features (CARN's ``nf``, FSRCNN's ``d``).
        groups: CARN-M's groups of its 3x3 convolutions (must divide ``channels``; unused
            by FSRCNN).
        shrink: FSRCNN's shrunk width ``s``.
        maps: FSRCNN's number of 3x3 mapping convolutions ``m``.
        heavy / light / classifier: hidden widths of the three MLPs (``()`` = one linear
            layer).  Each reads ``channels + 4`` numbers per output pixel: the nearest LR
            feature, the relative coordinate and the relative cell.
        rgb_mean: subtracted from the input before the backbone (the official
            ``data_norm``); the bilinear base and the output are not shifted.
    """

    backbone: str = "carn"
    channels: int = 52
    groups: int = 4
    shrink: int = 12
    maps: int = 4
    heavy: tuple[int, ...] = (74, 74, 74, 74)
    light: tuple[int, ...] = (20, 20, 20)
    classifier: tuple[int, ...] = (10, 10)
    rgb_mean: tuple[float, ...] = DIV2K_MEAN

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid PCSR config: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Human-readable reasons why this config cannot be built (empty when fine)."""
        out: list[str] = []
        if self.backbone not in BACKBONES:
            out.append(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        counts = [self.channels, self.groups, self.shrink, *self.heavy, *self.light]
        counts += list(self.classifier)
        if any(int(v) != v or v < 1 for v in counts):
            out.append("widths and groups must be positive integers")
        elif self.backbone == "carn" and self.channels % self.groups:
            out.append(f"groups {self.groups} must divide channels {self.channels}")
        if int(self.maps) != self.maps or self.maps < 0:
            out.append(f"maps must be an integer >= 0, got {self.maps}")
        if len(self.rgb_mean) != 3 or not all(math.isfinite(v) for v in self.rgb_mean):
            out.append(f"rgb_mean must be three finite numbers, got {list(self.rgb_mean)}")
        return out

    @property
    def seamless_overlap(self) -> int | None:
        """The tile overlap measured for this backbone (:data:`MEASURED_OVERLAPS`: the
        FSRCNN one with 4 maps, 8), or None: not measured."""
        return MEASURED_OVERLAPS.get((self.backbone, self.maps))

    def to_params(self) -> dict[str, Any]:
        """The config as a manifest ``[build]`` table (plain ints, floats, strings, lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PCSRConfig:
        """Config from a ``[build]`` table: a ``preset`` name and/or explicit fields.

        Raises:
            ValueError: unknown preset or key, or an invalid combination.
        """
        params = dict(params)
        preset = params.pop("preset", None)
        if preset is not None and preset not in CONFIGS:
            raise ValueError(f"unknown PCSR preset {preset!r}; known: {sorted(CONFIGS)}")
        base = CONFIGS[preset] if preset is not None else cls()
        unknown = sorted(set(params) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown PCSR build parameters: {unknown}")
        tuples = {k: tuple(v) for k, v in params.items() if isinstance(v, list | tuple)}
        return replace(base, **{**params, **tuples})


# The official phase-1 configurations (configs/carn-pcsr-phase1.yaml, fsrcnn-pcsr-phase1.yaml).
CONFIGS: dict[str, PCSRConfig] = {
    "carn": PCSRConfig(),
    "fsrcnn": PCSRConfig(
        backbone="fsrcnn",
        channels=48,
        shrink=12,
        maps=4,
        heavy=(58, 58, 58, 58),
        light=(10, 10, 10),
        classifier=(),
        rgb_mean=NO_MEAN,
    ),
}
