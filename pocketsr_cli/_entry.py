"""The ``pocketsr`` console script: :func:`main` imports the command line, then runs it.

Importing it (typer, rich, numpy: a few tenths of a second) and Typer's reading of the
command's signature happen before the command's own stop-signal handling is in place, so
a Ctrl-C then would end in a traceback from whichever line it hit.  Here it ends as a
Ctrl-C does later: one line, exit code 130.  This module imports nothing heavy itself, so
that the window left is Python's start-up.
"""

from __future__ import annotations

import sys

_EXIT_INTERRUPTED = 130  # as cli._errors.EXIT_INTERRUPTED, which cannot be imported yet


def main() -> None:
    """Console-script entry point (``pocketsr``, ``python -m pocketsr_cli``)."""
    try:
        from pocketsr_cli.cli import main as run

        run()  # from the moment a command starts, it handles Ctrl-C itself
    except KeyboardInterrupt:
        sys.stderr.write("interrupted (SIGINT)\n")
        raise SystemExit(_EXIT_INTERRUPTED) from None
