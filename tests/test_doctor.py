"""``pocketsr doctor`` and ``doctor --json``: on this CPU, and with a fake pair of GPUs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from pocketsr_cli import __version__, sysinfo
from pocketsr_cli.cli import app
from pocketsr_cli.weights.resolve import DEFAULT_MODEL

GiB = 2**30


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    return tmp_path / "home"


def doctor_json() -> dict[str, Any]:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one object
    return json.loads(lines[0])


def doctor_text() -> str:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_on_this_machine(home: Path) -> None:
    report = doctor_json()
    assert report["pocketsr"] == __version__ and report["torch"] == torch.__version__
    assert report["python"].count(".") == 2
    assert report["cuda_available"] == torch.cuda.is_available()
    assert len(report["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert isinstance(report["mps_available"], bool)
    cpu = report["cpu"]
    assert cpu["logical_cores"] == os.cpu_count()
    assert cpu["torch_threads"] == torch.get_num_threads()
    from pocketsr_cli.devices import cpu_bf16_supported

    assert cpu["bf16"] is cpu_bf16_supported()
    assert cpu["physical_cores"] is None or 1 <= cpu["physical_cores"] <= cpu["logical_cores"]
    assert report["default_model"] == {
        "name": DEFAULT_MODEL,
        "where": "bundled",
        "loads_offline": True,  # bundled weights: no network needed
        "error": None,
    }
    assert report["cache_dir"] == str(home / "cache")
    assert report["user_models_dir"] == str(home / "models")
    assert {"spandrel", "pillow-heif"} <= set(report["extras"])
    assert report["extras"]["spandrel"]  # installed by scripts/install.sh
    assert report["skipped_manifests"] == []
    assert report["folder_problems"] == []
    assert report["model_problems"] == []


def test_a_pocketsr_home_that_is_a_file_is_reported(home: Path) -> None:
    """Only ``models import`` refused such a home (and downloads failed late); doctor, the
    "is my set-up right?" command, said nothing."""
    home.write_text("")
    problems = doctor_json()["folder_problems"]
    assert problems == [
        f"cache {home / 'cache'}: {home} is a file, not a folder",
        f"user models {home / 'models'}: {home} is a file, not a folder",
    ]
    lines = [line for line in doctor_text().splitlines() if line.lstrip().startswith("problem")]
    assert len(lines) == 2 and all(f"{home} is a file, not a folder" in x for x in lines)


def test_an_unreadable_user_manifest_is_reported(home: Path) -> None:
    # `models list` warns of it; doctor, the "is my set-up right?" command, says it too
    (home / "models").mkdir(parents=True)
    (home / "models" / "broken.toml").write_text('name = "broken"\nscale = [')
    skipped = doctor_json()["skipped_manifests"]
    assert len(skipped) == 1 and "broken.toml" in skipped[0]
    lines = [line for line in doctor_text().splitlines() if "skipped" in line]
    assert len(lines) == 1 and "broken.toml" in lines[0]


def test_models_whose_names_differ_only_in_case_are_reported(home: Path) -> None:
    """Made by an older version (import refuses such a name now) or by hand: one name on
    macOS and Windows, where they share their files; doctor said nothing."""
    folder = home / "models"
    folder.mkdir(parents=True)
    bundled = Path(sysinfo.__file__).resolve().parents[1] / "models" / "lanczos.toml"
    for stem, name in (("Foo", "Foo"), ("foo", "foo"), ("Lanczos", "Lanczos")):
        text = bundled.read_text(encoding="utf-8").replace('"lanczos"', f'"{name}"')
        (folder / f"{stem}.toml").write_text(text, encoding="utf-8")
    problems = doctor_json()["model_problems"]
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        f"models 'Foo' ({folder / 'Foo.toml'}) and 'foo' ({folder / 'foo.toml'}) differ only"
    )
    assert "'Lanczos'" in problems[1] and "'lanczos'" in problems[1]
    assert "`pocketsr models remove Lanczos`" in problems[1]  # the user's, not the bundled
    lines = [line for line in doctor_text().splitlines() if "differ only in case" in line]
    assert len(lines) == 2 and all(line.lstrip().startswith("problem") for line in lines)


def test_a_default_model_that_cannot_load_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketsr_cli.errors import ModelError
    from pocketsr_cli.weights import resolve

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("weights damaged")

    monkeypatch.setattr(resolve, "resolve_model", broken)
    model = doctor_json()["default_model"]
    assert (model["loads_offline"], model["error"]) == (False, "weights damaged")
    assert "does not load offline: weights damaged" in doctor_text()


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.cuda`` reporting two GPUs: 24 GiB (20 free) and 80 GiB (79 free)."""
    cards = [("Fake RTX", 24, 20, (8, 6)), ("Fake H100", 80, 79, (9, 0))]
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: len(cards))
    monkeypatch.setattr(cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(
            name=cards[i][0],
            total_memory=cards[i][1] * GiB,
            major=cards[i][3][0],
            minor=cards[i][3][1],
        ),
    )
    monkeypatch.setattr(cuda, "mem_get_info", lambda i: (cards[i][2] * GiB, cards[i][1] * GiB))
    monkeypatch.setattr(cuda, "memory_reserved", lambda i=None: 0)
    monkeypatch.setattr(cuda, "memory_allocated", lambda i=None: 0)
    monkeypatch.setattr(torch.version, "cuda", "12.4")


