"""Tests for ``pocketsr_cli.weights.ncnn``.

Fast tests write tiny ncnn models with a test-side writer that lays graphs out the way
``onnx2ncnn`` does (Split layers for shared blobs, activations fused into Convolution,
``Eltwise`` sums with coefficients), convert them back and compare.  A small reference
executor runs an ncnn graph straight from its layers (following ncnn's layer semantics, not
the converter's normalisation), so the converted weights can be checked against what the
ncnn graph itself computes.  The slow tests do this for the real Real-ESRGAN files.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pocketsr_cli.errors import ModelError
from pocketsr_cli.weights.community import import_spandrel
from pocketsr_cli.weights.ncnn import (
    FP16_TAG,
    NcnnGraph,
    NcnnWeights,
    convert,
    detect_arch,
    parse_param,
    read_weights,
)

REPO = Path(__file__).resolve().parents[1]
StateDict = dict[str, torch.Tensor]

# --------------------------------------------------------------------------- writer


class NcnnWriter:
    """Collects layers and weights; emits a .param text and .bin bytes.

    Layers name logical blobs; ``finish`` inserts a Split after every blob read more than
    once and gives each reader its own split output, as onnx2ncnn does.
    """

    def __init__(self, fp16: bool) -> None:
        self.fp16 = fp16
        self.layers: list[tuple[str, str, list[str], list[str], str]] = []
        self.data = bytearray()
        self._count = 0

    def blob(self) -> str:
        self._count += 1
        return f"b{self._count}"

    def layer(self, type_: str, bottoms: list[str], params: str = "", n_top: int = 1) -> str:
        tops = [self.blob() for _ in range(n_top)]
        self.layers.append((type_, f"{type_}_{len(self.layers)}", bottoms, tops, params))
        return tops[0]

    def conv(self, x: str, weight: torch.Tensor, bias: torch.Tensor, act: str = "") -> str:
        out_ch, _, k, _ = weight.shape
        params = f"0={out_ch} 1={k} 4={k // 2} 5=1 6={weight.numel()}"
        if act == "fused-leaky":
            params += " 9=2 -23310=1,2.000000e-01"
        if self.fp16:
            raw = weight.detach().half().numpy().astype("<f2").tobytes()
            self.data += struct.pack("<I", FP16_TAG) + raw + b"\0" * (-len(raw) % 4)
        else:
            self.data += struct.pack("<I", 0) + weight.detach().numpy().astype("<f4").tobytes()
        self.data += bias.detach().numpy().astype("<f4").tobytes()
        y = self.layer("Convolution", [x], params)
        if act == "leaky":  # the unfused form: a ReLU layer with a negative slope
            y = self.layer("ReLU", [y], "0=2.000000e-01")
        return y

    def prelu(self, x: str, slopes: torch.Tensor) -> str:
        self.data += slopes.detach().numpy().astype("<f4").tobytes()
        return self.layer("PReLU", [x], f"0={slopes.numel()}")

    def finish(self) -> tuple[str, bytes]:
        readers: dict[str, int] = {}
        for _, _, bottoms, _, _ in self.layers:
            for b in bottoms:
                readers[b] = readers.get(b, 0) + 1
        lines: list[str] = []
        renamed: dict[str, list[str]] = {}
        for type_, name, bottoms, tops, params in self.layers:
            ins = [renamed[b].pop() if b in renamed else b for b in bottoms]
            lines.append(
                " ".join([type_, name, str(len(ins)), str(len(tops)), *ins, *tops, params])
            )
            for top in tops:
                if readers.get(top, 0) > 1:
                    outs = [f"{top}_split{i}" for i in range(readers[top])]
                    lines.append(f"Split split_{top} 1 {len(outs)} {top} {' '.join(outs)}")
                    renamed[top] = outs[::-1]
        blobs = sum(int(line.split()[3]) for line in lines)
        return f"7767517\n{len(lines)} {blobs}\n" + "\n".join(lines) + "\n", bytes(self.data)


def _rand_conv(sd: StateDict, key: str, out_ch: int, in_ch: int, gen: torch.Generator) -> None:
    sd[f"{key}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.1
    sd[f"{key}.bias"] = torch.randn(out_ch, generator=gen) * 0.05


def esrgan_state(nf: int, gc: int, nb: int, num_up: int, seed: int = 0) -> StateDict:
    gen = torch.Generator().manual_seed(seed)
    sd: StateDict = {}
    _rand_conv(sd, "conv_first", nf, 3, gen)
    for b in range(nb):
        for r in (1, 2, 3):
            for c in (1, 2, 3, 4):
                _rand_conv(sd, f"body.{b}.rdb{r}.conv{c}", gc, nf + (c - 1) * gc, gen)
            _rand_conv(sd, f"body.{b}.rdb{r}.conv5", nf, nf + 4 * gc, gen)
    _rand_conv(sd, "conv_body", nf, nf, gen)
    for u in range(1, num_up + 1):
        _rand_conv(sd, f"conv_up{u}", nf, nf, gen)
    _rand_conv(sd, "conv_hr", nf, nf, gen)
    _rand_conv(sd, "conv_last", 3, nf, gen)
    return sd


def srvgg_state(nf: int, num_conv: int, scale: int, seed: int = 0) -> StateDict:
    gen = torch.Generator().manual_seed(seed)
    sd: StateDict = {}
    _rand_conv(sd, "body.0", nf, 3, gen)
    for i in range(num_conv + 1):
        sd[f"body.{2 * i + 1}.weight"] = torch.rand(nf, generator=gen) * 0.3
        if i < num_conv:
            _rand_conv(sd, f"body.{2 * i + 2}", nf, nf, gen)
    _rand_conv(sd, f"body.{2 * num_conv + 2}", 3 * scale * scale, nf, gen)
    return sd


def write_esrgan(
    sd: StateDict,
    nb: int,
    num_up: int,
    fp16: bool,
    act: str = "fused-leaky",
    coeff: str = "2.000000e-01",
) -> tuple[str, bytes]:
    """RRDBNet in forward order; ``act`` and ``coeff`` allow deliberately altered graphs."""
    w = NcnnWriter(fp16)

    def conv(x: str, key: str, a: str = "") -> str:
        return w.conv(x, sd[f"{key}.weight"], sd[f"{key}.bias"], a)

    def scaled_sum(y: str, skip: str) -> str:
        return w.layer("Eltwise", [y, skip], f"0=1 -23301=2,{coeff},1.000000e+00")

    x = w.layer("Input", [])
    feat = h = conv(x, "conv_first")
    for b in range(nb):
        block_in = h
        for r in (1, 2, 3):
            dense = [h]
            for c in (1, 2, 3, 4):
                src = dense[0] if c == 1 else w.layer("Concat", list(dense), "0=0")
                dense.append(conv(src, f"body.{b}.rdb{r}.conv{c}", act))
            y = conv(w.layer("Concat", list(dense), "0=0"), f"body.{b}.rdb{r}.conv5")
            h = scaled_sum(y, dense[0])
        h = scaled_sum(h, block_in)
    h = w.layer("BinaryOp", [feat, conv(h, "conv_body")], "0=0")
    for u in range(1, num_up + 1):
        up = w.layer("Interp", [h], "0=1 1=2.000000e+00 2=2.000000e+00")
        h = conv(up, f"conv_up{u}", act)
    conv(conv(h, "conv_hr", act), "conv_last")
    return w.finish()


def write_srvgg(
    sd: StateDict, num_conv: int, scale: int, fp16: bool, tail: str = ""
) -> tuple[str, bytes]:
    w = NcnnWriter(fp16)
    x = w.layer("Input", [])
    h = x
    for i in range(num_conv + 1):
        h = w.conv(h, sd[f"body.{2 * i}.weight"], sd[f"body.{2 * i}.bias"])
        h = w.prelu(h, sd[f"body.{2 * i + 1}.weight"])
    last = f"body.{2 * num_conv + 2}"
    h = w.layer("PixelShuffle", [w.conv(h, sd[f"{last}.weight"], sd[f"{last}.bias"])], f"0={scale}")
    base = w.layer("Interp", [x], f"0=1 1={scale}.0 2={scale}.0")
    out = w.layer("BinaryOp", [h, base], "0=0")
    if tail:
        w.layer("Interp", [out], tail)
    return w.finish()


def save(tmp_path: Path, pair: tuple[str, bytes], name: str = "m") -> tuple[Path, Path]:
    param, bin_ = tmp_path / f"{name}.param", tmp_path / f"{name}.bin"
    param.write_text(pair[0])
    bin_.write_bytes(pair[1])
    return param, bin_


# --------------------------------------------------------------------------- reference executor


def run_ncnn(graph: NcnnGraph, weights: NcnnWeights, x: torch.Tensor) -> torch.Tensor:
    """Execute ``graph`` layer by layer on an NCHW batch of one, per ncnn's layer semantics."""
    blobs: dict[str, torch.Tensor] = {}
    for layer in graph.layers:
        ins = [blobs[b] for b in layer.bottoms]
        i, f = layer.int_param, layer.float_param
        outs: list[torch.Tensor]
        if layer.type == "Input":
            outs = [x]
        elif layer.type == "Split":
            outs = [ins[0]] * len(layer.tops)
        elif layer.type == "Convolution":
            arrays = weights.layers[layer.name]
            bias = torch.from_numpy(arrays["bias"]) if "bias" in arrays else None
            left, top = i(4, 0), i(14, i(4, 0))
            y = F.pad(ins[0], (left, i(15, left), top, i(16, top)), value=f(18, 0.0))
            stride, dilation = (i(13, i(3, 1)), i(3, 1)), (i(12, i(2, 1)), i(2, 1))
            y = F.conv2d(y, torch.from_numpy(arrays["weight"]), bias, stride, 0, dilation)
            act = i(9, 0)
            if act == 1:
                y = F.relu(y)
            elif act == 2:
                y = F.leaky_relu(y, layer.array_param(10)[0])
            elif act != 0:
                raise NotImplementedError(f"activation {act}")
            outs = [y]
        elif layer.type == "ReLU":
            outs = [F.leaky_relu(ins[0], f(0, 0.0))]
        elif layer.type == "PReLU":
            slope = torch.from_numpy(weights.layers[layer.name]["weight"]).view(1, -1, 1, 1)
            outs = [torch.where(ins[0] > 0, ins[0], ins[0] * slope)]
        elif layer.type == "Concat":
            assert i(0, 0) == 0, "only channel concat"
            outs = [torch.cat(ins, dim=1)]
        elif layer.type == "Eltwise":
            assert i(0, 0) == 1, "only SUM"
            coeffs = layer.array_param(1) or (1.0,) * len(ins)
            total = torch.zeros_like(ins[0])
            for c, t in zip(coeffs, ins, strict=True):
                total = total + c * t
            outs = [total]
        elif layer.type == "BinaryOp":
            ops: dict[int, Callable[..., torch.Tensor]] = {
                0: torch.add,
                1: torch.sub,
                2: torch.mul,
                3: torch.div,
            }
            other: torch.Tensor | float = f(2, 0.0) if i(1, 0) else ins[1]
            outs = [ops[i(0, 0)](ins[0], other)]
        elif layer.type == "Interp":
            mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[i(0, 0)]
            extra = {} if mode == "nearest" else {"align_corners": bool(i(6, 0))}
            factor = (f(1, 1.0), f(2, 1.0))
            outs = [F.interpolate(ins[0], scale_factor=factor, mode=mode, **extra)]
        elif layer.type == "PixelShuffle":
            outs = [F.pixel_shuffle(ins[0], i(0, 1))]
        else:
            raise NotImplementedError(layer.type)
        blobs.update(zip(layer.tops, outs, strict=True))
    return blobs[graph.layers[-1].tops[0]]


