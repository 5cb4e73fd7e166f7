"""Adding models to the user model folder, and removing model files from disk.

``pocketsr models import`` and ``import-ncnn`` store each model as two files in
``cache.user_models_dir()``::

    NAME.safetensors    the tensors (never a pickle, whatever the source format was);
                        NAME~.safetensors for a moment while ``--force`` replaces them
                        (for good when the old NAME.safetensors could not be deleted)
    NAME.toml           a generated manifest (see ``manifest.py``); its presence makes NAME
                        known to the resolver, so it is written last
    .verified.json      the hash memo of ``verify.py``

Before anything is written the model is built once (own families first, then spandrel),
so a file that pocketsr could not run is refused at import time rather than at upscale
time.  ``remove_model`` deletes an imported model or a model's downloaded weights; bundled
files are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsr_cli import fscase, manifest
from pocketsr_cli.atomicfile import (
    folder_write_problem,
    held_temp,
    locked_folder,
    replacing,
    sweep_stale_temps,
)
from pocketsr_cli.errors import ModelError, RemoveError, UsageError, present_file
from pocketsr_cli.manifest import Meta, ModelSpec, WeightsSpec, dump_manifest
from pocketsr_cli.spelling import DESCRIPTION, FORCE, LICENSE, MODEL, OUTSCALE, SHA256
from pocketsr_cli.weights import trust, verify
from pocketsr_cli.weights.cache import (
    is_offline,
    sha256_file,
    user_models_dir,
    weights_path,
)
from pocketsr_cli.weights.download import ProgressCallback, downloaded_once, url_problem
from pocketsr_cli.weights.load import (
    WEIGHT_SUFFIXES,
    descriptor_from_state_dict,
    image_hint,
    read_state_dict,
    write_safetensors,
)
from pocketsr_cli.weights.resolve import hints_of

if TYPE_CHECKING:
    import torch

# spandrel's RRDBNet (the ESRGAN it builds) has no growth-channel argument: always 32.
_SPANDREL_ESRGAN_GROWTH = 32


@dataclass(frozen=True)
class ImportRequest:
    """What to call an imported model and what to record about it.

    Attributes:
        name: the registry name (``-m NAME``); see ``manifest.is_valid_name``.
        license: the licence of the weights, as the user knows it.
        description: one line for ``models list``; generated when empty.
        force: replace an imported model of the same name.

    Raises:
        UsageError: a licence that is empty (or blank), or a licence or description of
            more than one line (the manifest and ``models list`` show each on one).
    """

    name: str
    license: str = "unknown"
    description: str = ""
    force: bool = False

    def __post_init__(self) -> None:
        if not self.license.strip():
            raise UsageError(
                f"an empty {LICENSE}: give the weights' licence, or leave it out for 'unknown'"
            )
        for option, text in ((LICENSE, self.license), (DESCRIPTION, self.description)):
            if text and text.splitlines() != [text]:  # \n, \r, and Unicode's other breaks
                raise UsageError(f"{option} must be one line: {text!r} has a line break")


@dataclass(frozen=True)
class Imported:
    """What an import stored.

    Attributes:
        spec: the imported model, as its manifest (now in place) defines it.
        not_removed: ``(path, why)`` for each weights file of the model it replaced
            (``--force``) that the disk would not let it delete.  The import itself
            worked: no manifest names those files any more, and they are left for the
            user to delete.
    """

    spec: ModelSpec
    not_removed: tuple[tuple[Path, str], ...] = ()


def is_url(source: str) -> bool:
    """Whether ``models import`` takes ``source`` for a URL (it has a scheme), which
    :func:`import_url` fetches or refuses, rather than a file to open."""
    return "://" in source


def import_file(request: ImportRequest, path: Path, *, sha256: str | None = None) -> Imported:
    """Import a weights file (``.safetensors``, ``.pth``, ``.pt``, ``.ckpt``) of any
    architecture pocketsr or spandrel can build.

    ``sha256``, when given, must be the digest of ``path``.

    Raises:
        UsageError: invalid or taken name, or a user model folder that cannot be written.
        ModelError: unreadable file, an image (``load.image_hint``), wrong digest, unknown
            architecture, not RGB -> RGB.
    """
    folder = _check_name(request)
    image = image_hint(
        str(path), f"an import takes a weights file ({', '.join(WEIGHT_SUFFIXES)}) or a URL"
    )
    if image is not None:  # before its bytes are read as weights ("not a checkpoint")
        raise ModelError(image)
    if sha256 is not None:
        _check_digest(path, sha256, label=path.name)
    return _import_state_dict(request, folder, read_state_dict(path), source=str(path))


def import_url(
    request: ImportRequest,
    url: str,
    *,
    sha256: str | None,
    offline: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Imported:
    """Download ``url`` (resumable, checked against ``sha256``) and import it.

    The download goes through the cache (``weights/_import-NAME/``) and is deleted once
    it has been read (under its download lock, which another import of the name, at the
    same moment, holds while it fetches or reads there), or once it has failed with
    nothing to resume.

    Raises:
        UsageError: a URL the downloader refuses (``download.url_problem``: plain http to
            another machine, another scheme), no ``sha256``, an invalid or taken name, or a
            URL that does not name a weights file; all before anything is fetched.
        ModelError: offline mode is on (``offline``, or ``POCKETSR_OFFLINE``), a download
            failure or mismatch (nothing is stored), then as import_file.
    """
    problem = url_problem(url)  # the downloader's own rule, said as the user's mistake
    if problem is not None:
        raise UsageError(f"{url}: {problem}")
    if sha256 is None:
        raise UsageError(f"{SHA256} is required when importing from a URL")
    sha256 = _expected_digest(sha256)
    folder = _check_name(request)
    filename = Path(urllib.parse.urlsplit(url).path).name
    if Path(filename).suffix.lower() not in WEIGHT_SUFFIXES:
        raise UsageError(
            f"{url} does not name a weights file ({', '.join(WEIGHT_SUFFIXES)}); "
            "download it and import the file"
        )
    if offline or is_offline():
        # Said here, of the URL: the downloader would name the cache folder it fetches
        # into, a detail of this function the user never gave.
        raise ModelError(
            f"cannot import {url} while offline mode is on: a URL is imported by downloading "
            "it; run again while online, or import the file from disk"
        )
    dest = weights_path(f"_import-{request.name}", filename)
    # A partial download stays (with its lock), for the same import to resume; a file
    # read is of no use once its tensors are in memory, stored or not.
    with downloaded_once(
        [url], dest, sha256=sha256, on_progress=on_progress, offline=True if offline else None
    ) as path:
        state = read_state_dict(path)
    return _import_state_dict(request, folder, state, source=url)


def import_ncnn(request: ImportRequest, param: Path, bin_path: Path) -> Imported:
    """Convert an ncnn model (ESRGAN/RRDBNet or SRVGG-compact) and import it.

    The converted tensors are stored exactly: weights that came from fp16 are stored as
    fp16 (every value survives), biases and PReLU slopes as fp32.

    Raises:
        UsageError: invalid or taken name.
        ModelError: the files are malformed or describe another graph (the message lists
            its layer types), the graph ends in a resize, or the RRDBNet has a growth
            other than 32 (spandrel, which runs ESRGAN models, builds only 32).
    """
    from pocketsr_cli.weights.ncnn import convert

    folder = _check_name(request)
    state, info = convert(param, bin_path)
    resize = info.get("output_resize")
    if resize:
        native = int(info["scale"])
        factor = float(f"{native * float(resize['factor']):g}")
        raise ModelError(
            f"{param.name} runs a x{native} network and then a {resize['mode']} resize by "
            f"{resize['factor']:g}, which pocketsr does not import; import the same .bin "
            f"with the graph that has no resize (for animevideov3: the UP{native}X .param) "
            f"and upscale with {OUTSCALE.given(factor)}"
        )
    if info["family"] == "esrgan" and info["num_grow_ch"] != _SPANDREL_ESRGAN_GROWTH:
        raise ModelError(
            f"{param.name} is an RRDBNet with {info['num_grow_ch']} growth channels; spandrel, "
            f"which runs ESRGAN models for pocketsr, builds only {_SPANDREL_ESRGAN_GROWTH}"
        )
    if info["family"] == "esrgan":
        build: dict[str, Any] = {
            "num_filters": info["num_feat"],
            "num_blocks": info["num_block"],
        }
    else:
        build = {"num_feat": info["num_feat"], "num_conv": info["num_conv"], "act_type": "prelu"}
    tensors = {key: _exact_half(t) for key, t in state.items()}
    source = f"ncnn {param.name} + {bin_path.name} ({info['precision']}), converted by pocketsr"
    return _import_state_dict(request, folder, tensors, source=source, build=build)


def _import_state_dict(
    request: ImportRequest,
    folder: Path,
    tensors: dict[str, torch.Tensor],
    *,
    source: str,
    build: Mapping[str, Any] | None = None,
) -> Imported:
    # A shallow copy: what the architecture loader does with its dict must not reach the file.
    desc = descriptor_from_state_dict(dict(tensors), request.name)
    _check_variant_scale(request.name, desc.scale)
    if build is None:
        build = _own_build_params(tensors)
    spec = ModelSpec(
        name=request.name,
        family=desc.family,
        scale=desc.scale,
        path=folder / f"{request.name}.toml",
        origin="user",
        build=dict(build),
        description=request.description or f"imported from {_printable(source)}",
        hints=hints_of(desc),
        meta=Meta(license=request.license, source=_printable(source), params=desc.params),
    )
    return _write(spec, tensors, request)


def _own_build_params(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``[build]`` for pocketsr's own families (inferred from shapes); spandrel needs none."""
    from pocketsr_cli.registry import detect_family

    family = detect_family(tensors)
    if family is None or family.infer is None:
        return {}
    params = dict(family.infer(tensors))
    params.pop("scale", None)
    return params


