"""Community model files (Real-ESRGAN, SwinIR, ...) detected and built by spandrel.

spandrel's package metadata requires torchvision, but only two of its ~40 architectures use
it (LaMa inpainting and RestoreFormer face restoration, neither super-resolution), and its
main registry imports them eagerly.  PyPI has no torchvision build matching a CPU torch, so
pocketsr installs spandrel with ``--no-deps`` and, when torchvision cannot be imported,
registers a stand-in module whose functions raise a clear error if one of those two
architectures is ever run.  With a real torchvision installed nothing is replaced.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

_NEEDS_TORCHVISION = (
    "this architecture needs torchvision, which is not installed; "
    "install a torchvision build matching your torch to use it"
)


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(_NEEDS_TORCHVISION)


def _install_torchvision_stand_in() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # a half-imported broken build must not linger
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = _unavailable  # type: ignore[attr-defined]
    functional.normalize = _unavailable  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__pocketsr_stand_in__ = True  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "torchvision": root,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


def import_spandrel() -> ModuleType:
    """Import spandrel, providing the torchvision stand-in when torchvision is unusable.

    Raises:
        ImportError: spandrel itself is not installed.
    """
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # not installed, or a build that does not match torch
        _install_torchvision_stand_in()
    import spandrel

    return spandrel
