"""The ``pocketsr`` console script: :func:`main` imports the command line, then runs it.

Importing it (typer, rich, numpy: a few tenths of a second) and Typer's reading of the
command's signature happen before the command's own stop-signal handling is in place, so
a Ctrl-C then would end in a traceback from whichever line it hit.  Here it ends as a
Ctrl-C does later: one line, exit code 130.  This module imports nothing heavy itself, so
that the window left is Python's start-up.

A standard stream closed before the start (``2>&-``) is given ``/dev/null`` first: else
the next file opened (an output's claim, a temporary file) would take its descriptor,
and whatever a library writes to stderr would land in that file.
"""

from __future__ import annotations

import os
import sys

_EXIT_INTERRUPTED = 130  # as cli._errors.EXIT_INTERRUPTED, which cannot be imported yet


def main() -> None:
    """Console-script entry point (``pocketsr``, ``python -m pocketsr_cli``)."""
    fill_closed_standard_fds()
    try:
        from pocketsr_cli.cli import main as run

        run()  # from the moment a command starts, it handles Ctrl-C itself
    except KeyboardInterrupt:
        say_interrupted()
        raise SystemExit(_EXIT_INTERRUPTED) from None


def say_interrupted() -> None:
    """'interrupted (SIGINT)' on stderr, if stderr can take it."""
    try:
        if sys.stderr is not None:
            sys.stderr.write("interrupted (SIGINT)\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


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
