"""Exception types shared by the core.

The core raises these; only ``cli/_errors.py`` turns them into messages and exit codes.
Every message is written for the user: one line, saying what is wrong and, where possible,
what to do about it.  An option it names is a ``spelling.Option`` formatted into it, never a
flag written out: the command line shows ``--overwrite``, the Python API ``overwrite=True``.
"""

from __future__ import annotations


class PocketSRError(Exception):
    """Base class of every error the core raises on purpose."""


class UsageError(PocketSRError):
    """The command line asks for something impossible (bad path, bad option value)."""


class ModelError(PocketSRError):
    """A model or its weights could not be resolved, downloaded, verified or loaded."""


class UnsafePickleError(ModelError):
    """A weights file is a pickle that needs to run code to load (refused, never run)."""


class DeviceError(UsageError):
    """The requested device or precision is not available on this machine."""


class ImageReadError(PocketSRError):
    """An input file could not be decoded (empty, truncated, corrupt or unreadable)."""


class ImageWriteError(PocketSRError):
    """An output file could not be encoded or written."""


class OutOfMemoryError(PocketSRError):
    """Inference ran out of memory even at the smallest tile size."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none), for a one-line
    message built around an error raised by a library."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
