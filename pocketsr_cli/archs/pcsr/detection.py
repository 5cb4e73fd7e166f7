"""Recognise PCSR state dicts in the official layout and read their hyper-parameters.

The official checkpoint (github 3587jjh/PCSR, ``train_pcsr.py``) is a ``torch.save`` of
``{"model": {"name": "pcsr-phase1", "args": {...}, "sd": state_dict}, "optimizer": ...,
"lr_scheduler": ..., "iter": ...}``; ``weights.load`` unwraps ``model`` and ``sd``.  The
state dict's keys, checked against the repository's ``iter_last.pth`` files:

    encoder.entry.weight                       (C, 3, 3, 3)        CARN-M
    encoder.b{1,2,3}.b1.body.0.weight          (C, C / groups, 3, 3)
    encoder.{b1.,b2.,b3.,}c{1,2,3}.0.weight    (C, (i + 1) C, 1, 1) + BatchNorm ``.1.*``
    encoder.head_conv.0.weight                 (d, 3, 5, 5)        FSRCNN
    encoder.body_conv.0.0.weight               (s, d, 1, 1); body_conv.{1..m} (s, s, 3, 3)
    {heavy_sampler,light_sampler,classifier}.imnet.layers.{2i}.weight   (out, in)

The samplers read ``C + 4`` inputs; the heavy and light ones end in 3 outputs, the
classifier in 2.  What the checkpoint does not record: the input mean (``data_norm`` of
the config: the DIV2K mean for CARN, none for FSRCNN, taken from the official configs) and
a scale, since any scale works (``"scale"`` is 4, the one they were trained for).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pocketsr_cli.archs.pcsr.config import DIV2K_MEAN, NO_MEAN, PCSRConfig

TRAINED_SCALE = 4
SAMPLERS = {"heavy_sampler": 3, "light_sampler": 3, "classifier": 2}  # prefix -> outputs
_BACKBONE_KEYS = {"carn": "encoder.entry.weight", "fsrcnn": "encoder.head_conv.0.weight"}


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is a PCSR network's (official layout, phase 1)."""
    if not all(f"{prefix}.imnet.layers.0.weight" in state_dict for prefix in SAMPLERS):
        return False
    return any(key in state_dict for key in _BACKBONE_KEYS.values())


def infer(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``[build]`` parameters plus ``"scale"`` for a state dict that :func:`detect` accepts.

    Raises:
        ValueError: shapes that do not fit together.
    """
    sd = state_dict
    if _BACKBONE_KEYS["carn"] in sd:
        channels = _shape(sd, "encoder.entry.weight")[0]
        grouped = _shape(sd, "encoder.b1.b1.body.0.weight")[1]
        if grouped < 1 or channels % grouped:
            raise ValueError(f"grouped convolution reads {grouped} of {channels} channels")
        backbone: dict[str, Any] = {
            "backbone": "carn",
            "channels": channels,
            "groups": channels // grouped,
            "rgb_mean": list(DIV2K_MEAN),
        }
    else:
        channels = _shape(sd, "encoder.head_conv.0.weight")[0]
        backbone = {
            "backbone": "fsrcnn",
            "channels": channels,
            "shrink": _shape(sd, "encoder.body_conv.0.0.weight")[0],
            "maps": _count_maps(sd),
            "rgb_mean": list(NO_MEAN),
        }
    hidden = {}
    for prefix, outputs in SAMPLERS.items():
        widths = _mlp_widths(sd, prefix, channels + 4)
        if widths[-1] != outputs:
            raise ValueError(f"{prefix} ends in {widths[-1]} outputs, expected {outputs}")
        hidden[prefix] = widths[:-1]
    config = PCSRConfig.from_params(
        {
            **backbone,
            "heavy": hidden["heavy_sampler"],
            "light": hidden["light_sampler"],
            "classifier": hidden["classifier"],
        }
    )
    return {**config.to_params(), "scale": TRAINED_SCALE}


def _mlp_widths(sd: Mapping[str, Any], prefix: str, in_dim: int) -> list[int]:
    """Output widths of the Linear layers ``{prefix}.imnet.layers.0, .2, ...``."""
    widths: list[int] = []
    last = in_dim
    while f"{prefix}.imnet.layers.{2 * len(widths)}.weight" in sd:
        out, inp = _shape(sd, f"{prefix}.imnet.layers.{2 * len(widths)}.weight")
        if inp != last:
            raise ValueError(f"{prefix} layer {len(widths)} reads {inp} values, not {last}")
        widths.append(out)
        last = out
    return widths


def _count_maps(sd: Mapping[str, Any]) -> int:
    """FSRCNN's 3x3 mapping convolutions: ``body_conv.{1..m}`` with 4-d weights."""
    rx = re.compile(r"encoder\.body_conv\.(\d+)\.weight")
    return sum(1 for k in sd if rx.fullmatch(k) and len(sd[k].shape) == 4)


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"PCSR state dict lacks {key}")
    return tuple(int(s) for s in sd[key].shape)
