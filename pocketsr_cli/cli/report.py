"""``pocketsr report``: parse -> report.load_log -> report.write_report -> one line.

Its product is the page it writes; the line saying where goes to stderr (``_ui``).
``upscale --report`` builds the same page from the run it just made (:func:`write`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._help import examples

if TYPE_CHECKING:
    from rich.console import Console

    from pocketsr_cli.report import PageOptions, Run

EPILOG = examples(
    "pocketsr upscale shoot/ -o out/ --json > run.jsonl && pocketsr report run.jsonl",
    "pocketsr report run.jsonl -o review.html        # pictures embed, or review_files/ past 12",
    "pocketsr report run.jsonl --crop 512 --crops 3  # larger crops, three per image",
    "pocketsr upscale shoot/ -o out/ --json | pocketsr report - -o review.html",
    "pocketsr upscale shoot/ -o out/ --report out/review.html   # in one go",
)


STDIN = "-"
"""The LOG that means standard input (a file named ``-``: ``./-``)."""


def _log_argument(value: str) -> str:
    """LOG as given, not as a ``Path``: that would make ``./-`` (a file) ``-`` (stdin)."""
    opt.path_argument(value)  # refuses an empty one
    return value


def report_command(
    log: Annotated[
        str,
        typer.Argument(
            metavar="LOG",
            help="What 'pocketsr upscale ... --json' wrote (JSON Lines); - reads it from "
            "standard input (then give -o). Relative paths in it are looked up from the "
            "current folder, then from the log's folder.",
            show_default=False,
            parser=_log_argument,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PAGE",
            help="The page to write (.html). Default: the log's name with .html, beside it "
            "(needed when the log is standard input or a pipe).",
            show_default=False,
            parser=opt.path_argument,
        ),
    ] = None,
    crop: Annotated[
        int,
        opt.number_option(
            "--crop",
            low=16,
            high=4096,
            unit="px",
            metavar="N",
            help="Side of each crop in output pixels, shown at 100 %.",
        ),
    ] = 320,
    crops: Annotated[
        int,
        opt.number_option(
            "--crops",
            low=1,
            high=8,
            metavar="N",
            help="Crops per image, most detailed first, not overlapping ('c' on the page "
            "switches).",
        ),
    ] = 1,
    embed: Annotated[
        bool | None,
        typer.Option(
            "--embed/--files",
            help="Put every picture inside the page (one file to share), or write them to "
            "a folder beside it named after the page (review.html: review_files/; light for big "
            "runs). Default: embed up to 12 images.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, opt.quiet_option("progress bar or line saying where the page is")
    ] = False,
) -> None:
    """Write a review page of an upscale run: before/after at 100 % for every image.

    One self-contained HTML page (no network needed) with a card per input: a
    before/after slider on the output's most detailed crop at 100 %, a thumbnail with
    the crop marked, sizes, model, device and seconds; failed and skipped inputs get
    cards too, and a summary with the totals comes first. Keys: j/k next/previous,
    arrows move the divider, b/a before/after, z zoom, ? for all of them.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.report import PageOptions, is_stream, is_terminal, load_log

    if output is not None:  # refused before the log is read, as upscale refuses its -o
        opt.refuse_unexpanded_home(output, "-o/--output", folder=False)
    path = None if log == STDIN else Path(log)
    # reading would wait for typing, as 'cat' does: a mistyped '-' shows nothing
    if path is None and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError(_terminal_message("standard input"))
    if path is not None and is_terminal(path):  # /dev/stdin, /dev/tty: the same wait
        raise UsageError(_terminal_message(log))
    if output is None and (path is None or is_stream(path)):
        # there is no file to name the page after: /dev/stdin.html is no place for it
        what = (
            "is read from standard input (-), so there is no file"
            if path is None
            else f"{log} is a pipe or descriptor, not a file"
        )
        raise UsageError(f"the log {what} to name the page after; give -o PAGE.html")
    run = load_log(sys.stdin.buffer if path is None else path)
    page = output if output is not None else Path(log).with_suffix(".html")
    if path is not None and page.resolve() == path.resolve():
        raise UsageError(f"the review page would replace the log {log}; give -o PAGE.html")
    options = PageOptions(crop=crop, crops=crops, embed=embed)
    write(run, page, options, _ui.make_console(), quiet=quiet)


def _terminal_message(name: str) -> str:
    """Why a LOG that is a terminal (``name``: "standard input" or the path) is refused."""
    return (
        f"{name} is a terminal, not a log; pipe one in "
        "('pocketsr upscale ... --json | pocketsr report - -o PAGE.html') or name a log file"
    )


def write(run: Run, page: Path, options: PageOptions, console: Console, *, quiet: bool) -> None:
    """Write ``run``'s page with a progress bar, then say where it is (unless ``quiet``)."""
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.report import write_report

    with _ui.StepBar(console, "review page", quiet=quiet) as bar:
        result = write_report(run, page, options, on_progress=bar)
    if quiet:
        return
    where = f", pictures in {result.assets}" if result.assets is not None else ""
    noted = f"; {result.notes} with a note about a missing or changed file" if result.notes else ""
    _ui.say(
        console,
        f"review page: {result.page} ({result.cards} card(s), {result.pictured} with "
        f"before/after{where}{noted})",
    )
