"""Everything the user sees: the only module that imports rich.

Which stream gets what — one rule for every command:

* **stdout carries what the user asked to see**: the reports of ``doctor``, ``models list``,
  ``models info`` and ``models verify``, the tables of ``bench`` and ``eval``, and every
  ``--json`` record, one object per line — for ``upscale`` one ``"type": "image"`` line per
  input and a final ``"type": "summary"`` line, and for any ``--json`` command that fails
  outright one ``{"type": "error", "kind", "message", "exit_code"}`` object.  So
  ``pocketsr doctor > f``, ``pocketsr models list | grep x4`` and ``... --json | jq`` work.
* **stderr carries everything about the run itself**: progress bars, warnings, errors, and
  the log of commands whose product is files rather than text — ``upscale``'s per-image
  lines and summary table (left out with ``--json``, whose lines on stdout say the same;
  failures and warnings are still shown) and the lines of ``models download``, ``remove``
  and ``import``.  ``--quiet`` (``upscale``, ``eval``, ``bench``, ``report``) leaves
  errors and warnings only there, in every command: no warning is dropped, since many
  tell of work lost or changed that neither the exit code nor stdout says.  An input that
  failed is an error, shown as it fails in one form (:func:`failed`) by ``upscale``,
  ``eval`` and ``bench --folder``, with ``--quiet`` and ``--json`` too.

Progress bars are drawn only on a terminal; piped or captured output gets plain lines.  A
table written anywhere but a terminal (a pipe, a file, a CI log) has no window to fit: it
is rendered at its natural width, never squeezed to 80 columns with "…", so every row stays
one line for ``grep``, and its title goes on a line of its own above it.  It stays the
table a person sees, rather than TSV, because machines have ``--json`` — typed, named and
stable — and a second machine format would turn column positions into an interface.

A reader that goes away (``| head -1``, a pager closed early) is not an error.  Both
streams are wrapped in :class:`PipeSafeStream`: after the first broken-pipe error nothing
more is written there and the command carries on — ``upscale`` still writes every image,
each atomically — then exits with the code its work earned (0, 1, ...), without a
traceback.  Not 141 (killed by SIGPIPE): the files are the product and all of them were
written, so a ``set -o pipefail`` script must not see a failure.  A stream that fails
otherwise (``--json > log`` on a full disk) is dropped the same way and the work goes on,
but the command then exits 1 at least, saying so on the other stream: what it was asked
to write there is cut short.  A stream closed before the start (``2>&-``) is silence
asked for: nothing is written there, and that is no failure.

File names are shown whatever bytes they hold.  A name that is not UTF-8 reaches Python
with "surrogate" characters standing for its bytes (PEP 383), which no stream can encode
strictly: JSON writes each as its ``\\udcXX`` escape (valid JSON, and ``os.fsencode`` of the
decoded string gives the original bytes back), the log as ``\\xXX`` (:func:`shown`, which
also escapes control characters, so a name holding a newline stays on its line).  Every
line the log says is shown so, whole: an input's lines, and the warnings, errors and
plain lines (:func:`warn`, :func:`error`, :func:`say`) whose messages the core makes with
a path inside (``eval``'s "skipped DIR/tiny.png: ...", "input not found: DIR").
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any, cast

from rich.console import Console, ConsoleRenderable, RenderableType, RenderHook
from rich.filesize import decimal
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.jobs import Job
from pocketsr_cli.pipeline import CONFLICTS, NullReporter, Reporter, Result, Summary

# Wider than any table we print: measuring against it gives a table's natural width.
_UNBOUNDED = 100_000


# The streams that failed for another reason than a reader leaving (a full disk, an I/O
# error), by name ("stdout"), with the error: the command then ends with exit 1 at least
# (``_errors.handle_errors``), since the log or the --json lines it was asked for are cut.
_LOST: dict[str, str] = {}


def lost_streams() -> dict[str, str]:
    """``{stream name: error}`` for each stream a write failed on since :func:`forget_lost`."""
    return dict(_LOST)


def forget_lost() -> None:
    """Start a command with no stream failures on record."""
    _LOST.clear()


class PipeSafeStream:
    """A text stream whose failures never stop the command.

    Writes and flushes go to ``stream`` until one raises: from then on nothing more is
    written and the file descriptor is pointed at ``os.devnull``, so the interpreter's final
    flush of what is still buffered is silent too (otherwise it prints "Exception ignored
    ... BrokenPipeError" and exits 120).  A reader that left (``| head -1``) is not an
    error; any other failure (``> log`` on a full disk) is noted in :func:`lost_streams`.
    A stream that is None (the descriptor was closed at start: ``2>&-``) takes everything
    and keeps nothing, as asked.  Other attributes (``encoding``, ``fileno``...) are the
    wrapped stream's.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self.reader_gone = stream is None

    def write(self, text: str) -> int:
        if not self.reader_gone and self.stream is not None:
            try:
                self.stream.write(_SURROGATE.sub(_byte_escape, text))
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone and self.stream is not None:
            try:
                self.stream.flush()
            except OSError as exc:
                self._failed(exc)

    def isatty(self) -> bool:
        return self.stream is not None and self.stream.isatty()

    def _failed(self, exc: OSError) -> None:
        if not _reader_left(exc):
            _LOST.setdefault(self._name(), exc.strerror or str(exc))
        self._stop()

    def _name(self) -> str:
        try:
            number = self.fileno()
        except (OSError, ValueError, AttributeError):
            number = -1
        return {1: "stdout", 2: "stderr"}.get(number, str(getattr(self.stream, "name", "?")))

    def fileno(self) -> int:
        if self.stream is None:
            raise OSError(errno.EBADF, "the stream was closed")
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def _stop(self) -> None:
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(devnull, self.fileno())
        except (OSError, ValueError, AttributeError):  # no real descriptor (a test's buffer)
            pass
        finally:
            os.close(devnull)


def _reader_left(exc: OSError) -> bool:
    """Does ``exc``, raised by a write or flush, mean that the reader closed the pipe?"""
    # Windows reports a pipe closed by its reader as EINVAL rather than EPIPE.
    return isinstance(exc, BrokenPipeError) or (
        sys.platform == "win32" and exc.errno == errno.EINVAL
    )


# Lone surrogates: the bytes of a name that is not UTF-8 (PEP 383), or nonsense.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _byte_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def shown(text: object) -> str:
    """``text`` (a path...) for the log: undecodable bytes as ``\\xXX``, control
    characters escaped (``\\n``), so that one name stays one line and always prints;
    None gives ``""``."""
    value = "" if text is None else _SURROGATE.sub(_byte_escape, str(text))
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


def pipe_safe(stream: IO[str] | None) -> IO[str]:
    """``stream`` wrapped in a :class:`PipeSafeStream` (once); None (closed at the start)
    gives one that keeps nothing."""
    if isinstance(stream, PipeSafeStream):
        return cast(IO[str], stream)
    return cast(IO[str], PipeSafeStream(stream))


def make_console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """The console for everything about the run: progress, logs, warnings, errors.

    Writes to stderr unless ``file`` is given.
    """
    return _console(file or sys.stderr, width)


def make_report_console(width: int | None = None) -> Console:
    """The console for the report the user asked for (``doctor``, tables): stdout.

    A stdout closed at the start (``>&-``: ``sys.stdout`` is None) keeps the report
    nowhere, as asked; it never falls back to stderr."""
    return _console(sys.stdout, width)


def _console(stream: IO[str] | None, width: int | None) -> Console:
    return Console(file=pipe_safe(stream), width=width, highlight=False, soft_wrap=True)


def emit_json(
    obj: dict[str, Any], *, allow_nan: bool = True, stream: IO[str] | None = None
) -> None:
    """``obj`` as one JSON line on stdout (or ``stream``), flushed at once.

    Readers that left are tolerated (see :class:`PipeSafeStream`).
    """
    out = pipe_safe(stream or sys.stdout)
    # Non-ASCII stays readable where the stream takes UTF-8; a lone surrogate (a file name
    # that is not UTF-8) becomes its \\u escape either way.
    ascii_only = "utf" not in (getattr(out, "encoding", None) or "utf-8").lower()
    text = json.dumps(obj, ensure_ascii=ascii_only, allow_nan=allow_nan)
    out.write(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
    out.flush()


def json_error(kind: str, message: str, exit_code: int) -> None:
    """The one JSON object a ``--json`` command puts on stdout when it fails outright."""
    emit_json({"type": "error", "kind": kind, "message": message, "exit_code": exit_code})


def error(console: Console, label: str, message: str) -> None:
    """``error (label): message``, one line (:func:`shown`: a path in it may hold a newline)."""
    console.print(f"[bold red]error[/] ({label}): {escape(shown(message))}")


def warn(console: Console, message: str) -> None:
    """``warning: message``, one line (:func:`shown`)."""
    console.print(_warning_line(message))


def _warning_line(message: str) -> str:
    """The markup of :func:`warn`'s line (:func:`shown`: a path in it may hold a newline)."""
    return f"[yellow]warning:[/] {escape(shown(message))}"


def failed(console: Console, name: object, message: object) -> None:
    """The line of an input that failed, as it fails (``failed  NAME: why``): the same in
    ``upscale``, ``eval`` and ``bench --folder``, and kept under ``--quiet`` and ``--json``
    (the exit code says only that some input failed, not which)."""
    console.print(_failed_line(name, message))


def _failed_line(name: object, message: object) -> str:
    """The markup of :func:`failed`'s line."""
    return f"[bold red]failed[/]  {escape(shown(name))}: {escape(shown(message))}"


def failed_summary(
    console: Console, failures: Sequence[tuple[object, object]], more: int = 0
) -> None:
    """The lines under a run's summary that list its failed inputs again (``failed: NAME:
    why``), each ``(name, why)``, then how many ``more`` failed that are not listed."""
    for name, message in failures:
        console.print(f"[red]failed:[/] {escape(shown(name))}: {escape(shown(message))}")
    if more:
        console.print(f"[red]failed:[/] {more} more, each on its line above")


def _size(w: int | None, h: int | None) -> str:
    return f"{w}×{h}" if w is not None and h is not None else "?"


class _WhenTotalKnown(ProgressColumn):
    """``inner`` for tasks whose total is known, nothing while it is not.

    An indeterminate task already says so with its spinner and pulsing bar; a count of
    "0/?" or a time left of "-:--:--" would only add noise.
    """

    def __init__(self, inner: ProgressColumn) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> RenderableType:
        return Text("") if task.total is None else self.inner(task)


def _transient_bar(
    console: Console,
    label: str,
    *columns: ProgressColumn,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Progress, TaskID]:
    """A started, transient progress display with one task of unknown total."""
    progress = Progress(*columns, console=console, transient=True, get_time=clock)
    task = progress.add_task(label, total=None)
    progress.start()
    return progress, task


def _step_columns() -> tuple[ProgressColumn, ...]:
    """Spinner, label, bar, ``done/total`` and times: counted steps (images, runs)."""
    return (
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        _WhenTotalKnown(MofNCompleteColumn()),
        TimeElapsedColumn(),
        _WhenTotalKnown(TimeRemainingColumn()),
    )


class _HeldLines(RenderHook):
    """Lines held back (:meth:`hold`) until the console next prints anything, then
    printed first, in the order they were held: a render hook.

    Pushed before a live display's own hook, it hands the display a redraw's worth of
    lines at once, which the display puts above itself in that one redraw; and whatever
    else is printed meanwhile still comes after the lines held before it.
    """

    def __init__(self) -> None:
        self._lines: list[ConsoleRenderable] = []
        self._lock = threading.Lock()

    def hold(self, line: ConsoleRenderable) -> None:
        with self._lock:
            self._lines.append(line)

    def take(self) -> list[ConsoleRenderable]:
        """The lines held, no longer held."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [*self.take(), *renderables]


class _ThreadRefreshedProgress(Progress):
    """A :class:`~rich.progress.Progress` redrawn only by its own refresh thread (10 times
    a second), and as it starts and stops; the lines printed while it shows (:meth:`say`)
    go out with its next redraw.

    Rich's ``add_task`` redraws the whole display in the calling thread, which for
    :class:`RichReporter` (a task per image) is the upscaling thread: a redraw measures
    and renders the tasks' table, 2-3 ms of CPU, more than upscaling a small frame with
    ``bicubic`` takes, and longer while the refresh thread holds the display.  A line
    printed on a live display redraws it as well (it is cleared, the line printed, the
    display drawn again below it): one per image in the writer thread, where a folder of
    small images writes dozens a second.  Changes and lines show at the next redraw
    instead, within a tenth of a second, every line held meanwhile in that one redraw.

    It must be the console's only live display (a nested one would draw the held lines
    where the outer one's redraw starts).
    """

    def __init__(self, *columns: ProgressColumn, console: Console, transient: bool) -> None:
        super().__init__(*columns, console=console, transient=transient)
        self._held = _HeldLines()

    def refresh(self) -> None:
        """Nothing: see the class docs (``live.refresh()`` forces a redraw)."""

    def say(self, markup: str) -> None:
        """Print the line ``markup`` (rich markup) above the display: with its next redraw
        while it shows on a terminal that redraws it, else at once."""
        console = self.console
        if self.live.is_started and console.is_terminal and not console.is_dumb_terminal:
            self._held.hold(console.render_str(markup))
        else:
            console.print(markup)

    def start(self) -> None:
        # Before the display's own hook: what it hands on goes above the display's redraw.
        self.console.push_render_hook(self._held)
        super().start()

    def stop(self) -> None:
        try:
            super().stop()  # its last redraw prints the lines still held
        finally:
            self.console.pop_render_hook()
        for line in self._held.take():  # held as it stopped: none, unless by a race
            self.console.print(line)


class RichReporter:
    """``upscale``'s human output on stderr: progress bars (overall + the image in hand),
    one line per image and a summary table.

    ``quiet`` keeps only failures and warnings.  ``json_lines`` (the run's ``--json``) keeps
    the progress bar, failures and warnings but leaves the per-image lines and the summary
    to the JSON lines on stdout.
    """

    def __init__(self, console: Console, *, quiet: bool = False, json_lines: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.json_lines = json_lines
        self.progress: _ThreadRefreshedProgress | None = None
        self.overall: TaskID | None = None
        self.tiles: TaskID | None = None
        self.not_finished = 0

    @property
    def _log_results(self) -> bool:
        return not (self.quiet or self.json_lines)

    def start(self, total: int | None) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self.progress = _ThreadRefreshedProgress(
            *_step_columns(), console=self.console, transient=True
        )
        self.overall = self.progress.add_task("images", total=total)
        self.progress.start()

    def image_started(self, job: Job, index: int) -> None:
        if self.progress is None:
            return
        # A new task per image: indeterminate until its first batch of tiles reports the
        # total (rich cannot set a task's total back to "unknown").
        if self.tiles is not None:
            self.progress.remove_task(self.tiles)
        self.tiles = self.progress.add_task(f"  {shown(job.input.name)}", total=None)

    def tile(self, done: int, total: int) -> None:
        if self.progress is not None and self.tiles is not None:
            self.progress.update(self.tiles, completed=done, total=total)

    def _say(self, markup: str) -> None:
        """Print the line ``markup``: with the progress display's next redraw while it
        shows (:meth:`_ThreadRefreshedProgress.say`), in the order given."""
        if self.progress is not None:
            self.progress.say(markup)
        else:
            self.console.print(markup)

    def image_finished(self, result: Result) -> None:
        if self.progress is not None and self.overall is not None:
            self.progress.advance(self.overall)
        for message in result.warnings:
            self.warning(f"{shown(result.job.display)}: {message}")
        if result.reason_code in ("interrupted", "stopped"):  # counted once at the end
            self.not_finished += 1
            return
        name = escape(shown(result.job.display))
        if result.status == "failed":
            self._say(_failed_line(result.job.display, result.error))
            return
        if not self._log_results:
            return
        sizes = (
            f"{_size(result.width, result.height)} → {_size(result.out_width, result.out_height)}"
        )
        if result.status == "ok":
            self._say(
                f"[green]ok[/]      {name}  {sizes}  {result.seconds or 0:.2f} s"
                + ("" if result.heavy_fraction is None else f"  {result.heavy_fraction:.0%} heavy")
                + f"  → {escape(shown(result.output))}"
            )
        elif result.status == "planned":
            self._say(f"[cyan]would write[/] {name}  {sizes}  → {escape(shown(result.output))}")
        elif result.reason_code in CONFLICTS:  # kept, but maybe not what was asked for
            self._say(f"[yellow]skipped[/] {name}: {escape(shown(result.reason))}")
        else:
            self._say(f"[dim]skipped {name}: {escape(shown(result.reason))}[/]")

    def warning(self, message: str) -> None:
        self._say(_warning_line(message))

    def finished(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self._log_results:
            self._table(summary)
        if self.not_finished and summary.stopped_by_disk:
            self.warning(
                f"stopped: {summary.stopped}, so {self.not_finished} input(s) were not "
                "upscaled; make room (or make it writable) and run the same command again to "
                "do them (existing outputs are skipped)"
            )
        elif self.not_finished:
            self.warning(
                f"interrupted: {self.not_finished} input(s) not finished; run the same command "
                "again to do them (existing outputs are skipped)"
            )
        if summary.conflicts_warning is not None:
            self.warning(summary.conflicts_warning)
        if self._log_results and summary.leftovers_note is not None:
            self.console.print(f"[dim]{summary.leftovers_note}[/]")

    def _table(self, summary: Summary) -> None:
        ok = summary.count("ok")
        title = "pocketsr upscale" + (" (dry run)" if summary.dry_run else "")
        title += " (interrupted)" if summary.interrupted else ""
        title += " (stopped)" if summary.stopped_by_disk else ""
        table = Table()
        first = "would write" if summary.dry_run else "written"
        for column in (first, "skipped", "failed", "total time", "per image", "output MP/s"):
            table.add_column(column, justify="right")
        per_image = summary.ok_seconds / ok if ok else 0.0
        megapixels = summary.out_pixels / 1e6
        rate = megapixels / summary.seconds if summary.seconds > 0 else 0.0
        table.add_row(
            str(summary.count("planned") if summary.dry_run else ok),
            str(summary.count("skipped")),
            f"[red]{summary.count('failed')}[/]" if summary.failed else "0",
            f"{summary.seconds:.1f} s",
            f"{per_image:.2f} s" if ok else "-",
            f"{rate:.2f}" if ok else "-",
        )
        _print_table(self.console, table, title)
        # A summary keeps the first failures (pipeline.FAILURES_KEPT); the rest are counted.
        failed_summary(
            self.console,
            [(r.job.display, r.error) for r in summary.failed],
            summary.count("failed") - len(summary.failed),
        )


def outcome_record(result: Result) -> dict[str, Any]:
    """The keys of an ``upscale --json`` image object that say what became of an input:
    ``input``, ``output``, ``status``, ``error``, ``reason``, ``reason_code`` (also what
    ``bench --folder --json`` writes for the folder's files it did not run)."""
    return {
        "input": str(result.job.input),
        "output": None if result.output is None else str(result.output),
        "status": result.status,
        "error": result.error,
        "reason": result.reason,
        "reason_code": result.reason_code,
    }


class JsonLinesReporter(NullReporter):
    """``upscale --json``: one ``"type": "image"`` object per input on ``stream`` (stdout),
    then one ``"type": "summary"`` object (the README's ``--json`` section).

    An image's ``model`` is the variant that made it (a size target may use several);
    ``reason_code`` says which kind of skip it was (``pipeline.ReasonCode``), and the
    summary's ``conflicts`` counts the existing outputs kept although they were made
    otherwise or carry no record.  A reader that leaves early stops the lines, never the
    run (:class:`PipeSafeStream`).
    """

    def __init__(
        self,
        model: str,
        device: str,
        stream: IO[str] | None = None,
        *,
        ensemble: Ensemble | None = None,
    ) -> None:
        self.model = model
        self.device = device
        # ``ensemble`` (none, pad, flip8) and ``ensemble_weight`` (pad's ω, else null)
        self.ensemble = (ensemble or Ensemble()).record()
        self.stream = pipe_safe(stream or sys.stdout)
        self._lock = threading.Lock()

    def _emit(self, obj: dict[str, Any]) -> None:
        with self._lock:
            emit_json(obj, stream=self.stream)

    def image_finished(self, result: Result) -> None:
        self._emit(
            {
                "type": "image",
                **outcome_record(result),
                "width": result.width,
                "height": result.height,
                "out_width": result.out_width,
                "out_height": result.out_height,
                "seconds": None if result.seconds is None else round(result.seconds, 4),
                "model": result.model or self.model,
                "device": result.device or self.device,
                **self.ensemble,
                **_heavy_fraction(result),
                "warnings": result.warnings,
            }
        )

    def finished(self, summary: Summary) -> None:
        self._emit(
            {
                "type": "summary",
                "summary": {
                    "total": summary.total,
                    "ok": summary.count("ok"),
                    "skipped": summary.count("skipped"),
                    "conflicts": summary.conflicts,
                    "failed": summary.count("failed"),
                    "planned": summary.count("planned"),
                    "dry_run": summary.dry_run,
                    "seconds": round(summary.seconds, 4),
                    "interrupted": summary.interrupted,
                    "stopped": summary.stopped,
                    "leftovers_removed": summary.leftovers_removed,
                    "model": self.model,
                    "device": summary.devices or self.device,  # what drew the images
                    **self.ensemble,
                },
            }
        )


class FanOut:
    """Send every event to several reporters, in order."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = list(reporters)

    def start(self, total: int | None) -> None:
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


_RATE_WINDOW_S = 5.0  # a download's speed is what came over about this long, up to now
_STALL_S = 3.0  # silence for this long is shown as a stall rather than a falling speed


class _RecentRate:
    """The bytes per second of a transfer over the last ``_RATE_WINDOW_S`` up to the moment
    asked, from the ``done`` counts it was told of (:meth:`add`).

    Rich's own speed divides by the time between its first and last samples, and a stall
    adds none: the speed and time left shown stay those of the moment the bytes stopped.
    Measured up to now instead, the speed falls as the stall goes on, to zero once its
    last bytes are a window old.  Cheap: the samples older than the window are dropped as
    new ones come (one is kept before it, the base of the count), and a reading looks at
    the first and last only.  Told from one thread, read from rich's refresh thread.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._samples: deque[tuple[float, int]] = deque()  # (time, done), done rising
        self._moved = False  # a count past the first has come
        self._lock = threading.Lock()

    def add(self, done: int) -> None:
        """``done`` bytes are here now (a count lower than the last: the transfer began
        again, and is measured afresh)."""
        now = self.clock()
        with self._lock:
            if self._samples and done == self._samples[-1][1]:
                return  # nothing new came: not a sign of life
            if self._samples and done < self._samples[-1][1]:
                self._samples.clear()
            self._moved = bool(self._samples)
            self._samples.append((now, done))
            self._drop_before(now)

    def _drop_before(self, now: float) -> None:
        while len(self._samples) > 1 and self._samples[1][0] <= now - _RATE_WINDOW_S:
            self._samples.popleft()

    def reading(self, finished: bool) -> tuple[float | None, float]:
        """(bytes per second, or None before a second count has come; seconds since the
        last bytes came).  ``finished``: the rate the transfer ended at, not falling."""
        now = self.clock()
        with self._lock:
            if not self._moved:
                return None, 0.0
            if not finished:
                self._drop_before(now)
            (first, base), (last, done) = self._samples[0], self._samples[-1]
        until = last if finished else now
        return ((done - base) / (until - first) if until > first else 0.0), now - last


class _RecentSpeedColumn(ProgressColumn):
    """A download's speed (:class:`_RecentRate`), "stalled N s" once nothing has come for
    ``_STALL_S``; "?" before it is known."""

    def __init__(self, rate: _RecentRate) -> None:
        super().__init__()
        self.rate = rate

    def render(self, task: Task) -> RenderableType:
        speed, silent = self.rate.reading(task.finished)
        if speed is None:
            return Text("?", style="progress.data.speed")
        if silent >= _STALL_S and not task.finished:
            return Text(f"stalled {int(silent)} s", style="progress.data.speed")
        return Text(f"{decimal(int(speed))}/s", style="progress.data.speed")


class _RecentTimeLeftColumn(ProgressColumn):
    """Time left at the speed of :class:`_RecentSpeedColumn`, as rich's time-remaining
    column writes it; unknown ("-:--:--") during a stall and before the speed is known."""

    max_refresh = 0.5  # as rich's: a figure redrawn ten times a second jitters

    def __init__(self, rate: _RecentRate) -> None:
        super().__init__()
        self.rate = rate

    def render(self, task: Task) -> RenderableType:
        speed, silent = self.rate.reading(task.finished)
        left = None
        if task.finished:
            left = 0.0
        elif speed and silent < _STALL_S and task.remaining is not None:
            left = task.remaining / speed
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(math.ceil(left), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class DownloadBar:
    """A progress bar for one file transfer: bytes, speed, time left.

    Use as a context manager and pass the object as the core's ``on_progress(done, total)``
    callback.  The bar appears with the first bytes reported — never for weights that are
    bundled, cached or absent (``bicubic``) — is drawn only on a terminal and is removed
    when the transfer ends; elsewhere nothing is shown (the caller prints the outcome).
    The speed is that of the last few seconds, and falls, then says "stalled", when the
    bytes stop (``clock``: the time in seconds, ``time.monotonic`` but in tests).  With
    ``quiet`` (``--quiet``) neither the bar nor a line saying the download waits is shown.
    """

    def __init__(
        self,
        console: Console,
        label: str,
        *,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.label = label
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.rate = _RecentRate(clock)

    def __enter__(self) -> DownloadBar:
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is None and self.console.is_terminal and not self.quiet:
            self.progress, self.task = _transient_bar(
                self.console,
                self.label,
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                _RecentSpeedColumn(self.rate),
                _WhenTotalKnown(_RecentTimeLeftColumn(self.rate)),
                clock=self.rate.clock,
            )
        if self.progress is not None and self.task is not None:
            self.rate.add(done)
            self.progress.update(self.task, completed=done, total=total)

    def waiting(self, message: str) -> None:
        """The download waits (for another process fetching the same file, for a busy
        mirror's Retry-After): say so, or the run looks hung."""
        if not self.quiet:
            self.console.print(message, style="dim", markup=False, highlight=False)

    def warning(self, message: str) -> None:
        """A library warned while it fetched (huggingface_hub: "Not enough free disk
        space ..."): one warning line, as a run's warnings are, kept under ``quiet``."""
        warn(self.console, message)

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


def human_gib(size: int | None) -> str:
    """``2**31`` -> ``"2.0 GiB"`` (binary units, as drivers count memory); None -> ``"-"``."""
    return "-" if size is None else f"{size / 2**30:.1f} GiB"


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
    ``no_wrap`` columns that must stay on one line.  Off a terminal: see the module doc."""
    table = Table()
    for column in columns:
        table.add_column(
            column, justify="right" if column in right else "left", no_wrap=column in no_wrap
        )
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    _print_table(console, table, title)


def _print_table(console: Console, table: Table, title: str | None) -> None:
    """``table`` fitted to the terminal, or at its natural width with the title above it."""
    if console.is_terminal:
        table.title = title
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum
    wide = make_console(console.file, width=max(natural, console.width))
    if title:
        say(wide, title)
    wide.print(table)


def print_pairs(console: Console, pairs: Sequence[tuple[str, str]]) -> None:
    """``key  value`` lines, keys padded to one width (``models info``, ``doctor``)."""
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        console.print(f"{escape(key):<{width}}  {escape(value)}")


def say(console: Console, message: str) -> None:
    """One line of plain text (no markup is interpreted in ``message``; :func:`shown`)."""
    console.print(escape(shown(message)))


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
            self.progress, self.task = _transient_bar(self.console, self.label, *_step_columns())
        return self

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task,
                completed=done,
                total=total,
                description=f"{self.label}: {shown(label)}",
            )

    def __exit__(self, *exc_info: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _heavy_fraction(result: Result) -> dict[str, float]:
    """``heavy_fraction`` for an image a PCSR model made (its routing's heavy share)."""
    if result.heavy_fraction is None:
        return {}
    return {"heavy_fraction": round(result.heavy_fraction, 4)}
