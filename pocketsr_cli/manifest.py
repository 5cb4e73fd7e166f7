"""Model manifests (``models/*.toml``) turned into typed, validated specs, and back.

A manifest names one model and says how to build it, where its weights are, and what the
pipeline and people should know about it::

    name = "realesrgan-x4plus"        # plain name: letters, digits, '.', '_', '-';
                                      # one ending in -xN (a variant) has scale = N
    family = "spandrel:ESRGAN"        # a registry.FAMILIES key, or spandrel:<architecture id>
    scale = 4
    channels = 3                      # optional, default 3 (RGB in, RGB out)
    any_scale = false                 # optional: -s N works for every N (resamplers)
    description = "..."

    [build]       # own families: the keyword arguments of the family's build function.
                  # spandrel:<id>: the keyword arguments of spandrel's class for <id>;
                  # informational (spandrel reads them from the weights), checked by the
                  # manifest test, which rebuilds the network to recompute meta.params.
    [weights]     # absent for parameter-free models (family "resize")
    file = "RealESRGAN_x4plus.pth"    # kept beside the manifest when bundled or imported
    sha256 = "<64 hex digits>"        # optional: see below
    size = 67040989                   # bytes
    urls = ["https://...", "hf://owner/repo/file"]   # mirrors, tried in order
    [hints]       # what the pipeline relies on (see Hints): tiling, multiple_of, minimum,
                  # fp16, bf16, cpu_bf16, default_tile, mean_anchor, margin,
                  # chroma_guard, overlap, overlap_derived
    [meta]        # license, source, paper, params (parameter count)

A model published as several files lists each in an array of tables, ``[[weights]]``
instead of ``[weights]``, in the order its family's ``merge`` expects them.  A file whose
publisher gives no checksum has no ``sha256``: it downloads only when the user allows an
unverified download, and the digest it arrives with is pinned and enforced from then on
(trust on first use, ``weights/trust.py``).

Every table and key is checked: an unknown key is an error rather than a silently ignored
typo (``multiple-of`` for ``multiple_of`` would otherwise change how images are padded).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pocketsr_cli.chroma import GUARDS
from pocketsr_cli.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Origin = Literal["bundled", "user"]
"""Where a manifest was found: shipped with pocketsr, or in the user model folder."""

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
SPANDREL_PREFIX = "spandrel:"

T = TypeVar("T")


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from and how to check them.

    Attributes:
        file: plain file name, beside the manifest when bundled or imported, else in the
            download cache under the model's name.
        sha256: lowercase hex digest the file must have, wherever it comes from; None when
            the publisher gives none (trust on first use: ``weights/trust.py``).
        size: size in bytes, when known (checked before hashing and against servers).
        urls: mirrors, tried in order (``https://`` or ``hf://owner/repo/file``).
    """

    file: str
    sha256: str | None
    size: int | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hints:
    """Inference facts the pipeline relies on.

    The first five can only restrict what the network itself states (``weights.resolve``
    combines them with the loaded model's descriptor).

    Attributes:
        tiling: False when the model must see the whole image (never tiled).
        multiple_of / minimum: input sides the model accepts (the tiler pads to them).
        fp16 / bf16: whether half / bfloat16 inference is safe.
        cpu_bf16: whether the model is faster in bf16 on a CPU that computes it natively
            (measured), so that ``--precision auto`` picks it there.
        default_tile: the tile side ``--tile auto`` uses for this model on the CPU instead
            of sizing tiles from free memory (GPUs still size them from free memory).
        mean_anchor: put each output's local mean back to its input's, a Gaussian of this
            many input pixels (``pocketsr_cli.anchor``); None: the network's output as it
            is.  A number chosen on the validation photos, stated in the model card.
        margin: input pixels replicated around the whole image before the network and
            cropped from its output (``descriptor.SizeRequirements.margin``); 0: none.
            Chosen on the validation photos, stated in the model card.
        chroma_guard: ``"clamp"``: each output pixel's chroma clamped into its input's
            around it, luma kept (``pocketsr_cli.chroma``); None: the network's colour as
            drawn.  Chosen on the validation photos, stated in the model card.
        overlap: the smallest ``--tile-overlap`` whose tiles give the untiled result to
            within a level or two (8-bit), measured on the validation photos against the
            untiled run and stated in the model card; a smaller one draws seams, and a
            run whose images are cut into tiles with it is warned.  None: not known (no
            warning).
        overlap_derived: ``overlap`` is derived for a shape nobody measured
            (``descriptor.derived_overlap``), an estimate, not measured: the seam
            warning says the model "is estimated to need" it.  Only with ``overlap``.
    """

    tiling: bool = True
    multiple_of: int = 1
    minimum: int = 1
    fp16: bool = True
    bf16: bool = True
    cpu_bf16: bool = False
    default_tile: int | None = None
    mean_anchor: float | None = None
    margin: int = 0
    chroma_guard: str | None = None
    overlap: int | None = None
    overlap_derived: bool = False


