"""Option declarations shared by several commands (one spelling, one help text).

Every option that takes a value has a ``metavar`` (what ``--help`` shows after it) and,
where the values can be listed, an ``autocompletion`` (``_complete``).
"""

from __future__ import annotations

import functools
import numbers
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from pocketsr_cli.cli import _complete
from pocketsr_cli.cli._help import DEFAULT_MODEL_TOKEN
from pocketsr_cli.ensemble import WEIGHT_RANGE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pocketsr_cli.ensemble import Ensemble
    from pocketsr_cli.factory import UpscalerSpec


FORMATS = ("same", "png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp")
"""What ``--format`` takes (upscale, bench; its help, completion and refusal list these):
``same`` (each input's own format) or an output format by name or extension."""


def output_format(value: str) -> str | None:
    """The format key ``--format value`` names (``imageio.format_from_name``; ``.png`` and
    ``jfif`` are taken too), None for ``same``.

    Raises:
        UsageError: no output format by that name (the message lists :data:`FORMATS`).
    """
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.imageio import format_from_name
    from pocketsr_cli.spelling import FORMAT

    if value.strip().lower() == "same":
        return None
    try:
        return format_from_name(value)
    except ValueError:
        raise UsageError(
            f"unknown {FORMAT} {value!r}; choose one of: {', '.join(FORMATS)}"
        ) from None


def model_argument(value: str) -> str:
    """A ``-m`` value; an empty one (``-m "$MODEL"`` with ``MODEL`` unset) is a usage error,
    not the default model.

    Raises:
        UsageError: an empty or blank value, said in one line by the app (``cli/__init__``)
            rather than in Click's usage box.
    """
    return _named(value, "name a model ('pocketsr models list') or a weights file")


def model_name_argument(value: str) -> str:
    """A registry name given to a ``models`` command; an empty one is a usage error (as
    :func:`model_argument`), not a model no one has.

    Raises:
        UsageError: an empty or blank value.
    """
    return _named(value, "name a model ('pocketsr models list')")


def _named(value: str, what_to_do: str) -> str:
    from pocketsr_cli.errors import UsageError

    if not value.strip():
        raise UsageError(f"an empty model name: {what_to_do}")
    return value


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        # The default's name comes first: the help column wraps at hyphens.
        help=f"Default: {DEFAULT_MODEL_TOKEN}, bundled (-s N picks its ×N variant). "
        "Or any registry name (see 'pocketsr models list') or a weights file "
        "(.safetensors/.pth/.ckpt/.pt).",
        show_default=False,
        autocompletion=_complete.model_names,
        parser=model_argument,
    ),
]


SCALE_MIN, SCALE_MAX = 1, 16  # -s N's range: the factors a model variant may have
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")  # 2, 2.0, 1.5, .5: ASCII only
_EXPONENT = re.compile(r"[eE][-+]?[0-9]+$")


def scale_option(help: str, *, outscale: bool = False) -> Any:
    """``--scale/-s N`` (1..16), with the command's own ``help``; ``outscale``: the command
    takes ``--outscale``, which a refused fraction (``-s 1.5``) is pointed to."""
    return typer.Option(
        "--scale",
        "-s",
        metavar="N",
        # Shown in --help ([1<=x<=16]); with a parser Typer checks neither: scale_argument does.
        min=SCALE_MIN,
        max=SCALE_MAX,
        help=help,
        parser=functools.partial(scale_argument, outscale=outscale),
    )


def scale_argument(value: str, *, outscale: bool = False) -> int:
    """``-s N`` as an int, :data:`SCALE_MIN` to :data:`SCALE_MAX`; ``2.0`` is 2 (ASCII
    digits only: ``1e1`` and ``٢`` are refused).  A fraction
    (``-s 1.5``) is refused with the option that makes one, where the command has it
    (``outscale``): ``-s`` picks a model's ×N variant, ``--outscale`` sizes the result.

    Raises:
        UsageError: not a whole number in range (said in one line by the app, as an empty
            ``-m`` is, not in Typer's usage box).
    """
    import math

    from pocketsr_cli.errors import UsageError

    try:
        return int(number_argument(value, option="-s/--scale", low=SCALE_MIN, high=SCALE_MAX))
    except UsageError as exc:
        text = value.strip()
        number = _decimal(text)
        if not outscale or not math.isfinite(number) or number.is_integer():
            raise
        raise UsageError(
            f"{exc}: it picks the model's ×N variant; for a ×{text} result give --outscale {text}"
        ) from None


