"""Convert ncnn super-resolution models (``.param`` + ``.bin``) into PyTorch state dicts.

Two graph families are understood, both as exported from PyTorch through ONNX by
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

``.bin`` layout, in ``.param`` layer order: per ``Convolution`` a 4-byte little-endian tag
(``0x01306B47``: fp16 weights follow; ``0``: fp32), ``weight_data_size`` values in
out × in × kh × kw order (PyTorch's order), zero padding to 4 bytes, then ``num_output``
raw fp32 biases when ``bias_term=1``; per ``PReLU`` ``num_slope`` raw fp32 slopes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pocketsr_cli.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FP16_TAG",
    "FP32_TAG",
    "MAGIC",
    "Family",
    "NcnnGraph",
    "NcnnLayer",
    "NcnnWeights",
    "ParamValue",
    "convert",
    "detect_family",
    "parse_param",
    "read_weights",
]

MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0
_INT8_TAG = 0x000D4B38
_ARRAY_KEY_BASE = -23300  # ncnn writes array param N under the key -23300 - N

ParamValue = int | float | tuple[int | float, ...]
Family = Literal["esrgan", "srvgg"]

_FAMILY_NAMES: dict[str, str] = {"esrgan": "ESRGAN/RRDBNet", "srvgg": "SRVGG-compact"}
# Layers that never own data in the .bin; anything else but Convolution/PReLU might, and
# guessing its size would misalign every later layer.
_WEIGHTLESS = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU"}
)
_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file.

    ``params`` maps a param id to its value; array params (written ``-233NN=count,v,...``)
    are stored under their id ``NN`` as a tuple without the count.
    """

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Mapping[int, ParamValue] = field(default_factory=dict)

    def int_param(self, key: int, default: int) -> int:
        """Return integer param ``key`` or ``default``; raise ModelError if it is not an int."""
        value = self.params.get(key, default)
        if not isinstance(value, int):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key}={value!r} is not an integer"
            )
        return value

    def float_param(self, key: int, default: float) -> float:
        """Return scalar param ``key`` as a float or ``default``; raise ModelError on arrays."""
        value = self.params.get(key, default)
        if isinstance(value, tuple):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key} is an array, not a number"
            )
        return float(value)

    def array_param(self, key: int) -> tuple[float, ...]:
        """Return array param ``key`` as floats; an absent array is empty."""
        value = self.params.get(key, ())
        if not isinstance(value, tuple):
            raise ModelError(
                f"ncnn layer '{self.name}' ({self.type}): param {key} is a number, not an array"
            )
        return tuple(float(v) for v in value)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: layers in file order (which ncnn requires to be topological)."""

    layers: tuple[NcnnLayer, ...]
    blob_count: int

    def layer_types(self) -> dict[str, int]:
        """Count layers per type, in order of first appearance."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.type] = counts.get(layer.type, 0) + 1
        return counts


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


# --------------------------------------------------------------------------- .param


def _parse_number(token: str, where: str) -> int | float:
    # ncnn's own rule: a value containing '.' or an exponent is a float, otherwise an int.
    try:
        if any(c in token for c in ".eE") and not token.lower().startswith("0x"):
            return float(token)
        return int(token)
    except ValueError:
        raise ModelError(f"malformed ncnn param: {where}: bad number {token!r}") from None


def _parse_params(tokens: Sequence[str], where: str) -> dict[int, ParamValue]:
    params: dict[int, ParamValue] = {}
    for token in tokens:
        key_text, sep, value_text = token.partition("=")
        if not sep:
            raise ModelError(f"malformed ncnn param: {where}: expected key=value, got {token!r}")
        key = _parse_number(key_text, where)
        if not isinstance(key, int):
            raise ModelError(f"malformed ncnn param: {where}: bad param key {key_text!r}")
        if key <= _ARRAY_KEY_BASE:
            items = [_parse_number(v, where) for v in value_text.split(",")]
            count = items[0]
            if not isinstance(count, int) or count != len(items) - 1:
                raise ModelError(
                    f"malformed ncnn param: {where}: array param {key} announces {count} "
                    f"values but has {len(items) - 1}"
                )
            params[_ARRAY_KEY_BASE - key] = tuple(items[1:])
        else:
            params[key] = _parse_number(value_text, where)
    return params