@dataclass(frozen=True)
class Meta:
    """Facts for people: licence, origin, paper, parameter count (``None``: not stated)."""

    license: str = "unknown"
    source: str = ""
    paper: str = ""
    params: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry, as read from ``path``.

    ``weights`` is its (first) weights file; a model published as several files has the
    others in ``extra_weights`` (``[[weights]]`` tables), and :attr:`weight_files` lists
    them all.
    """

    name: str
    family: str
    scale: int
    path: Path
    origin: Origin = "bundled"
    channels: int = 3
    build: dict[str, Any] = field(default_factory=dict)
    any_scale: bool = False
    description: str = ""
    weights: WeightsSpec | None = None
    hints: Hints = field(default_factory=Hints)
    meta: Meta = field(default_factory=Meta)
    extra_weights: tuple[WeightsSpec, ...] = ()

    @property
    def weight_files(self) -> tuple[WeightsSpec, ...]:
        """Every weights file, in manifest order (empty for parameter-free models)."""
        return () if self.weights is None else (self.weights, *self.extra_weights)

    @property
    def is_spandrel(self) -> bool:
        """Whether spandrel builds this model (from its weights) rather than a registry family."""
        return self.family.startswith(SPANDREL_PREFIX)


def bundled_dir() -> Path:
    """Folder of the manifests (and small weights) that ship with pocketsr.

    An installed wheel carries them in ``pocketsr_cli/_bundled`` (pyproject maps the
    repository's ``models/`` there); a source checkout or an editable install reads the
    repository's ``models/`` folder.
    """
    here = Path(__file__).resolve().parent
    packaged = here / "_bundled"
    return packaged if packaged.is_dir() else here.parent / "models"


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can name a model: 1-64 of letters, digits, ``.``, ``_``, ``-``, not
    starting with a dot or dash, and not ending like a weights file (``-m x.pth`` means a
    file)."""
    suffix = Path(name).suffix.lower()
    return NAME_RE.fullmatch(name) is not None and suffix not in WEIGHT_SUFFIXES


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")  # what a weights file is called

VARIANT_RE = re.compile(r"^(?P<base>.+)-x(?P<scale>\d+)$")
"""A variant's name, ``{base}-x{N}``: the ×N member of the family ``base`` (``-m base -s N``
picks it)."""


def variant_of(name: str) -> tuple[str, int] | None:
    """``(base, N)`` for a variant's name ``{base}-x{N}`` (:data:`VARIANT_RE`), else None."""
    variant = VARIANT_RE.match(name)
    return None if variant is None else (variant["base"], int(variant["scale"]))


def variant_scale_problem(name: str, scale: int, but: Callable[[str, int], str]) -> str | None:
    """What is wrong with naming a network of factor ``scale`` ``name``, or None.

    A variant's name must give its own factor: ``-m base -s N`` picks the family's member
    by its name's N and ``-m base`` lists the factors so named, so ``foo-x4`` with
    ``scale = 2`` would run a ×2 network as the family's ×4.  Manifests
    (:func:`parse_manifest`) and imports (``weights/store``) keep this one rule; the
    message's tail is theirs: ``but(base, N)`` says what the network is and what to do.
    """
    variant = variant_of(name)
    if variant is None or variant[1] == scale:
        return None
    base, factor = variant
    return f"{name!r} names a ×{factor} model, but {but(base, factor)}"


# --- reading ------------------------------------------------------------------------------


class _Table:
    """One TOML table being validated: typed getters, then ``done`` rejects leftovers."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a table")
        self.data = dict(data)
        self.where = where
        self.seen: set[str] = set()

    def get(self, key: str, kind: type[T], default: T | None = None, required: bool = False) -> T:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise ValueError(f"missing {self._name(key)}")
            return default  # type: ignore[return-value]
        value = self.data[key]
        # bool is an int in Python; TOML keeps them apart and so do we.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{self._name(key)} must be {kind.__name__}, not {value!r}")
        return value

    def positive(self, key: str, default: int | None = None, required: bool = False) -> int:
        value = self.get(key, int, default, required)
        if value is not None and value < 1:
            raise ValueError(f"{self._name(key)} must be at least 1, not {value}")
        return value

    def at_least_zero(self, key: str) -> int:
        """A whole number, 0 or more (0 when absent)."""
        value = self.get(key, int, 0)
        if value < 0:
            raise ValueError(f"{self._name(key)} must be 0 or more, not {value}")
        return value

    def above_zero(self, key: str) -> float | None:
        """A number above 0 (an integer or a float in the TOML), or None when absent."""
        value = self.data.get(key)
        number = self.get(key, int if type(value) is int else float)
        if number is None:
            return None
        if not (number > 0 and math.isfinite(number)):  # TOML spells inf and nan
            raise ValueError(f"{self._name(key)} must be a finite number above 0, not {number}")
        return float(number)

    def one_of(self, key: str, choices: Sequence[str]) -> str | None:
        """One of the strings ``choices``, or None when absent."""
        value = self.get(key, str)
        if value is not None and value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{self._name(key)} must be one of {listed}, not {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ValueError(f"unknown key {self._name(unknown[0])}")

    def _name(self, key: str) -> str:
        return key if not self.where else f"{self.where}.{key}"


def _parse(data: Mapping[str, Any], path: Path, origin: Origin) -> ModelSpec:
    top = _Table(data, "")
    name = top.get("name", str, required=True)
    if not is_valid_name(name):
        raise ValueError(f"name {name!r} is not a plain model name ({NAME_RE.pattern})")
    family = top.get("family", str, required=True)
    if not family or family == SPANDREL_PREFIX:
        raise ValueError("family must name an architecture family")
    build = top.get("build", dict, {})
    _check_finite(build, "build")
    weights = _parse_weight_files(top)
    if family.startswith(SPANDREL_PREFIX) and len(weights) != 1:
        # spandrel tells the network from the tensors of one file: with none (or several)
        # the model could be listed and verified, yet never built.
        raise ValueError(
            f"family {family!r} needs exactly one [weights] file (spandrel builds the "
            f"network from its tensors), not {len(weights)}"
        )
    hints_table = top.get("hints", dict, {})
    meta_table = top.get("meta", dict, {})
    spec = ModelSpec(
        name=name,
        family=family,
        scale=top.positive("scale", required=True),
        path=path,
        origin=origin,
        channels=top.positive("channels", 3),
        build=dict(build),
        any_scale=top.get("any_scale", bool, False),
        description=top.get("description", str, ""),
        weights=weights[0] if weights else None,
        hints=_parse_hints(hints_table),
        meta=_parse_meta(meta_table),
        extra_weights=tuple(weights[1:]),
    )
    top.done()
    _check_variant_name(spec)
    return spec


def _check_finite(value: Any, where: str) -> None:
    """Refuse ``inf`` and ``nan`` (TOML has both) anywhere in ``value``: no build argument
    means either, and ``models info --json`` could not write one as JSON.

    Raises:
        ValueError: naming the key.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def _check_variant_name(spec: ModelSpec) -> None:
    """A variant's name must give its own factor (:func:`variant_scale_problem`; imports
    are refused such names: ``weights/store``; this is for a manifest written by hand).

    Raises:
        ValueError: the name ends in ``-xN`` and ``scale`` is not N.
    """
    problem = variant_scale_problem(
        spec.name,
        spec.scale,
        lambda base, factor: (
            f"scale is {spec.scale}: name it {base}-x{spec.scale}, or make "
            f"scale {factor} if the network is ×{factor}"
        ),
    )
    if problem is not None:
        raise ValueError(f"name {problem}")


def _parse_weight_files(top: _Table) -> list[WeightsSpec]:
    """``[weights]`` (one file) or ``[[weights]]`` (several, in order); [] when absent."""
    top.seen.add("weights")
    data = top.data.get("weights")
    if data is None:
        return []
    if isinstance(data, list):
        if not data:
            raise ValueError("weights must list at least one file")
        files = [_parse_weights(item, f"weights[{i}]") for i, item in enumerate(data)]
    else:
        files = [_parse_weights(data, "weights")]
    names = [w.file for w in files]
    if len(set(names)) != len(names):
        raise ValueError(f"weights lists a file twice: {names}")
    return files


def _parse_weights(data: Any, where: str) -> WeightsSpec:
    table = _Table(data, where)
    file = table.get("file", str, required=True)
    if file in ("", ".", "..") or any(c in file for c in "/\\\0"):
        raise ValueError(f"{where}.file {file!r} must be a plain file name")
    sha256 = table.get("sha256", str)
    if sha256 is not None:
        sha256 = sha256.lower()
        if not SHA256_RE.fullmatch(sha256):
            raise ValueError(f"{where}.sha256 must be 64 hex digits")
    urls = table.get("urls", list, [])
    if not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"{where}.urls must be a list of URLs")
    spec = WeightsSpec(
        file=file, sha256=sha256, size=table.positive("size"), urls=tuple(str(u) for u in urls)
    )
    table.done()
    return spec


