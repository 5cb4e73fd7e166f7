"""``pocketsr models``: list and inspect the registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import handle_errors

app = typer.Typer(help="List and inspect models.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_models(json_lines: opt.JsonOpt = False) -> None:
    """List the models pocketsr knows by name."""
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.manifest import load_manifests

    specs = load_manifests()
    if json_lines:
        for spec in specs.values():
            typer.echo(json.dumps(_spec_dict(spec)))
        return
    from rich.table import Table

    table = Table("name", "family", "scale", "params", "licence", "description")
    for spec in specs.values():
        d = _spec_dict(spec)
        table.add_row(
            spec.name,
            spec.family,
            "any" if spec.any_scale else f"×{spec.scale}",
            f"{d['params']:,}",
            str(d["license"]),
            spec.description,
        )
    _ui.make_console().print(table)


@app.command("info")
@handle_errors
def info(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    json_lines: opt.JsonOpt = False,
) -> None:
    """Show everything known about one model."""
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.errors import ModelError
    from pocketsr_cli.manifest import load_manifests

    specs = load_manifests()
    if name not in specs:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(sorted(specs))}")
    d = _spec_dict(specs[name])
    if json_lines:
        typer.echo(json.dumps(d))
        return
    console = _ui.make_console()
    for key, value in d.items():
        console.print(f"{key:<12} {value}")


def _spec_dict(spec: object) -> dict[str, object]:
    from pocketsr_cli.manifest import ModelSpec

    assert isinstance(spec, ModelSpec)
    return {
        "name": spec.name,
        "family": spec.family,
        "scale": spec.scale,
        "any_scale": spec.any_scale,
        "params": int(spec.meta.get("params", 0)),
        "license": spec.meta.get("license", "unknown"),
        "description": spec.description,
        "where": "bundled" if spec.weights is None else "remote",
        "manifest": str(spec.path),
    }
