"""``auto`` precision: which of fp16, bf16 and fp32 a device and a model get."""

from __future__ import annotations

import pytest
import torch

from pocketsr_cli import devices
from pocketsr_cli.devices import choose_precision
from pocketsr_cli.errors import DeviceError

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


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("1", True)])
def test_the_environment_overrides_the_cpu_probe(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(devices.CPU_BF16_ENV, value)
    devices.cpu_bf16_supported.cache_clear()
    try:
        assert devices.cpu_bf16_supported() is expected
    finally:
        devices.cpu_bf16_supported.cache_clear()


def test_the_cpu_probe_answers_without_raising() -> None:
    devices.cpu_bf16_supported.cache_clear()
    assert isinstance(devices.cpu_bf16_supported(), bool)
