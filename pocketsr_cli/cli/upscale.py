"""``pocketsr upscale``: parse -> request -> pipeline.run -> render.

Its product is the files it writes: its human lines are a log on stderr, and only
``--json`` puts anything on stdout (see ``_ui`` for the rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pocketsr_cli.cli import _complete
from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from pocketsr_cli.cli._help import examples
from pocketsr_cli.errors import UsageError

FORMATS = ("same", "png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp")

EPILOG = examples(
    "pocketsr upscale photos/ -o upscaled/       # mirror a folder ×4",
    "pocketsr upscale IMG_0042.jpg               # writes IMG_0042_x4.jpg beside it",
    "pocketsr upscale shoot/ -r --glob '*.png' -s 2 --format webp --json > log.jsonl",
    "pocketsr upscale big.tif --tile 512 --device cuda:1 --precision fp16",
)


def upscale(
    inputs: Annotated[
        list[Path],
        typer.Argument(metavar="INPUT", help="Image files and/or folders.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Output folder (input folders are mirrored under it). "
            "Default: beside each input (photo.jpg → photo_x4.jpg).",
            file_okay=False,
        ),
    ] = None,
    model: opt.ModelOpt = None,
    scale: opt.ScaleOpt = None,
    outscale: Annotated[
        float | None,
        typer.Option(
            "--outscale",
            metavar="FACTOR",
            min=0.01,
            max=64.0,
            help="Resize the result to this factor of the input.",
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
    ] = False,
    glob: Annotated[
        str | None,
        typer.Option(
            "--glob", metavar="PATTERN", help="Only files matching this pattern (e.g. '*.jpg')."
        ),
    ] = None,
    device: opt.DeviceOpt = "auto",
    precision: opt.PrecisionOpt = "auto",
    tile: Annotated[
        str,
        typer.Option(
            "--tile",
            metavar="auto|0|N",
            help="Tile side in input pixels: auto (fit free memory), 0 (whole image), N.",
            autocompletion=_complete.tiles,
        ),
    ] = "auto",
    tile_overlap: Annotated[
        int,
        typer.Option(
            "--tile-overlap", metavar="N", min=0, max=256, help="Overlap between tiles (px)."
        ),
    ] = 16,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="same, png, jpg, webp, tiff or bmp.",
            autocompletion=_complete.formats,
        ),
    ] = "same",
    quality: Annotated[
        int, typer.Option("--quality", metavar="N", min=1, max=100, help="JPEG/WebP quality.")
    ] = 95,
    suffix: Annotated[
        str | None,
        typer.Option(
            "--suffix",
            metavar="TEXT",
            help="Appended to output names. Default: _xSCALE (_x4) beside inputs, none under -o.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--skip-existing", help="Replace existing outputs, or skip them (default)."
        ),
    ] = False,
    strip_metadata: Annotated[
        bool, typer.Option("--strip-metadata", help="Drop EXIF, ICC profile and XMP.")
    ] = False,
    ensemble: Annotated[
        bool,
        typer.Option("--ensemble", help="Self-ensemble (two padded passes, blended): 2× slower."),
    ] = False,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Compile the network with torch.compile: faster on GPUs for long runs, "
            "after a warm-up of tens of seconds per image size.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done; write nothing.")
    ] = False,
    json_lines: opt.JsonOpt = False,
    quiet: opt.QuietOpt = False,
    offline: opt.OfflineOpt = False,
) -> None:
    """Upscale images and folders of images."""
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.devices import choose_device, compute_for
    from pocketsr_cli.imageio import format_from_name
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.jobs import Naming, collect_jobs, scale_label
    from pocketsr_cli.pipeline import Options, run
    from pocketsr_cli.tiling import TilePolicy
    from pocketsr_cli.weights.resolve import resolve_model

    try:
        fmt_key = None if fmt.lower() == "same" else format_from_name(fmt)
    except ValueError:
        raise UsageError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}") from None
    TilePolicy.from_option(tile, tile_overlap)  # validates --tile before any work
    for given in inputs:
        if not given.exists():
            raise UsageError(f"input not found: {given}")
    torch_device = choose_device(device)
    console = _ui.make_console()
    with _ui.DownloadBar(console, f"downloading {model or 'default model'}") as bar:
        descriptor = resolve_model(model, scale, offline=offline, on_progress=bar)
    compute = compute_for(torch_device, precision, descriptor)
    naming = Naming(
        out_dir=output,
        suffix=suffix,
        scale_label=scale_label(outscale if outscale is not None else descriptor.scale),
        fmt=fmt_key,
    )
    jobs = collect_jobs(inputs, naming, recursive=recursive, glob=glob)

    reporters: list[_ui.Reporter] = [_ui.RichReporter(console, quiet=quiet, json_lines=json_lines)]
    if json_lines:
        reporters.append(_ui.JsonLinesReporter(descriptor.name, str(compute)))
    reporter = _ui.FanOut(reporters)
    upscaler = Upscaler(
        descriptor,
        compute,
        tile=tile,
        overlap=tile_overlap,
        ensemble=ensemble,
        compile=compile_model,
        on_warning=reporter.warning,
    )
    if not quiet:
        console.print(
            f"[bold]pocketsr[/] {descriptor.name} ×{descriptor.scale} on {compute} — "
            f"{len(jobs)} input(s)" + (" (dry run)" if dry_run else "")
        )
    options = Options(
        fmt=fmt_key,
        quality=quality,
        keep_metadata=not strip_metadata,
        overwrite=overwrite,
        dry_run=dry_run,
        outscale=outscale,
    )
    summary = run(jobs, upscaler, options, reporter)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if summary.failed else EXIT_OK)
