"""Turning ``-m NAME|PATH`` and ``-s SCALE`` into a ready :class:`ModelDescriptor`.

One ordered resolution: an explicit weights file -> a registry name (bundled manifests).
(Issue #4 extends this with the user model folder, the cache and downloads.)
"""

from __future__ import annotations

import re
from pathlib import Path

from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements
from pocketsr_cli.errors import ModelError
from pocketsr_cli.manifest import ModelSpec, load_manifests
from pocketsr_cli.registry import get_family
from pocketsr_cli.weights.load import WEIGHT_SUFFIXES, descriptor_from_state_dict, read_state_dict

DEFAULT_MODEL = "lanczos"  # until the bundled pocketsr-nano model lands (issue #5)
_VARIANT = re.compile(r"^(?P<base>.+)-x(?P<scale>\d+)$")


def looks_like_path(ref: str) -> bool:
    """A weights file rather than a registry name."""
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref


def _base_of(name: str) -> str:
    m = _VARIANT.match(name)
    return m.group("base") if m else name


def pick_spec(specs: dict[str, ModelSpec], ref: str, scale: int | None) -> tuple[ModelSpec, int]:
    """The manifest for ``ref`` at ``scale`` and the scale to build it with.

    ``ref`` may name a variant (``pocketsr-nano-x2``) or a base (``pocketsr-nano``), in
    which case ``-s`` (default 4) picks ``{base}-x{scale}``.

    Raises:
        ModelError: unknown name, or no variant at that scale.
    """
    if ref in specs:
        spec = specs[ref]
        if scale is None or scale == spec.scale or spec.any_scale:
            return spec, scale or spec.scale
        base = _base_of(ref)
    else:
        base = ref
    want = scale or 4
    variant = specs.get(f"{base}-x{want}")
    if variant is not None:
        return variant, want
    scales = sorted(s.scale for n, s in specs.items() if _base_of(n) == base)
    if scales:
        raise ModelError(f"model {base!r} has no x{want} variant; available: x{scales}")
    raise ModelError(f"unknown model {ref!r}; available: {', '.join(sorted(specs))}")


def build_from_spec(spec: ModelSpec, scale: int) -> ModelDescriptor:
    """Instantiate a registry model (weights: issue #4)."""
    if spec.weights is not None:
        raise ModelError(f"model {spec.name!r} needs weights, which this version cannot fetch yet")
    family = get_family(spec.family)
    module = family.build(spec.build, scale).eval()
    h = spec.hints
    return ModelDescriptor(
        name=spec.name,
        family=spec.family,
        module=module,
        scale=scale,
        supports_half=h.fp16,
        supports_bf16=h.bf16,
        size=SizeRequirements(minimum=h.minimum, multiple_of=h.multiple_of),
        tiling=h.tiling,
        params=sum(p.numel() for p in module.parameters()),
    )


def resolve_model(
    ref: str | None, scale: int | None = None, *, offline: bool = False
) -> ModelDescriptor:
    """Resolve and load a model; ``offline`` forbids any network access.

    Raises:
        ModelError: not found, unreadable, unknown architecture, or scale mismatch.
    """
    ref = ref or DEFAULT_MODEL
    if looks_like_path(ref) or Path(ref).is_file():
        desc = descriptor_from_state_dict(read_state_dict(Path(ref)), Path(ref).name)
        if scale is not None and scale != desc.scale:
            raise ModelError(
                f"{Path(ref).name} is a x{desc.scale} model; -s {scale} is not available "
                f"(use --outscale {scale} to resize its result)"
            )
        return desc
    spec, use_scale = pick_spec(load_manifests(), ref, scale)
    return build_from_spec(spec, use_scale)
