"""Exception types shared by the core.

The core raises these; only ``cli/_errors.py`` turns them into messages and exit codes.
Every message is written for the user: one line, saying what is wrong and, where possible,
what to do about it.  An option it names is a ``spelling.Option`` formatted into it, never a
flag written out: the command line shows ``--overwrite``, the Python API ``overwrite=True``.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pocketsr_cli.spelling import on_command_line


class PocketSRError(Exception):
    """Base class of every error the core raises on purpose."""


class UsageError(PocketSRError):
    """The command line asks for something impossible (bad path, bad option value)."""


class ModelError(PocketSRError):
    """A model or its weights could not be resolved, downloaded, verified or loaded."""


class NoVariantError(ModelError):
    """The model exists but has no variant at the factor asked for (a weights file of
    another scale, a family without that variant, a variant named at another factor).
    Still a :class:`ModelError` (exit 3) where the model is the choice at fault; a face
    that set the factor itself can say so as a usage error (``eval -s 2 -m NAME-x4``)."""


class UnsafePickleError(ModelError):
    """A weights file is a pickle that needs to run code to load (refused, never run)."""


class RemoveError(PocketSRError):
    """A file pocketsr stored (an imported model, downloaded weights) could not be deleted.

    The model was found: the disk refused (permissions, a read-only folder) or another
    process holds the file, so this is a failure (exit 1), not an unresolvable model.
    ``removed`` lists the paths that were deleted before the failure (none when nothing
    was)."""

    def __init__(self, message: str, removed: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.removed = list(removed)


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


_DISK_STOPS = {errno.ENOSPC: "is full", errno.EROFS: "is read-only"}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _DISK_STOPS[errno.EDQUOT] = "is over its quota"


def disk_stop(exc: BaseException, where: Path) -> str | None:
    """Why no further output can be written beside ``where``, when ``exc`` (an OS error,
    or an error raised ``from`` one) says that its disk is full, over quota or read-only;
    else None (the failure is this file's alone: a folder in the way, permissions).

    A run stops at such an error rather than upscale the rest for nothing (hours, with a
    slow model).  The text names the folder and the OS's own words: ``the disk that
    holds out is full (No space left on device)``."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    if cause is None or cause.errno not in _DISK_STOPS:
        return None
    words = cause.strerror or os.strerror(cause.errno)
    return f"the disk that holds {where.parent} {_DISK_STOPS[cause.errno]} ({words})"


# What says that a path is not there rather than that it cannot be looked at: it, or a
# folder on its way, is missing, or a link loops; on Windows a drive not ready, a name it
# cannot have, a link loop (pathlib's own list, up to Python 3.13).
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)
_ABSENT_ON_WINDOWS = (21, 123, 1921)


