"""Reading weight files into state dicts, and state dicts into ready models.

Loading never runs code from a model file: ``.safetensors`` are read as tensors,
``.pth/.pt/.ckpt`` with ``torch.load(weights_only=True)``; a pickle that needs more than
tensors and plain containers is refused with an explanation.  Common wrappers
(``params_ema``, ``params``, ``state_dict``, ``model``, DataParallel's ``module.``) are
removed so that detection sees the bare parameter names.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements
from pocketsr_cli.errors import ModelError

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
_GLOBAL_RE = re.compile(r"GLOBAL (\S+)")
_WRAPPERS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, wrappers removed.

    Raises:
        ModelError: missing, unreadable, not a weights file, or a pickle needing code.
    """
    import torch

    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path), device="cpu")
        else:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler reports both a file that is no pickle at all and
        # one that names a class or function ("GLOBAL ..."); only the latter needs code.
        needed = _GLOBAL_RE.search(str(exc))
        if needed is None:
            raise ModelError(
                f"cannot read weights {path.name}: not a PyTorch checkpoint or safetensors file"
            ) from exc
        raise ModelError(
            f"{path.name} is a pickle that needs to run code to load (it references "
            f"{needed.group(1)}: a whole pickled model or training state, not just weights); "
            "pocketsr never runs code from model files. Re-save its state_dict, or convert "
            "it to .safetensors"
        ) from exc
    except Exception as exc:  # corrupt zip, truncated file, safetensors header error...
        raise ModelError(f"cannot read weights {path.name}: {_first_line(exc)}") from exc
    return canonical_state_dict(raw, path.name)


def canonical_state_dict(raw: Any, label: str = "weights") -> dict[str, torch.Tensor]:
    """Unwrap ``{"params_ema": {...}}``-style containers and strip ``module.`` prefixes."""
    import torch

    obj = raw
    for _ in range(3):  # wrappers nest at most a couple of levels deep in practice
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ModelError(f"{label}: no tensors found (not a state dict)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{label}: no tensors found (not a state dict)")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def descriptor_from_state_dict(state_dict: dict[str, torch.Tensor], name: str) -> ModelDescriptor:
    """Build a model for ``state_dict``: pocketsr's own families first, then spandrel.

    Raises:
        ModelError: no architecture recognises the dict, or it is not an RGB image model.
    """
    from pocketsr_cli.registry import detect_family

    family = detect_family(state_dict)
    if family is not None and family.infer is not None:
        try:
            params = family.infer(state_dict)
            scale = int(params.pop("scale"))
            module = family.build(params, scale)
            module.load_state_dict(state_dict)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(
                f"{name}: not a valid {family.name} model: {_first_line(exc)}"
            ) from exc
        return own_family_descriptor(module.eval(), name, family.name, scale)
    return _spandrel_descriptor(state_dict, name)


def own_family_descriptor(module: nn.Module, name: str, family: str, scale: int) -> ModelDescriptor:
    """Descriptor for a network of one of pocketsr's families.

    The network states its own input requirements and half-precision safety through the
    optional attributes ``multiple_of``, ``minimum_size``, ``supports_half`` and
    ``supports_bf16`` (the tiler pads to them).
    """
    return ModelDescriptor(
        name=name,
        family=family,
        module=module,
        scale=scale,
        supports_half=bool(getattr(module, "supports_half", True)),
        supports_bf16=bool(getattr(module, "supports_bf16", True)),
        size=SizeRequirements(
            minimum=int(getattr(module, "minimum_size", 1)),
            multiple_of=int(getattr(module, "multiple_of", 1)),
        ),
        params=sum(p.numel() for p in module.parameters()),
    )


def _spandrel_descriptor(state_dict: dict[str, torch.Tensor], name: str) -> ModelDescriptor:
    from pocketsr_cli.weights.community import import_spandrel

    spandrel = import_spandrel()
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as exc:
        raise ModelError(
            f"{name}: unknown model architecture (neither a pocketsr model nor one of "
            "spandrel's community architectures)"
        ) from exc
    except Exception as exc:
        raise ModelError(f"{name}: cannot build the model: {_first_line(exc)}") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ModelError(f"{name}: {desc.architecture.name} is not a single-image model")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise ModelError(
            f"{name}: {desc.architecture.name} takes {desc.input_channels} and gives "
            f"{desc.output_channels} channels; pocketsr needs an RGB -> RGB model"
        )
    req = desc.size_requirements
    module = desc.model.eval()
    return ModelDescriptor(
        name=name,
        family=f"spandrel:{desc.architecture.id}",
        module=module,
        scale=int(desc.scale),
        supports_half=bool(desc.supports_half),
        supports_bf16=bool(desc.supports_bfloat16),
        size=SizeRequirements(minimum=max(1, req.minimum), multiple_of=max(1, req.multiple_of)),
        tiling=desc.tiling.name != "INTERNAL",
        params=sum(p.numel() for p in module.parameters()),
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
