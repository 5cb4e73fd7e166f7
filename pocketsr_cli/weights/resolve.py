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
hashed on every run).  A manifest may list several files (``[[weights]]``), each resolved
so, and its family merges their state dicts.  A file whose publisher gives no SHA-256 is
fetched only with ``allow_unverified`` and then held to the digest it arrived with, and a
pickle that needs code to load is read only with ``trust_pickle``, through a safetensors
copy made once (both: ``trust.py``).  An architecture family that needs an optional extra
says so before anything is downloaded.

``upscale`` does not ask for one scale up front: :func:`open_family` gives it every variant
of the model (a family ``pocketsr-compact`` with ×2 and ×4, a resampler at any factor, a
weights file at its own), loaded one by one as they are needed; ``sizing`` decides which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pocketsr_cli import manifest
from pocketsr_cli.descriptor import ModelDescriptor, SizeRequirements, Tiling
from pocketsr_cli.errors import (
    ModelError,
    NoVariantError,
    UnsafePickleError,
    first_line,
    present,
)
from pocketsr_cli.manifest import Hints, ModelSpec, Origin, WeightsSpec, load_manifests
from pocketsr_cli.registry import FAMILIES, get_family
from pocketsr_cli.sizing import pick_scale, scales_text
from pocketsr_cli.spelling import (
    ALLOW_UNVERIFIED,
    MODEL,
    OUTSCALE,
    SCALE,
    TRUST_PICKLE,
    Option,
    offers,
)
from pocketsr_cli.weights import trust
from pocketsr_cli.weights.cache import (
    is_offline,
    remove_empty_folder,
    sha256_file,
    user_models_dir,
    weights_path,
)
from pocketsr_cli.weights.load import (
    OTHER_MODEL_SUFFIXES,
    WEIGHT_SUFFIXES,
    check_whole,
    descriptor_from_state_dict,
    image_hint,
    read_state_dict,
)
from pocketsr_cli.weights.verify import file_matches, remember

if TYPE_CHECKING:
    import torch

    from pocketsr_cli.weights.download import ProgressCallback

DEFAULT_MODEL = "pocketsr-compact-x4"  # bundled; -s 2 picks its ×2 variant, pocketsr-compact-x2

# Names pocketsr once bundled and no longer does -> why, and what to use instead.  Asking
# for one says so instead of "unknown model" (its card stays in models/ with the command
# that trained it).
WITHDRAWN: dict[str, str] = {
    "pocketsr-nano-x4": (
        "its visible detail was at lanczos level under near-Nyquist grain "
        "(hf 17 × its detail; models/pocketsr-nano-x4.md); use pocketsr-compact-x4 "
        "(the default), or lanczos where speed matters more than detail"
    ),
}

Where = Literal["bundled", "user", "cached", "remote", "missing", "damaged"]

# Why a file nothing vouches for is read as a weights file before its digest is pinned,
# added to the refusal of one that is not when its manifest publishes no size either.
_CUT_SHORT_LOOKS_WHOLE = (
    "with no SHA-256 or size published, a download cut short looks whole when the server "
    "does not give its length"
)


def resolve_model(
    ref: str | None,
    scale: int | None = None,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
    allow_unverified: bool = False,
    trust_pickle: bool = False,
) -> ModelDescriptor:
    """Resolve ``ref`` (a registry name or a weights file; None: the default model) and load it.

    ``offline`` (or ``POCKETSR_OFFLINE=1``) forbids any network access: a model whose
    weights are not on disk is then an error naming ``pocketsr models download NAME``.
    ``on_progress(bytes_done, total)`` is called while weights download.
    ``allow_unverified`` and ``trust_pickle``: see :func:`load_spec`.

    Raises:
        ModelError: unknown name, missing or damaged weights, a failed download, an
            unreadable file, an unknown architecture, or no variant at ``scale``.
    """
    ref = _checked_ref(ref)
    # 1. An explicit file: no manifest, the architecture is detected from the tensors.
    if is_weights_file(ref):
        path = Path(ref)
        desc = descriptor_from_state_dict(_file_tensors(ref, trust_pickle), path.name)
        if scale is not None and scale != desc.scale:
            resize = f" (use {OUTSCALE.given(scale)} to resize its result)"
            raise NoVariantError(
                f"{path.name} is a x{desc.scale} model; {SCALE.given(scale)} is not available"
                + (resize if offers(OUTSCALE) else "")
            )
        return desc
    # 2./3. A registry name: user manifests first, then bundled ones.
    problems: list[str] = []
    spec, use_scale = pick_spec(registry(problems), ref, scale, problems)
    # 2.-5. Its weights: beside the manifest, in the cache, or downloaded; always verified.
    return load_spec(
        spec,
        use_scale,
        offline=offline,
        on_progress=on_progress,
        allow_unverified=allow_unverified,
        trust_pickle=trust_pickle,
    )


def load_spec(
    spec: ModelSpec,
    scale: int,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
    allow_unverified: bool = False,
    trust_pickle: bool = False,
) -> ModelDescriptor:
    """``spec`` at ``scale``, ready: its family checked, its weights located (downloaded if
    need be), verified, read and built.

    ``allow_unverified``: fetch (or take from the cache) a file whose publisher gives no
    SHA-256, and pin the digest it has (trust on first use).  ``trust_pickle``: read a
    pickle that needs code to load, once, into a safetensors copy (``trust.py``).

    Raises:
        ModelError: as :func:`resolve_model`, or the family needs an optional extra.
    """
    check_family(spec)
    weights: tuple[Path, ...] = ()
    if spec.weights is not None:
        weights = locate_weights(
            spec, offline=offline, on_progress=on_progress, allow_unverified=allow_unverified
        )
    return build_from_spec(spec, scale, weights, trust_pickle=trust_pickle)


def check_family(spec: ModelSpec) -> None:
    """Raise the family's own ModelError when it cannot run here (an optional extra is not
    installed), so that nothing is downloaded for it.  Unknown families pass: building
    reports them."""
    if spec.is_spandrel or spec.family not in FAMILIES:
        return
    check = get_family(spec.family).check
    if check is not None:
        check()


