"""``pocketsr models``: list, inspect, download, verify, remove and import models.

Each command parses its options, calls the core (``weights/resolve.py`` to find models and
their weights, ``weights/store.py`` to add and remove them) and renders the result.  The
reports — ``list``, ``info``, ``verify`` — go to stdout; ``download``, ``remove`` and
``import`` change files, so their lines are a log on stderr; ``--json`` records always go
to stdout (the rule: ``_ui``).  Every failure to find, fetch, verify or load a model exits
with code 3; a file ``remove`` cannot delete exits 1 (the model was found), after the
files it did delete are listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pocketsr_cli.cli import _complete
from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import handle_errors
from pocketsr_cli.cli._help import Command, Group, examples

if TYPE_CHECKING:
    from collections.abc import Callable

    from pocketsr_cli.manifest import Hints, ModelSpec
    from pocketsr_cli.weights.resolve import KnownOverlap
    from pocketsr_cli.weights.store import Imported

app = typer.Typer(
    cls=Group,
    help="List, inspect, download, verify, remove and import models.",
    no_args_is_help=True,
    rich_markup_mode=None,
    epilog=examples(
        "pocketsr models list",
        "pocketsr models info pocketsr-compact-x4",
        "pocketsr models download realesrgan-x4plus",
    ),
)

ImportNameOpt = Annotated[
    str,
    typer.Option(
        "--name",
        "-n",
        metavar="NAME",
        help=(
            "Name to use with -m (letters, digits, '.', '_', '-'); not one that differs "
            "only in case from another model's."
        ),
        show_default=False,
    ),
]
LicenseOpt = Annotated[
    str,
    typer.Option(
        "--license",
        metavar="LICENCE",
        help="Licence of the weights, recorded in the manifest (one line, not empty).",
    ),
]
DescriptionOpt = Annotated[
    str,
    typer.Option(
        "--description",
        metavar="TEXT",
        help="One line shown by 'models list'.",
        show_default=False,
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace an imported model of the same name.")
]


def _emit(kind: str, obj: dict[str, Any]) -> None:
    """``obj`` as one ``--json`` line, led by its ``"type"`` (``model``, ``verification``),
    as every command's lines are (``upscale``'s ``image``, ``summary``)."""
    from pocketsr_cli.cli import _ui

    _ui.emit_json({"type": kind, **obj})


def _summary(spec: ModelSpec) -> dict[str, Any]:
    from pocketsr_cli.weights.resolve import DEFAULT_MODEL, where

    return {
        "name": spec.name,
        "default": spec.name == DEFAULT_MODEL,
        "family": spec.family,
        "scale": spec.scale,
        "any_scale": spec.any_scale,
        "params": spec.meta.params,
        "size": _total_size(spec),
        "license": spec.meta.license,
        "where": where(spec),
        "description": spec.description,
    }


@app.command(
    "list",
    cls=Command,
    epilog=examples(
        "pocketsr models list",
        "pocketsr models list --json | jq -r 'select(.default) | .name'",
    ),
)
@handle_errors
def list_models(json_lines: opt.JsonOpt = False) -> None:
    """List every model known by name and where its weights are.

    'where' is bundled (ships with pocketsr), user (imported), cached (downloaded),
    remote (downloaded on first use), missing (imported, its weights deleted) or damaged
    (a file of the wrong size, such as a cut-off download, fetched again on use). '*'
    marks the default model ('"default": true' in --json). Reads manifests only: fast and
    offline.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.weights.resolve import case_collisions, registry

    problems: list[str] = []
    specs = registry(problems)
    rows = [_summary(spec) for spec in specs.values()]
    console = _ui.make_console()
    for problem in problems:
        _ui.warn(console, f"skipped: {problem}")
    for collision in case_collisions(specs):
        _ui.warn(console, collision)
    if json_lines:
        for row in rows:
            _emit("model", row)
        return
    # The description stays in --json and `models info`: the table must fit 80 columns.
    report = _ui.make_report_console()
    _ui.print_table(
        report,
        ["", "name", "family", "scale", "params", "size", "licence", "where"],
        [
            [
                "*" if r["default"] else "",
                r["name"],
                r["family"],
                "any" if r["any_scale"] else f"×{r['scale']}",
                _count(r["params"]),
                _ui.human_bytes(r["size"]),
                r["license"],
                r["where"],
            ]
            for r in rows
        ],
        right=["params", "size"],
        no_wrap=["name", "family"],
    )
    # A footnote without the model's name, so that `models list | grep NAME` finds one line.
    _ui.say(report, "* the default model: used when -m is not given; -s N picks its ×N variant")


