"""Community model files (Real-ESRGAN, SwinIR, ...) detected and built by spandrel.

spandrel's package metadata requires torchvision, but only two of its ~40 architectures use
it (LaMa inpainting and RestoreFormer face restoration, neither super-resolution), and its
main registry imports them eagerly.  PyPI has no torchvision build matching a CPU torch, so
pocketsr installs spandrel with ``--no-deps``.  When torchvision cannot be imported, a
stand-in module is put in ``sys.modules`` for the duration of ``import spandrel`` only:
the two architectures bind its functions, which raise a clear error if either is ever run,
and the stand-in is gone again before :func:`import_spandrel` returns, so nothing else in
the process sees a fake torchvision.  With a real torchvision installed nothing is replaced.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import types
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements, Tiling
from pocketsr_cli.errors import ModelError, first_line
from pocketsr_cli.manifest import SPANDREL_PREFIX

if TYPE_CHECKING:
    from types import ModuleType

    import torch

_NEEDS_TORCHVISION = (
    "this architecture needs torchvision, which is not installed; "
    "install a torchvision build matching your torch to use it"
)
_STAND_IN_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(_NEEDS_TORCHVISION)


def _torchvision_stand_in() -> dict[str, ModuleType]:
    """The three modules spandrel imports from, with the names it takes from them."""
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = _unavailable  # type: ignore[attr-defined]
    functional.normalize = _unavailable  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__pocketsr_stand_in__ = True  # type: ignore[attr-defined]
    return dict(zip(_STAND_IN_NAMES, (root, transforms, functional), strict=True))


@contextlib.contextmanager
def _torchvision_for_import() -> Iterator[None]:
    """torchvision as it is, or the stand-in while the block runs when it cannot import."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or a build that does not match torch
        pass
    else:
        yield
        return
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # a half-imported broken build must not linger
    stand_in = _torchvision_stand_in()
    sys.modules.update(stand_in)
    try:
        yield
    finally:
        for name, module in stand_in.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def import_spandrel() -> ModuleType:
    """Import spandrel, with the torchvision stand-in during the import when need be.

    Raises:
        ImportError: spandrel itself is not installed.
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    with _torchvision_for_import():
        import spandrel

    return spandrel


def load_spandrel(state_dict: Mapping[str, torch.Tensor], name: str) -> ModelDescriptor:
    """The RGB -> RGB image model spandrel recognises in ``state_dict``, as a descriptor
    of family ``spandrel:<architecture id>``.

    Raises:
        ModelError: spandrel knows no such architecture, cannot build it, or it is not a
            single-image RGB model.
    """
    spandrel = import_spandrel()
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as exc:
        raise ModelError(
            f"{name}: unknown model architecture (neither a pocketsr model nor one of "
            "spandrel's community architectures)"
        ) from exc
    except Exception as exc:
        raise ModelError(f"{name}: cannot build the model: {first_line(exc)}") from exc
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
        family=f"{SPANDREL_PREFIX}{desc.architecture.id}",
        module=module,
        scale=int(desc.scale),
        supports_half=bool(desc.supports_half),
        supports_bf16=bool(desc.supports_bfloat16),
        size=SizeRequirements(minimum=max(1, req.minimum), multiple_of=max(1, req.multiple_of)),
        # A hint spandrel may add later is taken as the default, not refused.
        tiling=Tiling.__members__.get(desc.tiling.name, Tiling.SUPPORTED),
        params=sum(p.numel() for p in module.parameters()),
    )