def locate_weights(
    spec: ModelSpec,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
    allow_unverified: bool = False,
    check_pinned: bool = False,
) -> tuple[Path, ...]:
    """The weights files of ``spec`` (manifest order), each verified, downloaded if need be.

    Order, per file: beside the manifest (user folder or bundled) -> the cache -> the
    manifest's mirrors, in order (resumable, locked against concurrent downloads; refused
    when ``offline`` or ``POCKETSR_OFFLINE`` is set).  Each must have its manifest's
    SHA-256 or, where the manifest has none, the one pinned on first use; without either,
    only ``allow_unverified`` fetches or takes it, and pins what it got.

    ``check_pinned`` (``models download``) also holds a file that only a pin vouches for
    to :func:`unreadable_pin`, as ``models verify`` does (a load would fail on it): a
    cached one that fails is, with ``allow_unverified``, deleted with its pin and fetched
    anew, as a missing one is; one beside the manifest (the user's own) is refused.  Not
    on every run: reading an old-format checkpoint to judge it costs a load.

    Raises:
        ModelError: a file beside the manifest is damaged, a file has no digest to be
            checked against and ``allow_unverified`` is not given, a pinned file is
            unreadable (``check_pinned``) and beside the manifest, or cached and
            ``allow_unverified`` is not given or the network is off, or a file is not on
            disk and cannot be downloaded (offline, no URL, every mirror failed).
    """
    if spec.weights is None:
        raise ModelError(f"{spec.name} has no weights (it is built without any)")
    return tuple(
        _locate_file(spec, w, offline, on_progress, allow_unverified, check_pinned)
        for w in spec.weight_files
    )


def expected_sha256(spec: ModelSpec, w: WeightsSpec) -> str | None:
    """The digest ``spec``'s file ``w`` must have: its manifest's, else the one pinned on
    first use, else None (not fetched yet, or never pinned)."""
    return w.sha256 or trust.pinned(spec.name, w.file)


def unreadable_pin(spec: ModelSpec, w: WeightsSpec, path: Path) -> str | None:
    """Why ``spec``'s file ``w`` at ``path`` cannot be read as weights
    (``load.check_whole``: a safetensors header, a zip directory) when only a digest
    pinned on first use vouches for it; None when it can be, or when its manifest gives
    its SHA-256 (the publisher's file is what it is, and is not opened).

    A pin says only that the file has not changed since it was pinned: one pinned before
    pins were checked for readability (a download cut short) matches its pin and fails
    every load, so ``models verify`` asks this too.
    """
    return None if w.sha256 is not None else _not_whole(path)


def _not_whole(path: Path, name: str | None = None) -> str | None:
    """Why ``path`` (``name``, when its own is temporary) cannot be read as a weights file
    (``load.check_whole``), or None: the check a file nothing vouches for passes before its
    digest is pinned (the ``download.FileCheck`` of a first-use download)."""
    try:
        check_whole(path, name=name)
    except UnsafePickleError:
        return None  # whole; reading it says what it needs (trust_pickle)
    except ModelError as exc:
        return str(exc)
    return None


def _locate_file(
    spec: ModelSpec,
    w: WeightsSpec,
    offline: bool,
    on_progress: ProgressCallback | None,
    allow_unverified: bool,
    check_pinned: bool = False,
) -> Path:
    expected = expected_sha256(spec, w)
    beside = spec.path.parent / w.file
    if beside.is_file():
        if expected is None:
            return _first_use(spec, w, beside, allow_unverified)
        if not file_matches(beside, expected, w.size):
            raise ModelError(_damaged_message(spec, beside))
        problem = unreadable_pin(spec, w, beside) if check_pinned else None
        if problem is not None:  # not a download: nothing to fetch anew
            raise ModelError(
                f"{spec.name}: {beside} has the digest pinned for it on first use, but is no "
                f"whole weights file ({problem}); it is not a download, so it cannot be "
                f"fetched anew: {_own_fix(spec)}"
            )
        return beside
    cached = weights_path(spec.name, w.file)
    if expected is None and cached.is_file():  # put there by hand, or its pin was removed
        return _first_use(spec, w, cached, allow_unverified)
    if expected is not None and file_matches(cached, expected, w.size):
        problem = unreadable_pin(spec, w, cached) if check_pinned else None
        if problem is None:
            return cached
        _drop_unreadable_pin(spec, w, cached, problem, offline, allow_unverified)
        expected = None
    if not w.urls:
        raise ModelError(
            f"{spec.name}: weights {w.file} are missing from {spec.path.parent} and its "
            "manifest names no download URL"
        )
    if expected is None and not allow_unverified and not offline:
        raise ModelError(
            f"{spec.name}: its publisher gives no SHA-256 for {w.file}, so the download "
            f"cannot be checked; `{_fetch_command(spec)}`{_or_here(ALLOW_UNVERIFIED)} "
            "fetches it and pins the digest it arrives with, which every later run then "
            "checks (trust on first use)"
        )
    # Imported here: the HTTP stack is the heaviest import on the way to the registry, and
    # `--help`, shell completion and `models list` only read manifests.
    from pocketsr_cli.weights.download import MirrorsFailed, download_file

    rejected: list[str] = []  # what mirrors delivered that was no whole weights file

    def whole(path: Path, name: str) -> str | None:
        problem = _not_whole(path, name)
        if problem is not None:
            rejected.append(problem)
        return problem

    try:
        download_file(
            list(w.urls),
            cached,
            sha256=expected,
            size=w.size,
            on_progress=on_progress,
            # False defers to POCKETSR_OFFLINE; True forces offline whatever the environment.
            offline=True if offline else None,
            fetch_hint=_fetch_command(spec),
            # Pinned only once whole: a mirror that delivers a file cut short fails as a
            # mirror, and the next one is tried.
            check=whole if expected is None else None,
        )
    except ModelError as exc:
        remove_empty_folder(cached.parent)  # a first fetch that failed leaves no folder
        # The downloader knows the file, not the model: a run names a model (or none, for
        # the default), and a file such as `model.safetensors` says nothing of which.
        message = f"{spec.name}: {exc}"
        if w.sha256 is None and expected is not None and "checksum mismatch" in message:
            message += (
                f" (the expected digest was pinned on first use, in "
                f"{weights_path(spec.name, trust.PINS_NAME)}; if the publisher has replaced "
                f"the file, delete that pin and {_rerun(ALLOW_UNVERIFIED, spec.name)})"
            )
        if rejected:
            message += (
                " (what was received could not be read as a weights file, so it was deleted "
                "and nothing was pinned"
                + (f": {_CUT_SHORT_LOOKS_WHOLE}" if w.size is None else "")
                + "; run again to fetch it anew)"
            )
        if isinstance(exc, MirrorsFailed) and spec.origin == "user":
            # The user's own manifest: a URL gone stale is theirs to correct, and the
            # message is all that tells them in which file.
            message += f" (its URLs are listed in {spec.path}: correct a stale one there)"
        raise ModelError(message) from exc
    if expected is None:
        return _pin(spec, w, cached, checked=True)
    remember(cached, expected)  # download_file hashed it while streaming
    return cached