def _parse_hints(data: Mapping[str, Any]) -> Hints:
    table = _Table(data, "hints")
    hints = Hints(
        tiling=table.get("tiling", bool, True),
        multiple_of=table.positive("multiple_of", 1),
        minimum=table.positive("minimum", 1),
        fp16=table.get("fp16", bool, True),
        bf16=table.get("bf16", bool, True),
        cpu_bf16=table.get("cpu_bf16", bool, False),
        default_tile=table.positive("default_tile"),
        mean_anchor=table.above_zero("mean_anchor"),
        margin=table.at_least_zero("margin"),
        chroma_guard=table.one_of("chroma_guard", GUARDS),
        overlap=table.positive("overlap"),
        overlap_derived=table.get("overlap_derived", bool, False),
    )
    table.done()
    if hints.overlap_derived and hints.overlap is None:
        raise ValueError("hints.overlap_derived says how hints.overlap was found: give both")
    return hints


def _parse_meta(data: Mapping[str, Any]) -> Meta:
    table = _Table(data, "meta")
    params = table.get("params", int)
    if params is not None and params < 0:
        raise ValueError("meta.params must not be negative")
    meta = Meta(
        license=table.get("license", str, "unknown"),
        source=table.get("source", str, ""),
        paper=table.get("paper", str, ""),
        params=params,
    )
    table.done()
    return meta


