"""``pocketsr bench``: parse -> evaluation.bench.bench / bench_folder -> table or JSON Lines.

The table or the JSON lines go to stdout; progress and warnings to stderr (``_ui``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pocketsr_cli.cli import _complete
from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import EXIT_FAILED
from pocketsr_cli.cli._help import DEFAULT_MODEL_TOKEN, examples
from pocketsr_cli.errors import UsageError

if TYPE_CHECKING:
    from pocketsr_cli.evaluation.bench import BenchReport, FolderBenchReport

DEFAULT_SIZE = "960x540"

EPILOG = examples(
    "pocketsr bench -m bicubic -m lanczos                 # 960×540 → 4K, best of 3",
    "pocketsr bench -m my.safetensors --baseline realesr-general-x4v3 --device cuda",
    "pocketsr bench -m lanczos --size 480x270 --repeat 5 --json",
    "pocketsr bench -m bicubic -m lanczos --folder photos/  # end to end, 1 pass",
    "pocketsr bench --folder photos/ --format webp --repeat 2 --json",
    "pocketsr bench -m pocketsr-compact-x4 --ensemble none --ensemble pad --ensemble flip8",
    "pocketsr bench -m pocketsr-compact-x4 --device cuda --compile   # warm-up column: compiling",
)

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        help=f"Default: {DEFAULT_MODEL_TOKEN}. Model to time (registry name or weights file); "
        "repeat for several.",
        show_default=False,
        autocompletion=_complete.model_names,
        parser=opt.model_argument,
    ),
]


def bench_command(
    models: ModelsOpt = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="WxH",
            help="Input width x height of the synthetic photo (×4 of 960x540 is 3840×2160); "
            "refused when it or a model's output would not fit in memory. 's per 4K' is "
            "the output's time scaled to 4K: when an output is under a quarter of 4K "
            "(below 480x270 at ×4) bench notes that the figure is no estimate of 4K "
            "(per-call costs and caches weigh differently on a small input).",
            show_default=DEFAULT_SIZE,
        ),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            metavar="DIR",
            help="Time the end-to-end path (decode, upscale, encode) on the images directly "
            "in this folder (sub-folders are not scanned; a warning counts them) instead of "
            "the synthetic photo. Outputs go to a temporary folder that is deleted.",
            show_default=False,
            parser=opt.path_argument,
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="Output format of the --folder run: " + ", ".join(opt.FORMATS) + ".",
            autocompletion=_complete.formats,
        ),
    ] = "same",
    quality: Annotated[int | None, opt.quality_option(" of the --folder run")] = None,
    repeat: Annotated[
        int | None,
        opt.number_option(
            "--repeat",
            low=1,
            metavar="N",
            help="Timed runs per model (passes over the folder with --folder); the fastest counts.",
            show_default="3, or 1 with --folder",
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="NAME|PATH",
            help="Model the ratios refer to (synthetic photo only).",
            show_default="the first -m",
            autocompletion=_complete.model_names,
            parser=opt.model_argument,
        ),
    ] = None,
    device: opt.DeviceOpt = "auto",
    threads: opt.ThreadsOpt = None,
    precision: opt.PrecisionOpt = "auto",
    tile: opt.TileOpt = "auto",
    tile_overlap: opt.TileOverlapOpt = "auto",
    ensemble: opt.EnsemblesOpt = None,
    ensemble_weight: opt.EnsembleWeightOpt = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Compile each network with torch.compile, as upscale --compile does; the "
            "warm-up column shows what compiling costs before the steady state.",
        ),
    ] = False,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON Lines on stdout: one object per model. With --folder, 'failures' "
            "lists each image that failed (input, error), and 'not_run' "
            "lists the folder's files that were not images (skipped) or could not be "
            "opened (failed), as upscale --json reports them.",
        ),
    ] = False,
    quiet: opt.QuietOpt = False,
    offline: opt.OfflineOpt = False,
) -> None:
    """Time models: seconds per 4K output and ratios, or end-to-end throughput on a folder.

    Without --folder, all models run in this process on one synthetic photo of --size.
    Each model gets one untimed warm-up run, then --repeat timed runs through the full
    upscale path (tiling included); the fastest counts. Also shows parameters and
    multiply-accumulates per input pixel where the network's layers can be counted.

    With --folder, each model instead upscales every image directly in that folder the
    way 'pocketsr upscale' does — decoding, inference and encoding overlapped (a reader
    thread, the upscaling thread, and encoder threads: a quarter of the CPUs, 1 to 4) —
    after one untimed warm-up image; the fastest of --repeat passes counts.
    Reported: images/s, output megapixels/s, seconds per image end to end and in the
    model alone, and their ratio (e2e/model: what decoding and encoding add). Images
    that fail are reported, each with its reason (once, naming the models it failed
    for); the command then exits 1 after printing the results. The
    folder's other files are reported as 'pocketsr upscale' reports them: skipped (not
    an image), or failed (a broken link, a FIFO), which also exits 1. An
    image that would not fit in the memory available when the run starts fails from its
    header, undecoded, as in 'pocketsr upscale' (bench has no --max-memory, and does not
    read POCKETSR_MAX_MEMORY).

    Both modes report the warm-up apart (seconds of the first, untimed upscale: with
    --compile, the compiling) and show the peak RAM (resident set size of the process,
    "≤" when only the lifetime peak is known) and, on a GPU, the peak device memory of
    each model's runs. The precision column is what ran: uint8 for a resampler's 8-bit
    path (bicubic and lanczos on 8-bit images on a CPU, where --precision does not apply),
    fp32 once a half-precision run fell back to it; - (null in --json) for a --folder run
    in which no image was drawn.
    Each --ensemble times every model again with that self-ensemble (rows NAME +pad,
    NAME +flip8): its cost is its ratio to the plain row.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.evaluation.bench import FolderBenchReport, bench, bench_folder, parse_size

    offline = opt.offline_mode(offline)  # a bad POCKETSR_OFFLINE is refused before any work
    fmt_key = opt.output_format(fmt)
    if folder is None and (fmt_key is not None or quality is not None):
        raise UsageError("--format and --quality apply to --folder runs only")
    if folder is not None and (size is not None or baseline is not None):
        raise UsageError("--size and --baseline apply to the synthetic photo, not to --folder")
    ensembles = opt.ensemble_choices(ensemble, ensemble_weight)
    pixels = parse_size(DEFAULT_SIZE if size is None else size) if folder is None else None
    overlap = opt.tile_overlap(tile_overlap)
    opt.use_threads(threads)
    spec = opt.upscaler_spec(
        device,
        precision,
        opt.tile_side(tile, overlap),
        overlap,
        compile=compile_model,
        offline=offline,
    )
    console = _ui.make_console()
    with _ui.StepBar(console, "bench", quiet=quiet) as bar:
        if pixels is not None:
            report: BenchReport | FolderBenchReport = bench(
                models or [],
                spec,
                pixels,
                repeat or 3,
                baseline=baseline,
                ensembles=ensembles,
                on_progress=bar,
                on_warning=lambda message: _ui.warn(console, message),
            )
        else:
            assert folder is not None
            report = bench_folder(
                models or [],
                folder,
                spec,
                fmt=fmt_key,
                quality=quality,
                repeat=repeat or 1,
                ensembles=ensembles,
                on_progress=bar,
                on_warning=lambda message: _ui.warn(console, message),
            )
    failures = _failures(report)  # of a --folder run: the files not run, then the images
    if isinstance(report, FolderBenchReport):
        # The folder's other files, each once, in upscale's words: skipped (not an
        # image), or failed (a broken link, a FIFO), which fails the command as there;
        # then each image that failed to upscale, in the same words.
        planning = _ui.RichReporter(console, quiet=quiet, json_lines=json_lines)
        for result in report.not_run:
            planning.image_finished(result)
        for name, error in failures[sum(r.status == "failed" for r in report.not_run) :]:
            _ui.failed(console, name, error)
    if json_lines:
        for record in _records(report):
            _ui.emit_json(record)
    else:
        columns, rows, title = _table(report)
        right = [c for c in columns if c not in ("model", "precision")]
        _ui.print_table(
            _ui.make_report_console(), columns, rows, right=right, no_wrap=["model"], title=title
        )
    if failures and not (quiet or json_lines):  # listed again under the table, as upscale
        _ui.failed_summary(console, failures)
    for problem in _problems(report):
        _ui.warn(console, problem)
    if not isinstance(report, FolderBenchReport) and (note := report.extrapolation_note()):
        _ui.warn(console, note)
    if isinstance(report, FolderBenchReport) and (
        any(r.failed for r in report.models) or any(r.status == "failed" for r in report.not_run)
    ):
        raise typer.Exit(EXIT_FAILED)