def _drop_unreadable_pin(
    spec: ModelSpec,
    w: WeightsSpec,
    cached: Path,
    problem: str,
    offline: bool,
    allow_unverified: bool,
) -> None:
    """Delete the cached file ``cached`` of ``spec``'s ``w``, which has its pinned digest
    yet cannot be read as weights (``problem``), and its pin: it is then missing, and its
    download a first use again.

    Raises:
        ModelError: ``allow_unverified`` is not given (what is fetched anew is trusted on
            first use), the network is off, or the file cannot be deleted (another
            pocketsr process holds its download lock, or the file system refuses).
    """
    said = (
        f"{spec.name}: {cached} has the digest pinned for it on first use, but is no whole "
        f"weights file ({problem})"
    )
    if not w.urls:
        raise ModelError(f"{said}; its manifest names no URL to fetch it anew from")
    if not allow_unverified:
        raise ModelError(
            f"{said}; {_rerun(ALLOW_UNVERIFIED, spec.name)} to delete it and its pin and "
            "fetch it anew, trusting what arrives on first use"
        )
    if offline or is_offline():
        raise ModelError(f"{said}; run again while online to fetch it anew")
    from pocketsr_cli.weights.download import discard  # the HTTP stack: see _locate_file

    try:
        deleted = discard(cached, _not_whole)
    except OSError as exc:
        raise ModelError(f"{said}; it could not be deleted ({exc.strerror}): delete it") from exc
    if not deleted:
        raise ModelError(
            f"{said}; another pocketsr process is replacing it now: run again once it has ended"
        )
    trust.unpin(spec.name, w.file)


def _first_use(spec: ModelSpec, w: WeightsSpec, path: Path, allow_unverified: bool) -> Path:
    """A file on disk that nothing vouches for: pinned as it is when allowed."""
    if not allow_unverified:
        raise ModelError(
            f"{spec.name}: {path} has no SHA-256 to be checked against (its publisher gives "
            f"none and none was pinned); {_rerun(ALLOW_UNVERIFIED, spec.name)} to trust "
            "this file and pin its digest"
        )
    if w.size is not None and path.stat().st_size != w.size:
        raise ModelError(f"{spec.name}: {path} is not {w.size} bytes long, as its manifest says")
    return _pin(spec, w, path)


def _pin(spec: ModelSpec, w: WeightsSpec, path: Path, *, checked: bool = False) -> Path:
    """Pin the digest ``path`` has as that of ``spec``'s file ``w``, once it is seen to be
    a whole weights file (``load.check_whole``): nothing else vouches for it, and with no
    size published nor a length from the server, a download cut short looks complete.
    One that is not is refused and, in the cache, deleted, so that the next run fetches
    it anew rather than pin it.  ``checked``: it was, by the downloader that delivered it.

    Raises:
        ModelError: the file cannot be read, or is not a whole weights file.
    """
    problem = None if checked else _not_whole(path)
    if problem is not None:
        if path != weights_path(spec.name, w.file):  # beside the manifest: the user's own
            raise ModelError(f"{spec.name}: {problem}; its digest was not pinned")
        # Under its download lock, with the lock file and its folder: a download cut short
        # leaves nothing behind.  Imported here: the HTTP stack (see _locate_file).
        from pocketsr_cli.weights.download import discard

        try:
            fate = (
                "it was deleted from the cache, not pinned"
                if discard(path, _not_whole)
                else "it is not pinned (another pocketsr process is replacing it)"
            )
        except OSError as unlink_exc:
            fate = (
                f"it is not pinned, but could not be deleted ({unlink_exc.strerror}): delete {path}"
            )
        why = f" ({_CUT_SHORT_LOOKS_WHOLE})" if w.size is None else ""
        raise ModelError(f"{spec.name}: {problem}; {fate}{why}; run again to fetch it anew")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    trust.pin(spec.name, w.file, digest)
    remember(path, digest)
    return path


def _or_here(option: Option) -> str:
    """`` (or OPTION here)`` where the command in force takes ``option``, else nothing."""
    return f" (or {option} here)" if offers(option) else ""


def _rerun(option: Option, name: str | None, path: Path | None = None) -> str:
    """Advice that needs ``option`` (``--allow-unverified``, ``--trust-pickle``): "run
    again with it" where the command in force takes it; else the command that does, which
    keeps what it pins or converts for every later one: ``models download NAME`` for the
    registry model ``name``, ``upscale -m PATH`` (on any image) for the weights file
    ``path`` (``eval`` and ``bench`` take neither option)."""
    if offers(option):
        return f"run again with {option}"
    if name is not None:
        return f"run `pocketsr models download {name} {option}`"
    return f"run `pocketsr upscale IMAGE -m {path} {option}` once (any image)"


def _fetch_command(spec: ModelSpec) -> str:
    """The command that fetches ``spec``'s weights (allowing what nothing vouches for yet)."""
    unpinned = any(expected_sha256(spec, w) is None for w in spec.weight_files)
    return f"pocketsr models download {spec.name}" + (" --allow-unverified" if unpinned else "")


def _damaged_message(spec: ModelSpec, path: Path) -> str:
    return (
        f"{spec.name}: {path} does not have the SHA-256 its manifest records "
        f"(damaged or replaced); {_own_fix(spec)}"
    )


def _own_fix(spec: ModelSpec) -> str:
    """What replaces a bad weights file beside ``spec``'s manifest (no download can)."""
    return {
        "user": f"import it again with `pocketsr models import ... --name {spec.name} --force`",
        "bundled": "reinstall pocketsr",
    }[spec.origin]