def _total_size(spec: ModelSpec) -> int | None:
    """Bytes of all the weights files, None when any size is not known."""
    sizes = [w.size for w in spec.weight_files]
    if not sizes or any(size is None for size in sizes):
        return None
    return sum(size for size in sizes if size is not None)


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


@app.command(
    "info",
    cls=Command,
    epilog=examples(
        "pocketsr models info pocketsr-compact-x4",
        "pocketsr models info realesrgan-x4plus --json",
        "pocketsr models info 4x_foo.pth",
    ),
)
@handle_errors
def info(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME|PATH",
            help=(
                "Model name (see 'pocketsr models list'), or a weights file "
                "(.safetensors/.pth/.ckpt/.pt), read as -m reads it."
            ),
            autocompletion=_complete.model_names,
            parser=opt.model_name_argument,
        ),
    ],
    json_lines: opt.JsonOpt = False,
) -> None:
    """Show everything known about one model: manifest, weights, hints, licence.

    For each weights file: where it is downloaded from, its SHA-256 (the manifest's, or
    the one pinned on first use when its publisher gives none) and where it is on disk.
    With --json, "weights" is a list of one object per file, empty for a model without
    weights (bicubic, lanczos). hints.overlap is the overlap runs take as the model's
    own: its manifest's, or for a manifest that states none (a model imported before its
    architecture was measured) the one its weights or [build] give, as runs find it,
    marked so ("overlap" and "overlap_from" in --json); one derived for a shape nobody
    measured is marked an estimate ("overlap_derived" in --json).

    A weights file (a name taken as -m takes it: a weights suffix or a '/') is loaded as
    -m loads it and described: the architecture detected, its factor, parameters, size,
    SHA-256, the precisions its tensors are stored in ("stored_as" in --json) and the
    hints 'models import' would record for it.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.weights.resolve import (
        expected_sha256,
        find_spec,
        is_weights_file,
        local_files,
        seamless_overlap_of,
    )

    if "://" in name or is_weights_file(name):  # a URL: refused as -m refuses it
        _file_info(name, json_lines)
        return
    spec = find_spec(name)
    known = seamless_overlap_of(spec)
    overlap, overlap_from, overlap_derived = known or (None, None, None)
    files = [
        {
            "file": w.file,
            "sha256": w.sha256,
            "pinned_sha256": None if w.sha256 else expected_sha256(spec, w),
            "size": w.size,
            "urls": list(w.urls),
            "path": None if local is None else str(local),
        }
        for w, local in zip(spec.weight_files, local_files(spec), strict=True)
    ]
    details = {
        **_summary(spec),
        "channels": spec.channels,
        "manifest": str(spec.path),
        "build": spec.build,
        "weights": files,  # one object per file, whatever the model: [] for none
        "hints": vars(spec.hints),
        "meta": vars(spec.meta),
        # What runs take as the model's own (hints.overlap is the manifest's alone).
        "overlap": overlap,
        "overlap_from": overlap_from,  # "manifest", "weights", "build" or None
        "overlap_derived": overlap_derived,  # an estimate, not measured; None: no overlap
    }
    if json_lines:
        _emit("model", details)
        return
    pairs = _plain_pairs(details)
    pairs += [(f"build.{k}", _shown(v)) for k, v in spec.build.items()]
    for i, entry in enumerate(files):
        prefix = "weights" if len(files) == 1 else f"weights[{i}]"
        entry = dict(entry)
        if entry["sha256"] is None:
            pinned = entry.pop("pinned_sha256")
            entry["sha256"] = (
                f"{pinned} (pinned on first use)"
                if pinned
                else "not published: fetched only with --allow-unverified, then pinned"
            )
        else:
            entry.pop("pinned_sha256")
        pairs += [(f"{prefix}.{k}", _shown(v)) for k, v in entry.items()]
    pairs += _hint_pairs(spec.hints, known)
    pairs += [(f"meta.{k}", _shown(v)) for k, v in vars(spec.meta).items()]
    _ui.print_pairs(_ui.make_report_console(), pairs)


def _file_info(ref: str, json_lines: bool) -> None:
    """``models info FILE``: the weights file ``ref`` loaded as ``-m`` loads it
    (``resolve.inspect_file``) and described in the keys ``models info NAME`` uses where
    they apply, ``path`` for ``manifest``, and ``stored_as``, the precisions its tensors
    are stored in.

    Raises:
        ModelError: the file is missing, unreadable or of no architecture known (exit 3,
            as ``-m FILE`` says it).
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.weights.resolve import KnownOverlap, inspect_file

    found = inspect_file(ref)
    desc = found.model
    known = (
        None
        if desc.seamless_overlap is None
        else KnownOverlap(desc.seamless_overlap, "weights", desc.overlap_derived)
    )
    details = {
        "name": desc.name,
        "path": str(found.path),
        "family": desc.family,
        "scale": desc.scale,
        "params": desc.params,
        "size": found.size,
        "sha256": desc.sha256,
        "stored_as": list(found.stored),  # "fp16", "fp32", "bf16"
        "hints": vars(found.hints),
        "overlap": desc.seamless_overlap,
        "overlap_from": None if known is None else "weights",
        "overlap_derived": None if known is None else desc.overlap_derived,
    }
    if json_lines:
        _emit("model", details)
        return
    pairs = _plain_pairs(details) + _hint_pairs(found.hints, known, manifest=False)
    _ui.print_pairs(_ui.make_report_console(), pairs)