def spandrel_model(sd: StateDict) -> Any:
    return import_spandrel().ModelLoader().load_from_state_dict(sd)


def photo_like(size: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients and shapes with mild texture, in [0, 1]: enough structure for SR."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    r = 0.5 + 0.35 * torch.sin(6 * xx + 2 * yy)
    g = 0.4 + 0.3 * (((xx - 0.5) ** 2 + (yy - 0.4) ** 2) < 0.08).float()
    b = 0.3 + 0.4 * yy
    img = torch.stack([r, g, b])[None] + 0.03 * torch.randn(1, 3, size, size, generator=gen)
    return img.clamp(0, 1)


def assert_state_equal(got: StateDict, want: StateDict, fp16: bool) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        # Only conv weights are stored as fp16; biases and PReLU slopes are raw fp32.
        expected = value.half().float() if fp16 and value.dim() == 4 else value
        assert got[key].dtype == torch.float32, key
        assert torch.equal(got[key], expected), key


# --------------------------------------------------------------------------- fast tests


def test_parse_param_reads_layers_and_array_params() -> None:
    text = (
        "7767517\n3 3\n"
        "Input in 0 1 data\n"
        "Convolution c 1 1 data y 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01\n"
        "Interp up 1 1 y z 0=1 1=2.000000e+00 2=2.0\n"
    )
    graph = parse_param(text)
    assert [layer.type for layer in graph.layers] == ["Input", "Convolution", "Interp"]
    conv = graph.layers[1]
    assert (conv.name, conv.bottoms, conv.tops) == ("c", ("data",), ("y",))
    assert conv.params[0] == 4 and isinstance(conv.params[0], int)
    assert conv.params[10] == (0.2,)
    assert graph.layers[2].float_param(1, 1.0) == 2.0
    assert graph.layer_types() == {"Input": 1, "Convolution": 1, "Interp": 1}


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_esrgan_round_trip(tmp_path: Path, fp16: bool) -> None:
    sd = esrgan_state(nf=8, gc=4, nb=2, num_up=2)
    state, info = convert(*save(tmp_path, write_esrgan(sd, nb=2, num_up=2, fp16=fp16)))
    assert_state_equal(state, sd, fp16)
    assert info == {
        "family": "esrgan",
        "scale": 4,
        "in_channels": 3,
        "out_channels": 3,
        "num_feat": 8,
        "num_block": 2,
        "num_grow_ch": 4,
        "params": sum(t.numel() for t in sd.values()),
        "precision": "fp16" if fp16 else "fp32",
        "output_resize": None,
    }


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_srvgg_round_trip(tmp_path: Path, fp16: bool) -> None:
    # 5 features: 5*3*3*3 = 135 fp16 weights, an odd count that needs the 4-byte padding.
    sd = srvgg_state(nf=5, num_conv=1, scale=2)
    state, info = convert(*save(tmp_path, write_srvgg(sd, num_conv=1, scale=2, fp16=fp16)))
    assert_state_equal(state, sd, fp16)
    assert (info["family"], info["scale"], info["num_conv"], info["num_feat"]) == ("srvgg", 2, 1, 5)
    assert info["output_resize"] is None


def test_unfused_activations_convert_the_same(tmp_path: Path) -> None:
    sd = esrgan_state(nf=8, gc=4, nb=1, num_up=1)
    state, info = convert(*save(tmp_path, write_esrgan(sd, 1, 1, fp16=False, act="leaky")))
    assert_state_equal(state, sd, fp16=False)
    assert info["scale"] == 2


def test_esrgan_matches_spandrel_and_ncnn_execution(tmp_path: Path) -> None:
    # spandrel's RRDBNet hard-codes 32 growth channels, so this one uses gc=32.
    sd = esrgan_state(nf=8, gc=32, nb=1, num_up=2)
    param, bin_ = save(tmp_path, write_esrgan(sd, nb=1, num_up=2, fp16=False))
    state, _ = convert(param, bin_)
    descriptor = spandrel_model(state)
    assert (descriptor.architecture.id, descriptor.scale) == ("ESRGAN", 4)
    graph = parse_param(param.read_text())
    x = photo_like(8)
    with torch.no_grad():
        want = run_ncnn(graph, read_weights(graph, bin_.read_bytes()), x)
        got = descriptor.model.eval()(x)
    assert got.shape == (1, 3, 32, 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_srvgg_matches_spandrel_and_ncnn_execution(tmp_path: Path) -> None:
    sd = srvgg_state(nf=8, num_conv=2, scale=4)
    param, bin_ = save(tmp_path, write_srvgg(sd, num_conv=2, scale=4, fp16=True))
    state, _ = convert(param, bin_)
    descriptor = spandrel_model(state)
    assert (descriptor.architecture.id, descriptor.scale) == ("Compact", 4)
    graph = parse_param(param.read_text())
    x = photo_like(8)
    with torch.no_grad():
        want = run_ncnn(graph, read_weights(graph, bin_.read_bytes()), x)
        got = descriptor.model.eval()(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_trailing_downscale_is_reported(tmp_path: Path) -> None:
    sd = srvgg_state(nf=8, num_conv=1, scale=4)
    pair = write_srvgg(sd, 1, 4, fp16=False, tail="0=3 1=5.000000e-01 2=5.000000e-01")
    state, info = convert(*save(tmp_path, pair))
    assert info["scale"] == 4
    assert info["output_resize"] == {"mode": "bicubic", "factor": 0.5}
    assert_state_equal(state, sd, fp16=False)


def test_detect_arch() -> None:
    esrgan = write_esrgan(esrgan_state(8, 4, 1, 2), 1, 2, fp16=False)[0]
    srvgg = write_srvgg(srvgg_state(8, 1, 2), 1, 2, fp16=False)[0]
    assert detect_arch(parse_param(esrgan)) == "esrgan"
    assert detect_arch(parse_param(srvgg)) == "srvgg"


# --------------------------------------------------------------------------- malformed input


def _esrgan_files(tmp_path: Path, **kwargs: Any) -> tuple[Path, Path]:
    sd = esrgan_state(nf=8, gc=4, nb=1, num_up=1)
    return save(tmp_path, write_esrgan(sd, nb=1, num_up=1, fp16=True, **kwargs))


def test_wrong_magic(tmp_path: Path) -> None:
    param, bin_ = _esrgan_files(tmp_path)
    param.write_text(param.read_text().replace("7767517", "7767518", 1))
    with pytest.raises(ModelError, match="magic number 7767517"):
        convert(param, bin_)


def test_wrong_layer_count(tmp_path: Path) -> None:
    param, bin_ = _esrgan_files(tmp_path)
    lines = param.read_text().splitlines()
    param.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ModelError, match=r"announces \d+ layers"):
        convert(param, bin_)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-6], "truncated"),
        (lambda b: b + b"\0" * 8, "8 bytes left over"),
        (lambda b: struct.pack("<I", 0x000D4B38) + b[4:], "int8"),
        (lambda b: struct.pack("<I", 0x12345678) + b[4:], "0x12345678"),
    ],
    ids=["truncated", "leftover", "int8-tag", "unknown-tag"],
)
def test_bad_bin(tmp_path: Path, mutate: Callable[[bytes], bytes], message: str) -> None:
    param, bin_ = _esrgan_files(tmp_path)
    bin_.write_bytes(mutate(bin_.read_bytes()))
    with pytest.raises(ModelError, match=message):
        convert(param, bin_)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    """Refused where every state dict is loaded, not by the converter too (a large model
    was scanned twice): ``convert`` hands them over as stored."""
    from pocketsr_cli.weights.load import descriptor_from_state_dict

    param, bin_ = _esrgan_files(tmp_path)
    data = bytearray(bin_.read_bytes())
    data[4:6] = np.array([np.inf], dtype="<f2").tobytes()
    bin_.write_bytes(bytes(data))
    state, _ = convert(param, bin_)
    assert not torch.isfinite(state["conv_first.weight"]).all()
    with pytest.raises(ModelError, match=r"m: tensor 'conv_first\.weight' holds NaN or infinite"):
        descriptor_from_state_dict(state, "m")