# --- the registry -------------------------------------------------------------------------


def manifest_folders() -> list[tuple[Origin, Path]]:
    """Where manifests are read from, in precedence order: the user folder, then bundled."""
    return [("user", user_models_dir()), ("bundled", manifest.bundled_dir())]


def registry(
    problems: list[str] | None = None, unreadable: list[Path] | None = None
) -> dict[str, ModelSpec]:
    """Every model known by name (user models shadow bundled ones of the same name).

    Reads manifests only: fast, offline, no weights are opened.  With ``problems`` given,
    unreadable user manifests are skipped and described there instead of raising (and
    their paths put in ``unreadable``, when given).
    """
    return load_manifests(manifest_folders(), problems=problems, unreadable=unreadable)


def case_collisions(specs: Mapping[str, ModelSpec]) -> list[str]:
    """One line per group of models in ``specs`` (:func:`registry`) whose names differ
    only in case (``manifest.case_twins``), saying what is wrong and what to do; empty
    when there is none (what ``pocketsr doctor`` and ``models list`` report)."""
    lines = []
    for group in manifest.case_twins(specs):
        names = " and ".join(f"{s.name!r} ({s.path})" for s in group)
        ours = [s.name for s in group if s.origin == "user"]
        lines.append(
            f"models {names} differ only in case: one name on the disks of macOS and "
            "Windows, where they would share their downloads and imported files; remove one "
            f"(`pocketsr models remove {ours[-1] if ours else group[-1].name}`) or give it "
            "another name in its manifest"
        )
    return lines


def find_spec(name: str) -> ModelSpec:
    """The manifest called exactly ``name``.

    Raises:
        ModelError: no such model (the message lists the known names; for an image or an
            image's name, ``models info photo.jpg``, it says so as ``-m`` does:
            :func:`_image_message`), or a family's base name (the message lists its models).
    """
    problems: list[str] = []
    specs = registry(problems)
    if name not in specs:
        variants = sorted(n for n in specs if _base_of(n) == name)
        if variants:
            raise ModelError(
                f"{name} names a family of models ({', '.join(variants)}, one per factor: "
                f"{MODEL.given(name)} picks one by {SCALE}); name one of them here"
            )
        raise ModelError(_image_message(name) or _unknown_message(name, specs, problems))
    return specs[name]


def where(spec: ModelSpec) -> Where:
    """Where ``spec``'s weights are now, without hashing anything.

    ``bundled``/``user``: ships with pocketsr / was imported (or needs no weights);
    ``cached``: in the download cache; ``remote``: not (all) on this machine yet;
    ``damaged``: a file on this machine has not the size its manifest gives (a cut-off
    download, fetched again on use);
    ``missing``: a file that is not on this machine and has no URL to fetch it from (an
    imported model whose weights were deleted).
    """
    found = local_files(spec)
    sizes = [w.size for w in spec.weight_files]
    if any(p and not _right_size(p, size) for p, size in zip(found, sizes, strict=True)):
        return "damaged"
    if all(p is not None and p.parent == spec.path.parent for p in found):
        return spec.origin
    if all(p is not None for p in found):
        return "cached"
    lost = any(p is None and not w.urls for w, p in zip(spec.weight_files, found, strict=True))
    return "missing" if lost else "remote"


def _right_size(path: Path, size: int | None) -> bool:
    """Whether ``path`` has the size the manifest gives (any size when it gives none): a
    cut-off or foreign file is not the model's weights, whatever its name."""
    try:
        return size is None or path.stat().st_size == size
    except OSError:
        return False


def local_files(spec: ModelSpec) -> tuple[Path | None, ...]:
    """For each weights file of ``spec``, the one ``resolve_model`` would use without a
    download, unverified (beside the manifest, else in the cache), or None when it is not
    on this machine.  Empty for a model without weights."""
    found: list[Path | None] = []
    for w in spec.weight_files:
        beside = spec.path.parent / w.file
        cached = weights_path(spec.name, w.file)
        found.append(beside if beside.is_file() else cached if cached.is_file() else None)
    return tuple(found)


OverlapSource = Literal["manifest", "build", "weights"]


class KnownOverlap(NamedTuple):
    """A model's seamless overlap (input pixels), where it was found, and whether it is
    derived for a shape nobody measured, an estimate (``ModelDescriptor.overlap_derived``)."""

    pixels: int
    source: OverlapSource
    derived: bool


def seamless_overlap_of(spec: ModelSpec) -> KnownOverlap | None:
    """The seamless overlap a run of ``spec`` takes as the model's own (its descriptor's
    ``seamless_overlap`` and ``overlap_derived``, :func:`build_from_spec`), and where it
    comes from, without loading the weights: the manifest's ``overlap`` and
    ``overlap_derived`` (``"manifest"``); where it states
    none (a model imported before its architecture was measured), what its network
    states, a pocketsr family's network built on the meta device from ``[build]``
    (``"build"``), a spandrel model's from its weights file's header, tensor shapes
    only (``"weights"``: a ``.safetensors`` file on this machine, or the copy a trusted
    pickle was converted to).  None: not known without loading (weights not here, a
    pickle, an architecture with none measured).
    """
    if spec.hints.overlap is not None:
        return KnownOverlap(spec.hints.overlap, "manifest", spec.hints.overlap_derived)
    if spec.is_spandrel:
        found = _spandrel_overlap(spec)
        return None if found is None else KnownOverlap(found[0], "weights", found[1])
    found = _family_overlap(spec)
    return None if found is None else KnownOverlap(found[0], "build", found[1])


def _family_overlap(spec: ModelSpec) -> tuple[int, bool] | None:
    """What a pocketsr family's network built from ``spec``'s ``[build]`` states as its
    overlap, and whether it is derived, built on the meta device (nothing allocated);
    None: not built so, or it states none."""
    import torch

    if spec.family not in FAMILIES:
        return None
    family = get_family(spec.family)
    try:
        if family.check is not None:
            family.check()  # (adcsr: an extra that is not installed)
        with torch.device("meta"):
            module = family.build(spec.build, spec.scale)
    except (ModelError, TypeError, ValueError, KeyError, RuntimeError):
        return None
    overlap = getattr(module, "seamless_overlap", None)
    if overlap is None:
        return None
    return int(overlap), bool(getattr(module, "overlap_derived", False))