# The keys of a models info record shown as rows of their own (hints.tiling, weights.url...)
# or among them (the overlap, as hints.overlap), not as one row each.
_NESTED = ("weights", "hints", "meta", "build", "overlap", "overlap_from", "overlap_derived")


def _plain_pairs(details: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of a ``models info`` record's keys shown as they are (not :data:`_NESTED`)."""
    return [(key, _shown(value)) for key, value in details.items() if key not in _NESTED]


def _hint_pairs(
    hints: Hints, known: KnownOverlap | None, *, manifest: bool = True
) -> list[tuple[str, str]]:
    """The ``hints.*`` rows of ``models info``: each hint, and the overlap runs take
    (``known``) as ``hints.overlap`` (:func:`_overlap_shown`; ``manifest``: see there)."""
    shown = {k: _shown(v) for k, v in vars(hints).items() if k != "overlap_derived"}
    if known is not None:
        shown["overlap"] = _overlap_shown(known, manifest=manifest)
    return [(f"hints.{k}", v) for k, v in shown.items()]


def _overlap_shown(known: KnownOverlap, *, manifest: bool = True) -> str:
    """``hints.overlap`` of ``models info``: the figure, marked an estimate when it is
    derived for a shape nobody measured, and where it comes from when not the manifest
    (``manifest``: the model has one, which states none; False for a weights file)."""
    if known.source == "manifest":
        return f"{known.pixels} (estimated, not measured)" if known.derived else str(known.pixels)
    source = "its weights" if known.source == "weights" else "its [build]"
    how = (
        f"estimated from {source}, not measured"
        if known.derived
        else f"measured for its architecture, read from {source}"
    )
    return (
        f"{known.pixels} ({how}; its manifest states none)"
        if manifest
        else f"{known.pixels} ({how})"
    )


def _shown(value: Any) -> str:
    """A value of ``models info`` as its table shows it: ``-`` for an absent one (None,
    empty), as ``models list`` shows one, yes/no for a flag, a list's items by commas."""
    if value is None or value == "" or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value)
    return str(value)


