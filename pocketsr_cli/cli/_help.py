"""How ``--help`` reads: metavariables a person would write, defaults by name, examples.

Typer's own rendering shows Python: ``{inputs}...`` in the usage line, ``<list[Path]>`` or
``<int range>`` after a name, ``[default: (the bundled default)]``.  Every command and group
of the CLI is built with :class:`Command` or :class:`Group` instead, which render:

* the usage line with each argument's metavariable, ``INPUT...`` when it is required and
  ``[NAME]...`` when it is not (``metavar=`` or the parameter's name in capitals);
* the argument list with those names and no type after them; options show their own
  ``metavar=`` (every option that takes a value declares one: ``DIR``, ``N``, ``FORMAT``);
* a default given as text (``show_default="960x540"``) as ``[default: 960x540]``;
* :data:`DEFAULT_MODEL_TOKEN` in a help text as the default model's name, looked up only when
  help is shown, so that importing the CLI (``--help``, shell completion) does not import
  the model registry;
* an epilog made by :func:`examples` line by line, never re-wrapped;
* a group's commands each with the whole first sentence of their help, wrapped (Click
  cuts it to one row: "Show versions, devices (each GPU with its memory), the default..."),
  and so does a command's description in zsh's and fish's completions (Click cuts it at
  45 characters there: "Show versions, devices (each GPU with its...").

:class:`Command` also notes, before Click parses a command's options, whether ``--json`` is
among them as an option (:data:`JSON_GIVEN`), for the root group to answer a usage error
found in the parse in JSON too (``cli._App``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

from pocketsr_cli.cli._flags import CommandSpelling, flag_given
from pocketsr_cli.spelling import spelled

JSON_GIVEN = "pocketsr.json"
"""``ctx.meta`` key: whether the command line gives the command run the ``--json`` flag
(not as another option's value: ``--glob --json``); set by :meth:`Command.parse_args`."""

DEFAULT_MODEL_TOKEN = "@DEFAULT_MODEL@"
"""Stands for ``weights.resolve.DEFAULT_MODEL`` in help texts; replaced when help is shown."""


def examples(*lines: str) -> str:
    """An epilog listing example command lines, one per line, kept as written."""
    title = "Examples:" if len(lines) > 1 else "Example:"
    # A paragraph that starts with a lone \b is printed without re-wrapping.
    return "\n".join([title, "", "\b", *lines])


def fill_in(text: str) -> str:
    """``text`` with :data:`DEFAULT_MODEL_TOKEN` replaced by the default model's name."""
    if DEFAULT_MODEL_TOKEN not in text:
        return text
    from pocketsr_cli.weights.resolve import DEFAULT_MODEL

    return text.replace(DEFAULT_MODEL_TOKEN, DEFAULT_MODEL)


def argument_name(param: TyperArgument) -> str:
    """``INPUT...`` / ``NAME``: the argument's metavariable, ``...`` when it takes several."""
    name = param.metavar or (param.name or "").upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name


def _usage_piece(param: TyperArgument) -> str:
    name = argument_name(param)
    if param.required:
        return name
    stem, dots = (name[:-3], "...") if name.endswith("...") else (name, "")
    return f"[{stem}]{dots}"


Rows = list[tuple[str, str]]


def _help_records(ctx: Any, params: list[Any]) -> tuple[Rows, Rows]:
    """``(arguments, options)``: each a list of ``(name column, help column)``."""
    arguments: Rows = []
    options: Rows = []
    for param in params:
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name, text = record
        shown = getattr(param, "show_default", None)
        if isinstance(shown, str):  # Typer writes a textual default in parentheses
            text = text.replace(f"default: ({shown})", f"default: {shown}")
        text = fill_in(text)
        if isinstance(param, TyperArgument):
            arguments.append((argument_name(param), text))
        else:
            options.append((name, text))
    return arguments, options


def _format_params(command: Any, ctx: Any, formatter: Any) -> None:
    arguments, options = _help_records(ctx, command.get_params(ctx))
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


_WHOLE_SENTENCE = 1000
"""A short help's limit that no first sentence reaches: Click ends it at the sentence."""


class Command(TyperCommand):
    """A command whose help reads as described in the module docstring."""

    def get_short_help_str(self, limit: int = _WHOLE_SENTENCE) -> str:
        """The whole first sentence of the help, wherever Click asks for a short help (a
        group's command list, completions' descriptions), not its 45 characters."""
        return str(super().get_short_help_str(limit))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_usage_piece(p) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        return described(super().shell_complete(ctx, incomplete))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[JSON_GIVEN] = flag_given(self, args, "--json")
        return list(super().parse_args(ctx, args))

    def invoke(self, ctx: Any) -> Any:
        # The core's messages name only this command's options (spelling.offers).
        with spelled(CommandSpelling.of(self)):
            return super().invoke(ctx)


def described(items: list[Any]) -> list[Any]:
    """Completions whose descriptions (zsh and fish show them) are filled in as help is,
    on one line: fish takes every line of the answer for a candidate of its own."""
    for item in items:
        text = getattr(item, "help", None)
        if text:
            item.help = " ".join(fill_in(text).split())
    return items


class Group(TyperGroup):
    """A command group whose help reads as described in the module docstring."""

    def get_short_help_str(self, limit: int = _WHOLE_SENTENCE) -> str:
        """As :meth:`Command.get_short_help_str`: the whole first sentence."""
        return str(super().get_short_help_str(limit))

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=_WHOLE_SENTENCE)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        return described(super().shell_complete(ctx, incomplete))