def _exact_half(t: torch.Tensor) -> torch.Tensor:
    import torch

    if t.dtype == torch.float32:
        half = t.to(torch.float16)
        if torch.equal(half.to(torch.float32), t):
            return half
    return t


def _write(
    spec: ModelSpec, tensors: Mapping[str, torch.Tensor], request: ImportRequest
) -> Imported:
    """Store the weights and the manifest so that, at every moment, the manifest names a
    complete file with the digest it records: the old model's until the new one is whole;
    the manifest written.

    The weights go to a name no manifest names (``NAME.safetensors``, or ``NAME~.safetensors``
    while that one is the old model's), each file written to a temporary name and renamed;
    then the manifest is renamed over the old one, and only then are the old weights
    removed.  A replacement that had to use ``NAME~.safetensors`` is then moved back to
    ``NAME.safetensors`` the same way, unless the old ``NAME.safetensors`` could not be
    deleted (the replacement stays ``NAME~``; :attr:`Imported.not_removed` says which files
    the disk kept).  A lock on the folder keeps two imports apart.  A run
    killed anywhere leaves the old model or the new one, whole, and at most a spare weights
    file that the next import of the name reuses (or ``models remove`` removes).

    The folder's manifests are read once, under the lock: while it is held no other import
    or removal changes them, so that one reading (kept up to date with the manifest this
    import writes) decides whether the name is taken, which weights names are free and
    which files the replaced model leaves to remove.
    """
    folder = spec.path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with locked_folder(folder):
            found = _Manifests(folder)
            _refuse_taken(request, folder, found)  # another import may have made it meanwhile
            sweep_stale_temps(folder)  # what imports killed outright left (a model's size)
            with held_temp(folder / _weights_name(spec.name)) as tmp:
                # safetensors refuses views and tensors sharing memory: give it plain copies.
                plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
                write_safetensors(tmp, plain, {"format": "pt"})
                digest = sha256_file(tmp)
                placed, kept = _switch(spec, tmp, digest, found)
            home = folder / _weights_name(spec.name)
            if (
                placed != home
                and _free(spec, home.name, found)
                and found.key(home) not in {found.key(path) for path, _ in kept}
            ):
                with held_temp(placed) as tmp:
                    shutil.copyfile(placed, tmp)
                    kept += _switch(spec, tmp, digest, found)[1]
            return Imported(found.specs[found.key(spec.path)], tuple(kept))
    except OSError as exc:
        raise ModelError(f"cannot store {spec.name} in {folder}: {exc.strerror or exc}") from exc


