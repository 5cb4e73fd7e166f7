"""The one table from exception type to user message and exit code (SPEC exit codes)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import ParamSpec

import typer

from pocketsr_cli.errors import (
    DeviceError,
    ImageReadError,
    ImageWriteError,
    ModelError,
    OutOfMemoryError,
    PocketSRError,
    UsageError,
)

P = ParamSpec("P")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130

# Most specific first: the first matching row wins.
_TABLE: list[tuple[type[BaseException], str, int]] = [
    (DeviceError, "device", EXIT_USAGE),
    (UsageError, "usage", EXIT_USAGE),
    (ModelError, "model", EXIT_MODEL),
    (OutOfMemoryError, "out of memory", EXIT_FAILED),
    (ImageReadError, "read", EXIT_FAILED),
    (ImageWriteError, "write", EXIT_FAILED),
    (PocketSRError, "error", EXIT_FAILED),
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
    shows the traceback for known errors too.  Ctrl-C exits 130.  When the command was
    given ``--json`` (its ``json_lines`` parameter), each of these also puts one
    ``{"type": "error", "kind", "message", "exit_code"}`` object on stdout.  (Usage errors
    found while Typer parses the options are turned into JSON by the app, ``cli/__init__``.)
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        from pocketsr_cli.cli import _ui

        json_lines = bool(kwargs.get("json_lines"))

        def fail(kind: str, message: str, code: int) -> typer.Exit:
            if json_lines:
                _ui.json_error(kind, message, code)
            return typer.Exit(code)

        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):  # Typer's own exits/usage
            raise
        except KeyboardInterrupt:
            _ui.make_console().print("interrupted")
            raise fail("interrupted", "interrupted", EXIT_INTERRUPTED) from None
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

    return wrapper