def _decimal(text: str, *, signed: bool = False, exponent: bool = False) -> float:
    """``text`` as a number when it is a decimal written in ASCII digits (``2``, ``2.0``,
    ``.5``; with ``signed``, ``-0.5`` too; with ``exponent``, ``-1e6`` too), else NaN:
    float() also takes ``inf``, ``+2`` and other scripts' digits, none of which a user
    means as an option's number, and ``1e1``, which a factor or a count is not written as
    (a float knob such as ``--pcsr-k`` is: ``-1e6``)."""
    import math

    body = text[1:] if signed and text.startswith("-") else text
    if exponent:
        body = _EXPONENT.sub("", body, count=1)
    return float(text) if _DECIMAL.fullmatch(body) else math.nan


Unit = Literal["px", "x", "%"]
"""What a number option counts, for its refusal's words and for the spelling with the unit
written that it points to the number in (``3840px``, ``2x``, ``x2``, ``90%``)."""
Side = Literal["width", "height", "long_edge"]
"""Which side of an output a pixel option sets, for a resolution named in its stead."""

_NOUNS: dict[Unit | None, str] = {"px": "a whole number of pixels", "x": "a factor"}
_WITH_UNIT: dict[Unit, tuple[str, ...]] = {
    "px": (r"(?P<n>.+?)\s*(?:px|pixels?)",),
    "x": (r"(?P<n>.+?)\s*[x×]", r"[x×]\s*(?P<n>.+)"),
    "%": (r"(?P<n>.+?)\s*%",),
}
_RESOLUTIONS = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "fhd": (1920, 1080),
    "1440p": (2560, 1440),
    "qhd": (2560, 1440),
    "4k": (3840, 2160),
    "uhd": (3840, 2160),
    "2160p": (3840, 2160),
    "8k": (7680, 4320),
    "4320p": (7680, 4320),
}
"""Resolutions given by name where a pixel option wants a number (``--long-edge 4K``): the
message gives the number (``2K`` and ``HD`` are left out: they name more than one)."""
_WXH = re.compile(r"([0-9]+)\s*[x×]\s*([0-9]+)")


def number_option(
    *names: str,
    low: float | None = None,
    high: float | None = None,
    whole: bool = True,
    unit: Unit | None = None,
    side: Side | None = None,
    **option: Any,
) -> Any:
    """A ``typer.Option`` (``names`` and ``option``: its own arguments) for a number from
    ``low`` to ``high`` (None: unbounded), ``whole`` or not, read by
    :func:`number_argument`: a value refused is said in one line naming the option, its
    range and the value, and what to type where that is plain (``--width 3840px``: give
    ``--width 3840``); ``unit`` and ``side``: see there.  ``--help`` shows the range as
    Typer shows ``min``/``max`` (``[x>=1]``); with a parser Typer checks neither."""
    name = "/".join(sorted(names, key=len))
    return typer.Option(
        *names,
        min=low,
        max=high,
        parser=functools.partial(
            number_argument, option=name, low=low, high=high, whole=whole, unit=unit, side=side
        ),
        **option,
    )


