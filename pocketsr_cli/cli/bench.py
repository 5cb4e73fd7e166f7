"""``pocketsr bench``: parse -> evaluation.bench.bench -> table or JSON Lines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pocketsr_cli.cli import _options as opt

if TYPE_CHECKING:
    from pocketsr_cli.evaluation.bench import BenchReport

EPILOG = """\
Examples:

  pocketsr bench -m bicubic -m lanczos            # 960×540 → 4K, best of 3

  pocketsr bench -m my.safetensors --baseline realesr-general-x4v3 --device cuda

  pocketsr bench -m lanczos --size 480x270 --repeat 5 --json
"""

ModelsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Model to time (registry name or weights file); repeat for several.",
        show_default="the bundled default",
    ),
]


def bench_command(
    models: ModelsOpt = None,
    size: Annotated[
        str, typer.Option("--size", help="Input WIDTHxHEIGHT (×4 of 960x540 is 3840×2160).")
    ] = "960x540",
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, help="Timed runs per model; the fastest counts.")
    ] = 3,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Model the ratios refer to.", show_default="the first"),
    ] = None,
    device: opt.DeviceOpt = "auto",
    precision: opt.PrecisionOpt = "auto",
    tile: opt.TileOpt = "auto",
    json_lines: Annotated[
        bool, typer.Option("--json", help="JSON Lines on stdout: one object per model.")
    ] = False,
    quiet: opt.QuietOpt = False,
    offline: opt.OfflineOpt = False,
) -> None:
    """Time models: seconds per 4K output, and ratios.

    All models run in this process on one synthetic photo of --size. Each model gets one
    untimed warm-up run, then --repeat timed runs through the full upscale path (tiling
    included); the fastest counts. Also shows parameters and multiply-accumulates per
    input pixel where the network's layers can be counted.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.evaluation.bench import bench, parse_size

    console = _ui.make_console()
    width, height = parse_size(size)
    with _ui.StepBar(console, "bench", quiet=quiet) as bar:
        report = bench(
            models or [],
            (width, height),
            repeat,
            device,
            precision=precision,
            tile=tile,
            baseline=baseline,
            offline=offline,
            on_progress=bar,
        )
    if json_lines:
        for result in report.models:
            record = {
                "width": report.width,
                "height": report.height,
                "repeat": report.repeat,
                "device": report.device,
                "threads": report.threads,
                "baseline": report.baseline,
                **result.to_dict(),
            }
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    columns, rows, title = _table(report)
    _ui.print_table(console, columns, rows, right=columns[1:], no_wrap=["model"], title=title)


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


def _table(report: BenchReport) -> tuple[list[str], list[list[str]], str]:
    """Columns, rows and title of the human summary."""
    columns = ["model", "params", "MACs/LR px", "precision", "output", "s per 4K", "ratio"]
    rows = [
        [
            r.model,
            _count(r.params),
            _count(r.macs_per_pixel),
            r.precision,
            f"{r.out_width}×{r.out_height}",
            f"{r.seconds_per_4k:.3f}",
            _ratio(r.ratio),
        ]
        for r in report.models
    ]
    title = (
        f"pocketsr bench: {report.width}×{report.height} input, best of {report.repeat}, "
        f"{report.device}, {report.threads} thread(s); ratio vs {report.baseline}"
    )
    return columns, rows, title