def _weights_name(name: str, spare: bool = False) -> str:
    """``NAME.safetensors``, or with ``spare`` ``NAME~.safetensors`` (no model name has a
    ``~``, so no other imported model's weights are ever called that)."""
    return f"{name}~.safetensors" if spare else f"{name}.safetensors"


def _switch(
    spec: ModelSpec, tmp: Path, digest: str, found: _Manifests
) -> tuple[Path, list[tuple[Path, str]]]:
    """Rename the weights ``tmp`` to a name no manifest in ``found`` names, point ``spec``'s
    manifest at it (renamed over the old one, and so recorded in ``found``), then remove
    the weights the old manifest named when ``models import`` wrote it; the weights' final
    path, and ``(path, why)`` for each old file the disk would not let go (the switch is
    done by then: they are only left over)."""
    folder = spec.path.parent
    current = found.specs.get(found.key(spec.path))  # Foo.toml, for foo on a Mac's disk
    old = found.named_by(spec.path) if current and _imported(current.path) else {}
    names = (_weights_name(spec.name), _weights_name(spec.name, True))
    name = next((n for n in names if _free(spec, n, found)), None)
    if name is None:  # both named by manifests written by hand: an error, not a clobber
        raise ModelError(
            f"cannot store {spec.name} in {folder}: manifests there name both "
            f"{_weights_name(spec.name)} and {_weights_name(spec.name, True)}"
        )
    weights = folder / name
    verify.forget(weights)
    size = tmp.stat().st_size
    os.replace(tmp, weights)
    final = dataclasses.replace(
        spec, weights=WeightsSpec(file=name, sha256=digest, size=size, urls=())
    )
    with replacing(spec.path) as tmp_manifest:
        tmp_manifest.write_text(dump_manifest(final, comment=_IMPORTED), encoding="utf-8")
    found.specs[found.key(spec.path)] = final
    verify.remember(weights, digest)
    kept = {found.key(weights), *found.named_by_others(spec.path)}
    not_removed = []
    for key, path in old.items():
        if key not in kept:
            try:
                _unlink_all([path], [])
            except RemoveError as exc:
                cause = exc.__cause__
                why = (cause.strerror or str(cause)) if isinstance(cause, OSError) else str(exc)
                not_removed.append((path, why))
    return weights, not_removed


