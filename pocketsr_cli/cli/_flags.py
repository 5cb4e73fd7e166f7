"""How the command line spells the options core messages name (``pocketsr_cli.spelling``).

:data:`FLAGS` is the one table from an option's name to its flag; :func:`flag_spelling`
spells it, so that a core message reads ``use --overwrite to replace it`` here and ``use
overwrite=True to replace it`` in the Python API.  While a command runs,
``_errors.handle_errors`` puts in force its :class:`CommandSpelling`: the same flags, and
which of them the command has (``spelling.offers``; ``_help.Command`` puts it in force as
the command is invoked), so that ``eval``'s messages do not advise ``--outscale``, which
only ``upscale`` takes.  Worker processes (``--devices``,
``--ray``) get the spelling pickled: :func:`flag_spelling` by name, a
:class:`CommandSpelling` with its set of flags.

:func:`flag_given` reads a command line as Click will parse it, for what must be known
before (or despite) the parse: whether ``--json`` is on it (``_help.Command``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pocketsr_cli.spelling import Option

FLAGS: dict[str, str] = {
    "adaptive": "--adaptive",
    "allow_unverified": "--allow-unverified",
    "crop": "--crop",
    "description": "--description",
    "device": "--device",
    "devices": "--devices",
    "ensemble": "--ensemble",
    "ensemble_weight": "--ensemble-weight",
    "folder": "--folder",
    "force": "--force",
    "format": "--format",
    "glob": "--glob",
    "height": "--height",
    "license": "--license",
    "limit": "--limit",
    "long_edge": "--long-edge",
    "max_memory": "--max-memory",
    "model": "-m",
    "output": "--output",
    "outscale": "--outscale",
    "overwrite": "--overwrite",
    "pcsr_k": "--pcsr-k",
    "precision": "--precision",
    "quality": "--quality",
    "ray_workers": "--ray-workers",
    "recursive": "-r/--recursive",
    "repeat": "--repeat",
    "resize": "--resize",
    "scale": "-s",
    "sha256": "--sha256",
    "size": "--size",
    "suffix": "--suffix",
    "tile": "--tile",
    "tile_overlap": "--tile-overlap",
    "trust_pickle": "--trust-pickle",
    "width": "--width",
}


def flag_spelling(option: Option, value: object) -> str:
    """``--overwrite``, ``--tile 512``, ``-s 2`` (``value`` None: the flag alone)."""
    flag = FLAGS[option.name]
    return flag if value is None else f"{flag} {value}"


@dataclass(frozen=True)
class CommandSpelling:
    """:func:`flag_spelling` for one command, which has only the flags in ``flags``."""

    flags: frozenset[str]

    @classmethod
    def of(cls, command: Any) -> CommandSpelling:
        """The spelling for ``command`` (a Typer command): every flag its options take."""
        return cls(frozenset(f for p in command.params for f in (*p.opts, *p.secondary_opts)))

    def __call__(self, option: Option, value: object) -> str:
        return flag_spelling(option, value)

    def offers(self, option: Option) -> bool:
        """Whether the command takes ``option`` (``spelling.offers``)."""
        return any(flag in self.flags for flag in FLAGS[option.name].split("/"))


def flag_given(command: Any, args: Sequence[str], flag: str) -> bool:
    """Whether ``args`` (a Typer ``command``'s own, after its name) hold ``flag`` (an option
    taking no value) as Click parses them: not the value of an option that takes one
    (``--glob --json`` gives ``--glob`` the pattern ``--json``), nor an argument after
    ``--``.  Values are taken as Click takes them: the next ``nargs`` tokens after an
    option alone (``--glob PATTERN``, ``-m NAME``), none after one given its value
    (``--glob=PATTERN``, ``-mNAME``, ``-rmNAME``).  An option the command lacks is taken
    to take no value; the whole line is read, although Click stops at the first error."""
    values = {
        opt: param.nargs
        for param in command.params
        if getattr(param, "param_type_name", "") == "option" and not (param.is_flag or param.count)
        for opt in param.opts
    }
    skip = 0
    for token in args:
        if skip:
            skip -= 1
        elif token == "--":
            return False
        elif token == flag:
            return True
        elif len(token) < 2 or not token.startswith("-"):
            continue  # an argument
        elif token.partition("=")[0] in values:  # an option alone, or with "=VALUE"
            skip = 0 if "=" in token else values[token]
        elif not token.startswith("--"):  # short options run together: -rq, -rmNAME
            for end, letter in enumerate(token[1:], start=2):
                if f"-{letter}" in values:
                    attached = end < len(token)  # the rest of the token is a value
                    skip = values[f"-{letter}"] - attached
                    break
    return False
