"""Which architecture an ncnn graph computes, proven layer for layer.

Hyper-parameters are inferred from the convolution shapes, the graph the PyTorch
architecture exports to is rebuilt from them, and both are compared after normalisation
(``Split`` layers are aliases, fused activations become separate steps, ``BinaryOp`` add
and ``Eltwise`` sum are the same weighted sum).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pocketsr_cli.errors import ModelError
from pocketsr_cli.weights.ncnn.param_file import NcnnGraph, NcnnLayer

NcnnArch = Literal["esrgan", "srvgg"]

_ARCH_NAMES: dict[str, str] = {"esrgan": "ESRGAN/RRDBNet", "srvgg": "SRVGG-compact"}
_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}

Attrs = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Op:
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


def _ops_match(expected: Op, found: Op) -> bool:
    return (
        expected.kind == found.kind
        and expected.inputs == found.inputs
        and len(expected.attrs) == len(found.attrs)
        and all(
            ka == kb and _same(va, vb)
            for (ka, va), (kb, vb) in zip(expected.attrs, found.attrs, strict=True)
        )
    )


def _weighted_sum(terms: Sequence[tuple[int, float]], source: str = "") -> Op:
    # Addition commutes; sorting by input makes "0.2*a + b" and "b + 0.2*a" compare equal.
    ordered = sorted(terms)
    return Op(
        "sum",
        (("coeffs", tuple(float(c) for _, c in ordered)),),
        tuple(i for i, _ in ordered),
        source,
    )


def _conv_op(layer: NcnnLayer, inputs: tuple[int, ...]) -> Op:
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
    return Op("conv", attrs, inputs, layer.name)


def _activation(kind: int, params: tuple[float, ...]) -> Attrs | None:
    """Normalised attrs of ncnn's fused activation ``kind``; None for no activation."""
    if kind == 0:
        return None
    if kind == 1:
        return (("fn", "leaky"), ("slope", 0.0))
    if kind == 2:
        return (("fn", "leaky"), ("slope", params[0] if params else 0.0))
    return (("fn", f"activation_type {kind}"), ("params", params))


def _normalise(graph: NcnnGraph) -> list[Op]:
    """Rewrite ``graph`` as ops in file order, with ``Split`` aliases and fusions undone.

    Layers outside the supported vocabulary become ops of kind ``ncnn:<Type>`` that match
    nothing, so the comparison reports them instead of this function guessing.
    """
    ops: list[Op] = []
    blob_op: dict[str, int] = {}

    def add(op: Op) -> int:
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
            out = add(Op("input", (), (), layer.name))
        elif t == "Convolution":
            out = add(_conv_op(layer, args))
            act = _activation(layer.int_param(9, 0), layer.array_param(10))
            if act is not None:
                out = add(Op("act", act, (out,), layer.name))
        elif t == "ReLU":
            out = add(Op("act", (("fn", "leaky"), ("slope", layer.float_param(0, 0.0))), args))
        elif t == "PReLU":
            out = add(Op("act", (("fn", "prelu"),), args, layer.name))
        elif t == "Concat":
            axis = layer.int_param(0, 0)
            out = add(Op("concat", (("axis", 0 if axis == -3 else axis),), args))
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
            out = add(Op("resize", attrs, args, layer.name))
        elif t == "PixelShuffle":
            attrs = (("factor", layer.int_param(0, 1)), ("mode", layer.int_param(1, 0)))
            out = add(Op("pixelshuffle", attrs, args, layer.name))
        else:
            raw = tuple(sorted((str(k), v) for k, v in layer.params.items()))
            out = add(Op(f"ncnn:{t}", raw, args, layer.name))
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
        self.ops: list[Op] = []

    def _add(self, op: Op) -> int:
        self.ops.append(op)
        return len(self.ops) - 1

    def input(self) -> int:
        return self._add(Op("input", (), ()))

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
        return self._add(Op("conv", attrs, (x,), key))

    def leaky(self, x: int) -> int:
        return self._add(Op("act", (("fn", "leaky"), ("slope", 0.2)), (x,)))

    def prelu(self, key: str, x: int) -> int:
        return self._add(Op("act", (("fn", "prelu"),), (x,), key))

    def concat(self, xs: Sequence[int]) -> int:
        return self._add(Op("concat", (("axis", 0),), tuple(xs)))

    def weighted_sum(self, *terms: tuple[int, float]) -> int:
        return self._add(_weighted_sum(terms))

    def resize_nearest(self, factor: int, x: int) -> int:
        attrs: Attrs = (
            ("mode", "nearest"),
            ("scale", (float(factor), float(factor))),
            ("align_corners", False),
        )
        return self._add(Op("resize", attrs, (x,)))

    def pixelshuffle(self, factor: int, x: int) -> int:
        return self._add(Op("pixelshuffle", (("factor", factor), ("mode", 0)), (x,)))


@dataclass(frozen=True)
class Plan:
    """The graph an architecture exports to at the shapes found, and its description."""

    arch: NcnnArch
    expected: list[Op]
    info: dict[str, Any]


def _conv_shapes(ops: Sequence[Op]) -> list[tuple[int, int]]:
    return [(dict(op.attrs)["out"], dict(op.attrs)["in"]) for op in ops if op.kind == "conv"]


def _esrgan_plan(ops: Sequence[Op]) -> Plan | str:
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
    return Plan("esrgan", g.ops, info)


def _srvgg_plan(ops: Sequence[Op]) -> Plan | str:
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
    return Plan("srvgg", g.ops, info)


_PLANNERS: dict[NcnnArch, Callable[[Sequence[Op]], Plan | str]] = {
    "esrgan": _esrgan_plan,
    "srvgg": _srvgg_plan,
}


def _compare(expected: Sequence[Op], found: Sequence[Op]) -> str | None:
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


def match_graph(graph: NcnnGraph) -> tuple[Plan, list[Op]]:
    """The plan ``graph`` computes exactly, and ``graph`` as normalised ops.

    Raises:
        ModelError: no supported architecture matches (see :func:`detect_arch`).
    """
    ops = _normalise(graph)
    reasons = []
    for arch, planner in _PLANNERS.items():
        plan = planner(ops)
        reason = plan if isinstance(plan, str) else _compare(plan.expected, ops)
        if reason is None and not isinstance(plan, str):
            return plan, ops
        reasons.append(f"not {_ARCH_NAMES[arch]}: {reason}")
    types = ", ".join(f"{t} ({n})" for t, n in graph.layer_types().items())
    raise ModelError(
        f"unsupported ncnn graph: layer types {types}; supported: "
        f"{', '.join(_ARCH_NAMES.values())} ({'; '.join(reasons)})"
    )


def detect_arch(graph: NcnnGraph) -> NcnnArch:
    """Return the architecture that ``graph`` computes exactly.

    Raises:
        ModelError: the graph is neither ESRGAN/RRDBNet nor SRVGG-compact; the message lists
            the layer types found and where each architecture's expected graph differs.
    """
    return match_graph(graph)[0].arch