def _free(spec: ModelSpec, name: str, found: _Manifests) -> bool:
    """Whether no manifest in ``found``, ``spec``'s own included, names the weights file
    ``name``.  A file of that name is then a spare one left by a killed import, and may
    be replaced."""
    key = found.key(spec.path.parent / name)
    return key not in found.named_by(spec.path) and key not in found.named_by_others(spec.path)


class _Manifests:
    """The manifests of one folder, each read and parsed once: every one that can be
    read, by :meth:`key` (one that cannot names no file and defines no model), except
    ``skip``'s.

    Paths are compared as the folder's disk compares names (:meth:`key`): where it
    ignores case (macOS and Windows by default, ``fscase.case_blind``), ``Foo.toml`` is
    the manifest ``foo.toml`` names, so that a file there in another case than the one
    its name is spelt in (a folder copied from a disk that keeps case) is never taken for
    another model's and written over.  ``_refuse_taken`` refuses an import's name that
    differs only in case from a model's."""

    def __init__(self, folder: Path, skip: Path | None = None) -> None:
        self._fold = fscase.case_blind(os.path.realpath(folder))
        self.specs: dict[Path, ModelSpec] = {}
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if skip is None or self.key(path) != self.key(skip):
                with contextlib.suppress(ModelError):
                    self.specs[self.key(path)] = manifest.parse_manifest(path, "user")

    def key(self, path: Path) -> Path:
        """``path`` (in this folder) as its disk compares names: case-folded
        (``fscase.folded``) where it ignores case."""
        return path.with_name(fscase.folded(path.name)) if self._fold else path

    def named_by(self, manifest_path: Path) -> dict[Path, Path]:
        """The weights files the manifest at ``manifest_path`` names, by :meth:`key`
        (none when there is no readable manifest there)."""
        spec = self.specs.get(self.key(manifest_path))
        files = [] if spec is None else [manifest_path.parent / w.file for w in spec.weight_files]
        return {self.key(file): file for file in files}

    def named_by_others(self, manifest_path: Path) -> dict[Path, Path]:
        """The weights files the other manifests name, by :meth:`key` (a manifest copied
        from this one, say, or a second one of the same model name)."""
        own = self.key(manifest_path)
        return {
            key: file
            for path, spec in self.specs.items()
            if path != own
            for key, file in self.named_by(spec.path).items()
        }


