"""The ``pocketsr`` console script: :func:`main` imports the command line, then runs it.

Importing it (typer, rich, numpy: a few tenths of a second) and Typer's reading of the
command's signature happen before the command's own stop-signal handling is in place, so
a Ctrl-C then would end in a traceback from whichever line it hit.  Here it ends as a
Ctrl-C does later: one line, exit code 130.  This module imports nothing heavy itself, so
that the window left is Python's start-up.

A standard stream closed before the start (``2>&-``) is given ``/dev/null`` first: else
the next file opened (an output's claim, a temporary file) would take its descriptor,
and whatever a library writes to stderr would land in that file.

A standard stream whose encoding cannot hold every character (Windows writes a pipe or a
file in its ANSI code page, cp1252, unless ``PYTHONUTF8`` is set) escapes what it cannot
encode (``\\u2192``), as Python's stderr does, rather than strictly: else the first "→" or
"≤" written there (help texts, tables, log lines) ended the command in a
``UnicodeEncodeError``.  ``--json`` lines are ASCII on such a stream anyway.
"""

from __future__ import annotations

import contextlib
import os
import sys

_EXIT_INTERRUPTED = 130  # as cli._errors.EXIT_INTERRUPTED, which cannot be imported yet


def main() -> None:
    """Console-script entry point (``pocketsr``, ``python -m pocketsr_cli``)."""
    fill_closed_standard_fds()
    escape_unencodable()
    try:
        from pocketsr_cli.cli import main as run

        run()  # from the moment a command starts, it handles Ctrl-C itself
    except KeyboardInterrupt:
        say_interrupted()
        forget_unhandled_interrupt()
        raise SystemExit(_EXIT_INTERRUPTED) from None


def forget_unhandled_interrupt() -> None:
    """Let ``python -m pocketsr_cli`` exit 130 after a Ctrl-C handled here.

    A ``KeyboardInterrupt`` that passes through code run from a string (``exec``:
    dataclasses and named tuples make their methods so while modules are imported) marks
    the interpreter's "interrupt unhandled" flag even when it is caught afterwards, and
    under ``-m`` the interpreter then ends the process with SIGINT instead of our exit code
    (CPython's ``run_eval_code_obj`` and ``Py_RunMain``; a script, such as the ``pocketsr``
    console script, exits through ``SystemExit`` first).  Each string eval clears the flag
    before it runs, so an empty one forgets it."""
    exec("")


def say_interrupted() -> None:
    """'interrupted (SIGINT)' on stderr, if stderr can take it."""
    try:
        if sys.stderr is not None:
            sys.stderr.write("interrupted (SIGINT)\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def escape_unencodable() -> None:
    """Make stdout and stderr write a character their encoding lacks as its escape
    (``backslashreplace``) when they are strict and not UTF-8 (see the module docs)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
        if encoding.startswith("utf") or getattr(stream, "errors", None) != "strict":
            continue
        # not a TextIOWrapper (AttributeError), or closed
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def fill_closed_standard_fds() -> None:
    """Open ``os.devnull`` on each of descriptors 0, 1 and 2 that is closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                opened = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if opened != fd:  # a lower one was free after all: not ours to keep
                os.dup2(opened, fd)
                os.close(opened)
