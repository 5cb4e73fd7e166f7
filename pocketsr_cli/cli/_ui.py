"""Everything the user sees: the only module that imports rich.

Human output always goes to stderr so that ``--json`` keeps stdout machine-readable.
Progress bars are drawn only on a terminal; piped or captured output gets plain lines.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pocketsr_cli.jobs import Job
from pocketsr_cli.pipeline import Reporter, Result, Summary


def make_console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """The stderr console used for all human output."""
    return Console(file=file or sys.stderr, width=width, highlight=False, soft_wrap=True)


def error(console: Console, label: str, message: str) -> None:
    console.print(f"[bold red]error[/] ({label}): {escape(message)}")


def warn(console: Console, message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}")


def _size(w: int | None, h: int | None) -> str:
    return f"{w}×{h}" if w is not None and h is not None else "?"


def _transient_bar(
    console: Console, label: str, *columns: ProgressColumn
) -> tuple[Progress, TaskID]:
    """A started, transient progress display with one task of unknown total."""
    progress = Progress(*columns, console=console, transient=True)
    task = progress.add_task(label, total=None)
    progress.start()
    return progress, task


class RichReporter:
    """Progress bars (overall + per-image tiles), one line per image, a summary table."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self.overall: TaskID | None = None
        self.tiles: TaskID | None = None

    def start(self, total: int) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.overall = self.progress.add_task("images", total=total)
        self.tiles = self.progress.add_task("tiles", total=None, visible=False)
        self.progress.start()

    def image_started(self, job: Job, index: int) -> None:
        if self.progress is not None and self.tiles is not None:
            self.progress.update(
                self.tiles, description=f"  {job.input.name}", completed=0, total=None, visible=True
            )

    def tile(self, done: int, total: int) -> None:
        if self.progress is not None and self.tiles is not None:
            self.progress.update(self.tiles, completed=done, total=total)

    def image_finished(self, result: Result) -> None:
        if self.progress is not None and self.overall is not None:
            self.progress.advance(self.overall)
        for message in result.warnings:
            self.warning(f"{result.job.display}: {message}")
        if self.quiet and result.status != "failed":
            return
        name = escape(result.job.display)
        if result.status == "ok":
            before = _size(result.width, result.height)
            sizes = f"{before} → {_size(result.out_width, result.out_height)}"
            self.console.print(
                f"[green]ok[/]      {name}  {sizes}  {result.seconds or 0:.2f} s"
                f"  → {escape(str(result.output))}"
            )
        elif result.status == "skipped":
            self.console.print(f"[dim]skipped {name}: {escape(result.reason or '')}[/]")
        else:
            self.console.print(f"[bold red]failed[/]  {name}: {escape(result.error or '')}")

    def warning(self, message: str) -> None:
        warn(self.console, message)

    def finished(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.quiet:
            return
        ok = [r for r in summary.results if r.status == "ok"]
        table = Table(title="pocketsr upscale" + (" (interrupted)" if summary.interrupted else ""))
        for column in ("written", "skipped", "failed", "total time", "per image", "output MP/s"):
            table.add_column(column, justify="right")
        per_image = sum(r.seconds or 0 for r in ok) / len(ok) if ok else 0.0
        megapixels = sum((r.out_width or 0) * (r.out_height or 0) for r in ok) / 1e6
        rate = megapixels / summary.seconds if summary.seconds > 0 else 0.0
        table.add_row(
            str(len(ok)),
            str(summary.count("skipped")),
            f"[red]{summary.count('failed')}[/]" if summary.failed else "0",
            f"{summary.seconds:.1f} s",
            f"{per_image:.2f} s" if ok else "-",
            f"{rate:.2f}" if ok else "-",
        )
        self.console.print(table)
        for r in summary.failed:
            self.console.print(f"[red]failed:[/] {escape(r.job.display)}: {escape(r.error or '')}")


class JsonLinesReporter:
    """One JSON object per input on ``stream``, then ``{"summary": ...}`` (SPEC ``--json``)."""

    def __init__(self, model: str, device: str, stream: IO[str] | None = None) -> None:
        self.model = model
        self.device = device
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _emit(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.stream.flush()

    def start(self, total: int) -> None:
        pass

    def image_started(self, job: Job, index: int) -> None:
        pass

    def tile(self, done: int, total: int) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def image_finished(self, result: Result) -> None:
        self._emit(
            {
                "input": str(result.job.input),
                "output": None if result.output is None else str(result.output),
                "status": result.status,
                "error": result.error,
                "reason": result.reason,
                "width": result.width,
                "height": result.height,
                "out_width": result.out_width,
                "out_height": result.out_height,
                "seconds": None if result.seconds is None else round(result.seconds, 4),
                "model": self.model,
                "device": self.device,
                "warnings": result.warnings,
            }
        )

    def finished(self, summary: Summary) -> None:
        self._emit(
            {
                "summary": {
                    "total": len(summary.results),
                    "ok": summary.count("ok"),
                    "skipped": summary.count("skipped"),
                    "failed": summary.count("failed"),
                    "seconds": round(summary.seconds, 4),
                    "interrupted": summary.interrupted,
                    "model": self.model,
                    "device": self.device,
                }
            }
        )


class FanOut:
    """Send every event to several reporters, in order."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = list(reporters)

    def start(self, total: int) -> None:
        for r in self.reporters:
            r.start(total)

    def image_started(self, job: Job, index: int) -> None:
        for r in self.reporters:
            r.image_started(job, index)

    def tile(self, done: int, total: int) -> None:
        for r in self.reporters:
            r.tile(done, total)

    def image_finished(self, result: Result) -> None:
        for r in self.reporters:
            r.image_finished(result)

    def warning(self, message: str) -> None:
        for r in self.reporters:
            r.warning(message)

    def finished(self, summary: Summary) -> None:
        for r in self.reporters:
            r.finished(summary)


class DownloadBar:
    """A progress bar for one file transfer: bytes, speed, time left.

    Use as a context manager and pass the object as the core's ``on_progress(done, total)``
    callback.  The bar is drawn only on a terminal and removed when the transfer ends;
    elsewhere nothing is shown while bytes arrive (the caller prints the outcome).
    """

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> DownloadBar:
        # Imported here so that the appended class needs no change to the import block.
        from rich.progress import DownloadColumn, TransferSpeedColumn

        if self.console.is_terminal:
            self.progress, self.task = _transient_bar(
                self.console,
                self.label,
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def human_bytes(size: int | None) -> str:
    """``67040989`` -> ``"67.0 MB"`` (decimal units, like the download bar); None -> ``"-"``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # unreachable; keeps type checkers content


def print_table(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    no_wrap: Sequence[str] = (),
    title: str | None = None,
) -> None:
    """A plain table of text cells (no markup); ``right`` names right-aligned columns,
    ``no_wrap`` columns that must stay on one line."""
    table = Table(title=title)
    for column in columns:
        table.add_column(
            column, justify="right" if column in right else "left", no_wrap=column in no_wrap
        )
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    # A terminal's width is real; a pipe or log file gets 80 columns by default, which
    # squeezes long names into "…": give it room instead.
    if not console.is_terminal:
        console = make_console(console.file, width=max(console.width, 132))
    console.print(table)


def print_pairs(console: Console, pairs: Sequence[tuple[str, str]]) -> None:
    """``key  value`` lines, keys padded to one width (``models info``, ``doctor``)."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        console.print(f"{escape(key):<{width}}  {escape(value)}")


def say(console: Console, message: str) -> None:
    """One line of plain text (no markup is interpreted in ``message``)."""
    console.print(escape(message))


class StepBar:
    """A progress bar over counted steps (``eval``: image × model; ``bench``: runs).

    Use as a context manager and pass the object as the core's ``on_progress(done, total,
    label)`` callback.  Drawn only on a terminal and removed at the end; with ``quiet`` or
    off a terminal nothing is shown while steps complete.
    """

    def __init__(self, console: Console, label: str, *, quiet: bool = False) -> None:
        self.console = console
        self.label = label
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> StepBar:
        if self.console.is_terminal and not self.quiet:
            self.progress, self.task = _transient_bar(
                self.console,
                self.label,
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
        return self

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task, completed=done, total=total, description=f"{self.label}: {label}"
            )

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