def parse_manifest(path: Path, origin: Origin = "bundled") -> ModelSpec:
    """Read and validate one manifest.

    Raises:
        ModelError: unreadable TOML, a missing, mistyped or unknown field (the message
            names the file and the field).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"bad model manifest {path}: {exc}") from exc
    try:
        return _parse(data, path, origin)
    except ValueError as exc:
        raise ModelError(f"bad model manifest {path}: {exc}") from exc


def load_manifests(
    folders: Sequence[tuple[Origin, Path]] | None = None,
    *,
    problems: list[str] | None = None,
    unreadable: list[Path] | None = None,
) -> dict[str, ModelSpec]:
    """All manifests in ``folders`` (default: the bundled folder), keyed by model name.

    Folders are read in order and the first definition of a name wins, so a caller listing
    the user model folder first lets the user's models shadow bundled ones.  A missing folder
    is empty.  With ``problems`` given, a bad manifest is skipped and its error message
    appended there (one broken file must not hide every other model; for one in a user
    folder, with the ``models remove`` command that deletes it, unless a model has its
    file's stem for a name), and so is a second
    manifest of a name in the same folder (which one wins must not go unsaid); without it,
    the first bad manifest raises.  ``unreadable``, when given with ``problems``, gets the
    path of each bad manifest skipped (what ``models remove`` completes by its stem).

    Raises:
        ModelError: a bad manifest, when ``problems`` is None.
    """
    specs: dict[str, ModelSpec] = {}
    default: list[tuple[Origin, Path]] = [("bundled", bundled_dir())]
    removable: list[tuple[int, Path]] = []  # (its problem, a user manifest that is bad)
    for origin, folder in folders if folders is not None else default:
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                spec = parse_manifest(path, origin)
            except ModelError as exc:
                if problems is None:
                    raise
                if origin == "user":
                    removable.append((len(problems), path))
                problems.append(str(exc))
                if unreadable is not None:
                    unreadable.append(path)
                continue
            earlier = specs.setdefault(spec.name, spec)
            if (
                earlier is not spec
                and earlier.path.parent == spec.path.parent
                and problems is not None
            ):
                problems.append(
                    f"{spec.path} is ignored: {earlier.path} defines {spec.name} already"
                )
    for index, path in removable:
        # It defines no model, so it cannot be named: the user's own is removed by its
        # file's stem (weights/store.remove_broken_manifest), unless a model has that name
        # (``models remove`` then acts on that model: a bundled one's download, say).
        if problems is not None and path.stem not in specs:
            problems[index] += f" (`pocketsr models remove {shlex.quote(path.stem)}` removes it)"
    return specs


def case_twins(specs: Mapping[str, ModelSpec]) -> list[list[ModelSpec]]:
    """The models of ``specs`` whose names differ only in case (``Foo`` and ``foo``), in
    groups of two or more, by name: one name on the disks of macOS and Windows
    (``fscase.folded``), where their downloads (``weights/NAME/``) are one folder and
    imports of them would write the same files.  ``models import`` refuses such a name;
    an older version, or a manifest written by hand, may have made one all the same."""
    from pocketsr_cli import fscase

    groups: dict[str, list[ModelSpec]] = {}
    for name in sorted(specs):
        groups.setdefault(fscase.folded(name), []).append(specs[name])
    return [group for group in groups.values() if len(group) > 1]


# --- writing ------------------------------------------------------------------------------


def dump_manifest(spec: ModelSpec, comment: str = "") -> str:
    """The TOML text of ``spec`` (``path`` and ``origin`` are not stored: they are where the
    file is).  ``parse_manifest`` of the result gives back an equal spec.

    Raises:
        ValueError: a ``[build]`` value TOML cannot hold here (only str, int, float, bool
            and lists of them are written).
    """
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    lines += [
        f"name = {_toml(spec.name)}",
        f"family = {_toml(spec.family)}",
        f"scale = {spec.scale}",
        f"channels = {spec.channels}",
    ]
    if spec.any_scale:
        lines.append("any_scale = true")
    lines.append(f"description = {_toml(spec.description)}")
    if spec.build:
        lines += ["", "[build]", *(f"{k} = {_toml(v)}" for k, v in spec.build.items())]
    header = "[weights]" if len(spec.weight_files) == 1 else "[[weights]]"
    for w in spec.weight_files:
        lines += ["", header, f"file = {_toml(w.file)}"]
        if w.sha256 is not None:
            lines.append(f"sha256 = {_toml(w.sha256)}")
        if w.size is not None:
            lines.append(f"size = {w.size}")
        lines.append(f"urls = {_toml(list(w.urls))}")
    h = spec.hints
    lines += [
        "",
        "[hints]",
        f"tiling = {_toml(h.tiling)}",
        f"multiple_of = {h.multiple_of}",
        f"minimum = {h.minimum}",
        f"fp16 = {_toml(h.fp16)}",
        f"bf16 = {_toml(h.bf16)}",
    ]
    if h.cpu_bf16:
        lines.append("cpu_bf16 = true")
    if h.default_tile is not None:
        lines.append(f"default_tile = {h.default_tile}")
    if h.mean_anchor is not None:
        lines.append(f"mean_anchor = {h.mean_anchor}")
    if h.margin:
        lines.append(f"margin = {h.margin}")
    if h.chroma_guard is not None:
        lines.append(f"chroma_guard = {_toml(h.chroma_guard)}")
    if h.overlap is not None:
        lines.append(f"overlap = {h.overlap}")
    if h.overlap_derived:
        lines.append("overlap_derived = true")
    m = spec.meta
    lines += ["", "[meta]", f"license = {_toml(m.license)}", f"source = {_toml(m.source)}"]
    if m.paper:
        lines.append(f"paper = {_toml(m.paper)}")
    if m.params is not None:
        lines.append(f"params = {m.params}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string, except that TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} to a manifest")