def number_argument(
    value: str | float,
    *,
    option: str,
    low: float | None = None,
    high: float | None = None,
    whole: bool = True,
    unit: Unit | None = None,
    side: Side | None = None,
) -> Any:
    """``value`` (an option's text, or its typed default, which Click passes here too) as
    an int (``whole``: ``2.0`` is 2) or a float, from ``low`` to ``high`` (None: no bound),
    written in ASCII digits (a ``-`` sign where ``low`` allows one; no ``inf``; ``1e1``
    only for a float counting no ``unit``: ``--pcsr-k -1e6``, not ``--outscale 1e1``).

    Raises:
        UsageError: anything else, in one line (said by the app, as for ``-s``): ``option``
            takes what, in which range, not ``value``; then, where plain, what to type: the
            number without the ``unit`` written with it (``3840px``, ``2x``, ``x2``,
            ``90%``), or for a pixel option setting an output's ``side``, that side of a
            resolution named (``4K``) or written as ``WxH``.
    """
    from pocketsr_cli.errors import UsageError

    text = str(value).strip()
    number = _number_in_range(text, low, high, whole, unit)
    if number is not None:
        return number
    noun = _NOUNS.get(unit) or ("a whole number" if whole else "a number")
    if low is not None and high is not None:
        bounds = f" from {low:g} to {high:g}"
    elif low is not None:
        bounds = f", {low:g} or more"
    else:
        bounds = "" if high is None else f", {high:g} or less"
    problem = f"{option} takes {noun}{bounds}, not {value!r}"
    hint = _what_to_type(text, option, low, high, whole, unit, side)
    raise UsageError(f"{problem}: {hint}" if hint else problem)


def _number_in_range(
    text: str, low: float | None, high: float | None, whole: bool, unit: Unit | None
) -> int | float | None:
    """``text`` read as :func:`number_argument` reads it, or None where refused."""
    import math

    number = _decimal(text, signed=low is None or low < 0, exponent=not whole and unit is None)
    if not math.isfinite(number) or (whole and not number.is_integer()):
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return int(number) if whole else number


def _what_to_type(
    text: str,
    option: str,
    low: float | None,
    high: float | None,
    whole: bool,
    unit: Unit | None,
    side: Side | None,
) -> str | None:
    """What :func:`number_argument` points a refused ``text`` to, or None."""
    if side is not None:
        written = _WXH.fullmatch(text)
        named = _RESOLUTIONS.get(text.lower())
        size = named or ((int(written[1]), int(written[2])) if written else None)
        if size is not None:
            w, h = size
            n = {"width": w, "height": h, "long_edge": max(w, h)}[side]
            label = f"{text} ({w}×{h})" if named else f"{w}×{h}"
            if _number_in_range(str(n), low, high, whole, unit) is not None:
                return f"for {label} give {option} {n}"
    for pattern in _WITH_UNIT.get(unit, ()) if unit else ():
        found = re.fullmatch(pattern, text, re.IGNORECASE)
        number = found and found["n"].strip()
        if number and _number_in_range(number, low, high, whole, unit) is not None:
            return f"give {option} {number}"
    return None


def quality_option(of: str = "") -> Any:
    """``--quality N`` (1..100, default 95: ``imageio.DEFAULT_QUALITY``, not imported so
    that ``--help`` stays fast), the JPEG/WebP quality of what the command writes; ``of``
    says which of its outputs that is where not all (`` of the --folder run``)."""
    return number_option(
        "--quality",
        low=1,
        high=100,
        unit="%",
        metavar="N",
        show_default="95",
        help=f"JPEG/WebP quality{of}. Without it, a lossless WebP written as WebP stays lossless.",
    )


DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps.",
        autocompletion=_complete.devices,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    number_option(
        "--threads",
        low=1,
        metavar="N",
        help="CPU threads for the model (default: torch's, one per core). On a machine "
        "that is busy with other work, --threads 1 can be many times faster: every thread "
        "waits for the slowest at each step.",
        show_default=False,
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        metavar="PRECISION",
        help="auto, fp32, fp16 or bf16. auto = fp16 on GPUs for half-safe models, else bf16 "
        "on an NVIDIA GPU that computes it (Ampere on) for bf16-safe ones; on a CPU that "
        "computes bf16 natively (AVX512-BF16, AMX), bf16 for the models measured faster in "
        "it (eval keeps fp32); else fp32.",
        autocompletion=_complete.precisions,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="JSON Lines on stdout (a failure gives one 'type': 'error' object); "
        "progress, warnings and errors stay on stderr.",
    ),
]


# Warnings stay under --quiet: many tell of work lost or changed (an image not scored, an
# output written as PNG rather than JPEG, a time that is no estimate) that no exit code
# or table says, and a warning is the user's to act on.
def quiet_option(hides: str) -> Any:
    """``--quiet/-q``: only errors and warnings on stderr; ``hides`` lists what else the
    command would have said there (progress, its lines)."""
    return typer.Option("--quiet", "-q", help=f"Only errors and warnings on stderr: no {hides}.")