def present(path: Path) -> bool:
    """Whether ``path`` exists, its links followed, as ``Path.exists`` answers up to Python
    3.13 whatever the version: an ``OSError`` that says it cannot even be looked at (a
    name too long, a folder on its way that may not be entered: :func:`unreachable`) is
    raised, not answered False.

    Raises:
        OSError: saying why ``path`` cannot be looked at.
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in _ABSENT or getattr(exc, "winerror", None) in _ABSENT_ON_WINDOWS:
            return False
        raise
    except ValueError:  # a NUL in it, or a name the file system encoding cannot hold
        return False
    return True


def unexpanded_home(path: Path | str) -> str | None:
    """What to do about ``path``, given on the command line, when it starts with ``~`` or
    ``~user`` as typed: the shell expands that only unquoted at a word's start
    (``'~/a.png'``, ``"~/a.png"`` and ``--output=~/out`` keep it), and pocketsr does not
    expand it behind the shell's back, so it names a folder called ``~`` in the working
    folder.  None for any other path, and in the Python API, which expands it itself
    (``api._path_text``: one left there is ``~user`` of no such user).  For a message about
    a path that is not there (or, for an output folder, would be made)."""
    text = os.fspath(path)
    if not text.startswith("~") or not on_command_line():
        return None
    prefix = text.replace("\\", "/").split("/")[0]
    instead = "$HOME" + text[1:] if prefix == "~" else "its full path"
    return f"the shell did not expand {prefix}: write it unquoted, or give {instead}"


def windows_separators(path: Path | str) -> str | None:
    """What to do about ``path``, not there, when it is written with backslashes on a
    system whose folders are separated by ``/`` alone (where ``photos\\a.jpg`` is one file
    name, backslash included): the path with slashes when that is there, or, for a
    Windows drive path (``C:\\Users\\...``), that this system names it otherwise.  None
    for any other path, and on Windows, where a backslash separates folders."""
    text = os.fspath(path)
    if os.sep == "\\" or "\\" not in text:
        return None
    slashed = text.replace("\\", "/")
    if len(slashed) > 2 and slashed[0].isascii() and slashed[0].isalpha() and slashed[1:3] == ":/":
        return (
            "a Windows path: give the path as this system names it, with / between folders; "
            f"under WSL, {slashed[:2]}\\ is /mnt/{slashed[0].lower()}"
        )
    if os.path.lexists(slashed):
        return f"folders are separated by / here: {slashed}"
    return None


def home_hint(path: Path | str) -> str:
    """`` (HINT)``, :func:`unexpanded_home`'s advice in brackets, to end a message saying
    that ``path`` is not there (``log not found: ~/run.jsonl (the shell did not expand
    ~: ...)``); ``""`` where it gives none."""
    hint = unexpanded_home(path)
    return f" ({hint})" if hint else ""


def present_file(path: Path) -> bool:
    """Whether ``path`` is a regular file, its links followed: ``Path.is_file`` as
    :func:`present` answers ``Path.exists``, raising what says that ``path`` cannot even be
    looked at (a name too long, a folder on its way that may not be entered) rather than
    answer False, as Python 3.11 to 3.13 do (a user's ``-m NAME`` too long for a file
    name, stat'ed to see whether it is one, ended in a traceback).

    Raises:
        OSError: as :func:`present` (:func:`unreachable` says why in words).
    """
    return present(path) and path.is_file()


def unreachable(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot even be looked at, from the error that looking at it (``stat``)
    raised: a name in it too long for its file system (``ENAMETOOLONG``, naming that name
    and its length in bytes, or the whole path's), a folder on its way that may not be
    entered (permission denied, naming the first such folder), or else the OS's words.
    :func:`present` raises these rather than answer False; the message is for a one-line
    usage error, not a traceback."""
    if exc.errno == errno.ENAMETOOLONG:
        name = max(path.parts, key=lambda part: len(os.fsencode(part)))
        size = len(os.fsencode(name))
        if size > _NAME_BYTES:
            shown = name if len(name) <= 24 else f"{name[:10]}…{name[-10:]}"
            return f"the name {shown!r} in it has {size} bytes, more than its file system allows"
        return f"it is longer than this system allows ({len(os.fsencode(path))} bytes in all)"
    if isinstance(exc, PermissionError):
        for folder in reversed(path.parents):
            try:
                if folder.is_dir() and not os.access(folder, os.X_OK):
                    return f"{folder} may not be entered (permission denied)"
            except OSError:
                break
        return "permission denied"
    return exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__


_NAME_BYTES = 255  # NAME_MAX on every common file system: past it, a name is surely too long


WINDOWS_MAX_PATH = 260
"""Characters in a path, its final NUL included, that Windows allows unless long paths are
enabled (a registry setting)."""


def windows_hint(exc: OSError, path: Path) -> str:
    """What Windows does not say when writing ``path`` failed with ``exc``: a path too
    long for it (the temporary file and claim beside an output have longer names than the
    output: ``atomicfile.temp_path_for``), or, when ``exc`` is the rename over ``path``
    (not the making of its claim or temporary file), a file another program has open,
    which it refuses to replace ("Access is denied").  ``""`` elsewhere, or when neither
    applies."""
    if sys.platform != "win32":
        return ""
    # The limit is on the full path: a relative one counts from the working folder.
    names = (path, exc.filename, exc.filename2)
    if max(len(os.path.abspath(n)) for n in names if isinstance(n, (str, Path))) >= (
        WINDOWS_MAX_PATH
    ):
        return (
            f" (a path there is longer than the {WINDOWS_MAX_PATH - 1} characters Windows "
            "allows unless long paths are enabled: choose a shorter output folder)"
        )
    # The rename over the output names it (os.replace's second file); creating the
    # temporary file beside it names that file, and fails for other reasons.
    named = {os.fspath(n) for n in names[1:] if isinstance(n, (str, Path))}
    if isinstance(exc, PermissionError) and os.fspath(path) in named and path.exists():
        return " (Windows replaces no file that another program has open: close it there)"
    return ""