def _check_name(request: ImportRequest) -> Path:
    """The user model folder, once ``request.name`` is known to be usable there."""
    name = request.name
    if not manifest.is_valid_name(name):
        raise UsageError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, not ending in a weights suffix"
        )
    bundled = manifest.load_manifests([("bundled", manifest.bundled_dir())])
    # Compared as a disk that ignores case compares them: the downloads of a bundled
    # model and an imported one of its name in another case (weights/NAME/) are one
    # folder there, which removing either would empty.
    folded = fscase.folded(name)
    same = sorted(n for n in bundled if fscase.folded(n) == folded)
    if same:
        what = "is a bundled model" if same[0] == name else _CASE_ONLY.format(f"model {same[0]!r}")
        raise UsageError(f"{name!r} {what}; choose another name")
    variants = sorted(
        n for n in bundled if (v := manifest.variant_of(n)) and fscase.folded(v[0]) == folded
    )
    if variants:  # -m NAME picks among them by -s: a model of that name would take over
        base = variants[0].rsplit("-x", 1)[0]
        what = "names" if base == name else f"{_CASE_ONLY.format(f'name {base!r}')}, which names"
        raise UsageError(
            f"{name!r} {what} the bundled family {', '.join(variants)} "
            f"({MODEL.given(base)} picks one by the scale); choose another name"
        )
    folder = user_models_dir()
    # A folder that cannot be written is refused as an unusable destination is elsewhere
    # (upscale -o naming a file): a usage error, before anything is read or downloaded.
    problem = folder_write_problem(folder)
    if problem is not None:
        raise UsageError(f"cannot store models in {folder}: {problem}")
    # Before the weights are read, converted or downloaded; _write asks again, under the
    # folder's lock, where the answer counts.
    _refuse_taken(request, folder, None)
    return folder


# Names that differ only so are one name on the disks of macOS and Windows.
_CASE_ONLY = "differs only in case from the bundled {} (one name where disks ignore case)"


def _check_variant_scale(name: str, scale: int) -> None:
    """Refuse a variant's name (``{base}-x{N}``) for a network of another factor
    (:func:`manifest.variant_scale_problem`): a ×2 network called ``foo-x4`` (or
    ``pocketsr-compact-x3``) would join the family under a factor it does not have.

    Raises:
        UsageError: ``name`` ends in ``-xN`` and ``scale`` is not N.
    """

    def but(base: str, factor: int) -> str:
        fitting = f"{base}-x{scale}"
        if fitting in manifest.load_manifests([("bundled", manifest.bundled_dir())]):
            advice = f"give it a name of its own ({fitting} is a bundled model)"
        else:
            advice = f"name it {fitting}, or give it a name that does not end in -x{factor}"
        return f"the network imported is ×{scale}; {advice}"

    problem = manifest.variant_scale_problem(name, scale, but)
    if problem is not None:
        raise UsageError(problem)


def _refuse_taken(request: ImportRequest, folder: Path, found: _Manifests | None) -> None:
    """Raise UsageError when ``folder`` has a model of ``request``'s name, or of a name
    differing from it only in case (with --force too): in ``NAME.toml`` without --force, or
    in a manifest of another file name, which the import would neither replace nor win
    against (the first file by name defines a model).  ``found``: the folder's manifests
    (None: read them here)."""
    target = folder / f"{request.name}.toml"
    manifests = found or _Manifests(folder, skip=target)
    # Before NAME.toml's own test, which a disk that ignores case answers for Name.toml.
    stems = [p.stem for p in folder.glob("*.toml")] if folder.is_dir() else []
    names = {*stems, *(spec.name for spec in manifests.specs.values())} - {request.name}
    twins = sorted(n for n in names if fscase.folded(n) == fscase.folded(request.name))
    if twins:
        raise UsageError(
            f"{folder} has a model {twins[0]!r}, which differs from {request.name!r} only in "
            "case (one name on the disks of macOS and Windows, which would store both in "
            f"the same files); choose another name, or import as {twins[0]!r} with {FORCE} "
            "to replace it"
        )
    if target.exists() and not request.force:
        raise UsageError(f"model {request.name!r} already exists in {folder}; {FORCE} replaces it")
    for key, other in manifests.specs.items():
        if key != manifests.key(target) and other.name == request.name:
            raise UsageError(
                f"{other.path} defines a model {request.name!r} already; choose another name, "
                "or remove that manifest first"
            )


