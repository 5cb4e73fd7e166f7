"""Model manifests (``models/*.toml``) turned into typed, validated specs.

A manifest names a model and says how to build it: its architecture ``family`` and
``[build]`` parameters, its ``scale``, where its weights are (``[weights]``: file, sha256,
size, urls) and hints for inference (``[hints]``) and people (``[meta]``).  Parameter-free
models (``family = "resize"``) have no ``[weights]`` table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketsr_cli.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from and how to check them."""

    file: str
    sha256: str
    size: int | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hints:
    """Inference facts the pipeline relies on."""

    tiling: bool = True
    multiple_of: int = 1
    minimum: int = 1
    fp16: bool = True
    bf16: bool = True
    default_tile: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry."""

    name: str
    family: str
    scale: int
    path: Path
    build: dict[str, Any] = field(default_factory=dict)
    any_scale: bool = False
    description: str = ""
    weights: WeightsSpec | None = None
    hints: Hints = field(default_factory=Hints)
    meta: dict[str, Any] = field(default_factory=dict)


def bundled_dir() -> Path:
    """Folder of the manifests (and small weights) that ship with pocketsr.

    An installed wheel carries them in ``pocketsr_cli/_bundled``; a source checkout or an
    editable install reads the repository's ``models/`` folder.
    """
    here = Path(__file__).resolve().parent
    packaged = here / "_bundled"
    return packaged if packaged.is_dir() else here.parent / "models"


def parse_manifest(path: Path) -> ModelSpec:
    """Read and validate one manifest.

    Raises:
        ModelError: unreadable TOML, missing or mistyped fields.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"bad model manifest {path}: {exc}") from exc
    try:
        weights = data.get("weights")
        hints = data.get("hints", {})
        return ModelSpec(
            name=str(data["name"]),
            family=str(data["family"]),
            scale=int(data["scale"]),
            path=path,
            build=dict(data.get("build", {})),
            any_scale=bool(data.get("any_scale", False)),
            description=str(data.get("description", "")),
            weights=None
            if weights is None
            else WeightsSpec(
                file=str(weights["file"]),
                sha256=str(weights["sha256"]).lower(),
                size=int(weights["size"]) if "size" in weights else None,
                urls=tuple(str(u) for u in weights.get("urls", ())),
            ),
            hints=Hints(
                tiling=bool(hints.get("tiling", True)),
                multiple_of=int(hints.get("multiple_of", 1)),
                minimum=int(hints.get("minimum", 1)),
                fp16=bool(hints.get("fp16", True)),
                bf16=bool(hints.get("bf16", True)),
                default_tile=int(hints["default_tile"]) if "default_tile" in hints else None,
            ),
            meta=dict(data.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"bad model manifest {path}: missing or invalid field {exc}") from exc


def load_manifests(folders: list[Path] | None = None) -> dict[str, ModelSpec]:
    """All manifests in ``folders`` (default: the bundled folder), keyed by name.

    Later folders do not override earlier ones: the first definition of a name wins.
    """
    specs: dict[str, ModelSpec] = {}
    for folder in folders if folders is not None else [bundled_dir()]:
        for path in sorted(folder.glob("*.toml")):
            spec = parse_manifest(path)
            specs.setdefault(spec.name, spec)
    return specs