def parse_param(text: str) -> NcnnGraph:
    """Parse the text of an ncnn ``.param`` file.

    Checks the magic number, the announced layer count (exactly) and blob count (at least
    the number of distinct blobs the layers produce), and each layer's bottom/top counts.

    Raises:
        ModelError: the text is not a well-formed ncnn text param file.
    """
    lines = [line.split() for line in text.splitlines()]
    lines = [tokens for tokens in lines if tokens]
    if not lines or lines[0] != [str(MAGIC)]:
        found = " ".join(lines[0])[:40] if lines else "an empty file"
        raise ModelError(
            f"not an ncnn text .param file: expected magic number {MAGIC} on the first line, "
            f"found {found!r}"
        )
    if len(lines) < 2 or len(lines[1]) != 2 or not all(t.isdigit() for t in lines[1]):
        raise ModelError("malformed ncnn param: second line must be '<layer count> <blob count>'")
    layer_count, blob_count = int(lines[1][0]), int(lines[1][1])
    body = lines[2:]
    if len(body) != layer_count:
        raise ModelError(
            f"malformed ncnn param: header announces {layer_count} layers, file has {len(body)}"
        )

    layers = []
    produced: set[str] = set()
    for number, tokens in enumerate(body, start=3):
        where = f"line {number}"
        if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise ModelError(
                f"malformed ncnn param: {where}: expected "
                "'<type> <name> <bottom count> <top count> ...'"
            )
        n_bottom, n_top = int(tokens[2]), int(tokens[3])
        if len(tokens) < 4 + n_bottom + n_top:
            raise ModelError(f"malformed ncnn param: {where}: fewer blob names than announced")
        bottoms = tuple(tokens[4 : 4 + n_bottom])
        tops = tuple(tokens[4 + n_bottom : 4 + n_bottom + n_top])
        params = _parse_params(tokens[4 + n_bottom + n_top :], f"{where} ({tokens[1]})")
        layers.append(NcnnLayer(tokens[0], tokens[1], bottoms, tops, params))
        produced.update(tops)
    if len(produced) > blob_count:  # ncnn sizes its blob table from the header
        raise ModelError(
            f"malformed ncnn param: header announces {blob_count} blobs, layers produce "
            f"{len(produced)}"
        )
    return NcnnGraph(tuple(layers), blob_count)


# --------------------------------------------------------------------------- .bin


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
            than fp16/fp32, holds non-finite values, or the graph has a layer type whose
            data layout is not known here.
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
        for key, array in arrays.items():
            if not np.isfinite(array).all():
                raise ModelError(f"ncnn layer '{layer.name}': {key} has NaN or infinite values")
        layers[layer.name] = arrays
    if offset != len(data):
        raise ModelError(
            f"ncnn .bin has {len(data) - offset} bytes left over after the last layer "
            "(does the .bin belong to this .param?)"
        )
    precision = {frozenset(): "none", frozenset({True}): "fp16", frozenset({False}): "fp32"}
    return NcnnWeights(layers, precision.get(frozenset(precisions), "mixed"))


# --------------------------------------------------------------------------- structure

Attrs = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Op:
    """One step of a normalised graph.

    ``inputs`` index earlier ops.  ``source`` is the ncnn layer name for ops read from a
    file and the state-dict key prefix (or "") for ops of an expected graph.
    """

    kind: str
    attrs: Attrs
    inputs: tuple[int, ...]
    source: str = ""

    def describe(self) -> str:
        attrs = ", ".join(f"{k}={v}" for k, v in self.attrs)
        return f"{self.kind}({attrs}) of op(s) {list(self.inputs)}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        # Exporters print 0.2 as 2.000000e-01 or as the fp32 value 0.200000003.
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-6)
        )
    return bool(a == b)