@app.command(
    "download",
    cls=Command,
    epilog=examples(
        "pocketsr models download realesrgan-x4plus",
        "pocketsr models download realesrgan-x4plus realesr-general-x4v3",
        "pocketsr models download adcsr-x4 --allow-unverified --trust-pickle",
    ),
)
@handle_errors
def download(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME",
            help="Model names (see 'pocketsr models list').",
            show_default=False,
            autocompletion=_complete.downloadable_names,
            parser=opt.model_name_argument,
        ),
    ],
    allow_unverified: opt.AllowUnverifiedOpt = False,
    trust_pickle: opt.TrustPickleOpt = False,
    quiet: Annotated[
        bool, opt.quiet_option("progress bar or line per file fetched, found or converted")
    ] = False,
) -> None:
    """Fetch models' weights into the cache (resumable, checksum-verified).

    Mirrors are tried in order; an interrupted download resumes where it stopped. Weights
    whose publisher gives no checksum need --allow-unverified the first time; the SHA-256
    they arrive with is then pinned and checked from then on.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import ModelError
    from pocketsr_cli.weights.resolve import convert_pickles, find_spec, where

    console = _ui.make_console()
    failures: list[str] = []
    names = list(dict.fromkeys(names))  # a name given twice is fetched once
    for name in names:
        try:
            spec = find_spec(name)
            if spec.weights is None:
                if not quiet:
                    _ui.say(console, f"{name}: nothing to download (built without weights)")
                continue
            before = where(spec)
            paths, transferred = _fetch(spec, console, allow_unverified, quiet=quiet)
            converted = convert_pickles(spec, paths) if trust_pickle else []
        except ModelError as exc:
            if len(names) == 1:
                raise  # one model: its error is the whole story, not a line and a tally
            _ui.error(console, "model", str(exc))
            failures.append(name)
            continue
        if quiet:
            continue
        state = "downloaded" if transferred else _STATE[before]
        for path in paths:
            _ui.say(console, f"{name}: {state}, {_ui.human_bytes(path.stat().st_size)}  {path}")
        for path in converted:
            _ui.say(console, f"{name}: converted to safetensors  {path}")
    if failures:
        raise ModelError(f"{len(failures)} of {len(names)} downloads failed: {', '.join(failures)}")


# What ``models download`` says of a model none of whose bytes came through it, by where
# its weights were before.  Not on the machine (or not whole) then, they were fetched by
# another process meanwhile: this one waited on its download lock, or came just after.
_STATE = {
    "remote": "downloaded by another pocketsr process",
    "damaged": "downloaded by another pocketsr process",
    "cached": "already cached",
    "bundled": "bundled with pocketsr",
    "user": "imported (user model folder)",
    "missing": "missing",
}


def _fetch(
    spec: ModelSpec, console: Any, allow_unverified: bool, *, quiet: bool
) -> tuple[tuple[Path, ...], bool]:
    """The verified weights files of ``spec`` and whether any bytes had to be transferred."""
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.weights.resolve import locate_weights

    progressed: list[int] = []

    class Counted(_ui.DownloadBar):
        def __call__(self, done: int, total: int | None) -> None:
            progressed.append(done)
            super().__call__(done, total)

    with Counted(console, spec.name, quiet=quiet) as bar:
        paths = locate_weights(
            spec, on_progress=bar, allow_unverified=allow_unverified, check_pinned=True
        )
    return paths, bool(progressed)


@app.command(
    "verify",
    cls=Command,
    epilog=examples("pocketsr models verify", "pocketsr models verify my-model --json"),
)
@handle_errors
def verify(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="Model names (default: every model with weights on disk).",
            show_default=False,
            autocompletion=_complete.verifiable_names,
            parser=opt.model_name_argument,
        ),
    ] = None,
    json_lines: opt.JsonOpt = False,
    quiet: Annotated[
        bool,
        opt.quiet_option(
            "line on stdout for a file that verifies, only for those that do not (as "
            "'sha256sum --check --quiet'; --json is unchanged)"
        ),
    ] = False,
) -> None:
    """Re-hash weights on disk and compare them with their manifests (always re-reads).

    A file whose digest was pinned on first use (no published checksum) must also read as
    a whole weights file: one that does not is reported unreadable.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import ModelError
    from pocketsr_cli.weights.resolve import (
        expected_sha256,
        find_spec,
        local_files,
        registry,
        unreadable_pin,
        where,
    )
    from pocketsr_cli.weights.verify import file_matches

    # A manifest that cannot be read (or repeats a name) is reported and fails the check,
    # after every other model has been verified (models list skips it the same way).
    problems: list[str] = []
    if names:
        specs = [find_spec(name) for name in dict.fromkeys(names)]
    else:
        specs = [
            s
            for s in registry(problems).values()
            if any(p is not None for p in local_files(s)) or where(s) == "missing"
        ]
    console = _ui.make_console()
    for problem in problems:
        _ui.warn(console, f"skipped: {problem}")
    report = _ui.make_report_console()
    bad: list[str] = []
    absent: list[str] = []  # named, never downloaded: nothing to verify, nothing damaged
    unpinned: list[str] = []  # a download pins these only with --allow-unverified
    unreadable: list[str] = []  # pinned, unchanged, yet no weights file (a download)
    refetch = False  # a damaged download: a download fetches it again
    # A file of the model's own (beside its manifest, or with no URL) damaged, missing or
    # unreadable: no download replaces it; an import does (user), or a reinstall (bundled).
    own_broken: set[str] = set()  # the origins of such models
    for spec in specs:
        if spec.weights is None:
            checks: list[tuple[str, Path | None, str | None]] = [("no weights", None, None)]
        else:
            checks = []
            for w, path in zip(spec.weight_files, local_files(spec), strict=True):
                digest = expected_sha256(spec, w)
                why = None
                if path is None:
                    status = "not downloaded" if w.urls else "missing (no URL to fetch it from)"
                elif digest is None:
                    status = _NOT_PINNED
                elif not file_matches(path, digest, w.size, rehash=True):
                    status = "damaged"
                elif (why := unreadable_pin(spec, w, path)) is not None:
                    status = _UNREADABLE
                else:
                    status = "ok"
                checks.append((status, path, why))
        wrong = [status for status, _, _ in checks if status not in ("ok", "no weights")]
        if wrong and all(status == "not downloaded" for status in wrong):
            absent.append(spec.name)
        elif wrong:
            bad.append(spec.name)
        if _NOT_PINNED in wrong:
            unpinned.append(spec.name)
        own = [spec.path.parent / w.file for w in spec.weight_files]
        if any(status == _UNREADABLE and path not in own for status, path, _ in checks):
            unreadable.append(spec.name)
        for status, path, _ in checks:
            if status == "damaged" and path not in own:
                refetch = True
            elif status not in (_NOT_PINNED, _UNREADABLE, "not downloaded", "ok", "no weights"):
                own_broken.add(spec.origin)  # damaged beside it, or missing with no URL
            elif status == _UNREADABLE and path in own:
                own_broken.add(spec.origin)
        for status, path, why in checks:
            if json_lines:
                on_disk = None if path is None else str(path)
                record = {"name": spec.name, "status": status, "path": on_disk, "error": why}
                _emit("verification", record)
            elif not (quiet and status in ("ok", "no weights")):
                said = status if why is None else f"{status}: {why}"
                _ui.say(report, f"{spec.name}: {said}" + ("" if path is None else f"  {path}"))
    if not specs and not (json_lines or quiet):
        _ui.say(report, "no model weights on disk to verify")
    not_fetched = (
        f"{len(absent)} model(s) not downloaded, so not verified: {', '.join(absent)} "
        f"(`pocketsr models download {' '.join(absent)}` fetches them)"
        if absent
        else ""
    )
    if bad:
        advice = []
        if refetch:
            advice.append("`pocketsr models download NAME` fetches a damaged download again")
        if "user" in own_broken:
            advice.append("`pocketsr models import ... --force` replaces an imported model")
        if "bundled" in own_broken:
            advice.append("reinstalling pocketsr restores a bundled model's file")
        if unpinned:
            advice.append(
                f"`pocketsr models download {' '.join(unpinned)} --allow-unverified` trusts "
                "the file on disk and pins its digest"
            )
        if unreadable:
            listed = " ".join(unreadable)
            advice.append(
                f"`pocketsr models download {listed} --allow-unverified` deletes an unreadable "
                "file and its pin and fetches it anew"
            )
        raise ModelError(
            f"{len(bad)} model(s) failed verification: {', '.join(bad)}; "
            + ", ".join(advice)
            + (f"; {len(problems)} manifest(s) skipped (above)" if problems else "")
            + (f"; {not_fetched}" if not_fetched else "")
        )
    if absent:
        raise ModelError(
            not_fetched + (f"; {len(problems)} manifest(s) skipped (above)" if problems else "")
        )
    if problems:
        raise ModelError(f"{len(problems)} manifest(s) skipped: {problems[0]}")


