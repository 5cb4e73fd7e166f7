"""Turning ``-m NAME|PATH`` and ``-s SCALE`` into a ready :class:`ModelDescriptor`.

One ordered resolution, :func:`resolve_model`; the first step that applies wins:

1. an explicit weights file (``-m path/to/model.pth``): its architecture is detected;
2. a name defined in the user model folder (``models import``; shadows bundled names);
3. a name bundled with pocketsr (``models/*.toml``);
   for 2 and 3 the weights file beside the manifest is used when it is there, else
4. the download cache (``cache.weights_path``), else
5. a download from the manifest's mirrors (refused in offline mode, with the command that
   would fetch the file).

Every weights file, wherever it comes from, must have its manifest's SHA-256 before it is
loaded (``verify.file_matches`` remembers files it has hashed, so large files are not
hashed on every run).

``upscale`` does not ask for one scale up front: :func:`open_family` gives it every variant
of the model (a family ``pocketsr-compact`` with ×2 and ×4, a resampler at any factor, a
weights file at its own), loaded one by one as they are needed; ``sizing`` decides which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pocketsr_cli import manifest
from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements, Tiling
from pocketsr_cli.errors import ModelError
from pocketsr_cli.manifest import ModelSpec, Origin, load_manifests
from pocketsr_cli.registry import FAMILIES, get_family
from pocketsr_cli.sizing import pick_scale, scales_text
from pocketsr_cli.weights.cache import sha256_file, user_models_dir, weights_path
from pocketsr_cli.weights.load import WEIGHT_SUFFIXES, descriptor_from_state_dict, read_state_dict
from pocketsr_cli.weights.verify import file_matches, remember

if TYPE_CHECKING:
    from pocketsr_cli.weights.download import ProgressCallback

DEFAULT_MODEL = "pocketsr-compact-x4"  # bundled; -s 2 picks its ×2 variant, pocketsr-compact-x2
_VARIANT = re.compile(r"^(?P<base>.+)-x(?P<scale>\d+)$")

Where = Literal["bundled", "user", "cached", "remote"]


def resolve_model(
    ref: str | None,
    scale: int | None = None,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ModelDescriptor:
    """Resolve ``ref`` (a registry name or a weights file; None: the default model) and load it.

    ``offline`` (or ``POCKETSR_OFFLINE=1``) forbids any network access: a model whose
    weights are not on disk is then an error naming ``pocketsr models download NAME``.
    ``on_progress(bytes_done, total)`` is called while weights download.

    Raises:
        ModelError: unknown name, missing or damaged weights, a failed download, an
            unreadable file, an unknown architecture, or no variant at ``scale``.
    """
    ref = ref or DEFAULT_MODEL
    # 1. An explicit file: no manifest, the architecture is detected from the tensors.
    if looks_like_path(ref) or Path(ref).is_file():
        path = Path(ref)
        desc = descriptor_from_state_dict(read_state_dict(path), path.name)
        if scale is not None and scale != desc.scale:
            raise ModelError(
                f"{path.name} is a x{desc.scale} model; -s {scale} is not available "
                f"(use --outscale {scale} to resize its result)"
            )
        return desc
    # 2./3. A registry name: user manifests first, then bundled ones.
    problems: list[str] = []
    spec, use_scale = pick_spec(registry(problems), ref, scale, problems)
    # 2.-5. Its weights: beside the manifest, in the cache, or downloaded; always verified.
    weights = None
    if spec.weights is not None:
        weights = locate_weights(spec, offline=offline, on_progress=on_progress)
    return build_from_spec(spec, use_scale, weights)


def locate_weights(
    spec: ModelSpec,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """The weights file of ``spec`` with its manifest's SHA-256, downloaded if need be.

    Order: the file beside the manifest (user folder or bundled) -> the cache -> the
    manifest's mirrors, in order (resumable, locked against concurrent downloads; refused
    when ``offline`` or ``POCKETSR_OFFLINE`` is set).

    Raises:
        ModelError: the file beside the manifest is damaged, or the file is not on disk
            and cannot be downloaded (offline, no URL, every mirror failed).
    """
    w = spec.weights
    if w is None:
        raise ModelError(f"{spec.name} has no weights (it is built without any)")
    beside = spec.path.parent / w.file
    if beside.is_file():
        if file_matches(beside, w.sha256, w.size):
            return beside
        raise ModelError(_damaged_message(spec, beside))
    cached = weights_path(spec.name, w.file)
    if file_matches(cached, w.sha256, w.size):
        return cached
    if not w.urls:
        raise ModelError(
            f"{spec.name}: weights {w.file} are missing from {spec.path.parent} and its "
            "manifest names no download URL"
        )
    # Imported here: the HTTP stack is the heaviest import on the way to the registry, and
    # `--help`, shell completion and `models list` only read manifests.
    from pocketsr_cli.weights.download import download_file

    download_file(
        list(w.urls),
        cached,
        sha256=w.sha256,
        size=w.size,
        on_progress=on_progress,
        # False defers to POCKETSR_OFFLINE; True forces offline whatever the environment.
        offline=True if offline else None,
        fetch_hint=f"pocketsr models download {spec.name}",
    )
    remember(cached, w.sha256)  # download_file hashed it while streaming
    return cached


def _damaged_message(spec: ModelSpec, path: Path) -> str:
    fix = {
        "user": f"import it again with `pocketsr models import ... --name {spec.name} --force`",
        "bundled": "reinstall pocketsr",
    }[spec.origin]
    return (
        f"{spec.name}: {path} does not have the SHA-256 its manifest records "
        f"(damaged or replaced); {fix}"
    )


# --- the registry -------------------------------------------------------------------------


def manifest_folders() -> list[tuple[Origin, Path]]:
    """Where manifests are read from, in precedence order: the user folder, then bundled."""
    return [("user", user_models_dir()), ("bundled", manifest.bundled_dir())]


def registry(problems: list[str] | None = None) -> dict[str, ModelSpec]:
    """Every model known by name (user models shadow bundled ones of the same name).

    Reads manifests only: fast, offline, no weights are opened.  With ``problems`` given,
    unreadable user manifests are skipped and described there instead of raising.
    """
    return load_manifests(manifest_folders(), problems=problems)


def find_spec(name: str) -> ModelSpec:
    """The manifest called exactly ``name``.

    Raises:
        ModelError: no such model (the message lists the known names).
    """
    problems: list[str] = []
    specs = registry(problems)
    if name not in specs:
        raise ModelError(_unknown_message(name, specs, problems))
    return specs[name]


def where(spec: ModelSpec) -> Where:
    """Where ``spec``'s weights are now, without hashing anything.

    ``bundled``/``user``: ships with pocketsr / was imported (or needs no weights);
    ``cached``: in the download cache; ``remote``: not on this machine yet.
    """
    if spec.weights is None or (spec.path.parent / spec.weights.file).is_file():
        return spec.origin
    if weights_path(spec.name, spec.weights.file).is_file():
        return "cached"
    return "remote"


def local_weights(spec: ModelSpec) -> Path | None:
    """The weights file ``resolve_model`` would use without a download, unverified; None when
    the model has no weights or they are not on this machine."""
    if spec.weights is None:
        return None
    beside = spec.path.parent / spec.weights.file
    if beside.is_file():
        return beside
    cached = weights_path(spec.name, spec.weights.file)
    return cached if cached.is_file() else None


def looks_like_path(ref: str) -> bool:
    """A weights file rather than a registry name."""
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref


def _base_of(name: str) -> str:
    m = _VARIANT.match(name)
    return m.group("base") if m else name


def _unknown_message(ref: str, specs: Mapping[str, ModelSpec], problems: list[str]) -> str:
    message = f"unknown model {ref!r}; available: {', '.join(sorted(specs))}"
    if problems:
        message += f" (skipped {len(problems)} unreadable manifest(s): {'; '.join(problems)})"
    return message


def pick_spec(
    specs: Mapping[str, ModelSpec],
    ref: str,
    scale: int | None,
    problems: list[str] | None = None,
) -> tuple[ModelSpec, int]:
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
        raise ModelError(
            f"{base} has no ×{want} variant; it has {scales_text(scales)} "
            f"(upscale -s {want} runs the nearest larger one and resizes its result; "
            f"-m lanczos and -m bicubic work at any factor)"
        )
    raise ModelError(_unknown_message(ref, specs, problems or []))


# --- families: every variant of one -m reference -------------------------------------------


@dataclass
class ModelFamily:
    """The variants of one ``-m`` reference, each loaded the first time it is asked for.

    Made by :func:`open_family`.  ``-s`` and the size options choose among ``scales``
    (``sizing.pick_scale``); :meth:`load` gives the variant.

    Attributes:
        name: how messages call it: a family's base name (``pocketsr-compact``), a
            single model's name (``realesrgan-x4plus``, ``bicubic``) or a file's name.
        scales: the factors it has a variant at, ascending; empty when it runs at any
            integer factor (resamplers).
        default_scale: the factor it runs at without ``-s``: the named variant's
            (``pocketsr-compact-x4``: 4), for a base name ×4 or the nearest larger.
    """

    name: str
    scales: tuple[int, ...]
    default_scale: int
    _specs: dict[int, ModelSpec] = field(default_factory=dict, repr=False)
    _any_scale: ModelSpec | None = field(default=None, repr=False)
    _loaded: dict[int, ModelDescriptor] = field(default_factory=dict, repr=False)
    _offline: bool = field(default=False, repr=False)
    _on_progress: ProgressCallback | None = field(default=None, repr=False)

    def load(self, scale: int) -> ModelDescriptor:
        """The variant at ``scale``, its weights located, verified (downloaded if need be)
        and loaded on the first call; the same descriptor afterwards.

        Raises:
            ModelError: no variant at ``scale``, or its weights cannot be had or loaded
                (as :func:`resolve_model`).
        """
        if scale in self._loaded:
            return self._loaded[scale]
        spec = self._any_scale or self._specs.get(scale)
        if spec is None:
            raise ModelError(
                f"{self.name} has no ×{scale} variant; it has {scales_text(self.scales)}"
            )
        weights = None
        if spec.weights is not None:
            weights = locate_weights(spec, offline=self._offline, on_progress=self._on_progress)
        desc = build_from_spec(spec, scale, weights)
        self._loaded[scale] = desc
        return desc


def open_family(
    ref: str | None,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ModelFamily:
    """Every variant of ``ref`` (None: the default model), without loading any registry one.

    A registry name is a variant (``pocketsr-compact-x4``) or a base (``pocketsr-compact``):
    either way its family is every manifest ``{base}-x{N}`` (user manifests shadow
    bundled ones, as in :func:`resolve_model`).  A weights file is loaded now (its scale is
    in its tensors) and hashed, so that outputs can record its SHA-256.

    Raises:
        ModelError: an unknown name, or a weights file that cannot be read or loaded.
    """
    ref = ref or DEFAULT_MODEL
    if looks_like_path(ref) or Path(ref).is_file():
        desc = resolve_model(ref, offline=offline)
        # It was just read: only a race could fail to hash it; then no digest is recorded.
        with contextlib.suppress(OSError):
            desc = dataclasses.replace(desc, sha256=sha256_file(Path(ref)))
        return ModelFamily(desc.name, (desc.scale,), desc.scale, _loaded={desc.scale: desc})
    problems: list[str] = []
    specs = registry(problems)
    named = specs.get(ref)
    if named is not None and named.any_scale:
        return ModelFamily(
            ref, (), named.scale, _any_scale=named, _offline=offline, _on_progress=on_progress
        )
    base = _base_of(ref) if named is not None else ref
    variants = {s.scale: s for n, s in specs.items() if _base_of(n) == base and not s.any_scale}
    if named is not None:
        variants[named.scale] = named  # the variant named wins over a same-scale sibling
    if not variants:
        raise ModelError(_unknown_message(ref, specs, problems))
    scales = tuple(sorted(variants))
    default = named.scale if named is not None else pick_scale(4, scales)
    return ModelFamily(
        base, scales, default, _specs=variants, _offline=offline, _on_progress=on_progress
    )


# --- building -----------------------------------------------------------------------------


def build_from_spec(spec: ModelSpec, scale: int, weights: Path | None = None) -> ModelDescriptor:
    """Instantiate ``spec`` at ``scale`` with the (already verified) ``weights`` file.

    Registry families are built from ``[build]`` and then given the weights (every tensor
    must fit); ``spandrel:<id>`` models are built by spandrel from the weights, which must
    be of that architecture.  The manifest's hints can only restrict what the network
    itself allows (a manifest may mark fp16 unsafe, not make it safe); its ``default_tile``
    is passed on.

    Raises:
        ModelError: unknown family, missing weights, weights that do not fit the manifest
            (architecture, scale or parameter count), or a non-RGB model.
    """
    if spec.channels != 3:
        raise ModelError(f"{spec.name}: {spec.channels}-channel models are not supported (RGB)")
    if spec.weights is not None and weights is None:
        raise ModelError(f"{spec.name}: its weights file is needed to build it")
    desc = (
        _build_spandrel(spec, weights) if spec.is_spandrel else _build_family(spec, scale, weights)
    )
    if desc.scale != scale:
        raise ModelError(
            f"{spec.name}: the weights are a x{desc.scale} model but the manifest says x{scale}"
        )
    if spec.meta.params is not None and desc.params != spec.meta.params:
        raise ModelError(
            f"{spec.name}: the weights hold {desc.params:,} parameters, the manifest "
            f"{spec.meta.params:,}; the manifest does not describe this file"
        )
    h = spec.hints
    return dataclasses.replace(
        desc,
        supports_half=desc.supports_half and h.fp16,
        supports_bf16=desc.supports_bf16 and h.bf16,
        tiling=desc.tiling if h.tiling else Tiling.INTERNAL,
        size=SizeRequirements(
            minimum=max(desc.size.minimum, h.minimum),
            multiple_of=math.lcm(desc.size.multiple_of, h.multiple_of),
        ),
        default_tile=h.default_tile,
        sha256=spec.weights.sha256 if spec.weights is not None else None,
    )


def _build_spandrel(spec: ModelSpec, weights: Path | None) -> ModelDescriptor:
    assert weights is not None  # spandrel needs tensors to know the architecture
    desc = descriptor_from_state_dict(read_state_dict(weights), spec.name)
    if desc.family != spec.family:
        raise ModelError(
            f"{spec.name}: {weights.name} holds a {desc.family} model, "
            f"but its manifest says {spec.family}"
        )
    return desc


def _build_family(spec: ModelSpec, scale: int, weights: Path | None) -> ModelDescriptor:
    if spec.family not in FAMILIES:
        raise ModelError(
            f"{spec.name}: unknown architecture family {spec.family!r} "
            f"(known: {', '.join(sorted(FAMILIES))}, or spandrel:<architecture>)"
        )
    state_dict = read_state_dict(weights) if weights is not None else None
    return get_family(spec.family).instantiate(spec.name, spec.build, scale, state_dict)