def _expected_digest(sha256: str) -> str:
    """``sha256`` as given to an import (``--sha256``), normalised (blanks around it cut,
    lower case): the one check of its form, made before anything is read or fetched.

    Raises:
        UsageError: it is not 64 hexadecimal digits.
    """
    expected = sha256.strip().lower()
    if not manifest.SHA256_RE.fullmatch(expected):
        raise UsageError(
            f"invalid {SHA256.given(sha256)}: a SHA-256 digest is 64 hexadecimal digits"
        )
    return expected


def _check_digest(path: Path, sha256: str, label: str) -> None:
    """Raise unless the file ``path`` has the digest ``sha256`` (:func:`_expected_digest`).

    Raises:
        UsageError: ``sha256`` is not a digest (before ``path`` is read).
        ModelError: ``path`` cannot be read, or has another digest.
    """
    expected = _expected_digest(sha256)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if actual != expected:
        raise ModelError(
            f"{label} has sha256 {actual[:12]}…, not the expected {expected[:12]}…; "
            "nothing was imported"
        )


def _printable(text: str) -> str:
    # Undecodable file names (surrogate escapes) cannot be written to a UTF-8 manifest.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- removing -----------------------------------------------------------------------------


def remove_model(spec: ModelSpec) -> list[Path]:
    """Delete what pocketsr stored for ``spec`` and return the paths removed.

    Downloaded weights (and a partial download, a converted copy and the digests pinned
    on first use) go for every model; a model ``models import`` added also loses its
    manifest and the weights beside it (a manifest written by hand stays: it is the
    user's).  Returns an empty list when nothing was stored.

    An imported model's manifest goes first: until it is deleted it names whole weights
    (as an import keeps it), so a file that cannot be deleted leaves either the model as
    it was or no model and a stray weights file, never a manifest naming deleted weights
    (``models list``'s "missing").

    Raises:
        UsageError: ``spec`` ships with pocketsr and has no downloaded copy.
        RemoveError: a file could not be deleted (its ``removed``: those deleted before),
            or another process is downloading one (it holds the file's download lock):
            nothing was removed.
    """
    from filelock import FileLock, Timeout

    with contextlib.ExitStack() as locks:
        files = spec.weight_files
        if files and weights_path(spec.name, files[0].file).parent.is_dir():
            _refuse_shared_downloads(spec, weights_path(spec.name, files[0].file).parent)
            for w in files:  # a download in progress keeps its files
                cached = weights_path(spec.name, w.file)
                lock = FileLock(str(cached) + ".lock", timeout=0)
                try:
                    locks.enter_context(lock)
                except Timeout:
                    raise RemoveError(
                        f"{spec.name}: {cached.name} is being downloaded by another pocketsr "
                        f"process now (it holds {lock.lock_file}); remove it once that has ended"
                    ) from None
                except OSError as exc:
                    raise RemoveError(f"cannot lock {cached}: {exc.strerror or exc}") from exc
        return _remove(spec)


def _refuse_shared_downloads(spec: ModelSpec, folder: Path) -> None:
    """Raise RemoveError when ``folder``, ``spec``'s downloads, is also another model's: one
    whose name differs from ``spec.name`` only in case (``manifest.case_twins``: made by an
    older version or by hand), on a disk that ignores case, where ``weights/foo/`` is
    ``weights/Foo/``.  Which of the files there (the pinned digests, a file of the same
    name) are whose cannot be told, so none is removed."""
    from pocketsr_cli.weights.resolve import registry

    if not fscase.case_blind(str(folder)):
        return
    for group in manifest.case_twins(registry([])):
        others = [s.name for s in group if s.name != spec.name]
        if len(others) < len(group):  # spec's group
            raise RemoveError(
                f"{spec.name}: its downloads in {folder} are also those of {others[0]!r} on "
                "this disk, which ignores case (the two names differ only in case), so "
                "nothing was removed; delete the files there by hand, and see `pocketsr doctor`"
            )


