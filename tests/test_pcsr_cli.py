"""PCSR through the product: native scales, routing options and the heavy share, by the
CLI (Typer's runner), the Python API and the inference engine, on a tiny random model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from pocketsr_cli import api
from pocketsr_cli.archs.pcsr import PCSR, PCSRConfig, Routing, build
from pocketsr_cli.archs.pcsr.config import NO_MEAN
from pocketsr_cli.cli import app
from pocketsr_cli.devices import compute_for
from pocketsr_cli.errors import UsageError
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict

TINY = PCSRConfig(
    backbone="fsrcnn",
    channels=8,
    shrink=4,
    maps=2,
    heavy=(12, 12),
    light=(4,),
    classifier=(),
    rgb_mean=NO_MEAN,  # what detection infers for an FSRCNN checkpoint
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random PCSR in the official layout, its classifier centred on a test photo so
    that some pixels route each way at k = 0."""
    torch.manual_seed(0)
    model = build(TINY, 4).eval()
    with torch.no_grad():
        margin = torch.logit(model.heavy_probability(_tensor(_photo())).double())
        model.classifier.imnet.layers[-1].bias[1] -= float(margin.median())
    path = tmp_path_factory.mktemp("pcsr") / "tiny pcsr.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _photo(h: int = 24, w: int = 32, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = [x / w, y / h, (x + y) / (h + w), np.full((h, w), 0.7)][:channels]
    img = np.stack(planes, axis=-1) * 200 + rng.normal(0, 12, (h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None]


def _network(weights: Path) -> PCSR:
    module = descriptor_from_state_dict(read_state_dict(weights), weights.name).module
    assert isinstance(module, PCSR)
    return module.eval()


def _expected(weights: Path, pixels: np.ndarray, scale: float, routing: Routing) -> np.ndarray:
    model = _network(weights)
    model.routing = routing
    with torch.no_grad():
        y = model(_tensor(pixels), scale=scale)
    return y.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def _invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _records(stdout: str) -> list[dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [line for line in lines if line["type"] == "image"]


# -- CLI -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("outscale", "tile", "size"),
    [("2.5", "0", (24, 32)), ("2.5", "52", (60, 64)), ("3", "30", (40, 48))],
)
def test_outscale_renders_natively_and_tiles_exactly(
    weights: Path, tmp_path: Path, outscale: str, tile: str, size: tuple[int, int]
) -> None:
    """Drawn by the network at that scale (not resized), and the same in tiles (2 x 2 with
    the overlap raised to the network's receptive radius)."""
    src = tmp_path / "a.png"
    pixels = _photo(*size)
    Image.fromarray(pixels).save(src)
    code, out, err = _invoke("upscale", src, "-m", weights, "--outscale", outscale,
                             "--tile", tile, "--tile-overlap", "4", "--json", "-q")  # fmt: skip
    assert code == 0, err
    (rec,) = _records(out)
    factor = float(outscale)
    h, w = size
    assert (rec["out_width"], rec["out_height"]) == (round(w * factor), round(h * factor))
    assert Path(rec["output"]).name == f"a_x{outscale}.png"
    got = np.asarray(Image.open(rec["output"])).astype(int)
    expected = _expected(weights, pixels, factor, Routing()).astype(int)
    assert np.abs(got - expected).max() <= 1
    assert 0.0 < rec["heavy_fraction"] < 1.0


def test_scale_option_also_renders_natively_without_a_variant_note(
    weights: Path, tmp_path: Path
) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    code, out, err = _invoke("upscale", src, "-m", weights, "-s", "3", "--json", "-q")
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (96, 72)
    assert "variant" not in err
    got = np.asarray(Image.open(rec["output"])).astype(int)
    assert np.abs(got - _expected(weights, _photo(), 3, Routing()).astype(int)).max() <= 1


def test_routing_options_set_the_heavy_share(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    shares = {}
    for label, extra in {
        "default": (),
        "all heavy": ("--pcsr-k", "-1e6"),
        "all light": ("--pcsr-k", "1e6"),
        "adaptive": ("--adaptive",),
    }.items():
        code, out, err = _invoke("upscale", src, "-m", weights, "--json", "-q", "--overwrite",
                                 "--suffix", "_" + label.replace(" ", ""), *extra)  # fmt: skip
        assert code == 0, err
        (rec,) = _records(out)
        shares[label] = rec["heavy_fraction"]
    assert shares["all heavy"] == 1.0 and shares["all light"] == 0.0
    assert 0.0 < shares["default"] < 1.0 and 0.0 < shares["adaptive"] < 1.0
    light = np.asarray(Image.open(tmp_path / "a_alllight.png")).astype(int)
    assert np.abs(light - _expected(weights, _photo(), 4, Routing(k=1e6)).astype(int)).max() <= 1


def test_the_human_line_shows_the_heavy_share(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    code, _, err = _invoke("upscale", src, "-m", weights, "--pcsr-k", "-1e6")
    assert code == 0, err
    assert "100% heavy" in err


@pytest.mark.parametrize("flag", [("--pcsr-k", "0.5"), ("--adaptive",)])
def test_routing_options_need_a_pcsr_model(tmp_path: Path, flag: tuple[str, ...]) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    code, _, err = _invoke("upscale", src, "-m", "bicubic", *flag)
    assert code == 2
    assert "PCSR models only" in err
    assert not (tmp_path / "a_x4.png").exists()


def test_other_models_keep_resizing_to_outscale(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    code, out, err = _invoke("upscale", src, "-m", "bicubic", "--outscale", "2.5", "--json")
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (80, 60) and "heavy_fraction" not in rec


def test_a_fractional_scale_refuses_an_ensemble(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(_photo()).save(src)
    code, _, err = _invoke("upscale", src, "-m", weights, "--outscale", "2.5", "--ensemble", "pad")
    assert code == 2 and "ensemble" in err


# -- API and engine ------------------------------------------------------------------------
def test_api_outscale_routing_and_heavy_fraction(weights: Path) -> None:
    up = api.Upscaler(weights, device="cpu", outscale=2.5, pcsr_k=-1e6)
    assert up.scale == 2.5 and up.heavy_fraction is None
    src = _photo(channels=4)
    out = up.upscale(src)  # alpha is resized to the native size too
    assert out.shape == (60, 80, 4) and up.heavy_fraction == 1.0
    # in 8 bits (no float copy of the output): within a level of the float bicubic
    plane = torch.from_numpy(src[..., 3].astype(np.float32))[None, None]
    ref = F.interpolate(plane, size=(60, 80), mode="bicubic", align_corners=False)
    ref8 = ref.round().clamp(0, 255)[0, 0].numpy().astype(int)
    assert np.abs(out[..., 3].astype(int) - ref8).max() <= 1
    assert api.Upscaler(weights, device="cpu").scale == 4
    with pytest.raises(UsageError, match="PCSR"):
        api.Upscaler("bicubic", device="cpu", adaptive=True)


def test_engine_heavy_fraction_leaves_the_memory_probe_out(weights: Path) -> None:
    desc = descriptor_from_state_dict(read_state_dict(weights), weights.name)
    engine = Upscaler(desc, compute_for(torch.device("cpu"), "fp32", desc), tile=None)
    pixels = _photo(40, 44)
    engine.upscale(pixels)  # the first image pays for the tiler's memory probe
    model = _network(weights)
    with torch.no_grad():
        model(_tensor(pixels))
    assert engine.heavy_fraction == model.last_stats.heavy_fraction
    with pytest.raises(ValueError, match="not a PCSR"):
        bicubic = api.Upscaler("bicubic", device="cpu")._engine.model
        Upscaler(bicubic, compute_for(torch.device("cpu"), "fp32", bicubic), outscale=2.5)
