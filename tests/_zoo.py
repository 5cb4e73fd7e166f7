"""Tiny seeded models and manifests for the resolver, manifest and ``models`` CLI tests."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from pocketsr_cli import manifest
from pocketsr_cli.archs.pcsr import PCSR, PCSRConfig, build
from pocketsr_cli.manifest import Hints, Meta, ModelSpec, WeightsSpec, dump_manifest

StateDict = dict[str, torch.Tensor]


def compact_state(scale: int = 2, nf: int = 4, num_conv: int = 1, seed: int = 0) -> StateDict:
    """An SRVGG-compact (spandrel ``Compact``) state dict: a few hundred parameters."""
    gen = torch.Generator().manual_seed(seed)
    sd: StateDict = {}

    def conv(key: str, out_ch: int, in_ch: int) -> None:
        sd[f"{key}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.1
        sd[f"{key}.bias"] = torch.randn(out_ch, generator=gen) * 0.05

    conv("body.0", nf, 3)
    for i in range(num_conv + 1):
        sd[f"body.{2 * i + 1}.weight"] = torch.rand(nf, generator=gen) * 0.3
        if i < num_conv:
            conv(f"body.{2 * i + 2}", nf, nf)
    conv(f"body.{2 * num_conv + 2}", 3 * scale * scale, nf)
    return sd


def params_of(sd: StateDict) -> int:
    return sum(t.numel() for t in sd.values())


def save_safetensors(path: Path, sd: StateDict) -> bytes:
    """Write ``sd`` to ``path`` and return the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path.read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(
    folder: Path,
    name: str,
    data: bytes | None,
    *,
    file: str | None = None,
    urls: tuple[str, ...] = (),
    family: str = "spandrel:Compact",
    scale: int = 2,
    params: int | None = None,
    build: dict[str, Any] | None = None,
    hints: Hints | None = None,
) -> ModelSpec:
    """Write ``folder/NAME.toml`` describing weights ``data`` (size and digest from it)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(
        name=name,
        family=family,
        scale=scale,
        path=folder / f"{name}.toml",
        build=build or {},
        description=f"test model {name}",
        weights=None
        if data is None
        else WeightsSpec(
            file=file or f"{name}.safetensors", sha256=sha256(data), size=len(data), urls=urls
        ),
        hints=hints or Hints(),
        meta=Meta(license="CC0-1.0", source="tests", params=params),
    )
    spec.path.write_text(dump_manifest(spec), encoding="utf-8")
    return spec


def use_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point POCKETSR_HOME at ``tmp_path/home``, online, and return it."""
    home = tmp_path / "home"
    monkeypatch.setenv("POCKETSR_HOME", str(home))
    monkeypatch.delenv("POCKETSR_OFFLINE", raising=False)
    return home


def use_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replace the bundled folder with ``tmp_path/bundled`` holding copies of the real
    bundled manifests (so real names stay taken), and return it."""
    real = manifest.bundled_dir()
    folder = tmp_path / "bundled"
    folder.mkdir()
    for path in real.glob("*.toml"):
        (folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(manifest, "bundled_dir", lambda: folder)
    return folder


def replace_spec(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """``spec`` with ``changes``, written back to its manifest file."""
    new = dataclasses.replace(spec, **changes)
    new.path.write_text(dump_manifest(new), encoding="utf-8")
    return new


def he_pcsr(config: PCSRConfig, scale: int = 4, seed: int = 0) -> PCSR:
    """A PCSR network of ``config`` with He-normal weights, in eval mode.  PyTorch's default
    init shrinks the signal layer by layer, so distant pixels would stop mattering long
    before the receptive radius and tiling or routing tests could not catch a radius or a
    path that is wrong."""
    torch.manual_seed(seed)
    model = build(config, scale).eval()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return model
