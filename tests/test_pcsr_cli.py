"""PCSR through the product: native scales (factors and per-image sizes, in one process
and in worker processes), routing options and the heavy share, by the CLI (Typer's
runner), the Python API and the inference engine, on a tiny random model."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _imagegen import make_photo_like
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from pocketsr_cli import api
from pocketsr_cli.archs.pcsr import PCSR, PCSRConfig, Routing, build
from pocketsr_cli.archs.pcsr.config import NO_MEAN
from pocketsr_cli.archs.pcsr.grid import MAX_DENOMINATOR
from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.cli import app
from pocketsr_cli.devices import compute_for
from pocketsr_cli.errors import UsageError
from pocketsr_cli.factory import UpscalerSpec, routing_k
from pocketsr_cli.imageio import read_provenance_text
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.manifest import bundled_dir
from pocketsr_cli.parallel import ModelSpec
from pocketsr_cli.pipeline import resize_output
from pocketsr_cli.sizing import Target, TargetKind, native_ratio
from pocketsr_cli.weights.load import descriptor_from_state_dict, read_state_dict
from pocketsr_cli.weights.resolve import open_family

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


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def _saved_photo(folder: Path) -> Path:
    """:func:`_photo` saved as ``folder/a.png``."""
    src = folder / "a.png"
    Image.fromarray(_photo()).save(src)
    return src


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None]


def _network(weights: Path) -> PCSR:
    module = descriptor_from_state_dict(read_state_dict(weights), weights.name).module
    assert isinstance(module, PCSR)
    return module.eval()


def _expected(
    weights: Path, pixels: np.ndarray, scale: float | Fraction, routing: Routing
) -> np.ndarray:
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
    src = _saved_photo(tmp_path)
    code, out, err = _invoke("upscale", src, "-m", weights, "-s", "3", "--json", "-q")
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (96, 72)
    assert "variant" not in err
    got = np.asarray(Image.open(rec["output"])).astype(int)
    assert np.abs(got - _expected(weights, _photo(), 3, Routing()).astype(int)).max() <= 1


def test_the_bundled_pcsr_x4_draws_by_name_at_a_fractional_scale(tmp_path: Path) -> None:
    """``-m pcsr-x4`` (the bundled weights, no file path) draws ×2.5 itself: the output is
    the network's own ×2.5 rendering, not a ×4 result resized, and the record names the
    model and its heavy share."""
    src = tmp_path / "photo.png"
    pixels = make_photo_like(40, 56)
    Image.fromarray(pixels).save(src)
    code, out, err = _invoke("upscale", src, "-m", "pcsr-x4", "--outscale", "2.5", "--json", "-q")
    assert code == 0, err
    (rec,) = _records(out)
    assert rec["model"] == "pcsr-x4" and (rec["out_width"], rec["out_height"]) == (140, 100)
    assert 0.0 < rec["heavy_fraction"] <= 1.0
    got = np.asarray(Image.open(rec["output"])).astype(int)
    bundled = bundled_dir() / "pcsr-x4.safetensors"
    expected = _expected(bundled, pixels, Fraction(5, 2), Routing()).astype(int)
    assert np.abs(got - expected).max() <= 1


_KINDS: dict[str, TargetKind] = {
    "--width": "width",
    "--height": "height",
    "--long-edge": "long_edge",
}
_SIZE_CASES = {  # option, value, input (h, w), tile, the factor drawn, the output (w, h)
    "width 2.5": ("--width", "80", (24, 32), "0", Fraction(5, 2), (80, 60)),
    "long edge 25/16": ("--long-edge", "50", (24, 32), "0", Fraction(25, 16), (50, 38)),
    "height x5": ("--height", "80", (16, 20), "0", Fraction(5), (100, 80)),
    "width 52/21": ("--width", "250", (40, 101), "0", Fraction(52, 21), (250, 99)),
    "width tiled": ("--width", "80", (60, 64), "52", Fraction(5, 4), (80, 75)),
}


@pytest.mark.parametrize("case", list(_SIZE_CASES), ids=list(_SIZE_CASES))
def test_size_targets_render_natively_at_each_images_factor(
    weights: Path, tmp_path: Path, case: str
) -> None:
    """--width/--height/--long-edge: the network draws the exact size at the image's own
    factor (the smallest denominator within a tenth of a pixel of it: 52/21 for 250/101),
    untiled or in exact tiles, and not the x4 result resized."""
    option, value, (h, w), tile, ratio, size = _SIZE_CASES[case]
    src = tmp_path / "a.png"
    pixels = _photo(h, w)
    Image.fromarray(pixels).save(src)
    target = Target(_KINDS[option], float(value))
    assert native_ratio(w, h, target, MAX_DENOMINATOR) == ratio
    code, out, err = _invoke("upscale", src, "-m", weights, option, value,
                             "--tile", tile, "--tile-overlap", "4", "--json", "-q")  # fmt: skip
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == size == target.size_for(w, h)
    assert Path(rec["output"]).name == f"a_{target.label}.png"
    got = np.asarray(Image.open(rec["output"])).astype(int)
    drawn = _expected(weights, pixels, ratio, Routing())
    assert drawn.shape[:2] == size[::-1]  # the network itself made that size
    assert np.abs(got - drawn.astype(int)).max() <= 1
    resized = resize_output(_expected(weights, pixels, 4, Routing()), size).astype(int)
    assert np.abs(got - resized).max() > 1  # not what running x4 and resizing gives
    assert 0.0 < rec["heavy_fraction"] < 1.0


def test_a_size_run_draws_each_image_at_its_own_factor(weights: Path, tmp_path: Path) -> None:
    """One run, three inputs: 32 px wide drawn at 2.5, 101 px at 52/21, and 103 x 51,
    which no fraction the network takes makes 104 x 51 exactly: drawn at 101/100 (104 x 52)
    and resized by a row."""
    src = tmp_path / "in"
    src.mkdir()
    photos = {"a": _photo(24, 32), "b": _photo(40, 101), "c": _photo(51, 103)}
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(src / f"{name}.png")
    code, out, err = _invoke("upscale", src, "-o", tmp_path / "out", "-m", weights,
                             "--width", "104", "--tile", "0", "--json", "-q")  # fmt: skip
    assert code == 0, err
    records = {Path(r["input"]).stem: r for r in _records(out)}
    assert {k: (r["out_width"], r["out_height"]) for k, r in records.items()} == {
        "a": (104, 78),
        "b": (104, 41),
        "c": (104, 51),
    }
    target = Target("width", 104)
    for name, pixels in photos.items():
        h, w = pixels.shape[:2]
        ratio = native_ratio(w, h, target, MAX_DENOMINATOR)
        assert ratio is not None
        drawn = resize_output(_expected(weights, pixels, ratio, Routing()), target.size_for(w, h))
        got = np.asarray(Image.open(records[name]["output"])).astype(int)
        assert np.abs(got - drawn.astype(int)).max() <= 1, name
    assert native_ratio(103, 51, target, MAX_DENOMINATOR) == Fraction(101, 100)


def test_a_size_below_the_input_runs_the_model_and_shrinks(weights: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    pixels = _photo(24, 32)
    Image.fromarray(pixels).save(src)
    code, out, err = _invoke("upscale", src, "-m", weights, "--width", "20", "--json", "-q")  # x4
    assert code == 0, err
    (rec,) = _records(out)
    got = np.asarray(Image.open(rec["output"])).astype(int)
    shrunk = resize_output(_expected(weights, pixels, 4, Routing()), (20, 15)).astype(int)
    assert got.shape[:2] == (15, 20) and np.abs(got - shrunk).max() <= 1


def test_a_size_target_with_an_ensemble_runs_x4_and_resizes_with_a_note(
    weights: Path, tmp_path: Path
) -> None:
    src = _saved_photo(tmp_path)
    code, out, err = _invoke("upscale", src, "-m", weights, "--width", "80",
                             "--ensemble", "pad", "--json")  # fmt: skip
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (80, 60)
    assert "an ensemble runs" in err and "×4" in err


@pytest.mark.parametrize("option", ["--width", "--long-edge"])
def test_other_models_keep_resizing_to_a_size(tmp_path: Path, option: str) -> None:
    """bicubic runs at the whole factor that reaches the size (x3 for 2.5), then resizes."""
    src = tmp_path / "a.png"
    pixels = _photo()
    Image.fromarray(pixels).save(src)
    code, out, err = _invoke("upscale", src, "-m", "bicubic", option, "80", "--json")
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (80, 60) and "heavy_fraction" not in rec
    x3 = api.Upscaler("bicubic", scale=3, device="cpu").upscale(pixels)
    got = np.asarray(Image.open(rec["output"]))
    assert np.array_equal(got, resize_output(x3, (80, 60)))


@pytest.mark.parametrize(
    "target", [("--width", "80"), ("--outscale", "2.5")], ids=["width", "outscale"]
)
def test_worker_processes_draw_natively_too(
    weights: Path, tmp_path: Path, target: tuple[str, str]
) -> None:
    """--devices cpu,cpu writes what one process writes (no more "worker processes run
    ×4 and resize" note)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(24, 32)).save(src / "a.png")
    Image.fromarray(_photo(40, 44)).save(src / "b.png")
    code1, out1, err1 = _invoke("upscale", src, "-o", tmp_path / "one", "-m", weights,
                                *target, "--tile", "0", "--json")  # fmt: skip
    code2, out2, err2 = _invoke("upscale", src, "-o", tmp_path / "two", "-m", weights,
                                *target, "--tile", "0", "--json",
                                "--devices", "cpu,cpu")  # fmt: skip
    assert (code1, code2) == (0, 0), err1 + err2
    assert "worker processes" not in err2
    for name in ("a", "b"):
        one, two = tmp_path / "one" / f"{name}.png", tmp_path / "two" / f"{name}.png"
        assert np.array_equal(np.asarray(Image.open(one)), np.asarray(Image.open(two)))
    assert [r["heavy_fraction"] for r in _records(out2)] == [
        r["heavy_fraction"] for r in _records(out1)
    ]


def test_a_worker_model_spec_opens_the_native_drawing(weights: Path) -> None:
    """What --devices workers and --ray actors build from (parallel.ModelSpec)."""
    settings = UpscalerSpec(device=torch.device("cpu"), tile=0)
    target = Target("width", 80)
    pixels = _photo(24, 32)
    (sized,) = ModelSpec(str(weights), (4,), settings, native_sizes=True)("cpu", print)
    assert sized.scale == 4 and sized.upscaler.scale_for(32, 24, target) == 3  # type: ignore[attr-defined]
    assert sized.upscaler.upscale_for(pixels, target).shape == (60, 80, 3)  # type: ignore[attr-defined]
    (fixed,) = ModelSpec(str(weights), (4,), settings, outscale=2.5)("cpu", print)
    assert fixed.scale == 3 and fixed.upscaler.upscale(pixels).shape == (60, 80, 3)


def test_routing_options_set_the_heavy_share(weights: Path, tmp_path: Path) -> None:
    src = _saved_photo(tmp_path)
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


def test_another_routing_is_other_settings_for_an_existing_output(
    weights: Path, tmp_path: Path
) -> None:
    src = _saved_photo(tmp_path)
    code, out, err = _invoke("upscale", src, "-m", weights, "--pcsr-k", "0.02", "--json", "-q")
    assert code == 0, err
    output = Path(_records(out)[0]["output"])
    assert json.loads(read_provenance_text(output) or "")["routing"] == "k=0.02"
    code, out, _ = _invoke("upscale", src, "-m", weights, "--pcsr-k", "0.02", "--json", "-q")
    assert _records(out)[0]["reason_code"] == "exists"
    for extra, label in [(("--pcsr-k", "0.5"), "k=0.5"), (("--adaptive",), "adaptive")]:
        code, out, _ = _invoke("upscale", src, "-m", weights, *extra, "--json", "-q")
        (rec,) = _records(out)
        assert code == 0 and rec["reason_code"] == "different-settings"
        assert f"routing k=0.02 → {label}" in rec["reason"]


def test_the_human_line_shows_the_heavy_share(weights: Path, tmp_path: Path) -> None:
    src = _saved_photo(tmp_path)
    code, _, err = _invoke("upscale", src, "-m", weights, "--pcsr-k", "-1e6")
    assert code == 0, err
    assert "100% heavy" in err


@pytest.mark.parametrize("flag", [("--pcsr-k", "0.5"), ("--adaptive",)])
def test_routing_options_need_a_pcsr_model(tmp_path: Path, flag: tuple[str, ...]) -> None:
    src = _saved_photo(tmp_path)
    code, _, err = _invoke("upscale", src, "-m", "bicubic", *flag)
    assert code == 2
    assert "PCSR models only" in err
    assert not (tmp_path / "a_x4.png").exists()


@pytest.mark.parametrize("k", ["nan", "inf", "-inf"])
def test_a_routing_knob_that_is_no_number_is_a_usage_error(
    weights: Path, tmp_path: Path, k: str
) -> None:
    """``nan`` and ``inf``, which float() reads, are the user's mistake (exit 2), not an
    internal error, and the API says so in its own keyword."""
    src = _saved_photo(tmp_path)
    code, _, err = _invoke("upscale", src, "-m", weights, "--pcsr-k", k)
    assert code == 2, err
    assert f"--pcsr-k takes a number, not '{k}'" in err and "bug" not in err
    with pytest.raises(UsageError, match=r"^pcsr_k must be a finite number, not"):
        api.Upscaler(weights, device="cpu", pcsr_k=float(k))
    with pytest.raises(UsageError, match=r"^pcsr_k must be a finite number, not '0\.1'"):
        api.Upscaler(weights, device="cpu", pcsr_k="0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [float("nan"), float("inf"), "0.1", True, [0.5]])
def test_one_check_of_the_routing_knob_names_it_in_each_spelling(k: object) -> None:
    """The command line and the API check ``k`` in one place, the core's, whose message
    names the option as the face in force spells it."""
    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.spelling import spelled

    with pytest.raises(UsageError) as api_error:
        routing_k(k)
    with spelled(flag_spelling), pytest.raises(UsageError) as cli_error:
        routing_k(k)
    assert str(api_error.value) == f"pcsr_k must be a finite number, not {k!r}"
    assert str(cli_error.value) == f"--pcsr-k must be a finite number, not {k!r}"
    assert routing_k(None) is None and routing_k(-2) == -2.0 and routing_k(0.5) == 0.5


def test_one_check_that_routing_goes_with_pcsr_models_names_the_options_in_each_spelling() -> None:
    """``routing_for`` is the one check the command line and the API make: its message
    names both options as the face in force spells them."""
    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.factory import routing_for
    from pocketsr_cli.spelling import spelled

    bicubic = open_family("bicubic").load(4)
    with pytest.raises(UsageError) as api_error:
        routing_for([bicubic], 0.5, False)
    with spelled(flag_spelling), pytest.raises(UsageError) as cli_error:
        routing_for([bicubic], None, True)
    assert str(api_error.value) == (
        "pcsr_k and adaptive=True apply to PCSR models only, not to bicubic"
    )
    assert str(cli_error.value) == (
        "--pcsr-k and --adaptive apply to PCSR models only, not to bicubic"
    )
    assert routing_for([bicubic], None, False) is None
    with pytest.raises(UsageError):
        api.Upscaler("bicubic", device="cpu", adaptive=True)


def test_routing_with_pcsr_and_other_models_names_only_the_others() -> None:
    """``-m pcsr-x4 -m bicubic --pcsr-k 0.5`` said "PCSR models only, not to pcsr-x4,
    bicubic": the PCSR model named among those the options do not apply to."""
    import dataclasses

    from pocketsr_cli.factory import routing_for

    bicubic = open_family("bicubic").load(4)
    pcsr = dataclasses.replace(bicubic, name="pcsr-x4", family="pcsr")
    with pytest.raises(UsageError) as error:
        routing_for([pcsr, bicubic], 0.5, False)
    assert str(error.value).endswith("apply to PCSR models only, not to bicubic")


def test_other_models_keep_resizing_to_outscale(tmp_path: Path) -> None:
    src = _saved_photo(tmp_path)
    code, out, err = _invoke("upscale", src, "-m", "bicubic", "--outscale", "2.5", "--json")
    assert code == 0, err
    (rec,) = _records(out)
    assert (rec["out_width"], rec["out_height"]) == (80, 60) and "heavy_fraction" not in rec


def test_a_fractional_scale_refuses_an_ensemble(weights: Path, tmp_path: Path) -> None:
    src = _saved_photo(tmp_path)
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
    ref = F.interpolate(plane, size=(60, 80), mode="bicubic", align_corners=False, antialias=True)
    ref8 = ref.round().clamp(0, 255)[0, 0].numpy().astype(int)
    assert np.abs(out[..., 3].astype(int) - ref8).max() <= 1
    assert api.Upscaler(weights, device="cpu").scale == 4
    with pytest.raises(UsageError, match="PCSR"):
        api.Upscaler("bicubic", device="cpu", adaptive=True)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("outscale", [3.0, 2.5])
def test_alpha_at_a_native_scale_is_drawn_as_every_other_models(
    weights: Path, dtype: type, outscale: float
) -> None:
    """PCSR drew alpha at a factor other than its own with torch's plain bicubic
    (a = -0.75), other models' with Keys' a = -0.5 (``Resize``): at -s 3 a 0 -> 128 edge
    overshot to 142 where theirs stop at 137 (ringing 5 levels further).  Now the same
    filter: at a whole factor the very ``Resize`` other networks' alpha goes through, at a
    fractional one the same kernel at that size."""
    src = _photo(24, 32, channels=4).astype(dtype)
    peak = np.iinfo(dtype).max
    src[..., 3] = 0
    src[6:18, 8:24, 3] = peak // 2 + 1
    out = api.Upscaler(weights, device="cpu", outscale=outscale).upscale(src)[..., 3]
    plane = torch.from_numpy(src[..., 3].astype(np.float32) / peak)[None, None]
    if outscale == 3.0:
        ref = Resize("bicubic", 3)(plane)
    else:
        ref = F.interpolate(plane, size=(60, 80), mode="bicubic", antialias=True)
    expected = ref.mul(peak).round().clamp(0, peak)[0, 0].numpy()
    assert np.abs(out.astype(np.float64) - expected).max() <= (0 if outscale == 3.0 else 1)


def test_engine_native_sizes(weights: Path) -> None:
    """upscale_for draws each image at its factor (its memory estimate takes the factor
    rounded up), and returns to the network's own factor after it; plain upscale is x4."""
    desc = descriptor_from_state_dict(read_state_dict(weights), weights.name)
    compute = compute_for(torch.device("cpu"), "fp32", desc)
    engine = Upscaler(desc, compute, tile=0, native_sizes=True)
    wide, small = Target("width", 200), Target("width", 16)
    pixels = _photo(24, 32)
    assert engine.scale == 4
    assert engine.scale_for(32, 24, wide) == 7 and engine.scale_for(32, 24, small) == 4
    out = engine.upscale_for(pixels, wide)
    assert out.shape == (150, 200, 3)
    assert np.abs(out.astype(int) - _expected(weights, pixels, 6.25, Routing())).max() <= 1
    assert engine.upscale(pixels).shape == (96, 128, 3)
    assert engine.upscale_for(pixels, small).shape == (96, 128, 3)  # below 1: x4
    with pytest.raises(UsageError, match="ensemble"):
        Upscaler(desc, engine.compute, native_sizes=True, ensemble="pad")
    with pytest.raises(ValueError, match="not a PCSR"):
        bicubic = api.Upscaler("bicubic", device="cpu")._engine.model
        Upscaler(bicubic, compute_for(torch.device("cpu"), "fp32", bicubic), native_sizes=True)


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


@pytest.mark.parametrize("ratio", [Fraction(100), Fraction(64), Fraction(100, 3), Fraction(25, 4)])
def test_the_memory_probe_draws_a_small_output_at_any_factor(
    weights: Path, ratio: Fraction
) -> None:
    """The tiler's memory probe (two passes, the larger 1.5 x the side of the smaller) is
    sized in the tiler's pixels: at a large native factor a probe of 64 of them drew 6400 x
    6400 and 9600 x 9600 output pixels, ten minutes for a 1 x 1 image asked --width 100 of
    pcsr-x4.  Its output side stays about that of 64 pixels at x4."""
    desc = descriptor_from_state_dict(read_state_dict(weights), weights.name)
    engine = Upscaler(desc, compute_for(torch.device("cpu"), "fp32", desc), native_sizes=True)
    rendering = engine._rendering_at(ratio)
    assert rendering.packing is not None
    probe = max(rendering.policy.probe_side, 8)  # measure_memory's smallest
    assert probe * ratio.numerator <= 8 * 100  # output pixels per side of the smaller probe
    assert engine._rendering_at(Fraction(5, 2)).policy.probe_side == 32  # x2.5: as before
    if ratio == 64:  # end to end, at a factor the test affords: 1 x 1 asked 40 wide
        drawn: list[int] = []
        engine.model.module.register_forward_hook(
            lambda _m, _args, y: drawn.append(y.shape[-2] * y.shape[-1])
        )
        out = engine.upscale_for(np.full((1, 1, 3), 90, np.uint8), Target("width", 40))
        assert out.shape == (40, 40, 3) and max(drawn) <= 480 * 480