def _spandrel_overlap(spec: ModelSpec) -> tuple[int, bool] | None:
    """``community.overlap_from_shapes`` of ``spec``'s one weights file, from its header."""
    from pocketsr_cli.weights.community import overlap_from_shapes
    from pocketsr_cli.weights.load import read_shapes

    if len(spec.weight_files) != 1:
        return None
    (w,) = spec.weight_files
    (path,) = local_files(spec)
    if path is not None and path.suffix.lower() != ".safetensors":
        digest = expected_sha256(spec, w)
        path = None if digest is None else trust.converted_copy(spec.name, w.file, digest)
    if path is None:
        return None
    try:
        return overlap_from_shapes(read_shapes(path))
    except ModelError:
        return None


def looks_like_path(ref: str) -> bool:
    """A weights file rather than a registry name."""
    return Path(ref).suffix.lower() in WEIGHT_SUFFIXES or "/" in ref or "\\" in ref


def _checked_ref(ref: str | None) -> str:
    """``ref``, or the default model for None.

    Raises:
        ModelError: an empty name (``-m "$MODEL"`` with ``MODEL`` unset), or a URL (saying
            why pocketsr could not fetch it, if it could not: ``download.url_problem``).
    """
    if ref is None:
        return DEFAULT_MODEL
    if not ref.strip():
        raise ModelError("an empty model name: name a model ('pocketsr models list') or a file")
    if ref.lower().startswith("file://"):
        from urllib.parse import unquote, urlsplit

        path = unquote(urlsplit(ref).path)
        raise ModelError(f"{ref} is a file URL: give the path itself, {MODEL.given(path)}")
    if "://" in ref:
        # The HTTP stack (see _locate_file), for a URL given where none is taken.
        from pocketsr_cli.weights.download import url_problem

        problem = url_problem(ref)
        if problem is not None:  # importing it would only be refused for it
            raise ModelError(
                f"{ref} is a URL, and one pocketsr cannot fetch: {problem}; a model is a "
                "name or a local weights file"
            )
        raise ModelError(
            f"{ref} is a URL: a model is a name or a local weights file. To use weights "
            "from a URL, import them once: pocketsr models import URL --name NAME "
            "--sha256 DIGEST, then use that NAME"
        )
    return ref


def is_weights_file(ref: str) -> bool:
    """Whether ``ref`` names a weights file rather than a registry model: a weights suffix
    or a path separator says so; an existing file or folder (``.``, ``..``: refused as a
    folder when read), or a name ending like another format's model file (``nope.param``,
    ``.bin``, ``.onnx``: missing, it is a file not found, as ``nope.pth`` is), with
    neither counts only when its name is no registry name (a file called ``lanczos`` in
    the current folder must not take over ``-m lanczos``; a model may be called
    ``x4.bin``)."""
    if looks_like_path(ref):
        return True
    if Path(ref).suffix.lower() not in OTHER_MODEL_SUFFIXES:
        try:
            if not present(Path(ref)):  # a folder too ('.', '..'): reading it says it is one
                return False
        except OSError:  # a name that cannot even be a file's (too long): a model name
            return False
    names = registry([])
    return ref not in names and all(_base_of(name) != ref for name in names)


def _image_message(ref: str) -> str | None:
    """What to tell a user who gave an image as the model (``-m photo.jpg``, meant as an
    input), or None (``load.image_hint``).  Checked before the file is read as weights,
    whose reader would only say that it is no checkpoint.  What a model is given as is
    said in the face's terms: ``-m takes ...``, ``model takes ...`` (the API), and with no
    option where the command has no ``-m`` (``models info photo.jpg``: its argument)."""
    suffixes = ", ".join(WEIGHT_SUFFIXES)
    if offers(MODEL):
        takes = f"{MODEL} takes a model name or a weights file ({suffixes})"
    else:
        takes = f"a model is given by its name or as a weights file ({suffixes})"
    return image_hint(ref, takes)


