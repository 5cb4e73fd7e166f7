"""Convert ncnn super-resolution models (``.param`` + ``.bin``) into PyTorch state dicts.

Two architectures are understood, both as exported from PyTorch through ONNX by
``onnx2ncnn`` (the form Real-ESRGAN's ncnn releases ship in):

* **ESRGAN/RRDBNet** (Real-ESRGAN x4plus, x4plus-anime): ``conv_first``, ``num_block`` RRDBs
  of three dense blocks, ``conv_body``, a long skip, one nearest ×2 ``Interp`` + conv per
  factor of two, ``conv_hr`` and ``conv_last``.  LeakyReLU(0.2) is fused into the
  ``Convolution`` layers (``9=2 -23310=1,0.2``) and each residual ``0.2 * x + skip`` is an
  ``Eltwise`` sum with coefficients ``0.2, 1.0``.
* **SRVGG-compact** (Real-ESRGAN animevideov3): conv/PReLU pairs, a conv to
  ``out_ch * scale²`` channels, ``PixelShuffle(scale)``, plus a nearest upscale of the input.
  Some releases end with a bicubic ``Interp`` that shrinks the ×4 result to ×2 or ×3; that
  step is not part of the network and is reported as ``output_resize`` in the info dict.

A graph is accepted only if, layer for layer, it computes exactly what the PyTorch
architecture computes: hyper-parameters are inferred from the convolution shapes, the
expected graph is rebuilt from them, and both are compared after normalisation (``Split``
layers are aliases, fused activations become separate steps, ``BinaryOp`` add and
``Eltwise`` sum are the same weighted sum).  Anything else is refused with a
:class:`~pocketsr_cli.errors.ModelError` naming the layer types found.

Sections: ``param_file`` (parsing ``.param``), ``bin_file`` (reading ``.bin``: the weight
layout is described there), ``graph`` (normalising a graph and matching it to an
architecture); :func:`convert` puts them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pocketsr_cli.errors import ModelError
from pocketsr_cli.weights.ncnn.bin_file import FP16_TAG, FP32_TAG, NcnnWeights, read_weights
from pocketsr_cli.weights.ncnn.graph import NcnnArch, detect_arch, match_graph
from pocketsr_cli.weights.ncnn.param_file import (
    MAGIC,
    NcnnGraph,
    NcnnLayer,
    ParamValue,
    parse_param,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "FP16_TAG",
    "FP32_TAG",
    "MAGIC",
    "NcnnArch",
    "NcnnGraph",
    "NcnnLayer",
    "NcnnWeights",
    "ParamValue",
    "convert",
    "detect_arch",
    "parse_param",
    "read_weights",
]


def _read_inputs(param_path: Path, bin_path: Path) -> tuple[str, bytes]:
    try:
        text = param_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelError(
            f"{param_path} is not a text ncnn .param file (binary .param.bin is not supported)"
        ) from None
    except OSError as exc:
        raise ModelError(f"cannot read {param_path}: {exc.strerror or exc}") from None
    try:
        data = bin_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {bin_path}: {exc.strerror or exc}") from None
    return text, data


def convert(
    param_path: str | Path, bin_path: str | Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert an ncnn model into a float32 PyTorch state dict plus a description.

    The state dict uses the key names of Real-ESRGAN's ``RRDBNet`` (``conv_first``,
    ``body.N.rdbR.convC``, ``conv_body``, ``conv_upU``, ``conv_hr``, ``conv_last``) or of
    ``SRVGGNetCompact`` (``body.N``, PReLU slopes as ``body.N.weight``), which spandrel
    detects as ESRGAN and Compact.  The info dict holds ``family`` (the :data:`NcnnArch`:
    ``esrgan`` or ``srvgg``), ``scale`` (of the network), ``in_channels``,
    ``out_channels``, ``num_feat``, ``num_block`` and ``num_grow_ch`` (esrgan) or
    ``num_conv`` (srvgg), ``params`` (total element count),
    ``precision`` (of the stored convolution weights) and ``output_resize``: None, or
    ``{"mode", "factor"}`` for a resize the ncnn graph applies after the network (for
    example animevideov3 "UP2X": a ×4 network followed by a bicubic ×0.5).

    The values are not checked: NaN or infinite weights are refused where every state dict
    is loaded (``weights.load.descriptor_from_state_dict``), or by
    ``weights.load.refuse_non_finite`` for a caller that builds no network.

    Raises:
        ModelError: a file cannot be read, is malformed, or describes an unsupported graph.
    """
    import torch

    text, data = _read_inputs(Path(param_path), Path(bin_path))
    graph = parse_param(text)
    plan, ops = match_graph(graph)
    weights = read_weights(graph, data)

    state: dict[str, torch.Tensor] = {}
    for want, have in zip(plan.expected, ops, strict=False):
        if not want.source:
            continue
        arrays = weights.layers[have.source]
        if want.kind == "conv":
            state[f"{want.source}.weight"] = torch.from_numpy(arrays["weight"])
            state[f"{want.source}.bias"] = torch.from_numpy(arrays["bias"])
        else:  # PReLU
            slopes = arrays["weight"]
            channels = plan.info["num_feat"]
            if slopes.size == 1:  # one shared slope is the same function as one per channel
                slopes = np.repeat(slopes, channels)
            if slopes.size != channels:
                raise ModelError(
                    f"ncnn layer '{have.source}': {slopes.size} PReLU slopes for "
                    f"{channels} channels"
                )
            state[f"{want.source}.weight"] = torch.from_numpy(slopes)

    resize = None
    if len(ops) > len(plan.expected):
        attrs = dict(ops[-1].attrs)
        resize = {"mode": attrs["mode"], "factor": attrs["scale"][0]}
    info = dict(plan.info)
    info["params"] = sum(t.numel() for t in state.values())
    info["precision"] = weights.precision
    info["output_resize"] = resize
    return state, info