_NOT_PINNED = "not pinned (no published checksum)"
_UNREADABLE = "unreadable"  # has its pinned digest, yet is no weights file (resolve.unreadable_pin)


@app.command(
    "remove",
    cls=Command,
    epilog=examples(
        "pocketsr models remove realesrgan-x4plus      # its downloaded weights",
        "pocketsr models remove my-model               # an imported model",
    ),
)
@handle_errors
def remove(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Model name (see 'pocketsr models list').",
            autocompletion=_complete.removable_names,
            parser=opt.model_name_argument,
        ),
    ],
    quiet: Annotated[bool, opt.quiet_option("line per file removed or left")] = False,
) -> None:
    """Delete an imported model, or a model's downloaded weights (bundled files stay).

    A manifest in the user model folder that cannot be read (which 'models list' reports)
    is removed by its file's name without .toml, with the weights 'models import' stored
    beside it, unless a model has that name (that model is acted on).
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import ModelError, RemoveError
    from pocketsr_cli.weights.resolve import find_spec
    from pocketsr_cli.weights.store import remove_broken_manifest, remove_model

    console = _ui.make_console()

    def say(message: str) -> None:
        if not quiet:
            _ui.say(console, message)

    try:
        spec = find_spec(name)
    except ModelError:
        try:
            broken = remove_broken_manifest(name)
        except RemoveError as exc:
            _say_removed(say, exc.removed)  # what went before the failure
            raise
        if broken is None:
            raise
        *weights, manifest = broken  # the manifest goes last
        _say_removed(say, weights)
        say(f"removed {manifest} (a manifest that could not be read)")
        return
    try:
        removed = remove_model(spec)
    except RemoveError as exc:
        _say_removed(say, exc.removed)
        raise
    if not removed:
        say(f"{name}: nothing to remove (not downloaded)")
    _say_removed(say, removed)
    if spec.origin == "user" and spec.path.exists():
        say(f"{name}: its manifest, written by hand, stays: {spec.path}")


def _say_removed(say: Callable[[str], None], paths: list[Path]) -> None:
    for path in paths:
        say(f"removed {path}")


IMPORT_EPILOG = examples(
    "pocketsr models import 4x_foo.pth --name foo-x4",
    "pocketsr models import https://example.com/foo.safetensors --name foo --sha256 HEX",
)


@app.command("import", cls=Command, epilog=IMPORT_EPILOG)
@handle_errors
def import_model(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE|URL",
            help="Weights file (.safetensors/.pth/.ckpt/.pt) or an https:// or hf:// URL.",
            show_default=False,
        ),
    ],
    name: ImportNameOpt,
    sha256: Annotated[
        str | None,
        typer.Option(
            "--sha256", metavar="HEX", help="Expected SHA-256 of the file (required for a URL)."
        ),
    ] = None,
    license_: LicenseOpt = "unknown",
    description: DescriptionOpt = "",
    force: ForceOpt = False,
    offline: opt.OfflineOpt = False,
    json_lines: opt.JsonOpt = False,
    quiet: Annotated[
        bool,
        opt.quiet_option("progress bar or 'imported' line (--json on stdout is unchanged)"),
    ] = False,
) -> None:
    """Add a model file of any architecture pocketsr or spandrel can run.

    It is stored as safetensors with a generated manifest in the user model folder; the
    original file is not needed afterwards.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.weights.store import ImportRequest, import_file, import_url, is_url

    offline = opt.offline_mode(offline)  # a bad POCKETSR_OFFLINE is refused before any work
    request = ImportRequest(name=name, license=license_, description=description, force=force)
    if not source.strip():
        raise UsageError("an empty FILE|URL: name a weights file or an https:// or hf:// URL")
    if is_url(source):  # refused before anything is fetched when pocketsr would not fetch it
        with _ui.DownloadBar(_ui.make_console(), name, quiet=quiet) as bar:
            done = import_url(request, source, sha256=sha256, offline=offline, on_progress=bar)
    else:
        _must_be_a_file(Path(source))
        done = import_file(request, Path(source), sha256=sha256)
    _report_import(done, json_lines, quiet=quiet)