def _failures(report: BenchReport | FolderBenchReport) -> list[tuple[str, str]]:
    """``(name, why)`` of each input that failed in a ``--folder`` run: the folder's
    files that no model could open, then the failed images, in the order they first
    failed.  An image is one line per distinct reason, not one per row: a file that
    does not decode fails the same way for every model.  With several rows the name
    says which models the reason is for (``(bicubic, lanczos)``), or ``(every model)``."""
    from pocketsr_cli.evaluation.bench import FolderBenchReport

    if not isinstance(report, FolderBenchReport):
        return []
    failures = [(r.job.display, r.error or "") for r in report.not_run if r.status == "failed"]
    rows: dict[str, dict[str, list[str]]] = {}  # input → reason → the rows it failed in
    for r in report.models:
        for f in r.failures:
            rows.setdefault(f.input, {}).setdefault(f.error, []).append(r.model)
    several = len(report.models) > 1
    for name, reasons in rows.items():
        for why, models in reasons.items():
            which = "every model" if len(models) == len(report.models) else ", ".join(models)
            failures.append((f"{name} ({which})" if several else name, why))
    return failures


def _problems(report: BenchReport | FolderBenchReport) -> list[str]:
    """What a ``--folder`` run said of the folder (its sub-folders not scanned, as upscale
    says it), then each model's warnings (a failed image is a failure: :func:`_failures`)."""
    from pocketsr_cli.evaluation.bench import FolderBenchReport

    run = report.warnings if isinstance(report, FolderBenchReport) else []
    return [*run, *(f"{r.model}: {message}" for r in report.models for message in r.warnings)]