QuietOpt = Annotated[
    bool,
    quiet_option(
        "progress, per-image lines or run summary (tables and --json on stdout are unchanged)"
    ),
]
# Not Typer's envvar=: it would read POCKETSR_OFFLINE with its own words for a bad value;
# each command passes the flag through offline_mode, which reads it as the downloader does.
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Never touch the network (or set POCKETSR_OFFLINE=1)."),
]
AllowUnverifiedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unverified",
        help="Fetch weights whose publisher gives no checksum, and pin the SHA-256 they "
        "arrive with: later runs check against it (trust on first use).",
    ),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Load a weights pickle that needs to run code, once (only if you trust its "
        "source): it is kept as safetensors and never opened again.",
    ),
]
TileOpt = Annotated[
    str,
    typer.Option(
        "--tile",
        metavar="auto|0|N",
        help="Tile side in input pixels: auto (fit free memory), 0 (whole image), N.",
        autocompletion=_complete.tiles,
    ),
]
TileOverlapOpt = Annotated[
    str,
    typer.Option(
        "--tile-overlap",
        metavar="auto|N",
        help="Context pixels (0-256) each tile shares with its neighbours, feather-blended. "
        "auto: the model's own ('models info', hints.overlap; 16 for the default model), "
        "at least 16, and at most a quarter of a fixed --tile N. Below the model's own "
        "tiles show seams, with a warning.",
        autocompletion=_complete.overlaps,
    ),
]
_ENSEMBLE_HELP = (
    "Self-ensemble: none; pad (GenDR-Pix: two passes padded [4,4,4,4] and [3,5,3,5], "
    "blended by --ensemble-weight; 2× the time); flip8 (the eight flips and rotations, "
    "averaged; 8× the time). Each tile runs its own passes."
)
EnsembleOpt = Annotated[
    str,
    typer.Option(
        "--ensemble",
        metavar="none|pad|flip8",
        help=_ENSEMBLE_HELP + " The bare --ensemble of earlier versions is --ensemble pad.",
        autocompletion=_complete.ensembles,
    ),
]
EnsemblesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ensemble",
        metavar="none|pad|flip8",
        help=_ENSEMBLE_HELP + " Repeat to compare (none, pad, flip8: each model three times).",
        show_default="none",
        autocompletion=_complete.ensembles,
    ),
]
EnsembleWeightOpt = Annotated[
    float | None,
    number_option(
        "--ensemble-weight",
        low=WEIGHT_RANGE[0],
        high=WEIGHT_RANGE[1],
        whole=False,
        metavar="W",
        help="pad's blend y = W·pass[4,4,4,4] + (1−W)·pass[3,5,3,5], 0 to 3: 0.5 averages, "
        "above 1 extrapolates (CFG-like), 0 or 1 runs one pass.",
        show_default="0.5",
    ),
]
PcsrKOpt = Annotated[
    float | None,
    number_option(
        "--pcsr-k",
        whole=False,
        metavar="K",
        help="PCSR models only: the speed/quality knob of their pixel routing. 0 (default) "
        "follows the classifier; larger sends more pixels to the light path (faster), "
        "negative more to the heavy one. --json reports each image's heavy share.",
        show_default=False,
    ),
]
AdaptiveOpt = Annotated[
    bool,
    typer.Option(
        "--adaptive",
        help="PCSR models only: route each image by 2-means on its heavy-path "
        "probabilities instead of --pcsr-k.",
    ),
]


# ------------------------------------------------------------- option values -> typed values