@app.command(
    "import-ncnn",
    cls=Command,
    epilog=examples("pocketsr models import-ncnn x4plus.param x4plus.bin --name x4plus-ncnn"),
)
@handle_errors
def import_ncnn(
    param: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL.param", help="The ncnn .param file (text).", show_default=False
        ),
    ],
    bin_path: Annotated[
        Path, typer.Argument(metavar="MODEL.bin", help="The ncnn .bin file.", show_default=False)
    ],
    name: ImportNameOpt,
    license_: LicenseOpt = "unknown",
    description: DescriptionOpt = "",
    force: ForceOpt = False,
    json_lines: opt.JsonOpt = False,
    quiet: Annotated[
        bool, opt.quiet_option("'imported' line (--json on stdout is unchanged)")
    ] = False,
) -> None:
    """Convert and add an ncnn model (Real-ESRGAN RRDBNet or SRVGG-compact; fp16 or fp32).

    Any other graph is refused with the list of layer types it contains.
    """
    from pocketsr_cli.weights.store import ImportRequest
    from pocketsr_cli.weights.store import import_ncnn as convert_and_store

    for given in (param, bin_path):
        _must_be_a_file(given)

    request = ImportRequest(name=name, license=license_, description=description, force=force)
    _report_import(convert_and_store(request, param, bin_path), json_lines, quiet=quiet)


