"""The command-line parser every ``python -m pocketsr_cli.train.*`` command uses.

argparse answers a bad command line with the whole usage (about 60 lines for
``train.run``, whose every field is an option) above the one line that says what is
wrong.  :class:`CommandParser` says only that line and where the options are listed, and
exits with status 2 as argparse does; ``--help`` is unchanged.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are two lines: what is wrong, then where the
    options are (``Try '<prog> --help' for the options.``); exit status 2.  Its
    sub-commands' parsers (``add_subparsers``) are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nTry '{self.prog} --help' for the options.\n")