def _ops_match(expected: _Op, found: _Op) -> bool:
    return (
        expected.kind == found.kind
        and expected.inputs == found.inputs
        and len(expected.attrs) == len(found.attrs)
        and all(
            ka == kb and _same(va, vb)
            for (ka, va), (kb, vb) in zip(expected.attrs, found.attrs, strict=True)
        )
    )


def _weighted_sum(terms: Sequence[tuple[int, float]], source: str = "") -> _Op:
    # Addition commutes; sorting by input makes "0.2*a + b" and "b + 0.2*a" compare equal.
    ordered = sorted(terms)
    return _Op(
        "sum",
        (("coeffs", tuple(float(c) for _, c in ordered)),),
        tuple(i for i, _ in ordered),
        source,
    )


def _conv_op(layer: NcnnLayer, inputs: tuple[int, ...]) -> _Op:
    num_output = layer.int_param(0, 0)
    kw = layer.int_param(1, 0)
    kh = layer.int_param(11, kw)
    size = layer.int_param(6, 0)
    per_input = num_output * kh * kw
    in_ch = size // per_input if per_input > 0 and size % per_input == 0 else -1
    pad_left = layer.int_param(4, 0)
    pads = (
        pad_left,
        layer.int_param(14, pad_left),
        layer.int_param(15, pad_left),
        layer.int_param(16, layer.int_param(14, pad_left)),
    )
    stride = (layer.int_param(13, layer.int_param(3, 1)), layer.int_param(3, 1))
    dilation = (layer.int_param(12, layer.int_param(2, 1)), layer.int_param(2, 1))
    if pad_left in (-233, -234) and stride == (1, 1) and kh % 2 and kw % 2:
        # "same" padding at stride 1 with odd kernels is the symmetric k // 2 padding.
        pads = (
            dilation[1] * (kw // 2),
            dilation[0] * (kh // 2),
            dilation[1] * (kw // 2),
            dilation[0] * (kh // 2),
        )
    attrs: Attrs = (
        ("out", num_output),
        ("in", in_ch),
        ("kernel", (kh, kw)),
        ("stride", stride),
        ("dilation", dilation),
        ("pad", pads),
        ("pad_value", layer.float_param(18, 0.0)),
        ("bias", bool(layer.int_param(5, 0))),
        ("quantized", bool(layer.int_param(8, 0) or layer.int_param(19, 0))),
    )
    return _Op("conv", attrs, inputs, layer.name)


def _activation(kind: int, params: tuple[float, ...]) -> Attrs | None:
    """Normalised attrs of ncnn's fused activation ``kind``; None for no activation."""
    if kind == 0:
        return None
    if kind == 1:
        return (("fn", "leaky"), ("slope", 0.0))
    if kind == 2:
        return (("fn", "leaky"), ("slope", params[0] if params else 0.0))
    return (("fn", f"activation_type {kind}"), ("params", params))


def _normalise(graph: NcnnGraph) -> list[_Op]:
    """Rewrite ``graph`` as ops in file order, with ``Split`` aliases and fusions undone.

    Layers outside the supported vocabulary become ops of kind ``ncnn:<Type>`` that match
    nothing, so the comparison reports them instead of this function guessing.
    """
    ops: list[_Op] = []
    blob_op: dict[str, int] = {}

    def add(op: _Op) -> int:
        ops.append(op)
        return len(ops) - 1

    for layer in graph.layers:
        inputs = []
        for blob in layer.bottoms:
            if blob not in blob_op:
                raise ModelError(
                    f"malformed ncnn param: layer '{layer.name}' reads blob '{blob}' that no "
                    "earlier layer produces"
                )
            inputs.append(blob_op[blob])
        args = tuple(inputs)
        t = layer.type
        if t == "Split" and len(args) == 1:
            out = args[0]
        elif t == "Input" and not args:
            out = add(_Op("input", (), (), layer.name))
        elif t == "Convolution":
            out = add(_conv_op(layer, args))
            act = _activation(layer.int_param(9, 0), layer.array_param(10))
            if act is not None:
                out = add(_Op("act", act, (out,), layer.name))
        elif t == "ReLU":
            out = add(_Op("act", (("fn", "leaky"), ("slope", layer.float_param(0, 0.0))), args))
        elif t == "PReLU":
            out = add(_Op("act", (("fn", "prelu"),), args, layer.name))
        elif t == "Concat":
            axis = layer.int_param(0, 0)
            out = add(_Op("concat", (("axis", 0 if axis == -3 else axis),), args))
        elif t == "Eltwise" and layer.int_param(0, 0) == 1:  # 1 = SUM (0 = PROD)
            coeffs = layer.array_param(1) or (1.0,) * len(args)
            if len(coeffs) != len(args):
                raise ModelError(
                    f"malformed ncnn param: Eltwise '{layer.name}' has {len(coeffs)} "
                    f"coefficients for {len(args)} inputs"
                )
            out = add(_weighted_sum(list(zip(args, coeffs, strict=True)), layer.name))
        elif (
            t == "BinaryOp"
            and len(args) == 2
            and layer.int_param(0, 0) == 0
            and not layer.int_param(1, 0)
        ):
            out = add(_weighted_sum([(args[0], 1.0), (args[1], 1.0)], layer.name))
        elif t == "Interp" and not layer.int_param(3, 0) and not layer.int_param(4, 0):
            mode = layer.int_param(0, 0)
            attrs: Attrs = (
                ("mode", _INTERP_MODES.get(mode, str(mode))),
                ("scale", (layer.float_param(1, 1.0), layer.float_param(2, 1.0))),
                ("align_corners", bool(layer.int_param(6, 0))),
            )
            out = add(_Op("resize", attrs, args, layer.name))
        elif t == "PixelShuffle":
            attrs = (("factor", layer.int_param(0, 1)), ("mode", layer.int_param(1, 0)))
            out = add(_Op("pixelshuffle", attrs, args, layer.name))
        else:
            raw = tuple(sorted((str(k), v) for k, v in layer.params.items()))
            out = add(_Op(f"ncnn:{t}", raw, args, layer.name))
        for blob in layer.tops:
            if blob in blob_op:
                raise ModelError(
                    f"malformed ncnn param: blob '{blob}' is produced twice "
                    f"(again by layer '{layer.name}')"
                )
            blob_op[blob] = out
    return ops


class _Expected:
    """Builds the op list a PyTorch architecture exports to, in its forward order."""

    def __init__(self) -> None:
        self.ops: list[_Op] = []

    def _add(self, op: _Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def input(self) -> int:
        return self._add(_Op("input", (), ()))

    def conv(self, key: str, out_ch: int, in_ch: int, x: int) -> int:
        attrs: Attrs = (
            ("out", out_ch),
            ("in", in_ch),
            ("kernel", (3, 3)),
            ("stride", (1, 1)),
            ("dilation", (1, 1)),
            ("pad", (1, 1, 1, 1)),
            ("pad_value", 0.0),
            ("bias", True),
            ("quantized", False),
        )
        return self._add(_Op("conv", attrs, (x,), key))

    def leaky(self, x: int) -> int:
        return self._add(_Op("act", (("fn", "leaky"), ("slope", 0.2)), (x,)))

    def prelu(self, key: str, x: int) -> int:
        return self._add(_Op("act", (("fn", "prelu"),), (x,), key))

    def concat(self, xs: Sequence[int]) -> int:
        return self._add(_Op("concat", (("axis", 0),), tuple(xs)))

    def weighted_sum(self, *terms: tuple[int, float]) -> int:
        return self._add(_weighted_sum(terms))

    def resize_nearest(self, factor: int, x: int) -> int:
        attrs: Attrs = (
            ("mode", "nearest"),
            ("scale", (float(factor), float(factor))),
            ("align_corners", False),
        )
        return self._add(_Op("resize", attrs, (x,)))

    def pixelshuffle(self, factor: int, x: int) -> int:
        return self._add(_Op("pixelshuffle", (("factor", factor), ("mode", 0)), (x,)))


@dataclass(frozen=True)
class _Plan:
    family: Family
    expected: list[_Op]
    info: dict[str, Any]


def _conv_shapes(ops: Sequence[_Op]) -> list[tuple[int, int]]:
    return [(dict(op.attrs)["out"], dict(op.attrs)["in"]) for op in ops if op.kind == "conv"]


def _esrgan_plan(ops: Sequence[_Op]) -> _Plan | str:
    """Rebuild Real-ESRGAN's RRDBNet from the conv shapes in ``ops``, or say why not."""
    convs = _conv_shapes(ops)
    num_up = sum(1 for op in ops if op.kind == "resize")
    blocks, rest = divmod(len(convs) - 4 - num_up, 15)
    if len(convs) < 19 or rest or blocks < 1 or num_up > 3:
        return (
            f"{len(convs)} convolutions and {num_up} resizes do not make "
            "4 + 15 per RRDB + 1 per x2 upsampling"
        )
    num_feat, in_ch = convs[0]
    grow = convs[1][0]
    out_ch = convs[-1][0]
    g = _Expected()
    x = g.input()
    feat = g.conv("conv_first", num_feat, in_ch, x)
    h = feat
    for b in range(blocks):
        block_in = h
        for r in (1, 2, 3):
            dense = [h]
            for c in (1, 2, 3, 4):
                src = dense[0] if c == 1 else g.concat(dense)
                key = f"body.{b}.rdb{r}.conv{c}"
                dense.append(g.leaky(g.conv(key, grow, num_feat + (c - 1) * grow, src)))
            y = g.conv(f"body.{b}.rdb{r}.conv5", num_feat, num_feat + 4 * grow, g.concat(dense))
            h = g.weighted_sum((y, 0.2), (dense[0], 1.0))
        h = g.weighted_sum((h, 0.2), (block_in, 1.0))
    h = g.weighted_sum((feat, 1.0), (g.conv("conv_body", num_feat, num_feat, h), 1.0))
    for u in range(1, num_up + 1):
        h = g.leaky(g.conv(f"conv_up{u}", num_feat, num_feat, g.resize_nearest(2, h)))
    h = g.leaky(g.conv("conv_hr", num_feat, num_feat, h))
    g.conv("conv_last", out_ch, num_feat, h)
    info = {
        "family": "esrgan",
        "scale": 2**num_up,
        "in_channels": in_ch,
        "out_channels": out_ch,
        "num_feat": num_feat,
        "num_block": blocks,
        "num_grow_ch": grow,
    }
    return _Plan("esrgan", g.ops, info)


def _srvgg_plan(ops: Sequence[_Op]) -> _Plan | str:
    """Rebuild SRVGGNetCompact (PReLU) from the shapes in ``ops``, or say why not."""
    convs = _conv_shapes(ops)
    shuffles = [dict(op.attrs)["factor"] for op in ops if op.kind == "pixelshuffle"]
    if len(shuffles) != 1 or len(convs) < 2 or shuffles[0] < 1:
        return (
            f"needs one PixelShuffle and at least 2 convolutions, "
            f"found {len(shuffles)} and {len(convs)}"
        )
    scale = shuffles[0]
    num_feat, in_ch = convs[0]
    out_ch, rest = divmod(convs[-1][0], scale * scale)
    if rest or out_ch < 1:
        return f"last convolution has {convs[-1][0]} outputs, not a multiple of {scale}²"
    num_conv = len(convs) - 2
    g = _Expected()
    x = g.input()
    h = g.prelu("body.1", g.conv("body.0", num_feat, in_ch, x))
    for i in range(num_conv):
        h = g.prelu(f"body.{2 * i + 3}", g.conv(f"body.{2 * i + 2}", num_feat, num_feat, h))
    h = g.pixelshuffle(scale, g.conv(f"body.{2 * num_conv + 2}", out_ch * scale**2, num_feat, h))
    g.weighted_sum((h, 1.0), (g.resize_nearest(scale, x), 1.0))
    info = {
        "family": "srvgg",
        "scale": scale,
        "in_channels": in_ch,
        "out_channels": out_ch,
        "num_feat": num_feat,
        "num_conv": num_conv,
    }
    return _Plan("srvgg", g.ops, info)


_PLANNERS: dict[Family, Callable[[Sequence[_Op]], _Plan | str]] = {
    "esrgan": _esrgan_plan,
    "srvgg": _srvgg_plan,
}


def _compare(expected: Sequence[_Op], found: Sequence[_Op]) -> str | None:
    """Return None when ``found`` is ``expected`` plus at most one trailing resize."""
    for index, (want, have) in enumerate(zip(expected, found, strict=False)):
        if not _ops_match(want, have):
            return (
                f"at ncnn layer '{have.source}' (step {index}) expected {want.describe()}, "
                f"found {have.describe()}"
            )
    if len(found) < len(expected):
        return f"graph ends after {len(found)} steps, expected {len(expected)}"
    extra = found[len(expected) :]
    if not extra:
        return None
    last = extra[0]
    scale = dict(last.attrs).get("scale", (0.0, 1.0))
    if (
        len(extra) == 1
        and last.kind == "resize"
        and last.inputs == (len(expected) - 1,)
        and _same(scale[0], scale[1])
    ):
        return None
    return f"unexpected ncnn layer '{last.source}' ({last.kind}) after the network's output"


def _resolve(graph: NcnnGraph) -> tuple[_Plan, list[_Op]]:
    ops = _normalise(graph)
    reasons = []
    for family, planner in _PLANNERS.items():
        plan = planner(ops)
        reason = plan if isinstance(plan, str) else _compare(plan.expected, ops)
        if reason is None and not isinstance(plan, str):
            return plan, ops
        reasons.append(f"not {_FAMILY_NAMES[family]}: {reason}")
    types = ", ".join(f"{t} ({n})" for t, n in graph.layer_types().items())
    raise ModelError(
        f"unsupported ncnn graph: layer types {types}; supported: "
        f"{', '.join(_FAMILY_NAMES.values())} ({'; '.join(reasons)})"
    )


def detect_family(graph: NcnnGraph) -> Family:
    """Return the architecture family that ``graph`` computes exactly.

    Raises:
        ModelError: the graph is neither ESRGAN/RRDBNet nor SRVGG-compact; the message lists
            the layer types found and where each family's expected graph differs.
    """
    return _resolve(graph)[0].family


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
    detects as ESRGAN and Compact.  The info dict holds ``family``, ``scale`` (of the
    network), ``in_channels``, ``out_channels``, ``num_feat``, ``num_block`` and
    ``num_grow_ch`` (esrgan) or ``num_conv`` (srvgg), ``params`` (total element count),
    ``precision`` (of the stored convolution weights) and ``output_resize``: None, or
    ``{"mode", "factor"}`` for a resize the ncnn graph applies after the network (for
    example animevideov3 "UP2X": a ×4 network followed by a bicubic ×0.5).

    Raises:
        ModelError: a file cannot be read, is malformed, or describes an unsupported graph.
    """
    import torch

    text, data = _read_inputs(Path(param_path), Path(bin_path))
    graph = parse_param(text)
    plan, ops = _resolve(graph)
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