@pytest.mark.usefixtures("two_gpus")
def test_json_lists_every_gpu() -> None:
    report = doctor_json()
    assert report["cuda_available"] is True and report["torch_cuda"] == "12.4"
    assert report["gpus"] == [
        {
            "index": 0,
            "name": "Fake RTX",
            "total_memory": 24 * GiB,
            "free_memory": 20 * GiB,
            "compute_capability": "8.6",
        },
        {
            "index": 1,
            "name": "Fake H100",
            "total_memory": 80 * GiB,
            "free_memory": 79 * GiB,
            "compute_capability": "9.0",
        },
    ]
    assert report["auto_device"] == "cuda:0" and report["auto_free_memory"] == 20 * GiB


@pytest.mark.usefixtures("two_gpus")
def test_text_lists_every_gpu_with_its_memory() -> None:
    text = doctor_text()
    assert text.splitlines()[0].split() == ["pocketsr", __version__]
    assert "2 device(s)" in text and "(CUDA 12.4)" in text
    gpus = [line.split(maxsplit=1) for line in text.splitlines() if line.startswith("  cuda:")]
    assert gpus == [
        ["cuda:0", "Fake RTX, 24.0 GiB total, 20.0 GiB free, compute 8.6"],
        ["cuda:1", "Fake H100, 80.0 GiB total, 79.0 GiB free, compute 9.0"],
    ]


@pytest.mark.usefixtures("two_gpus")
def test_a_gpu_that_will_not_say_its_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(i: int) -> Any:
        raise RuntimeError("CUDA error: busy")

    monkeypatch.setattr(torch.cuda, "mem_get_info", refuse)
    gpus = doctor_json()["gpus"]
    assert [g["free_memory"] for g in gpus] == [None, None]
    assert [g["total_memory"] for g in gpus] == [24 * GiB, 80 * GiB]


CPUINFO = "\n\n".join(
    f"processor\t: {n}\nphysical id\t: {n // 4}\ncore id\t\t: {n % 2}\n" for n in range(8)
)


def test_physical_cores_from_cpuinfo() -> None:
    # 2 packages × 2 cores × 2 hyper-threads.
    assert sysinfo.physical_cores(CPUINFO) == 4
    assert sysinfo.physical_cores("processor\t: 0\n") in (None, *range(1, 1025))  # psutil


def test_physical_cores_on_macos_come_from_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """No /proc/cpuinfo there, and psutil is optional: doctor said "unknown physical"."""
    asked: list[str] = []

    def sysctl(name: str) -> int:
        asked.append(name)
        return 8

    monkeypatch.setattr(sysinfo.sys, "platform", "darwin")
    monkeypatch.setattr(sysinfo, "_sysctl_int", sysctl)
    assert sysinfo.physical_cores("") == 8 and asked == ["hw.physicalcpu"]
    monkeypatch.undo()
    if not sys.platform.startswith("linux"):
        return
    assert sysinfo._sysctl_int("hw.physicalcpu") is None  # glibc has no sysctlbyname