def test_deconvolution_graph_lists_layer_types() -> None:
    text = (
        "7767517\n3 3\n"
        "Input in 0 1 data\n"
        "Convolution c 1 1 data y 0=4 1=3 4=1 5=1 6=108\n"
        "Deconvolution d 1 1 y z 0=3 1=4 3=2 5=1 6=192\n"
    )
    graph = parse_param(text)
    with pytest.raises(ModelError, match=r"layer types Input \(1\), Convolution \(1\), Deconv"):
        detect_arch(graph)


def test_interp_only_graph_is_refused(tmp_path: Path) -> None:
    param = tmp_path / "m.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\nInterp up 1 1 data out 0=3 1=4.0 2=4.0\n")
    (tmp_path / "m.bin").write_bytes(b"")
    with pytest.raises(ModelError, match=r"unsupported ncnn graph: layer types .*Interp \(1\)"):
        convert(param, tmp_path / "m.bin")


@pytest.mark.parametrize(
    "kwargs",
    [{"coeff": "5.000000e-01"}, {"act": ""}],
    ids=["wrong-residual-scale", "missing-activation"],
)
def test_almost_esrgan_is_refused(tmp_path: Path, kwargs: dict[str, str]) -> None:
    with pytest.raises(ModelError, match="not ESRGAN/RRDBNet: at ncnn layer"):
        convert(*_esrgan_files(tmp_path, **kwargs))


