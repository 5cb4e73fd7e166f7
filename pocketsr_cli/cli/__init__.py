"""The ``pocketsr`` command line: a thin Typer layer over the core.

``main`` is the console-script entry point.  It owns the mapping from exceptions to exit
codes (docs/measurement.md):
0 all written or skipped, 1 some input failed, 2 usage error, 3 model could
not be resolved or loaded, 130 interrupted (143 SIGTERM, 129 SIGHUP).  Errors are turned
into messages and exit codes by ``_errors.handle_errors``, which wraps every command (and
handles the stop signals); usage errors that Typer finds while parsing options are
Typer's to print, but for values our own parsers refuse (``_options``), which the app says
in one line like the commands' own, and with ``--json`` the app adds the JSON error object
on stdout (``_App``), which also answers an input given without a command (``pocketsr
photo.jpg``) with the ``upscale`` command line meant (in JSON too where that line has
``--json``).  Which output goes to stdout and
which to stderr: ``_ui``.
How ``--help`` reads (metavariables, the default model, examples): ``_help``; shell
completion of option values: ``_complete``; ``--version``/``-V``: the root callback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from pocketsr_cli.cli import bench as _bench
from pocketsr_cli.cli import doctor as _doctor
from pocketsr_cli.cli import eval as _eval
from pocketsr_cli.cli import models as _models
from pocketsr_cli.cli import report as _report
from pocketsr_cli.cli import upscale as _upscale
from pocketsr_cli.cli._errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    handle_errors,
    ignore_stop_signals,
)
from pocketsr_cli.cli._flags import flag_given
from pocketsr_cli.cli._help import JSON_GIVEN, Command, Group, examples
from pocketsr_cli.errors import UsageError

EXIT_CODES = (
    "Exit codes: 0 everything written or skipped, 1 some input failed, 2 usage error, "
    "3 model could not be resolved, downloaded or loaded, 130 interrupted (143 SIGTERM, "
    "129 SIGHUP).\n\n"
)
"""The root help's word on exit codes (``_errors``; README, "Exit codes")."""


_MEANT = "pocketsr.meant"
"""``ctx.meta`` key: the command a line given without one was meant for (``pocketsr
photo.jpg``: ``upscale``), set by :meth:`_App.resolve_command` as it says so."""


class _App(Group):
    """The root command group: a usage error found while Typer parses a command's options
    (unknown option, value out of range, missing argument) also becomes the ``--json`` error
    object on stdout when the command takes ``--json`` (:func:`_takes_json`) and it is on the
    command line as that flag, not as another option's value (``--glob --json``; noted by
    ``_help.Command`` as it starts parsing).  Typer still prints the message on stderr and
    exits 2.  A value refused by one of our own parsers (it raises the core's
    ``UsageError``: an empty ``-m``) is said in one line, ``error (usage): ...``, as a
    command's own usage errors are, not in Typer's usage box."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except KeyboardInterrupt:
            raise _interrupted() from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As Typer's, but a first word that names an image or a path that is there
        (``pocketsr photo.jpg``, ``pocketsr photos/``), taken for an unknown command, is
        answered with the ``upscale`` command line that was probably meant, and in JSON
        too where that line gives ``upscale`` the ``--json`` flag (``pocketsr photo.jpg
        --json``: a script reading stdout gets the error object that command would give)."""
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            if args and _names_an_input(args[0]) and isinstance(getattr(exc, "message", None), str):
                import shlex

                exc.message = (
                    f"{exc.message.rstrip('.')}. To upscale it: pocketsr upscale {shlex.join(args)}"
                )
                meant = self.get_command(ctx, "upscale")
                ctx.meta[_MEANT] = meant
                ctx.meta[JSON_GIVEN] = flag_given(meant, args, "--json")
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # before the command's own handling started
            raise _interrupted() from None
        except UsageError as exc:  # an option's parser refused its value (_options)
            from pocketsr_cli.cli import _ui

            _ui.error(_ui.make_console(), "usage", str(exc))
            if ctx.meta.get(JSON_GIVEN):
                _ui.json_error("usage", str(exc), EXIT_USAGE)
            raise typer.Exit(EXIT_USAGE) from None
        except typer.TyperException as exc:
            if ctx.meta.get(JSON_GIVEN) and _takes_json(exc, ctx.meta.get(_MEANT)):
                from pocketsr_cli.cli import _ui

                kind = "usage" if exc.exit_code == EXIT_USAGE else "error"
                _ui.json_error(kind, exc.format_message(), exc.exit_code)
            raise


