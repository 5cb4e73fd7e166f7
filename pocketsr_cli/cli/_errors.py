"""The one table from exception type to user message and exit code (docs/measurement.md,
"Exit codes"), and how a command ends when it is stopped.

Stopping: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, systemd, ``docker stop``) and
SIGHUP (a closed terminal) all stop a command the same way: the first one raises
:class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, which ``upscale``'s
pipeline turns into "finish or remove the file in hand, report, print the summary"; later
ones are noted and ignored, so that a burst of Ctrl-C cannot break off that cleanup with a
traceback.  The exit code is 128 + the first signal's number: 130, 143, 129.  On Windows
SIGBREAK (Ctrl-Break, and a console window closed) stops a command the same way (149);
left to its default it ended the process at once, leaving the file in hand.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import ParamSpec

import typer

from pocketsr_cli.cli._flags import CommandSpelling, flag_spelling
from pocketsr_cli.errors import (
    DeviceError,
    ImageReadError,
    ImageWriteError,
    ModelError,
    OutOfMemoryError,
    PocketSRError,
    RemoveError,
    UsageError,
)
from pocketsr_cli.spelling import current as current_spelling
from pocketsr_cli.spelling import spelled

P = ParamSpec("P")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM gives 143, SIGHUP 129 (see the module docs)

STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")  # those this system has


def present_signals(names: tuple[str, ...] = STOP_SIGNAL_NAMES) -> tuple[int, ...]:
    """The numbers of the signals in ``names`` that this system has (SIGHUP is POSIX,
    SIGBREAK Windows)."""
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


STOP_SIGNALS = present_signals()


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived: handled like Ctrl-C, whichever signal it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stops:
    """The stop signals a command received (see :func:`stop_signals`)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum is not None else EXIT_INTERRUPTED

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "SIGINT"

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            raise Interrupted(signum)
        # Already stopping: the cleanup under way must not be broken off.


@contextlib.contextmanager
def stop_signals() -> Iterator[Stops]:
    """Handle :data:`STOP_SIGNALS` as the module docs say while the block runs.  The
    previous handlers come back after it unless a signal came (the process is ending
    then, and more signals must still be ignored).  Outside the main thread (where Python
    cannot set handlers) nothing is changed.  A signal that is ignored when the block starts
    stays ignored: ``nohup`` ignores SIGHUP, and a shell ignores SIGINT in a job it starts
    in the background, so that closing the terminal or Ctrl-C in it leaves the run alone."""
    stops = Stops()
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return
    previous = {}
    for number in STOP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(number) is signal.SIG_IGN:
                continue
            previous[number] = signal.signal(number, stops)
    try:
        yield stops
    finally:
        if stops.signum is None:
            for number, handler in previous.items():
                signal.signal(number, handler)


def ignore_stop_signals() -> None:
    """For a process that is exiting: a late Ctrl-C must not print a traceback from the
    interpreter's clean-up (``atexit``)."""
    for number in STOP_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_IGN)


# Most specific first: the first matching row wins.
_TABLE: list[tuple[type[BaseException], str, int]] = [
    (DeviceError, "device", EXIT_USAGE),
    (UsageError, "usage", EXIT_USAGE),
    (ModelError, "model", EXIT_MODEL),
    (OutOfMemoryError, "out of memory", EXIT_FAILED),
    (ImageReadError, "read", EXIT_FAILED),
    (ImageWriteError, "write", EXIT_FAILED),
    (RemoveError, "remove", EXIT_FAILED),
    (PocketSRError, "failed", EXIT_FAILED),
]


def classify(exc: BaseException) -> tuple[str, int] | None:
    """``(label, exit code)`` for a known error, ``None`` for anything else (a bug)."""
    for kind, label, code in _TABLE:
        if isinstance(exc, kind):
            return label, code
    return None


def handle_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Wrap a command so that known errors print one line and exit with their code.

    Unknown exceptions are bugs: they print a traceback and exit 1.  ``POCKETSR_DEBUG=1``
    shows the traceback for known errors too.  Ctrl-C exits 130, SIGTERM 143 and SIGHUP
    129 (:func:`stop_signals`; a command that reports being stopped exits with
    ``EXIT_INTERRUPTED``, turned into the signal's code here).  When the command was
    given ``--json`` (its ``json_lines`` parameter), each of these also puts one
    ``{"type": "error", "kind", "message", "exit_code"}`` object on stdout.  (Usage errors
    found while Typer parses the options are turned into JSON by the app, ``cli/__init__``.)
    While the command runs, the core's messages spell options as flags, and, run from
    the command line, advise only the command's own (``_flags.CommandSpelling``, put in
    force by ``_help.Command``).  Every command starts by making glibc keep freed memory
    for reuse (``hostmem.retain_freed_memory``, which reads ``POCKETSR_KEEP_FREED_MEMORY``).
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        from pocketsr_cli.cli import _ui
        from pocketsr_cli.hostmem import retain_freed_memory

        json_lines = bool(kwargs.get("json_lines"))

        def fail(kind: str, message: str, code: int) -> typer.Exit:
            if json_lines:
                _ui.json_error(kind, message, code)
            return typer.Exit(code)

        _ui.forget_lost()
        # The command's own flags (_help.Command put them in force): a core message
        # advises no option it lacks.
        running = current_spelling()
        spelling = running if isinstance(running, CommandSpelling) else flag_spelling
        with stop_signals() as stops, spelled(spelling):
            try:
                # Large CPU tensors reuse freed memory: no page faults per image.  Read
                # here, so that a bad POCKETSR_KEEP_FREED_MEMORY is refused as any usage
                # error is, before the command starts.
                retain_freed_memory()
                command(*args, **kwargs)
            except typer.Exit as exc:
                if exc.exit_code == EXIT_INTERRUPTED:
                    raise typer.Exit(stops.exit_code) from None
                if exc.exit_code == EXIT_OK:
                    _exit_for_lost_streams()
                raise
            except (typer.Abort, typer.TyperException):  # Typer's own exits/usage
                raise
            except KeyboardInterrupt:
                message = f"interrupted ({stops.name})"
                _ui.make_console().print(message)
                raise fail("interrupted", message, stops.exit_code) from None
            except Exception as exc:
                console = _ui.make_console()
                known = classify(exc)
                if known is None or os.environ.get("POCKETSR_DEBUG"):
                    console.print_exception()
                if known is None:
                    message = f"{type(exc).__name__}: {exc} (this is a bug)"
                    _ui.error(console, "internal", message)
                    raise fail("internal", message, EXIT_FAILED) from None
                _ui.error(console, known[0], str(exc))
                raise fail(known[0], str(exc), known[1]) from None
            _exit_for_lost_streams()

    return wrapper


def _exit_for_lost_streams() -> None:
    """A command that did its work but could not write all it was asked to on stdout or
    stderr (a full disk under ``> log``): say so on stderr (when that is not the one that
    failed; stdout is kept for what was asked), and exit 1.

    Raises:
        typer.Exit: with ``EXIT_FAILED``, when a stream failed.
    """
    from pocketsr_cli.cli import _ui

    lost = _ui.lost_streams()
    if not lost:
        return
    if "stderr" not in lost:
        console = _ui.make_console()
        for name, error in lost.items():
            message = f"could not write to {name} ({error}): what it holds is cut short"
            _ui.error(console, "output", message)
    raise typer.Exit(EXIT_FAILED)
