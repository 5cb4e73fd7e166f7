"""Community model files (Real-ESRGAN, SwinIR, ...) detected and built by spandrel.

spandrel's package metadata requires torchvision, but only two of its ~40 architectures use
it (LaMa inpainting and RestoreFormer face restoration, neither super-resolution), and its
main registry imports them eagerly.  PyPI has no torchvision build matching a CPU torch, so
pocketsr installs spandrel with ``--no-deps``.  When torchvision cannot be imported, a
stand-in module is put in ``sys.modules`` for the duration of ``import spandrel`` only:
the two architectures bind its functions, which raise a clear error if either is ever run,
and the stand-in is gone again before :func:`import_spandrel` returns, so nothing else in
the process sees a fake torchvision.  With a real torchvision installed nothing is replaced.

A community weights file carries no tile overlap (nor a manifest, given as ``-m FILE``),
so the overlap its tiles need is looked up by architecture (:func:`seamless_overlap`):
the networks whose seams have been measured get the overlap found for them
(:data:`MEASURED_OVERLAPS`), other depths of a measured architecture one derived from
those (``descriptor.derived_overlap``: ESRGAN by its blocks and pixel-unshuffle, SRVGG by
its convolutions), every other architecture none (and runs with the default 16).
SRVGG's (``Compact``) are pocketsr's own compact family's (``archs.compact.SRVGG_OVERLAPS``,
``srvgg_overlap``): one body, measured once.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pocketsr_cli.archs.compact import SRVGG_OVERLAPS, srvgg_overlap
from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements, Tiling, derived_overlap
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


@dataclass(frozen=True)
class MeasuredOverlap:
    """The tile overlap measured for one community architecture shape.

    Attributes:
        architecture: spandrel's architecture id (``ESRGAN``, ``Compact``).
        shape: the hyper-parameters (spandrel's ``model.hyperparameters``) that fix the
            receptive field, each as measured; the others (channel widths, activation)
            change the weights, not how far a pixel sees.
        overlap: the smallest ``--tile-overlap`` whose tiles came within 2 levels (largest
            difference) and 1 (99.9th percentile) of the untiled result.
    """

    architecture: str
    shape: Mapping[str, Any]
    overlap: int


# scripts/tile_seams.py, fp32 on the CPU, largest/99.9th-percentile 8-bit levels off the
# untiled result (photo crops and noise).  Other shapes of these architectures are not
# measured, and get an overlap derived from these (seamless_overlap): ESRGAN with other
# block counts or pixel-unshuffle (x2plus runs its blocks at half the input's resolution,
# so it sees twice as far: 80), SRVGG with 32 convolutions (realesr-general-x4v3: 31).
MEASURED_OVERLAPS: tuple[MeasuredOverlap, ...] = (
    # Real-ESRGAN x4plus (RRDBNet, 23 blocks), as converted from ncnn: 16 11/4, 24 4/2,
    # 32 6/2, 40 2/1, 48 1/1 (the realesrgan-x4plus manifest states the same 40).
    MeasuredOverlap(
        "ESRGAN", {"num_blocks": 23, "scale": 4, "shuffle_factor": None, "plus": False}, 40
    ),
    # SRVGG compact by its body's depth (16 convolutions: 16), as pocketsr's compact family.
    *(MeasuredOverlap("Compact", {"num_conv": n}, o) for n, o in SRVGG_OVERLAPS.items()),
)


def measured_overlap(architecture: str, hyperparameters: Mapping[str, Any]) -> int | None:
    """The tile overlap measured for spandrel ``architecture`` built with these
    ``hyperparameters`` (:data:`MEASURED_OVERLAPS`), or None: not measured."""
    for m in MEASURED_OVERLAPS:
        if m.architecture == architecture and all(
            k in hyperparameters and hyperparameters[k] == v for k, v in m.shape.items()
        ):
            return m.overlap
    return None


def esrgan_reach(hyperparameters: Mapping[str, Any]) -> int:
    """How far, in input pixels, spandrel's ESRGAN (RRDBNet) with these hyper-parameters
    sees: the 3x3 convolutions of its trunk (the first, 15 per RRDB block, the last), plus
    2 for those after the upsampling (each less than a trunk pixel), at the trunk's
    resolution, which a pixel-unshuffle by ``shuffle_factor`` divides."""
    trunk = 15 * int(hyperparameters["num_blocks"]) + 4
    return trunk * int(hyperparameters.get("shuffle_factor") or 1)


def seamless_overlap(architecture: str, hyperparameters: Mapping[str, Any]) -> int | None:
    """The tile overlap of spandrel ``architecture`` built with these ``hyperparameters``:
    measured (:func:`measured_overlap`); else, for ESRGAN and SRVGG (``Compact``) of a
    depth not measured, *derived* from the measured ones, not measured
    (``descriptor.derived_overlap``, by :func:`esrgan_reach` and
    ``archs.compact.srvgg_overlap``); else None: not known.
    """
    measured = measured_overlap(architecture, hyperparameters)
    if measured is not None:
        return measured
    if architecture == "Compact" and "num_conv" in hyperparameters:
        return srvgg_overlap(int(hyperparameters["num_conv"]))
    if architecture == "ESRGAN" and "num_blocks" in hyperparameters:
        calibration = {
            esrgan_reach(m.shape): m.overlap
            for m in MEASURED_OVERLAPS
            if m.architecture == "ESRGAN"
        }
        reach = esrgan_reach(hyperparameters)  # every layer counted: also the radius
        return derived_overlap(reach, calibration)
    return None


def overlap_derived(architecture: str, hyperparameters: Mapping[str, Any]) -> bool:
    """Whether :func:`seamless_overlap` of this network is derived for a depth not
    measured, an estimate, rather than measured (False also when it has none)."""
    return (
        measured_overlap(architecture, hyperparameters) is None
        and seamless_overlap(architecture, hyperparameters) is not None
    )


def overlap_from_shapes(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, bool] | None:
    """:func:`seamless_overlap` of the network spandrel recognises in ``state_dict``, and
    whether it is derived (:func:`overlap_derived`), whose tensors may be meta tensors
    (``weights.load.read_shapes``: shapes, no data): the network is built on the meta
    device, so nothing is allocated or read.  What :func:`load_spandrel` gives the loaded
    network; None where spandrel recognises no architecture, or needs the tensors'
    values to build it, or the architecture has no overlap measured.
    """
    import torch

    spandrel = import_spandrel()
    try:
        with torch.device("meta"):
            loader = spandrel.ModelLoader(device=torch.device("meta"))
            desc = loader.load_from_state_dict(state_dict)
    except Exception:  # unknown, or an architecture that reads its tensors' values
        return None
    hyperparameters = getattr(desc.model, "hyperparameters", None) or {}
    overlap = seamless_overlap(desc.architecture.id, hyperparameters)
    if overlap is None:
        return None
    return overlap, overlap_derived(desc.architecture.id, hyperparameters)


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
    of family ``spandrel:<architecture id>``, with the tile overlap measured for its
    architecture, or derived for its depth (:func:`seamless_overlap`), as its
    ``seamless_overlap``, marked ``overlap_derived`` when derived.

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
    hyperparameters = getattr(module, "hyperparameters", None) or {}
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
        seamless_overlap=seamless_overlap(desc.architecture.id, hyperparameters),
        overlap_derived=overlap_derived(desc.architecture.id, hyperparameters),
    )