def _names_an_input(word: str) -> bool:
    """Whether ``word``, given where a command belongs, is an input ``upscale`` would take:
    a file or folder that is there, or a name with an image's extension."""
    from pocketsr_cli.imageio import is_image_path

    return bool(word) and (os.path.lexists(word) or is_image_path(Path(word)))


def _takes_json(exc: typer.TyperException, meant: Any = None) -> bool:
    """Whether the command a parse error ``exc`` is about takes ``--json``: only such a
    command answers in JSON (``pocketsr report x.jsonl --json`` is an unknown option,
    said as any usage error is).  ``meant``: the command a line given without one was
    meant for (``_App.resolve_command``), which the error is then about.  An error that
    names no command is taken to be about one that does (the ``--json`` flag noted as the
    command's parse began is then believed)."""
    failed = getattr(exc, "ctx", None)
    command = meant if meant is not None else getattr(failed, "command", None)
    if command is None:
        return True
    return any("--json" in getattr(p, "opts", ()) for p in command.params)


def _interrupted() -> typer.Exit:
    """Ctrl-C while Typer parses the command line: what a command says when stopped (Typer
    would exit 130 without a word)."""
    from pocketsr_cli._entry import forget_unhandled_interrupt, say_interrupted

    say_interrupted()
    forget_unhandled_interrupt()  # else ``python -m`` may end killed by SIGINT, not 130
    return typer.Exit(EXIT_INTERRUPTED)


app = typer.Typer(
    name="pocketsr",
    cls=_App,
    help="Batch-upscale folders of photographs with fast single-step super-resolution.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES
    + examples(
        "pocketsr upscale photos/ -o upscaled/",
        "pocketsr models list",
        "pocketsr doctor",
        "pocketsr upscale photos/ -o upscaled/ --report review.html",
        "pocketsr upscale -h                # every option of a command",
    ),
)
app.command("upscale", cls=Command, epilog=_upscale.EPILOG)(handle_errors(_upscale.upscale))
app.add_typer(_models.app, name="models")
app.command("doctor", cls=Command, epilog=_doctor.EPILOG)(handle_errors(_doctor.doctor))
app.command("eval", cls=Command, epilog=_eval.EPILOG)(handle_errors(_eval.eval_command))
app.command("bench", cls=Command, epilog=_bench.EPILOG)(handle_errors(_bench.bench_command))
app.command("report", cls=Command, epilog=_report.EPILOG)(handle_errors(_report.report_command))


def _version(value: bool) -> None:
    if value:
        from pocketsr_cli import __version__  # read from package metadata on first use

        typer.echo(f"pocketsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print 'pocketsr VERSION' and exit.",
    ),
) -> None:
    """Batch-upscale folders of photographs with fast single-step super-resolution."""
    # Each command keeps freed memory for reuse as it starts (_errors.handle_errors), where
    # a bad POCKETSR_KEEP_FREED_MEMORY is a usage error like any other.


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and exit with the documented exit code."""
    if os.environ.get("_POCKETSR_COMPLETE"):
        # Answering a shell's Tab: Typer renders each description through rich, wrapped to
        # the terminal's width, and fish takes each line for a candidate: one line each.
        os.environ["COLUMNS"] = "10000"
    try:
        app(args=argv, prog_name="pocketsr")
    finally:  # exiting: a late Ctrl-C must not end in a traceback from atexit handlers
        ignore_stop_signals()