def _records(report: BenchReport | FolderBenchReport) -> list[dict[str, Any]]:
    """One JSON object per model: the run's settings, then the model's result.  A folder
    run's settings list the folder's files that no model ran (``not_run``: not an image,
    or a broken link, a FIFO), each as ``upscale --json`` reports it
    (``_ui.outcome_record``).  What is printed as a warning after the table is in
    ``warnings``: what was said of the folder (its sub-folders not scanned), the model's
    own, then the run's (``extrapolation_note``: it speaks of every row's ratios, so every
    record carries it).  What a library warned of while the models were resolved (a
    download's) is said on stderr as it happens, as ``eval`` says it."""
    from pocketsr_cli.cli._ui import outcome_record
    from pocketsr_cli.evaluation.bench import BenchReport

    if isinstance(report, BenchReport):
        settings: dict[str, Any] = {
            "mode": "synthetic",
            "width": report.width,
            "height": report.height,
            "repeat": report.repeat,
            "device": report.device,
            "threads": report.threads,
            "compile": report.compile,
            "baseline": report.baseline,
        }
        note = report.extrapolation_note()
        before, after = [], ([] if note is None else [note])  # the run's note: every row's
    else:
        settings = {
            "mode": "folder",
            "folder": report.folder,
            "ignored": report.ignored,
            "not_run": [outcome_record(result) for result in report.not_run],
            "format": report.fmt,
            "quality": report.quality,
            "lossless_images": report.lossless_images,
            "repeat": report.repeat,
            "device": report.device,
            "threads": report.threads,
            "compile": report.compile,
        }
        before, after = report.warnings, []  # what was said of the folder: every row's
    return [
        {
            "type": "timing",
            **settings,
            **result.to_dict(),
            "warnings": [*before, *result.warnings, *after],
        }
        for result in report.models
    ]


def _count(value: float | None) -> str:
    """``16697987`` -> ``16.7M``; ``None`` -> ``-``."""
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _ratio(value: float) -> str:
    """``2.50×``, or ``1/217`` for the small ratios a fast model has against a slow baseline."""
    if 0 < value < 0.1:
        return f"1/{1 / value:.0f}"
    return f"{value:.2f}×"