def _file_tensors(ref: str, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """The tensors of the weights file ``ref`` names (:func:`is_weights_file`), as ``-m
    FILE`` reads them: an image given instead is refused first (:func:`_image_message`).

    Raises:
        ModelError: an image, or a file :func:`_read_file` cannot read.
    """
    image = _image_message(ref)
    if image is not None:
        raise ModelError(image)
    return _read_file(Path(ref), trust_pickle)


def _read_file(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """The tensors of a weights file given by path; a pickle that needs code to load is read
    through a safetensors copy kept in the cache under its digest (as a registry model's
    is), made once with ``trust_pickle`` and used from then on without it."""
    try:
        return read_state_dict(path)
    except UnsafePickleError as exc:
        digest = sha256_file(path)
        model = f"file-{digest[:16]}"  # the cache's folder for this file's copy
        copy = trust.converted_copy(model, path.name, digest)
        if copy is not None:  # converted earlier: the pickle is not opened again
            return trust.read_converted(copy)
        if not trust_pickle:
            raise UnsafePickleError(
                f"{exc}; or, if you trust where it comes from, "
                f"{_rerun(TRUST_PICKLE, None, path)}: it is then loaded once, running its "
                "code, and kept as safetensors"
            ) from exc
    return trust.read_converted(trust.convert_pickle(model, path, digest))


def _base_of(name: str) -> str:
    variant = manifest.variant_of(name)
    return variant[0] if variant else name


def _unknown_message(ref: str, specs: Mapping[str, ModelSpec], problems: list[str]) -> str:
    if ref in WITHDRAWN:
        return f"model {ref!r} is no longer bundled: {WITHDRAWN[ref]}"
    message = f"unknown model {ref!r}"
    origins: dict[str, Origin] = {}  # every name and family base, bundled if any is
    for name, spec in specs.items():
        for known in (name, _base_of(name)):
            if origins.get(known) != "bundled":
                origins[known] = spec.origin
    missing = _missing_variant(ref, specs)
    meant = [] if missing else _meant_names(ref, origins)
    if missing:
        message += f": {missing}"
    elif meant:
        *others, last = (repr(name) for name in meant)
        message += f" (did you mean {', '.join(others) + ' or ' if others else ''}{last}?)"
    message += f"; available: {', '.join(sorted(specs))}"
    if problems:
        message += f" (skipped {len(problems)} unreadable manifest(s): {'; '.join(problems)})"
    return message


def _missing_variant(ref: str, specs: Mapping[str, ModelSpec]) -> str | None:
    """For ``ref`` named as a family's variant that the family lacks (``pocketsr-compact-x3``),
    which factors it has and, where the face has ``-s``, what ``upscale`` runs for the base
    name with ``-s N`` (``sizing.pick_scale``; README, "Size"); None when ``ref`` is no
    ``{base}-x{N}`` of a known family."""
    variant = manifest.variant_of(ref)
    if variant is None:
        return None
    base, want = variant
    family = [s for n, s in specs.items() if _base_of(n) == base and not s.any_scale]
    if not family:
        return None
    scales = sorted(s.scale for s in family)
    text = f"{base} has no ×{want} ({scales_text(scales)})"
    if offers(SCALE):
        run = pick_scale(want, scales)
        if all(s.family == "pcsr" for s in family):  # PCSR draws any factor itself
            then = f"drawing ×{want} itself"
        else:
            then = f"and {'resizes' if run > want else 'enlarges with Lanczos'} to ×{want}"
        text += f"; upscale {MODEL.given(base)} {SCALE.given(want)} runs its ×{run} {then}"
    return text


# A typed name this long or longer is offered the known names it begins (``realesrgan``:
# ``realesrgan-x4plus``); a shorter one would begin too many to help.
_MIN_PREFIX = 3


def _meant_names(ref: str, origins: Mapping[str, Origin]) -> list[str]:
    """The known names (keys of ``origins``) an unknown ``ref`` most likely meant: those
    equal to ``ref`` but for case, if any; else the names ``ref`` begins (case aside, when
    it has :data:`_MIN_PREFIX` characters or more) and the one most alike (difflib's ratio
    0.75 or more, case aside), in sorted order, a family's base standing for its variants
    (``pocketsr``: ``pocketsr-compact`` and ``pocketsr-nano``, not each ``-xN``) and one
    of names equal but for case for all; none when nothing is close.

    A bundled name equal to ``ref`` but for case is meant (``LANCZOS``: ``lanczos``, even
    beside an imported ``Lanczos``).  Otherwise every name equal to ``ref`` but for case,
    in sorted order (``FOO``: ``Foo`` and ``foo``, user models made by hand or by an
    older version: the case ``ref`` is typed in cannot tell which was meant).  Otherwise
    the name most alike with case aside; among names equally alike so (``lanczos`` and
    ``Lanczos``), the one most alike in case too (``lanczso``: ``lanczos``; ``Lanczso``:
    ``Lanczos``), then a bundled one, then the first in sorted order: never the order the
    names happen to be held in."""
    folded = ref.casefold()
    same = sorted(n for n in origins if n.casefold() == folded)
    bundled = [n for n in same if origins[n] == "bundled"]
    if same:
        return bundled[:1] or same

    def likeness(name: str) -> tuple[float, float, bool]:
        return (
            difflib.SequenceMatcher(None, folded, name.casefold()).ratio(),
            difflib.SequenceMatcher(None, ref, name).ratio(),
            origins[name] == "bundled",
        )

    best = max(sorted(origins), key=likeness, default=None)
    meant = [best] if best is not None and likeness(best)[0] >= 0.75 else []
    if len(ref) >= _MIN_PREFIX:
        meant += sorted(n for n in origins if n.casefold().startswith(folded) and n not in meant)
    meant = [n for n in meant if n == _base_of(n) or _base_of(n) not in meant]
    kept: dict[str, str] = {}  # by casefold: the name most alike of those equal but for case
    for name in meant:
        other = kept.get(name.casefold())
        if other is None or likeness(name) > likeness(other):
            kept[name.casefold()] = name
    return sorted(kept.values(), key=lambda n: (n.casefold(), n))


def runs_at_any_factor(ref: str | None) -> bool:
    """Whether ``-m ref`` names a resampler (a manifest with ``any_scale``: ``bicubic``,
    ``lanczos``), which runs at whatever factor it is asked for.  Read from the manifests
    alone, nothing loaded; False for the default model (None), a weights file, and a name
    no readable manifest has (resolving it says why)."""
    if ref is None or not ref.strip() or "://" in ref or is_weights_file(ref):
        return False
    spec = registry([]).get(ref)
    return spec is not None and spec.any_scale


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
        raise NoVariantError(
            f"{base} has no ×{want} variant; it has {scales_text(scales)} "
            f"(upscale {SCALE.given(want)} runs the nearest larger one and resizes its result; "
            f"{MODEL.given('lanczos')} and {MODEL.given('bicubic')} work at any factor)"
        )
    raise ModelError(_image_message(ref) or _unknown_message(ref, specs, problems or []))


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
    _allow_unverified: bool = field(default=False, repr=False)
    _trust_pickle: bool = field(default=False, repr=False)

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
            raise NoVariantError(
                f"{self.name} has no ×{scale} variant; it has {scales_text(self.scales)}"
            )
        desc = load_spec(
            spec,
            scale,
            offline=self._offline,
            on_progress=self._on_progress,
            allow_unverified=self._allow_unverified,
            trust_pickle=self._trust_pickle,
        )
        self._loaded[scale] = desc
        return desc


def open_family(
    ref: str | None,
    *,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
    allow_unverified: bool = False,
    trust_pickle: bool = False,
) -> ModelFamily:
    """Every variant of ``ref`` (None: the default model), without loading any registry one.

    ``allow_unverified`` and ``trust_pickle`` apply to registry models (:func:`load_spec`).

    A registry name is a variant (``pocketsr-compact-x4``) or a base (``pocketsr-compact``):
    either way its family is every manifest ``{base}-x{N}`` (user manifests shadow
    bundled ones, as in :func:`resolve_model`).  A weights file is loaded now (its scale is
    in its tensors) and hashed, so that outputs can record its SHA-256.

    Raises:
        ModelError: an unknown name, or a weights file that cannot be read or loaded.
    """
    ref = _checked_ref(ref)
    if is_weights_file(ref):
        desc = resolve_model(ref, offline=offline, trust_pickle=trust_pickle)
        # It was just read: only a race could fail to hash it; then no digest is recorded.
        with contextlib.suppress(OSError):
            desc = dataclasses.replace(desc, sha256=sha256_file(Path(ref)))
        return ModelFamily(desc.name, (desc.scale,), desc.scale, _loaded={desc.scale: desc})
    problems: list[str] = []
    specs = registry(problems)
    named = specs.get(ref)
    access: dict[str, Any] = {
        "_offline": offline,
        "_on_progress": on_progress,
        "_allow_unverified": allow_unverified,
        "_trust_pickle": trust_pickle,
    }
    if named is not None and named.any_scale:
        return ModelFamily(ref, (), named.scale, _any_scale=named, **access)
    base = _base_of(ref) if named is not None else ref
    variants = {s.scale: s for n, s in specs.items() if _base_of(n) == base and not s.any_scale}
    if named is not None:
        variants[named.scale] = named  # the variant named wins over a same-scale sibling
    if not variants:
        raise ModelError(_image_message(ref) or _unknown_message(ref, specs, problems))
    scales = tuple(sorted(variants))
    default = named.scale if named is not None else pick_scale(4, scales)
    return ModelFamily(base, scales, default, _specs=variants, **access)


# --- a weights file described -------------------------------------------------------------

# How ``models info FILE`` names the floating-point types a file stores its tensors in: as
# --precision names them where it has the type.
_STORED_AS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class WeightsFile:
    """What is known of a weights file given by path (``models info FILE``) once it is
    loaded as ``-m FILE`` loads it.

    Attributes:
        path: the file, as given.
        model: the model it holds (``model.sha256``: the file's digest; ``model.family``
            the architecture detected, ``scale``, ``params``).
        size: the file's size in bytes.
        stored: the floating-point types its tensors are stored in, sorted (``fp16``,
            ``fp32``, ``bf16``; another type by torch's name, ``float64``).
        hints: what ``models import`` would write as its manifest's ``[hints]``
            (:func:`hints_of`): tiling, size requirements, fp16/bf16 safety, overlap.
    """

    path: Path
    model: ModelDescriptor
    size: int
    stored: tuple[str, ...]
    hints: Hints


def inspect_file(ref: str, *, trust_pickle: bool = False) -> WeightsFile:
    """Load the weights file ``ref`` as ``-m ref`` does (:func:`resolve_model`'s first
    step: an image refused, a pickle that needs code read through its safetensors copy,
    made only with ``trust_pickle``) and describe it.  Nothing is written but that copy.

    Raises:
        ModelError: the file is missing, unreadable, an image, no weights, or of no
            architecture pocketsr or spandrel knows; or ``ref`` is a URL (as ``-m ref``
            says it).
    """
    path = Path(_checked_ref(ref))
    tensors = _file_tensors(str(path), trust_pickle)
    stored = sorted(
        {
            _STORED_AS.get(name, name)
            for t in tensors.values()
            if t.is_floating_point()
            for name in [str(t.dtype).removeprefix("torch.")]
        }
    )
    desc = descriptor_from_state_dict(tensors, path.name)
    try:
        size, digest = path.stat().st_size, sha256_file(path)
    except OSError as exc:  # it was just read: only a race could take it away meanwhile
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return WeightsFile(
        path=path,
        model=dataclasses.replace(desc, sha256=digest),
        size=size,
        stored=tuple(stored),
        hints=hints_of(desc),
    )


# --- building -----------------------------------------------------------------------------


def build_from_spec(
    spec: ModelSpec,
    scale: int,
    weights: Path | Sequence[Path] | None = None,
    *,
    trust_pickle: bool = False,
) -> ModelDescriptor:
    """Instantiate ``spec`` at ``scale`` with its (already verified) ``weights`` files, in
    manifest order (a single path for a single file).

    Registry families are built from ``[build]`` and then given the weights (every tensor
    must fit; several files are merged by the family first); ``spandrel:<id>`` models are
    built by spandrel from the weights, which must be of that architecture.  The manifest's
    hints can only restrict what the network itself allows (a manifest may mark fp16
    unsafe, not make it safe); its ``default_tile`` is passed on, and its ``overlap`` wins
    over the one measured for the architecture, or derived for its depth (what a pocketsr
    network states, or ``community.seamless_overlap``), which a manifest that states none
    (one imported before that was measured) still gets.
    A pickle that needs code to load is read through its safetensors copy, made now if
    ``trust_pickle``.

    Raises:
        ModelError: unknown family, missing weights, weights that do not fit the manifest
            (architecture, scale or parameter count), or a non-RGB model.
    """
    if spec.channels != 3:
        raise ModelError(f"{spec.name}: {spec.channels}-channel models are not supported (RGB)")
    paths = (weights,) if isinstance(weights, Path) else tuple(weights or ())
    if len(paths) != len(spec.weight_files):
        count = len(spec.weight_files)
        needed = "its weights file is" if count == 1 else f"its {count} weights files are"
        raise ModelError(f"{spec.name}: {needed} needed to build it")
    digests = [expected_sha256(spec, w) for w in spec.weight_files]
    state_dicts = [
        _read_weights(spec, w, path, digest, trust_pickle)
        for w, path, digest in zip(spec.weight_files, paths, digests, strict=True)
    ]
    desc = (
        _build_spandrel(spec, state_dicts)
        if spec.is_spandrel
        else _build_family(spec, scale, state_dicts)
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
        cpu_bf16=desc.supports_bf16 and h.bf16 and h.cpu_bf16,
        tiling=desc.tiling if h.tiling else Tiling.INTERNAL,
        size=SizeRequirements(
            minimum=max(desc.size.minimum, h.minimum),
            multiple_of=math.lcm(desc.size.multiple_of, h.multiple_of),
            margin=max(desc.size.margin, h.margin),
        ),
        default_tile=h.default_tile,
        mean_anchor=h.mean_anchor,
        chroma_guard=h.chroma_guard,
        seamless_overlap=desc.seamless_overlap if h.overlap is None else h.overlap,
        overlap_derived=desc.overlap_derived if h.overlap is None else h.overlap_derived,
        sha256=_combined_digest(digests),
    )


def hints_of(desc: ModelDescriptor) -> Hints:
    """Every fact of ``desc`` that a manifest's ``[hints]`` states: the model
    :func:`build_from_spec` makes of the manifest is then ``desc`` again (what ``models
    import`` writes; what ``models info FILE`` shows).

    A descriptor read from a weights file (``descriptor_from_state_dict``) has only what
    its network states: no border margin, no mean anchoring, no chroma guard, no CPU bf16
    preference or default tile, which are a manifest's, chosen for a model and written in
    its card, and not stored in its weights file (the bundled models' files carry no
    metadata); its seamless overlap is the one measured for its architecture, if any, or
    derived for its depth (``weights.community.seamless_overlap``: ESRGAN x4 with 23
    blocks 40, SRVGG compact with 16 convolutions 16, with 32 31; or what a pocketsr
    network states, compact 16 for 16 convolutions, pcsr 8 with the FSRCNN backbone).
    So the bundled
    ``pocketsr-compact-x4.safetensors`` imported under another name runs as the plain
    network, as it does with ``-m FILE``.
    """
    return Hints(
        tiling=desc.tiling is not Tiling.INTERNAL,
        multiple_of=desc.size.multiple_of,
        minimum=desc.size.minimum,
        fp16=desc.supports_half,
        bf16=desc.supports_bf16,
        cpu_bf16=desc.cpu_bf16,
        default_tile=desc.default_tile,
        mean_anchor=desc.mean_anchor,
        margin=desc.size.margin,
        chroma_guard=desc.chroma_guard,
        overlap=desc.seamless_overlap,
        overlap_derived=desc.overlap_derived,
    )


def _combined_digest(digests: Sequence[str | None]) -> str | None:
    """One digest naming the weights: the file's own for a single file, else a SHA-256 of
    the files' (outputs record it to tell runs of different weights apart)."""
    if not digests or any(d is None for d in digests):
        return None
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(str(d) for d in digests).encode()).hexdigest()


def _read_weights(
    spec: ModelSpec, w: WeightsSpec, path: Path, digest: str | None, trust_pickle: bool
) -> dict[str, torch.Tensor]:
    """The tensors of ``spec``'s file ``w`` at ``path`` (verified to have ``digest``)."""
    if digest is not None and path.suffix.lower() != ".safetensors":
        copy = trust.converted_copy(spec.name, w.file, digest)
        if copy is not None:  # converted earlier: the pickle is not opened again
            return trust.read_converted(copy)
    try:
        return read_state_dict(path)
    except UnsafePickleError as exc:
        if not trust_pickle or digest is None:
            source = ", ".join(w.urls) or str(path)
            raise UnsafePickleError(
                f"{exc}; or, if you trust where it comes from ({source}), "
                f"{_rerun(TRUST_PICKLE, spec.name)}: it is then loaded once, running its "
                "code, and kept as safetensors"
            ) from exc
    except ModelError as exc:
        raise ModelError(_unreadable_message(spec, w, path, exc)) from exc
    return trust.read_converted(trust.convert_pickle(spec.name, path, digest))


def _unreadable_message(spec: ModelSpec, w: WeightsSpec, path: Path, exc: ModelError) -> str:
    """What to say of ``spec``'s file ``w`` at ``path``, verified but unreadable (``exc``):
    the model it belongs to, and, for a file in the cache, how to be rid of it."""
    message = f"{spec.name}: {exc}"
    if path != weights_path(spec.name, w.file):
        return message  # beside its manifest: _damaged_message's remedies do not apply
    remove = f"`pocketsr models remove {spec.name}`"
    if w.sha256 is None:  # pinned on first use (before pins were checked for readability)
        return (
            f"{message}; it is the file whose digest was pinned on first use ({path}): "
            f"{remove} deletes it and its pin, and `pocketsr models download {spec.name} "
            "--allow-unverified` fetches it anew"
        )
    return (
        f"{message}; it has the SHA-256 its manifest gives ({path}), so its manifest names "
        f"a file pocketsr cannot read; {remove} deletes it"
    )


def convert_pickles(spec: ModelSpec, paths: Sequence[Path]) -> list[Path]:
    """Make the safetensors copy of each of ``spec``'s located, verified ``paths`` that is a
    pickle needing code to load and has none yet (the user trusts it: ``--trust-pickle``);
    the copies made."""
    made = []
    for w, path in zip(spec.weight_files, paths, strict=True):
        digest = expected_sha256(spec, w)
        if digest is None or trust.converted_copy(spec.name, w.file, digest) is not None:
            continue
        if trust.needs_code(path):
            made.append(trust.convert_pickle(spec.name, path, digest))
    return made


def _build_spandrel(
    spec: ModelSpec, state_dicts: Sequence[dict[str, torch.Tensor]]
) -> ModelDescriptor:
    # spandrel needs tensors to know the architecture, from one file
    if len(state_dicts) != 1:
        raise ModelError(f"{spec.name}: spandrel models are one weights file each")
    assert spec.weights is not None
    desc = descriptor_from_state_dict(state_dicts[0], spec.name)
    if desc.family != spec.family:
        raise ModelError(
            f"{spec.name}: {spec.weights.file} holds a {desc.family} model, "
            f"but its manifest says {spec.family}"
        )
    return desc


def _build_family(
    spec: ModelSpec, scale: int, state_dicts: Sequence[dict[str, torch.Tensor]]
) -> ModelDescriptor:
    if spec.family not in FAMILIES:
        raise ModelError(
            f"{spec.name}: unknown architecture family {spec.family!r} "
            f"(known: {', '.join(sorted(FAMILIES))}, or spandrel:<architecture>)"
        )
    family = get_family(spec.family)
    state_dict = None
    if len(state_dicts) == 1:
        state_dict = state_dicts[0]
    elif len(state_dicts) > 1:
        if family.merge is None:
            raise ModelError(
                f"{spec.name}: {family.name} models are one weights file; the manifest "
                f"lists {len(state_dicts)}"
            )
        try:
            state_dict = family.merge(state_dicts)
        except (ValueError, KeyError) as exc:
            raise ModelError(f"{spec.name}: {first_line(exc)}") from exc
    return family.instantiate(spec.name, spec.build, scale, state_dict)