def _must_be_a_file(path: Path) -> None:
    """Refuse a source to import that is no file, before anything is read.

    Raises:
        UsageError: it is missing, a folder, no regular file (a device, a FIFO), or
            cannot even be looked at (a name too long, a folder on its way that may not be
            entered: ``errors.unreachable``).
    """
    from pocketsr_cli.errors import UsageError, present_file, unreachable

    try:
        if present_file(path):
            return
    except OSError as exc:  # a name too long, a folder on its way that may not be entered
        raise UsageError(f"{path}: {unreachable(path, exc)}") from None
    if path.is_dir():
        why = "a folder, not a file"
    elif path.exists():  # /dev/null, a FIFO, a socket: nothing to read weights from
        why = "not a regular file"
    else:
        why = "not found"
    raise UsageError(f"{path}: {why}")


def _report_import(done: Imported, json_lines: bool, *, quiet: bool) -> None:
    """Say what was imported (not with ``quiet``).  Old weights that ``--force`` could not
    delete are a warning, kept under ``quiet`` (the exit code stays 0): the model is
    imported and whole, only a file is left over."""
    from pocketsr_cli.cli import _ui

    spec = done.spec
    console = _ui.make_console()
    if json_lines:
        not_removed = [{"path": str(path), "error": why} for path, why in done.not_removed]
        record = {**_summary(spec), "manifest": str(spec.path), "not_removed": not_removed}
        _emit("model", record)
    elif not quiet:
        params = "-" if spec.meta.params is None else f"{spec.meta.params:,}"
        _ui.say(
            console,
            f"imported {spec.name}: {spec.family} ×{spec.scale}, {params} parameters → "
            f"{spec.path.parent}; use it with `pocketsr upscale -m {spec.name} ...`",
        )
    for path, why in done.not_removed:
        _ui.warn(
            console,
            f"{spec.name} is imported, but the weights it replaced could not be deleted: "
            f"{path} ({why}); no model uses that file now: delete it by hand",
        )