def _number(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``None`` -> ``-``."""
    return "-" if value is None else f"{value:.{digits}f}"


def _peak(size: int | None, lifetime: bool = False) -> str:
    """``1.2 GB``; ``≤1.2 GB`` for a lifetime peak (an upper bound); ``-`` when unknown."""
    from pocketsr_cli.cli._ui import human_bytes

    if size is None:
        return "-"
    return ("≤" if lifetime else "") + human_bytes(size)


def _memory_columns(results: list[Any]) -> tuple[list[str], list[list[str]]]:
    """ "peak RAM" for every result, plus "peak VRAM" when some device reported it."""
    columns = ["peak RAM"]
    cells = [[_peak(r.host_peak_bytes, r.host_peak_lifetime)] for r in results]
    if any(r.device_peak_bytes is not None for r in results):
        columns.append("peak VRAM")
        for r, row in zip(results, cells, strict=True):
            row.append(_peak(r.device_peak_bytes))
    return columns, cells


def _table(report: BenchReport | FolderBenchReport) -> tuple[list[str], list[list[str]], str]:
    """Columns, rows and title of the human summary."""
    from pocketsr_cli.evaluation.bench import FolderBenchReport

    if isinstance(report, FolderBenchReport):
        return _folder_table(report)
    columns = [
        "model",
        "params",
        "MACs/LR px",
        "precision",
        "output",
        "warm-up s",
        "s per 4K",
        "ratio",
    ]
    memory, cells = _memory_columns(report.models)
    rows = [
        [
            r.model,
            _count(r.params),
            _count(r.macs_per_pixel),
            r.precision,
            f"{r.out_width}×{r.out_height}",
            f"{r.warmup_seconds:.3f}",
            f"{r.seconds_per_4k:.3f}",
            _ratio(r.ratio),
            *extra,
        ]
        for r, extra in zip(report.models, cells, strict=True)
    ]
    title = (
        f"pocketsr bench: {report.width}×{report.height} input, best of {report.repeat}, "
        f"{report.device}{_compiled(report.compile)}, {report.threads} thread(s); "
        f"ratio vs {report.baseline}"
    )
    if report.extrapolation_note() is not None:  # stdout alone must not pass it for 4K
        title += "; s per 4K scaled from small outputs: no estimate of 4K (see the warning below)"
    return columns + memory, rows, title


def _folder_table(report: FolderBenchReport) -> tuple[list[str], list[list[str]], str]:
    """Columns, rows and title of the human summary of a ``--folder`` run."""
    columns = [
        "model",
        "precision",
        "images",
        "failed",
        "warm-up s",
        "images/s",
        "MP/s out",
        "s/image",
        "model s/image",
        "e2e/model",
    ]
    memory, cells = _memory_columns(report.models)
    rows = [
        [
            r.model,
            r.precision or "-",  # no image drawn
            str(r.images),
            str(r.failed),
            _number(r.warmup_seconds, 3),
            _number(r.images_per_s, 2),
            _number(r.mp_per_s, 2),
            _number(r.seconds_per_image, 3),
            _number(r.model_seconds_per_image, 3),
            "-" if r.e2e_over_model is None else f"{r.e2e_over_model:.2f}×",
            *extra,
        ]
        for r, extra in zip(report.models, cells, strict=True)
    ]
    passes = "1 pass" if report.repeat == 1 else f"best of {report.repeat} passes"
    title = (
        f"pocketsr bench: {report.images} image(s) in {report.folder}, decoded, upscaled "
        f"and encoded as {report.fmt or 'their own format'}{_lossless(report)}, {passes}, "
        f"{report.device}{_compiled(report.compile)}, {report.threads} thread(s)"
    )
    return columns + memory, rows, title


def _lossless(report: FolderBenchReport) -> str:
    """What the title says after the format when lossless WebPs are kept lossless."""
    if not report.lossless_images:
        return ""
    if report.lossless_images == report.images:
        return " (lossless)"
    return f" ({report.lossless_images} lossless WebP kept lossless)"


def _compiled(compiled: bool) -> str:
    """What the title says after the device when the networks were compiled."""
    return " (torch.compile)" if compiled else ""
