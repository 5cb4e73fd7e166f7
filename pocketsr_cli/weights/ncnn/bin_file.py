"""Reading an ncnn ``.bin`` file: the weights of a parsed graph's layers, in layer order.

Layout, in ``.param`` layer order: per ``Convolution`` a 4-byte little-endian tag
(``0x01306B47``: fp16 weights follow; ``0``: fp32), ``weight_data_size`` values in
out × in × kh × kw order (PyTorch's order), zero padding to 4 bytes, then ``num_output``
raw fp32 biases when ``bias_term=1``; per ``PReLU`` ``num_slope`` raw fp32 slopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketsr_cli.errors import ModelError
from pocketsr_cli.weights.ncnn.param_file import NcnnGraph, NcnnLayer

FP16_TAG = 0x01306B47
FP32_TAG = 0
_INT8_TAG = 0x000D4B38
# Layers that never own data in the .bin; anything else but Convolution/PReLU might, and
# guessing its size would misalign every later layer.
_WEIGHTLESS = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU"}
)


@dataclass(frozen=True)
class NcnnWeights:
    """Arrays read from a ``.bin`` file, all float32.

    ``layers`` maps a layer name to ``{"weight": (out, in, kh, kw), "bias": (out,)}`` for a
    Convolution (no ``"bias"`` when ``bias_term=0``) or ``{"weight": (num_slope,)}`` for a
    PReLU.  ``precision`` describes the convolution weights as stored: ``"fp16"``,
    ``"fp32"``, ``"mixed"``, or ``"none"`` when the graph has no convolution.
    """

    layers: Mapping[str, Mapping[str, np.ndarray]]
    precision: str


def _take(data: bytes, offset: int, size: int, what: str) -> int:
    if offset + size > len(data):
        raise ModelError(
            f"ncnn .bin is truncated: {what} needs {size} bytes at offset {offset}, "
            f"only {max(len(data) - offset, 0)} left (does the .bin belong to this .param?)"
        )
    return offset + size


def _read_conv(
    layer: NcnnLayer, data: bytes, offset: int
) -> tuple[dict[str, np.ndarray], bool, int]:
    """Read one Convolution's arrays at ``offset``; return them, is-fp16, and the new offset."""
    num_output = layer.int_param(0, 0)
    kernel_w = layer.int_param(1, 0)
    kernel_h = layer.int_param(11, kernel_w)
    size = layer.int_param(6, 0)
    per_input = num_output * kernel_h * kernel_w
    if per_input <= 0 or size <= 0 or size % per_input:
        raise ModelError(
            f"ncnn layer '{layer.name}': weight_data_size {size} does not fit "
            f"{num_output} outputs of {kernel_h}x{kernel_w} kernels"
        )
    if layer.int_param(8, 0) or layer.int_param(19, 0):
        raise ModelError(
            f"ncnn layer '{layer.name}': int8-quantized or dynamic-weight convolutions "
            "are not supported"
        )
    shape = (num_output, size // per_input, kernel_h, kernel_w)
    where = f"layer '{layer.name}'"
    end = _take(data, offset, 4, f"{where} weight tag")
    tag = int.from_bytes(data[offset:end], "little")
    dtype: np.dtype[Any]
    if tag == FP16_TAG:
        dtype, stored = np.dtype("<f2"), size * 2
        padded = (stored + 3) // 4 * 4
    elif tag == FP32_TAG:
        dtype, stored = np.dtype("<f4"), size * 4
        padded = stored
    else:
        kind = "int8-quantized weights" if tag == _INT8_TAG else "an unknown weight format"
        raise ModelError(
            f"ncnn {where}: weight tag 0x{tag:08X} at offset {offset} means {kind}; "
            f"only fp16 (0x{FP16_TAG:08X}) and fp32 (0) are supported"
        )
    start = end
    end = _take(data, start, padded, f"{where} weights")
    weight = np.frombuffer(data, dtype, size, start).astype(np.float32).reshape(shape)
    arrays = {"weight": weight}
    if layer.int_param(5, 0):
        start = end
        end = _take(data, start, 4 * num_output, f"{where} bias")
        arrays["bias"] = np.frombuffer(data, "<f4", num_output, start).astype(np.float32)
    return arrays, tag == FP16_TAG, end


def read_weights(graph: NcnnGraph, data: bytes) -> NcnnWeights:
    """Read the ``.bin`` that belongs to ``graph``, layer by layer in ``.param`` order.

    Raises:
        ModelError: the data is truncated, has bytes left over, uses a weight format other
            than fp16/fp32, or the graph has a layer type whose data layout is not known
            here.  NaN and infinite values are read as they are: the loader refuses them
            for every source of weights (``weights.load.refuse_non_finite``), so a large
            model is not scanned twice.
    """
    layers: dict[str, dict[str, np.ndarray]] = {}
    precisions: set[bool] = set()
    offset = 0
    for layer in graph.layers:
        if layer.type == "Convolution":
            arrays, fp16, offset = _read_conv(layer, data, offset)
            precisions.add(fp16)
        elif layer.type == "PReLU":
            count = layer.int_param(0, 0)
            if count <= 0:
                raise ModelError(f"ncnn layer '{layer.name}': PReLU needs num_slope >= 1")
            start = offset
            offset = _take(data, start, 4 * count, f"layer '{layer.name}' slopes")
            arrays = {"weight": np.frombuffer(data, "<f4", count, start).astype(np.float32)}
        elif layer.type in _WEIGHTLESS:
            continue
        else:
            raise ModelError(
                f"cannot read the weights of ncnn layer '{layer.name}': layer type "
                f"{layer.type} is not supported"
            )
        layers[layer.name] = arrays
    if offset != len(data):
        raise ModelError(
            f"ncnn .bin has {len(data) - offset} bytes left over after the last layer "
            "(does the .bin belong to this .param?)"
        )
    precision = {frozenset(): "none", frozenset({True}): "fp16", frozenset({False}): "fp32"}
    return NcnnWeights(layers, precision.get(frozenset(precisions), "mixed"))
