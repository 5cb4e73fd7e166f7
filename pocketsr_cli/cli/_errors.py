"""The one table from exception type to user message and exit code (SPEC exit codes)."""

from __future__ import annotations

from pocketsr_cli.errors import (
    DeviceError,
    ImageReadError,
    ImageWriteError,
    ModelError,
    OutOfMemoryError,
    PocketSRError,
    UsageError,
)

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
