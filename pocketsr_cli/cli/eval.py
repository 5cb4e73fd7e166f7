"""``pocketsr eval``: parse -> evaluation.run.evaluate -> table or JSON Lines.

The table or the JSON lines go to stdout; progress and warnings to stderr (``_ui``).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pocketsr_cli.cli import _complete
from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import EXIT_FAILED
from pocketsr_cli.cli._help import DEFAULT_MODEL_TOKEN, examples

if TYPE_CHECKING:
    from pocketsr_cli.evaluation.run import EvalReport

EPILOG = examples(
    "pocketsr eval held_out/                        # default model vs bicubic, ×4",
    "pocketsr eval held_out/ --degradation real -m lanczos -m my.safetensors",
    "pocketsr eval held_out/ -s 2 --resize --crop 512 -m realesrgan-x4plus",
    "pocketsr eval held_out/ --limit 3 --json > scores.jsonl",
    "pocketsr eval held_out/ --crop 512 --ensemble none --ensemble pad --ensemble flip8",
)


class Degradation(str, Enum):
    """The eval degradations (kept literal here so ``--help`` imports nothing heavy)."""

    bicubic = "bicubic"
    real = "real"


ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|PATH",
        help=f"Default: {DEFAULT_MODEL_TOKEN}. Model to score (registry name or weights file); "
        "repeat for several. Bicubic is always scored too, as the floor.",
        show_default=False,
        autocompletion=_complete.model_names,
        parser=opt.model_argument,
    ),
]


def eval_command(
    hr_dir: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="Folder of ground-truth (high-resolution) photos (sub-folders are not "
            "scanned; a warning counts them).",
            show_default=False,
            parser=opt.path_argument,
        ),
    ],
    degradation: Annotated[
        Degradation,
        typer.Option(
            "--degradation",
            metavar="bicubic|real",
            help="bicubic: plain bicubic downscale; real: blur σ1.2, downscale, "
            "noise σ3/255, JPEG q70.",
        ),
    ] = Degradation.bicubic,
    models: ModelsOpt = None,
    scale: Annotated[
        int | None,
        opt.scale_option(
            "Factor to score at: each photo is degraded by it and each model runs its ×N "
            "variant (see --resize). Default: the own factor of the first model that has "
            "one (bicubic and lanczos run at any: -m lanczos -m pocketsr-compact-x2 scores "
            "at ×2), else ×4."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        opt.number_option(
            "--limit",
            low=1,
            metavar="N",
            help="Score only the first N photos (by name) that can be scored; files on "
            "the way that fail (unreadable, or too large for the memory available, found "
            "from the header as upscale does; the command then exits 1) or are too small to "
            "score (skipped) are reported and not counted.",
        ),
    ] = None,
    crop: Annotated[
        int | None,
        opt.number_option(
            "--crop",
            low=32,
            unit="px",
            metavar="N",
            help="Score the centred N×N window of each photo (faster); a photo smaller "
            "than N on a side is scored whole along it (said once, under the results).",
        ),
    ] = None,
    resize: Annotated[
        bool,
        typer.Option(
            "--resize",
            help="Models without a variant at -s (or a variant named at another scale: "
            "pocketsr-compact-x4 at -s 2; -m pocketsr-compact picks the variant) run at their "
            "own scale and their result is resized to it (what upscale --outscale gives). "
            "PCSR models draw -s natively, with or without it.",
        ),
    ] = False,
    device: opt.DeviceOpt = "auto",
    threads: opt.ThreadsOpt = None,
    precision: opt.PrecisionOpt = "auto",
    tile: opt.TileOpt = "auto",
    tile_overlap: opt.TileOverlapOpt = "auto",
    ensemble: opt.EnsemblesOpt = None,
    ensemble_weight: opt.EnsembleWeightOpt = None,
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON Lines on stdout: one object per model, per-image scores under "
            "'images' (each naming its photo by 'image', the file name, and 'input', the "
            "path as given); 'scale' is the factor the eval ran at (-s), 'model_scale' the "
            "model's own (a row resized from it, or a PCSR model drawing -s natively); "
            "'not_scored' lists the files that failed or were skipped (input, status, "
            "error or reason), as upscale --json reports an input; "
            "'smaller_than_crop' the photos scored whole along a side shorter than --crop.",
        ),
    ] = False,
    quiet: opt.QuietOpt = False,
    offline: opt.OfflineOpt = False,
) -> None:
    """Score models on ground-truth photos.

    Reports PSNR-Y, SSIM-Y, detail, hf, bandcorr, lattice ratio, sharpness and seconds
    per image. Each photo is degraded deterministically (docs/measurement.md), upscaled by every
    model and compared with the original. detail: the output's energy in the visible band
    (0.12-0.30 cycles/px) ÷ the original's (1 = as detailed; bicubic ×4 ≈ 0.03); hf: the
    same above 0.30 (far above detail = grain); bandcorr: is that detail where the
    original's is (1 = exactly). Lattice ratio > 2 means a visible 8-pixel grid.
    Sharpness (mean gradient ratio) is shown for reference only: grain inflates it.
    Each --ensemble scores every model again with that self-ensemble (rows NAME +pad,
    NAME +flip8; bicubic runs plain).
    A photo that cannot be read, or would not fit in the memory available, fails: the
    others are still scored and the command exits 1 after printing the results. One too
    small to score at the scale and crop is skipped.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import PocketSRError, UsageError
    from pocketsr_cli.evaluation.run import collect_images, evaluate

    offline = opt.offline_mode(offline)  # a bad POCKETSR_OFFLINE is refused before any work
    ensembles = opt.ensemble_choices(ensemble, ensemble_weight)
    console = _ui.make_console()
    paths = collect_images(hr_dir, on_warning=lambda message: _ui.warn(console, message))
    overlap = opt.tile_overlap(tile_overlap)
    opt.use_threads(threads)
    spec = opt.upscaler_spec(
        device, precision, opt.tile_side(tile, overlap), overlap, offline=offline
    )
    # Scores are the model's at the reference precision: auto stays fp32 on a CPU.
    spec = dataclasses.replace(spec, cpu_bf16=False)
    with _ui.StepBar(console, "eval", quiet=quiet) as bar:
        report = evaluate(
            paths,
            models or [],
            spec,
            degradation.value,
            scale,
            crop=crop,
            resize=resize,
            ensembles=ensembles,
            limit=limit,
            on_progress=bar,
            on_warning=lambda message: _ui.warn(console, message),
            on_failed=lambda given, why: _ui.failed(console, given, why),
        )
    if not report.images:
        # As upscale has it: files that failed (unreadable, too large) fail the run (1);
        # a folder with nothing to work on (no image files, or, here, only photos too
        # small to score at this scale and crop) is a usage error (2).
        # The first file that failed (else skipped), named by its path as given, as its
        # own line named it.
        failed = set(report.failed)
        first = next(
            (
                f"{report.inputs.get(name, name)}: {why}"
                for name, why in report.skipped
                if name in failed or not failed
            ),
            "",
        )
        message = f"none of the {len(paths)} file(s) in {hr_dir} could be scored (first, {first})"
        raise PocketSRError(message) if failed else UsageError(message)
    if json_lines:
        not_scored = report.not_scored()
        for entry in report.models:
            record = {
                "type": "scores",  # every command's --json lines say what they are
                "degradation": report.degradation,
                "scale": report.scale,  # the eval's factor; the model's own is model_scale
                "device": report.device,
                "crop": report.crop,
                "smaller_than_crop": report.smaller_than_crop,  # scored whole along a side
                **entry.to_dict(),
                "not_scored": not_scored,
            }
            _ui.emit_json(record, allow_nan=False)
    else:
        columns, rows, title = _table(report)
        _ui.print_table(
            _ui.make_report_console(),
            columns,
            rows,
            right=columns[1:],
            no_wrap=["model"],
            title=title,
        )
    if (note := report.crop_note()) is not None:  # said once, as bench says its note
        _ui.warn(console, note)
    if report.failed:
        # As upscale: the others are scored, the failures (each had its line as it failed)
        # are listed again under the table, unless quiet or --json, and the run fails.
        # Each named by its path as given, as upscale and bench --folder name them.
        if not (quiet or json_lines):
            why = dict(report.skipped)
            failures = [(report.inputs[name], why[name]) for name in report.failed]
            _ui.failed_summary(console, failures)
        raise typer.Exit(EXIT_FAILED)


def _number(value: float, digits: int) -> str:
    if value != value:  # nan
        return "-"
    if value in (float("inf"), float("-inf")):
        return "inf"
    return f"{value:.{digits}f}"


def _table(report: EvalReport) -> tuple[list[str], list[list[str]], str]:
    """Columns, rows and title of the human summary."""
    columns = [
        "model",
        "PSNR-Y",
        "SSIM-Y",
        "detail",
        "hf",
        "bandcorr",
        "lattice ratio",
        "sharpness",
        "s/image",
    ]
    rows = [
        [
            entry.model + (" (floor)" if entry.floor else ""),
            _number(entry.mean("psnr_y"), 2),
            _number(entry.mean("ssim_y"), 4),
            _number(entry.mean("detail"), 3),
            _number(entry.mean("hf"), 3),
            _number(entry.mean("bandcorr"), 3),
            _number(entry.mean("lattice_ratio"), 2),
            _number(entry.mean("sharpness"), 3),
            _number(entry.seconds_per_image, 3),
        ]
        for entry in report.models
    ]
    title = (
        f"pocketsr eval: {len(report.images)} photo(s), {report.degradation} ×{report.scale}, "
        f"{report.device}"
    )
    return columns, rows, title