def _remove(spec: ModelSpec) -> list[Path]:
    removed: list[Path] = []
    if spec.origin == "user" and _imported(spec.path):
        with locked_folder(spec.path.parent):  # not while an import replaces it half-way
            beside = _stored_beside(_Manifests(spec.path.parent), spec.path, spec.name)
            try:
                _unlink_all([spec.path], removed)
            except RemoveError as exc:
                raise RemoveError(f"{exc}; {spec.name} was not removed") from exc.__cause__
            try:
                _unlink_all(beside, removed)
            except RemoveError as exc:
                raise RemoveError(
                    f"{exc}; {spec.name} itself is removed (its manifest is deleted): "
                    "delete that file by hand",
                    removed,
                ) from exc.__cause__
    files = spec.weight_files
    if files:
        folder = weights_path(spec.name, files[0].file).parent
        for w in files:
            cached = weights_path(spec.name, w.file)
            partial = cached.with_name(cached.name + ".incomplete")
            _unlink_all([cached, partial, trust.converted_path(spec.name, w.file)], removed)
        # The folder goes too when only bookkeeping is left in it (lock files, hash memo,
        # pinned digests: a removed model's next download is a first use again).
        leftovers = list(folder.iterdir()) if folder.is_dir() else []
        if all(p.name.endswith(".lock") or p.name in _BOOKKEEPING for p in leftovers):
            removed += [p for p in leftovers if p.name in _TRUST_RECORDS]
            shutil.rmtree(folder, ignore_errors=True)
    if spec.origin == "user":  # a manifest written by hand is the user's own: it stays
        return removed
    if not removed and (not files or (spec.path.parent / files[0].file).is_file()):
        raise UsageError(f"{spec.name} ships with pocketsr; it cannot be removed")
    return removed


def remove_broken_manifest(stem: str) -> list[Path] | None:
    """Delete the manifest ``STEM.toml`` of the user model folder when it cannot be read
    (a hand-written one with a typo, an import's manifest damaged since), which defines
    no model and so cannot be removed by name; return the paths removed, or None when
    there is no such manifest or it can be read (it defines a model: :func:`remove_model`).

    An unreadable manifest names no file that pocketsr can know of, so the weights go only
    where ``models import`` wrote it (its first line says so): the files it stores beside
    such a manifest, ``STEM.safetensors`` (and the spare ``STEM~.safetensors``), unless
    another manifest names them.  A hand-written manifest goes alone.

    Raises:
        RemoveError: a file could not be deleted (the manifest, deleted last, then stays).
    """
    folder = user_models_dir()
    if not stem or stem.startswith(".") or Path(stem).name != stem or not folder.is_dir():
        return None
    path = folder / f"{stem}.toml"
    with locked_folder(folder):  # not while an import writes it
        try:
            if not present_file(path):
                return None
        except OSError:  # a name too long to be a file's: no manifest has it
            return None
        try:
            manifest.parse_manifest(path, "user")
        except ModelError:
            pass
        else:
            return None
        # The readable manifests: this one is not among them, so it names nothing.
        beside = _stored_beside(_Manifests(folder), path, stem) if _imported(path) else []
        return _unlink_all([*beside, path], [])


def _stored_beside(found: _Manifests, manifest_path: Path, name: str) -> list[Path]:
    """The weights ``models import`` stored beside its manifest ``manifest_path`` of model
    ``name``, in the folder ``found`` read: the files it names now (an import may have just
    replaced it; none when it cannot be read) and the spare weights an import killed while
    replacing it left, less those another manifest names (one copied from it, say)."""
    shared = found.named_by_others(manifest_path)
    spares = [manifest_path.parent / _weights_name(name, spare) for spare in (False, True)]
    named = sorted(found.named_by(manifest_path).values())
    return [p for p in dict.fromkeys([*named, *spares]) if found.key(p) not in shared]


_IMPORTED = "Written by `pocketsr models import`."  # the first line of its manifests


def _imported(manifest_path: Path) -> bool:
    """Whether ``models import`` wrote this manifest (else the user did, by hand)."""
    try:
        with manifest_path.open(encoding="utf-8") as f:
            return f.readline().strip() == f"# {_IMPORTED}"
    except (OSError, UnicodeDecodeError):
        return False


_TRUST_RECORDS = (trust.PINS_NAME, trust.CONVERTED_NAME)
_BOOKKEEPING = (verify.MEMO_NAME, *_TRUST_RECORDS)


def _unlink_all(paths: Iterable[Path], removed: list[Path]) -> list[Path]:
    """Delete each of ``paths`` that exists, in order, appending it to ``removed`` once it
    is gone; return ``removed``.

    Raises:
        RemoveError: a file could not be deleted (those after it are not tried); its
            ``removed`` is ``removed`` then.
    """
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RemoveError(f"cannot remove {path}: {exc.strerror or exc}", removed) from exc
        verify.forget(path)
        removed.append(path)
    return removed
