"""``auto`` precision: which of fp16, bf16 and fp32 a device and a model get."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from pocketsr_cli import devices
from pocketsr_cli.devices import choose_precision
from pocketsr_cli.errors import DeviceError, UsageError

CUDA = torch.device("cuda")


@pytest.fixture
def ampere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_bf16_supported", lambda device: True)


@pytest.mark.parametrize(
    ("half", "bf16", "expected"),
    [(True, True, "fp16"), (True, False, "fp16"), (False, True, "bf16"), (False, False, "fp32")],
)
def test_auto_on_a_bf16_capable_cuda_device(
    ampere: None, half: bool, bf16: bool, expected: str
) -> None:
    assert choose_precision("auto", CUDA, supports_half=half, supports_bf16=bf16) == expected


def test_auto_without_native_bf16_falls_back_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cuda_bf16_supported", lambda device: False)
    assert choose_precision("auto", CUDA, supports_half=False, supports_bf16=True) == "fp32"


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_auto_never_picks_bf16_off_cuda(ampere: None, device: str) -> None:
    chosen = choose_precision("auto", torch.device(device), supports_half=False, supports_bf16=True)
    assert chosen == "fp32"


def test_explicit_requests_are_honoured_and_typos_refused() -> None:
    cpu = torch.device("cpu")
    assert choose_precision(" BF16 ", cpu, supports_half=False, supports_bf16=False) == "bf16"
    with pytest.raises(DeviceError, match="choose one of"):
        choose_precision("half", cpu, supports_half=True, supports_bf16=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer without CUDA")
def test_bf16_probe_without_cuda_says_no() -> None:
    assert devices.cuda_bf16_supported(CUDA) is False


# ---------------------------------------------------------------------------------------
# bf16 on a CPU that computes it natively


@pytest.fixture
def native_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_bf16_supported", lambda: True)


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("cpu_bf16", "bf16", "expected"),
    [(True, True, "bf16"), (False, True, "fp32"), (True, False, "fp32")],
)
def test_auto_on_a_native_bf16_cpu_picks_bf16_for_the_models_faster_in_it(
    native_bf16_cpu: None, cpu_bf16: bool, bf16: bool, expected: str
) -> None:
    chosen = choose_precision(
        "auto", CPU, supports_half=True, supports_bf16=bf16, cpu_bf16=cpu_bf16
    )
    assert chosen == expected


def test_auto_on_a_cpu_without_native_bf16_stays_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_bf16_supported", lambda: False)
    chosen = choose_precision("auto", CPU, supports_half=True, supports_bf16=True, cpu_bf16=True)
    assert chosen == "fp32"


def test_the_default_model_runs_in_bf16_by_auto_but_not_for_eval(native_bf16_cpu: None) -> None:
    from pocketsr_cli.weights.resolve import resolve_model

    desc = resolve_model(None, None, offline=True)
    assert desc.cpu_bf16
    assert devices.compute_for(CPU, "auto", desc).precision == "bf16"
    assert devices.compute_for(CPU, "auto", desc, cpu_bf16=False).precision == "fp32"
    pcsr = resolve_model("pcsr-x4", None, offline=True)  # slower in bf16 on a CPU: not marked
    assert not pcsr.cpu_bf16 and devices.compute_for(CPU, "auto", pcsr).precision == "fp32"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", False), ("1", True), ("yes", True), (" Off ", False), ("TRUE", True), ("n", False)],
)
def test_the_environment_overrides_the_cpu_probe(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    """POCKETSR_OFFLINE's yes and no words; only 0 and 1 were read, any other value
    silently left the choice to the CPU."""
    monkeypatch.setattr(devices, "_cpu_computes_bf16", lambda: not expected)
    monkeypatch.setenv(devices.CPU_BF16_ENV, value)
    assert devices.cpu_bf16_supported() is expected


def test_the_cpu_probe_answers_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devices.CPU_BF16_ENV, raising=False)
    devices._cpu_computes_bf16.cache_clear()
    assert isinstance(devices.cpu_bf16_supported(), bool)


def test_a_value_that_is_neither_yes_nor_no_is_refused_at_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """By the command (exit 2, one line naming the variable, nothing written) and by the
    Python API's Upscaler, before any model is opened."""
    from typer.testing import CliRunner

    from pocketsr_cli import Upscaler
    from pocketsr_cli.cli import app

    monkeypatch.setenv(devices.CPU_BF16_ENV, "maybe")
    with pytest.raises(UsageError, match=r"^POCKETSR_CPU_BF16='maybe' is neither yes nor no"):
        devices.cpu_bf16_supported()
    with pytest.raises(UsageError, match=r"^POCKETSR_CPU_BF16='maybe' is neither yes nor no"):
        Upscaler("bicubic", device="cpu")
    Image.new("RGB", (16, 12)).save(tmp_path / "a.png")
    for command in (
        ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", "bicubic"],
        ["eval", str(tmp_path), "-m", "bicubic"],
        ["bench", "-m", "bicubic", "--size", "32x24", "--repeat", "1"],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith(
            "error (usage): POCKETSR_CPU_BF16='maybe' is neither yes nor no"
        ), (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