def test_swapped_concat_is_refused(tmp_path: Path) -> None:
    param, bin_ = _esrgan_files(tmp_path)
    lines = param.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("Concat"))
    f = lines[i].split()
    f[4], f[5] = f[5], f[4]
    lines[i] = " ".join(f)
    param.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match="expected concat"):
        convert(param, bin_)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        convert(tmp_path / "absent.param", tmp_path / "absent.bin")


# --------------------------------------------------------------------------- real teacher files


@pytest.mark.slow
def test_real_x4plus_matches_ncnn_graph(teacher_dir: Path) -> None:
    param, bin_ = (
        teacher_dir / "REALESRGAN_X4PLUS_UP4X.param",
        teacher_dir / "REALESRGAN_X4PLUS_UP4X.bin",
    )
    start = time.perf_counter()
    state, info = convert(param, bin_)
    seconds = time.perf_counter() - start
    assert info["params"] == 16_697_987
    assert (info["family"], info["scale"], info["num_block"], info["precision"]) == (
        "esrgan",
        4,
        23,
        "fp16",
    )
    descriptor = spandrel_model(state)
    assert (descriptor.architecture.id, descriptor.scale) == ("ESRGAN", 4)

    graph = parse_param(param.read_text())
    x = photo_like(32)
    with torch.no_grad():
        want = run_ncnn(graph, read_weights(graph, bin_.read_bytes()), x)
        got = descriptor.model.eval()(x)
        bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    diff = (got - want).abs().max().item()
    psnr = -10 * torch.log10(((got.clamp(0, 1) - bicubic.clamp(0, 1)) ** 2).mean()).item()
    print(
        f"x4plus: convert {seconds:.2f} s, max |spandrel - ncnn graph| {diff:.2e}, "
        f"PSNR vs bicubic {psnr:.1f} dB"
    )
    assert diff < 1 / 255
    # Real weights restore the image; a mis-mapped state dict gives noise far from bicubic.
    assert psnr > 25


