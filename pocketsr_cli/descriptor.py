"""What the pipeline needs to know about a loaded model, and the one way a network is made.

A :class:`ModelDescriptor` wraps a ``torch.nn.Module`` that maps a float tensor
``(N, 3, h, w)`` in ``[0, 1]`` to ``(N, 3, h * scale, w * scale)``.  Architecture families
(``archs/``), community files (spandrel, ``weights/community.py``) and built-in resamplers
all end up as one.  It is immutable: a manifest that restricts a model, or a resolver that
records the weights' digest, makes a new one with ``dataclasses.replace``.

A :class:`Family` is spandrel's architecture support in pocketsr's terms: ``detect`` a
state dict, ``load`` it into a network and describe the result.  Each ``archs/<family>/``
package exports one as ``FAMILY``, ``registry.py`` lists them, and both the resolver
(manifest ``[build]`` tables) and direct file loading (``-m model.pth``) go through it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsr_cli.errors import ModelError, first_line, present_file

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


@dataclass(frozen=True)
class SizeRequirements:
    """Input sides the model accepts: at least ``minimum`` and a multiple of ``multiple_of``;
    and the ``margin`` it draws an image's borders best with.

    The tiler pads (reflect) an input to satisfy the first two and crops the result back.
    ``margin`` input pixels are first replicated around the whole image (each border
    pixel repeated outwards) and their output cropped away: a network whose convolutions
    pad with zeros sees the image's own colours past its edges instead of black.  The
    default model drew a patch of grain into the corner where its zero padding met
    (17-18 levels off on a flat grey at x4); 2 replicated pixels mend it and lift its outer
    8 output pixels' PSNR-Y a little (``pocketsr-compact-x4.md``, "Border margin").
    """

    minimum: int = 1
    multiple_of: int = 1
    margin: int = 0

    @classmethod
    def stated_by(cls, module: nn.Module) -> SizeRequirements:
        """What a network states as optional attributes ``multiple_of`` and
        ``minimum_size`` (default 1: any side); no margin."""
        return cls(
            minimum=int(getattr(module, "minimum_size", 1)),
            multiple_of=int(getattr(module, "multiple_of", 1)),
        )

    def fits(self, side: int) -> bool:
        """Whether an input ``side`` meets both requirements as it is (no padding)."""
        return side >= self.minimum and side % self.multiple_of == 0

    def padded(self, side: int) -> int:
        """Smallest side ``>= side`` that meets both requirements."""
        side = max(side, self.minimum)
        m = self.multiple_of
        return -(-side // m) * m

    def framed(self, side: int) -> int:
        """The side the network sees for an image side of ``side``: the margin on both
        ends, then :meth:`padded`."""
        return self.padded(side + 2 * self.margin)


class Tiling(Enum):
    """Whether the tiler may cut the input into tiles (spandrel's ``ModelTiling``).

    - ``SUPPORTED``: tiles, feather-blended, give the untiled result or hide the difference.
    - ``DISCOURAGED``: the model leans on image-wide context (SwinIR's windows, SCUNet), so
      tiles may differ; the tiler still tiles it, since a whole large photo rarely fits in
      memory, and the feather hides what it can.
    - ``INTERNAL``: the model tiles (or needs the whole image) itself: always one tile.
    """

    SUPPORTED = "supported"
    DISCOURAGED = "discouraged"
    INTERNAL = "internal"


@dataclass(frozen=True)
class ModelDescriptor:
    """A model ready for inference, plus the facts the pipeline and tiler rely on.

    Attributes:
        name: registry name or file name, shown to the user and written to ``--json``.
        family: architecture family (``resize``, ``pocketsr``, ``spandrel:ESRGAN``...).
        module: the network; called as ``module(x)`` or, when ``image_stats`` is set,
            ``module(x, stats)``.
        scale: integer upscaling factor.
        supports_half / supports_bf16: whether fp16 / bf16 inference is known to be safe
            (``--precision auto`` picks fp16 only for a half-safe model on a GPU; both are
            recorded in the manifest ``models import`` writes).
        cpu_bf16: whether the model is measured faster in bf16 on a CPU that computes it
            natively, where ``--precision auto`` then picks it (``devices.choose_precision``;
            the manifest's ``cpu_bf16`` hint).
        size: input size requirements (tiles are padded to meet them).
        tiling: whether the input may be tiled (see :class:`Tiling`).
        default_tile: the tile side ``--tile auto`` starts from on the CPU, from the
            manifest's ``default_tile`` hint; None: sized from free memory there too.
        max_tile: the largest tile side ``--tile auto`` picks on any device (a model
            trained on, or quadratic in, its window: attention); None: no limit of its own.
        image_stats: optional hook computing statistics of the *whole* input (for example
            per-channel mean/std for colour matching, AdcSR; a global attention's sums,
            taken when a tile first needs them, pocketsr's nano); the result is passed to
            every tile so that tiles are treated identically.
        params: number of parameters (0 for parameter-free resamplers).
        sha256: lowercase hex SHA-256 of the weights file it was built from, when known
            (a registry model's manifest records it; a weights file given by path is
            hashed by ``weights.resolve.open_family``); None for resamplers.  Outputs
            record it so that a later run can tell outputs of other weights apart.
        upscale_uint8: optional whole-image 8-bit path, ``H x W x C`` uint8 of any size and
            any ``C`` -> ``H*s x W*s x C`` uint8 (a new array), on the CPU.  A model that
            has one (the resamplers) defines its 8-bit output by it: inference calls it
            instead of ``module`` for 8-bit images on the CPU, with no float conversion
            and no tiling.  ``module`` stays the float path (16-bit images, other
            devices, the ensemble, ``Upscaler.upscale_tensor``, training).
        mean_anchor: each output's local mean is put back to its input's, a Gaussian of
            this many input pixels (``pocketsr_cli.anchor``, by ``Upscaler.upscale``; the
            manifest's ``mean_anchor`` hint); None: the network's output as it is.
        chroma_guard: how each tile's output colour is kept to its input's
            (``pocketsr_cli.chroma``; the manifest's ``chroma_guard`` hint): ``"clamp"``,
            each pixel's chroma clamped into the input's around it; None: as drawn.
        seamless_overlap: the smallest tile overlap (input pixels) whose tiles give the
            untiled result to within a level or two (the manifest's ``overlap`` hint,
            measured; else the one measured for its architecture and hyper-parameters, or
            for a depth not measured the one derived from those (:func:`derived_overlap`):
            what a pocketsr network states, :func:`describe_module`, or for a community
            file ``weights.community.seamless_overlap``): the receptive field a tile needs
            past its core, twice over since the feather reaches half the overlap into
            it.  The upscaler warns when an image is cut into tiles with less.  None:
            not known.
        overlap_derived: whether ``seamless_overlap`` was *derived* for a depth nobody
            measured (:func:`derived_overlap`; a manifest's ``overlap_derived`` hint)
            rather than measured on tiles of this network's shape: an estimate, which
            the seam warning and ``models info`` call one.  False when it is measured
            or not known.
    """

    name: str
    family: str
    module: torch.nn.Module
    scale: int
    supports_half: bool = True
    supports_bf16: bool = True
    cpu_bf16: bool = False
    size: SizeRequirements = field(default_factory=SizeRequirements)
    tiling: Tiling = Tiling.SUPPORTED
    default_tile: int | None = None
    max_tile: int | None = None
    image_stats: Callable[[torch.Tensor], Any] | None = None
    params: int = 0
    sha256: str | None = None
    upscale_uint8: Callable[[np.ndarray], np.ndarray] | None = None
    mean_anchor: float | None = None
    chroma_guard: str | None = None
    seamless_overlap: int | None = None
    overlap_derived: bool = False


def derived_overlap(
    reach: int, measured: Mapping[int, int], *, radius: int | None = None
) -> int | None:
    """The tile overlap *derived*, not measured, for a network of one architecture whose
    receptive field reaches ``reach`` input pixels, from the overlaps measured for other
    depths of that architecture (``measured``: their reach -> their measured overlap); the
    measured one itself for a reach measured; None when none is.

    The smallest of the upper estimates each measured depth gives: a network that reaches
    no further than a measured one is given that one's overlap (not scaled down), and one
    that reaches further that overlap scaled up in proportion to its reach, rounded up;
    and never more than twice ``radius``, how far the network sees at most, every layer
    counted (``reach`` when None): tiles whose overlap holds that twice over give exactly
    the untiled result (the feather reaches half the overlap into a tile).
    Both rest on how far a trained network's output depends on its input (the input
    gradient's mass beyond a distance, scripts/receptive_reach.py), which grows with
    depth, but no faster than the receptive field and more slowly as depth goes on: in
    Real-ESRGAN x4plus (23 RRDB blocks) and two trained SRVGG bodies of 16 convolutions,
    layer by layer.  So the proportion errs on the wide side (more overlap, and time,
    than needed, not seams), provided the network's layers behave as the measured ones'
    did; a receptive field's ratio to the overlap is no constant across architectures
    (SRVGG 18 : 16, x4plus about 349 : 40), so the measurements of one architecture are
    never used for another.
    """
    if reach in measured:
        return measured[reach]
    if not measured:
        return None
    bounds = [o for r, o in measured.items() if r > reach]
    bounds += [math.ceil(o * reach / r) for r, o in measured.items() if r < reach]
    return min(*bounds, 2 * (reach if radius is None else radius))


@dataclass(frozen=True)
class Family:
    """One architecture family pocketsr builds itself: detect, load, describe.

    Attributes:
        name: the ``family`` value of manifests.
        build: ``(build_params, scale) -> nn.Module``, freshly initialised; ``build_params``
            is a manifest's ``[build]`` table.
        detect: ``state_dict -> bool``: does this dict belong to the family?  ``None`` for
            families without weights (resamplers).
        infer: ``state_dict -> build_params`` plus ``"scale"``, read from tensor shapes;
            needed to :meth:`load` a state dict that comes without a manifest.
        merge: ``[state_dict, ...] -> state_dict``, for models published as several weights
            files: their state dicts, in the manifest's order, made into one of this
            family.  None: one file per model.
        check: raises ``ModelError`` saying what to install when the family cannot run
            here (an optional dependency is missing); called before any weights are
            fetched.  None: always available.
        build_empty: as ``build``, but every tensor on the meta device: nothing allocated
            or initialised.  When weights are loaded (:meth:`load`, :meth:`instantiate`
            with a state dict) the network is built so and takes the state dict's
            tensors as its own (``load_state_dict(assign=True)``), so loading costs the
            reading of the file and no more (AdcSR: 456M parameters).  Only for networks
            whose every tensor is in their state dict.  None: ``build``, then copy in.

    The network states its own input requirements and half-precision safety through the
    optional attributes ``multiple_of``, ``minimum_size``, ``supports_half``,
    ``supports_bf16`` and ``max_tile``, the tile overlap measured for its shape through
    ``seamless_overlap``, an 8-bit path through a method ``upscale_uint8``
    and image-wide statistics through a method ``image_stats`` (see :meth:`describe`).
    """

    name: str
    build: Callable[[Mapping[str, Any], int], nn.Module]
    detect: Callable[[Mapping[str, torch.Tensor]], bool] | None = None
    infer: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]] | None = None
    merge: Callable[[Sequence[Mapping[str, torch.Tensor]]], dict[str, torch.Tensor]] | None = None
    check: Callable[[], None] | None = None
    build_empty: Callable[[Mapping[str, Any], int], nn.Module] | None = None

    def load(self, state_dict: Mapping[str, torch.Tensor], name: str) -> ModelDescriptor:
        """The network a state dict of this family describes, its weights loaded.

        Raises:
            ModelError: the family cannot read state dicts, or the shapes or weights do not
                make one of its networks.
        """
        if self.infer is None:
            raise ModelError(f"{name}: {self.name} models have no weights to load")
        try:
            params = dict(self.infer(state_dict))
            scale = int(params.pop("scale"))
            module = (self.build_empty or self.build)(params, scale)
            self._load_weights(module, state_dict)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{name}: not a valid {self.name} model: {first_line(exc)}") from exc
        return self.describe(module, name, scale)

    def instantiate(
        self,
        name: str,
        params: Mapping[str, Any],
        scale: int,
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> ModelDescriptor:
        """The network a manifest's ``[build]`` table describes, given ``state_dict``
        (every tensor must fit) when the family has weights.

        Raises:
            ModelError: ``params`` do not build a network, or the weights do not fit it.
        """
        build = self.build if state_dict is None else (self.build_empty or self.build)
        try:
            module = build(params, scale)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"{name}: cannot build {self.name} from [build]: {exc}") from exc
        if state_dict is not None:
            try:
                self._load_weights(module, state_dict)
            except RuntimeError as exc:
                # torch lists every missing/unexpected key over many lines; one line, bounded.
                detail = " ".join(str(exc).split())
                detail = detail if len(detail) <= 300 else detail[:300] + "…"
                raise ModelError(
                    f"{name}: the weights do not fit its manifest's network: {detail}"
                ) from None
        return self.describe(module, name, scale)

    def _load_weights(self, module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
        """``state_dict`` into ``module`` (strict): copied, or, for a network from
        ``build_empty``, assigned, in the dtypes the network was built with.

        Raises:
            RuntimeError: missing, unexpected or misshapen tensors, or a network from
                ``build_empty`` left with tensors the state dict does not set.
        """
        if self.build_empty is None:
            module.load_state_dict(state_dict, strict=True)
            return
        own = module.state_dict()
        # assign=True keeps the tensors as they come: a file in fp16 would make an fp16
        # network, which inference does not expect of a freshly loaded one.
        state_dict = {
            k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v
            for k, v in state_dict.items()
        }
        module.load_state_dict(state_dict, strict=True, assign=True)
        left = [k for k, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"the state dict does not set {len(left)} tensors: {left[0]}, …")

    def describe(self, module: nn.Module, name: str, scale: int) -> ModelDescriptor:
        """A descriptor for ``module``, a network of this family, put in eval mode."""
        return describe_module(module.eval(), name, self.name, scale)


def named_apart(desc: ModelDescriptor, ref: str | None, taken: Container[str]) -> ModelDescriptor:
    """``desc``, resolved from ``-m ref``, as a row of a table of models (``eval``,
    ``bench``): renamed to ``ref`` when ``ref`` is a weights file's path whose file name
    (``desc``'s name) a model in ``taken`` already has, so that two weights files of one
    name (``a/w.safetensors``, ``b/w.safetensors``) are two rows, the second named by its
    path as given; a registry name that gives a model already there (``pocketsr-compact``,
    ``pocketsr-compact-x4``) keeps its name, and is that row."""
    if ref is not None and desc.name in taken and desc.name == Path(ref).name != ref:
        return replace(desc, name=ref)
    return desc


def ref_key(ref: str | None) -> str | None:
    """What ``-m ref`` names, for telling repeats apart: an existing file's resolved path
    (``w.pth``, ``./w.pth`` and ``/abs/w.pth`` are one file), else ``ref`` as given."""
    if ref is not None:
        path = Path(ref)
        with contextlib.suppress(OSError):  # cannot even be looked at: resolving it says why
            if present_file(path):
                return str(path.resolve())
    return ref


def distinct_refs(refs: Iterable[str | None]) -> list[str | None]:
    """``refs`` without repeats (:func:`ref_key`), in order, each as first spelt."""
    kept: dict[str | None, str | None] = {}
    for ref in refs:
        kept.setdefault(ref_key(ref), ref)
    return list(kept.values())


def describe_module(module: nn.Module, name: str, family: str, scale: int) -> ModelDescriptor:
    """A descriptor for any network that states its facts as optional attributes.

    ``multiple_of`` and ``minimum_size`` become its :class:`SizeRequirements` (the tiler pads
    to them), ``supports_half`` and ``supports_bf16`` its precision safety (default: safe),
    ``max_tile`` its :attr:`ModelDescriptor.max_tile`, ``seamless_overlap`` (measured for
    its hyper-parameters, or derived for them when ``overlap_derived`` is true) its
    :attr:`ModelDescriptor.seamless_overlap` and :attr:`ModelDescriptor.overlap_derived`,
    and methods ``upscale_uint8`` and ``image_stats`` its
    :attr:`ModelDescriptor.upscale_uint8` and :attr:`ModelDescriptor.image_stats`
    (default: none).
    """
    overlap = getattr(module, "seamless_overlap", None)
    return ModelDescriptor(
        name=name,
        family=family,
        module=module,
        scale=scale,
        supports_half=bool(getattr(module, "supports_half", True)),
        supports_bf16=bool(getattr(module, "supports_bf16", True)),
        size=SizeRequirements.stated_by(module),
        max_tile=getattr(module, "max_tile", None),
        image_stats=getattr(module, "image_stats", None),
        params=sum(p.numel() for p in module.parameters()),
        upscale_uint8=getattr(module, "upscale_uint8", None),
        seamless_overlap=overlap,
        overlap_derived=overlap is not None and bool(getattr(module, "overlap_derived", False)),
    )