def refuse_unexpanded_home(path: Path, option: str, *, folder: bool) -> None:
    """Refuse an output ``path`` given as ``'~/out'``, which the shell left as typed
    (``errors.unexpanded_home``), where no ``~`` is in the working folder: writing it would
    make a folder called ``~`` there (and ``rm -rf ~``, to clear it away, would delete the
    home folder).  One that is there was made on purpose, and is written into.  ``option``
    names the option in the message (``-o/--output``); ``folder`` says whether ``path``
    itself is a folder (upscale's ``-o``) rather than a file (report's page), for what a
    bare ``~`` would make.

    Raises:
        UsageError: saying what to give instead.
    """
    import os

    from pocketsr_cli.errors import UsageError, unexpanded_home

    hint = unexpanded_home(path)
    top = path.parts[0] if path.parts else ""
    if hint is None or os.path.lexists(top):
        return
    made = "folder" if folder or len(path.parts) > 1 else "file"
    raise UsageError(
        f"{option} {path} would make a {made} named {top} here: {hint} (or, for a "
        f"{made} named {top} here, $PWD/{path})"
    )


def path_argument(value: str) -> Path:
    """A path given on the command line; an empty one (``"$SRC"`` with ``SRC`` unset) is a
    usage error, not this folder, which is what ``Path("")`` would be (said in one line, as
    an empty ``-m``: the app turns a parser's ``UsageError`` into ``error (usage): ...``)."""
    from pocketsr_cli.errors import UsageError

    if value == "":
        raise UsageError("an empty path: name a file or folder ('.' for this one)")
    return Path(value)


# The smallest --tile N worth a call of the network, and how much of a tile the overlaps
# may take: at most half its side, so that no pixel is computed more than 4 times over.
MIN_TILE = 16
MAX_OVERLAP = 256  # --tile-overlap's largest N


def _ascii_digits(text: str) -> bool:
    """Whether ``text`` is a number written in ASCII digits: ``str.isdigit`` alone takes
    other scripts' digits (``٦٤``, which ``int`` reads as 64) and superscripts (``²``,
    which ``int`` refuses with a bare ValueError)."""
    return text.isascii() and text.isdigit()


def tile_overlap(value: str) -> int | None:
    """``--tile-overlap auto|N`` as the factory's ``overlap``: None (auto, each model's
    own: ``inference.own_overlap``) or N, 0 to :data:`MAX_OVERLAP`.

    Raises:
        UsageError: another spelling, or N out of range.
    """
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.spelling import TILE_OVERLAP

    text = str(value).strip().lower()
    if text == "auto":
        return None
    if not _ascii_digits(text) or int(text) > MAX_OVERLAP:
        raise UsageError(
            f"{TILE_OVERLAP} must be auto or a number of pixels from 0 to {MAX_OVERLAP}, "
            f"not {value!r}"
        )
    return int(text)


def tile_side(value: str | int, overlap: int | None = None) -> int | None:
    """``--tile auto|0|N`` as the factory's ``tile``: None (auto), 0 (whole image) or N;
    ``value`` is the option's text, or the Python API's ``tile``, which may be an int
    (numpy's too) and is shown as given where it is refused (``-1``, not ``'-1'``).
    ``overlap`` None (auto) is checked as the smallest auto overlap,
    :data:`~pocketsr_cli.tiling.DEFAULT_OVERLAP`: a model that needs more gets at most a
    quarter of a fixed N (``inference.own_overlap``).

    Raises:
        UsageError: another spelling (a bool, a float), ``N`` below :data:`MIN_TILE`, or
            ``N < 4 * overlap``
            (the tiles' own parts would be a sliver: ``--tile 34`` with the default overlap
            of 16 computes each pixel 289 times and ran for minutes on a thumbnail).
    """
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.spelling import TILE, TILE_OVERLAP
    from pocketsr_cli.tiling import DEFAULT_OVERLAP

    if overlap is None:
        overlap = DEFAULT_OVERLAP

    # A bool is an Integral, and str(True) would be no number only by luck.
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    text = str(value).strip().lower() if whole or isinstance(value, str) else ""
    if text == "auto":
        return None
    if not _ascii_digits(text):
        raise UsageError(f"{TILE} must be auto, 0 or a number of pixels, not {value!r}")
    side = int(text)
    if 0 < side < MIN_TILE:
        raise UsageError(f"{TILE.given(side)} is too small: use {MIN_TILE} or more, or 0")
    if side and side < 4 * overlap:
        core = max(side - 2 * overlap, 0)
        raise UsageError(
            f"{TILE.given(side)} leaves {core} px of each tile once {TILE_OVERLAP} "
            f"({overlap}) is taken on both sides, so every pixel would be computed many "
            f"times over: use {TILE} {4 * overlap} or more, or a smaller {TILE_OVERLAP}"
        )
    return side  # (N > 2 * overlap, which TilePolicy.for_side holds to, follows)


