"""The upscaler factory (``factory.py``) and the options that feed it (``cli/_options.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _zoo import compact_state, save_safetensors
from typer.testing import CliRunner

from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli import app
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.errors import DeviceError, UsageError
from pocketsr_cli.evaluation.bench import bench
from pocketsr_cli.factory import UpscalerSpec, open_upscaler, precision_choice
from pocketsr_cli.inference import Upscaler

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ×2 SRVGG-compact of a few hundred parameters, as a weights file."""
    path = tmp_path_factory.mktemp("model") / "tiny-x2.safetensors"
    save_safetensors(path, compact_state(scale=2))
    return path


@pytest.mark.parametrize(("text", "side"), [("auto", None), (" AUTO ", None), ("0", 0), ("64", 64)])
def test_tile_option_becomes_a_side(text: str, side: int | None) -> None:
    assert opt.tile_side(text) == side


@pytest.mark.parametrize(
    ("text", "message"),
    [("big", "^tile must be auto, 0 or a number of pixels"), ("20", "leaves 0 px of each tile")],
)
def test_bad_tile_option_is_a_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        opt.tile_side(text, 16)


def test_device_then_precision_are_checked() -> None:
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        opt.upscaler_spec("gpu", "nope")
    with pytest.raises(DeviceError, match="unknown precision 'nope'"):
        opt.upscaler_spec("cpu", "nope")
    spec = opt.upscaler_spec(" CPU ", " FP32 ", 0, 8, compile=True, offline=True)
    assert spec == UpscalerSpec(CPU, "fp32", tile=0, overlap=8, compile=True, offline=True)
    assert precision_choice("Auto") == "auto"


def test_open_upscaler_applies_the_spec(tiny_model: Path) -> None:
    spec = UpscalerSpec(CPU, "auto", tile=40, overlap=4)
    desc = spec.resolve(str(tiny_model))
    up = open_upscaler(desc, spec, ensemble=Ensemble("flip8"))
    assert isinstance(up, Upscaler)
    assert str(up.compute) == "cpu fp32"  # auto: fp32 on the CPU
    assert (up.policy.mode, up.policy.tile, up.policy.overlap) == ("fixed", 40, 4)
    assert up.ensemble == Ensemble("flip8")
    for tile, mode in ((None, "auto"), (0, "whole")):
        policy = open_upscaler(desc, UpscalerSpec(CPU, tile=tile)).policy
        assert policy.mode == mode


def test_open_upscaler_gives_the_pixels_of_the_direct_path(tiny_model: Path) -> None:
    """The factory only assembles: the same upscaler as building it by hand."""
    from pocketsr_cli.devices import Compute

    spec = UpscalerSpec(CPU, tile=24, overlap=4)
    img = (np.random.default_rng(0).random((30, 44, 3)) * 255).astype(np.uint8)
    made = open_upscaler(spec.resolve(str(tiny_model)), spec).upscale(img)
    desc = spec.resolve(str(tiny_model))
    by_hand = Upscaler(desc, Compute(CPU, "fp32"), tile=24, overlap=4).upscale(img)
    assert np.array_equal(made, by_hand)


def test_a_tile_too_small_for_the_overlap_is_refused(tiny_model: Path) -> None:
    spec = UpscalerSpec(CPU, tile=20, overlap=16)
    with pytest.raises(UsageError, match="larger than twice"):
        open_upscaler(spec.resolve(str(tiny_model)), spec)


def test_bench_reports_the_warm_up_apart(tiny_model: Path) -> None:
    report = bench([str(tiny_model)], UpscalerSpec(CPU), (24, 16), 2)
    (result,) = report.models
    assert result.warmup_seconds > 0 and len(result.seconds) == 2
    assert report.compile is False


def test_bench_cli_has_a_warm_up_column_and_field() -> None:
    runner = CliRunner()
    args = ["bench", "-m", "bicubic", "--size", "32x24", "--repeat", "1", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["compile"] is False and record["warmup_seconds"] >= 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "warm-up s" in result.stdout


def _compiler_available() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on the CPU needs a C compiler")
def test_bench_compile_reports_the_compile_as_warm_up(tiny_model: Path) -> None:
    """torch.compile on the CPU (tens of seconds on a small machine): the warm-up carries
    the compiling, the timed runs are the steady state, and no fallback warning."""
    runner = CliRunner()
    args = ["bench", "-m", str(tiny_model), "--size", "24x16", "--repeat", "2", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--tile", "0", "--compile", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["compile"] is True
    assert record["warmup_seconds"] > max(record["seconds"])
    spec = UpscalerSpec(CPU, tile=0, compile=True)
    warnings: list[str] = []
    up = open_upscaler(spec.resolve(str(tiny_model)), spec, on_warning=warnings.append)
    up.upscale(np.zeros((16, 24, 3), np.uint8))
    assert up.compile_seconds > 0 and warnings == []  # it compiled, no eager fallback
