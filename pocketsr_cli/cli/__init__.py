"""The ``pocketsr`` command line: a thin Typer layer over the core.

``main`` is the console-script entry point.  It owns the mapping from exceptions to exit
codes (SPEC): 0 all written or skipped, 1 some input failed, 2 usage error, 3 model could
not be resolved or loaded, 130 interrupted.  Errors are turned into messages and exit codes
by ``_errors.handle_errors``, which wraps every command.
"""

from __future__ import annotations

import typer

from pocketsr_cli import __version__
from pocketsr_cli.cli import bench as _bench
from pocketsr_cli.cli import doctor as _doctor
from pocketsr_cli.cli import eval as _eval
from pocketsr_cli.cli import models as _models
from pocketsr_cli.cli import upscale as _upscale
from pocketsr_cli.cli._errors import handle_errors

app = typer.Typer(
    name="pocketsr",
    help="Batch-upscale folders of photographs with fast single-step super-resolution.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("upscale", epilog=_upscale.EPILOG)(handle_errors(_upscale.upscale))
app.add_typer(_models.app, name="models")
app.command("doctor")(handle_errors(_doctor.doctor))
app.command("eval", epilog=_eval.EPILOG)(handle_errors(_eval.eval_command))
app.command("bench", epilog=_bench.EPILOG)(handle_errors(_bench.bench_command))


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
    """Console-script entry point: run the app and exit with the SPEC exit code."""
    app(args=argv, prog_name="pocketsr")