def offline_mode(flag: bool) -> bool:
    """``--offline``, else what ``POCKETSR_OFFLINE`` says
    (:func:`~pocketsr_cli.weights.cache.is_offline`: the one reader of the variable, so that
    every command, the downloader and the Python API take and refuse the same values).
    Called first in a command, so that a bad value is refused before any work; with
    ``--offline`` given the variable is not read.

    Raises:
        UsageError: the variable says neither yes nor no (``POCKETSR_OFFLINE=maybe``).
    """
    from pocketsr_cli.weights.cache import is_offline

    return flag or is_offline()


def ensemble_choice(mode: str, weight: float | None = None) -> Ensemble:
    """``--ensemble MODE`` and ``--ensemble-weight W`` (None: not given) as the core's
    :class:`~pocketsr_cli.ensemble.Ensemble`; a mode that is no mode's name is refused
    with a reminder of the bare ``--ensemble`` of earlier versions (``--ensemble -o out``
    hands the next option over as the mode).

    Raises:
        UsageError: an unknown mode or bad weight, or a weight with a mode other than pad.
    """
    from pocketsr_cli.ensemble import MODES, Ensemble
    from pocketsr_cli.errors import UsageError

    text = str(mode).strip().lower()
    if text not in MODES and weight is None:
        raise UsageError(
            f"--ensemble takes none, pad or flip8, not {mode!r} (the bare --ensemble of "
            "earlier versions is --ensemble pad)"
        )
    return Ensemble.of(text, weight)


def ensemble_choices(modes: Sequence[str] | None, weight: float | None) -> list[Ensemble]:
    """The ensembles of a repeated ``--ensemble`` (``eval``, ``bench``; none given: just
    ``none``), ``--ensemble-weight`` going to ``pad``; duplicates dropped, order kept.

    Raises:
        UsageError: an unknown mode or bad weight, or a weight without ``pad``.
    """
    from pocketsr_cli.errors import UsageError

    given = list(modes or ["none"])
    names = [m.strip().lower() for m in given]
    if weight is not None and "pad" not in names:
        raise UsageError("--ensemble-weight applies to --ensemble pad, which was not asked for")
    found = [
        ensemble_choice(m, weight if name == "pad" else None)
        for m, name in zip(given, names, strict=True)
    ]
    return list(dict.fromkeys(found))


def upscaler_spec(
    device: str,
    precision: str,
    tile: int | None = None,
    overlap: int | None = None,
    *,
    compile: bool = False,
    offline: bool = False,
    allow_unverified: bool = False,
    trust_pickle: bool = False,
) -> UpscalerSpec:
    """The factory's :class:`~pocketsr_cli.factory.UpscalerSpec` from ``--device`` and
    ``--precision`` (checked in that order) and the rest, already typed (``tile``: see
    :func:`tile_side`; ``overlap``: :func:`tile_overlap`, None for each model's own).
    ``POCKETSR_CPU_BF16`` is checked first, since ``auto`` may read it once a model is
    open: a bad value is refused before any work.

    Raises:
        UsageError: ``POCKETSR_CPU_BF16`` says neither yes nor no.
        DeviceError: an unknown or absent device, an unknown precision.
    """
    from pocketsr_cli.devices import choose_device, cpu_bf16_forced
    from pocketsr_cli.factory import UpscalerSpec, precision_choice

    cpu_bf16_forced()
    return UpscalerSpec(
        device=choose_device(device),
        precision=precision_choice(precision),
        tile=tile,
        overlap=overlap,
        compile=compile,
        offline=offline,
        allow_unverified=allow_unverified,
        trust_pickle=trust_pickle,
    )


def use_threads(threads: int | None) -> None:
    """``--threads``: set torch's CPU thread count for this process (None: leave torch's)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
