"""The ``pocketsr`` command line: a thin Typer layer over the core.

``main`` is the console-script entry point.  It owns the mapping from exceptions to exit
codes (SPEC): 0 all written or skipped, 1 some input failed, 2 usage error, 3 model could
not be resolved or loaded, 130 interrupted.  Tracebacks are shown only for bugs, or for
any error when ``POCKETSR_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

import click
import typer

from pocketsr_cli import __version__
from pocketsr_cli.cli import doctor as _doctor
from pocketsr_cli.cli import models as _models
from pocketsr_cli.cli import upscale as _upscale
from pocketsr_cli.cli._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, classify

app = typer.Typer(
    name="pocketsr",
    help="Batch-upscale folders of photographs with fast single-step super-resolution.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("upscale", epilog=_upscale.EPILOG)(_upscale.upscale)
app.add_typer(_models.app, name="models")
app.command("doctor")(_doctor.doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pocketsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Batch-upscale folders of photographs with fast single-step super-resolution."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; never returns (exits with the SPEC exit code)."""
    from pocketsr_cli.cli import _ui

    console = _ui.make_console()
    try:
        code = app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        console.print("interrupted")
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
    except Exception as exc:
        known = classify(exc)
        if os.environ.get("POCKETSR_DEBUG") or known is None:
            console.print_exception()
        if known is None:
            _ui.error(console, "internal", f"{type(exc).__name__}: {exc} (this is a bug)")
            code = EXIT_FAILED
        else:
            _ui.error(console, known[0], str(exc))
            code = known[1]
    sys.exit(code if isinstance(code, int) else 0)