@pytest.mark.slow
def test_real_animevideov3_matches_ncnn_graph(teacher_dir: Path) -> None:
    name = "REALESRGAN_ANIMAVIDEOV3_UP4X"
    param, bin_ = teacher_dir / f"{name}.param", teacher_dir / f"{name}.bin"
    state, info = convert(param, bin_)
    assert (info["family"], info["scale"], info["num_conv"], info["params"]) == (
        "srvgg",
        4,
        16,
        621_424,
    )
    descriptor = spandrel_model(state)
    assert (descriptor.architecture.id, descriptor.scale) == ("Compact", 4)
    graph = parse_param(param.read_text())
    x = photo_like(32)
    with torch.no_grad():
        want = run_ncnn(graph, read_weights(graph, bin_.read_bytes()), x)
        got = descriptor.model.eval()(x)
    diff = (got - want).abs().max().item()
    print(f"animevideov3: max |spandrel - ncnn graph| {diff:.2e}")
    assert diff < 1 / 255


@pytest.mark.slow
def test_real_animevideov3_up2x_reports_downscale(teacher_dir: Path) -> None:
    name = "REALESRGAN_ANIMAVIDEOV3_UP2X"
    state, info = convert(teacher_dir / f"{name}.param", teacher_dir / f"{name}.bin")
    up4, _ = convert(
        teacher_dir / "REALESRGAN_ANIMAVIDEOV3_UP4X.param",
        teacher_dir / "REALESRGAN_ANIMAVIDEOV3_UP4X.bin",
    )
    assert info["output_resize"] == {"mode": "bicubic", "factor": 0.5}
    assert all(torch.equal(state[k], up4[k]) for k in up4)
