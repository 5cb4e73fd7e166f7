"""``pocketsr doctor``: what this machine offers (versions, devices, memory), on stdout.

parse -> ``sysinfo.collect`` -> ``key  value`` lines, or one JSON object with ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pocketsr_cli.cli._help import examples

if TYPE_CHECKING:
    from pocketsr_cli.sysinfo import SystemReport

EPILOG = examples(
    "pocketsr doctor",
    "pocketsr doctor --json | jq '.gpus[] | [.index, .name, .free_memory]'",
)


def doctor(
    json_lines: Annotated[
        bool,
        typer.Option(
            "--json", help="One JSON object on stdout (byte counts in bytes, unknowns null)."
        ),
    ] = False,
) -> None:
    """Show versions, devices (each GPU with its memory), the default model and extras.

    Also what '--device auto' would choose, whether the default model loads without
    the network, a cache or user model folder where nothing can be stored (a
    POCKETSR_HOME that is a file), and models whose names differ only in case (Foo and
    foo: one name on macOS and Windows). With --json: one object on stdout.
    """
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.sysinfo import collect

    report = collect()
    if json_lines:
        _ui.emit_json({"type": "doctor", **report.to_dict()})
        return
    _ui.print_pairs(_ui.make_report_console(), rows(report))


def rows(report: SystemReport) -> list[tuple[str, str]]:
    """The human report: one ``(key, value)`` pair per line, the version first."""
    from pocketsr_cli.cli._ui import human_gib

    torch = report.torch + (f" (CUDA {report.torch_cuda})" if report.torch_cuda else "")
    cpu = report.cpu
    cores = f"{_or_unknown(cpu.physical_cores)} physical, {_or_unknown(cpu.logical_cores)} logical"
    if cpu.usable_cores is not None and cpu.usable_cores != cpu.logical_cores:
        cores += f" ({cpu.usable_cores} usable)"
    pairs = [
        ("pocketsr", report.pocketsr),
        ("python", report.python),
        ("torch", torch),
        ("CPU", f"{cores}; torch uses {cpu.torch_threads} thread(s)"),
        (
            "CPU bf16",
            "native: auto runs the compact models in bf16 (--precision fp32 keeps fp32)"
            if cpu.bf16
            else "no",
        ),
        ("RAM available", human_gib(cpu.available_memory)),
        ("CUDA", _cuda_line(report)),
    ]
    for gpu in report.gpus:
        capability = f", compute {gpu.compute_capability}" if gpu.compute_capability else ""
        pairs.append(
            (
                f"  cuda:{gpu.index}",
                f"{gpu.name}, {human_gib(gpu.total_memory)} total, "
                f"{human_gib(gpu.free_memory)} free{capability}",
            )
        )
    model = report.default_model
    loads = "loads offline" if model.loads_offline else f"does not load offline: {model.error}"
    pairs += [
        ("MPS", "available" if report.mps_available else "not available"),
        ("auto device", report.auto_device),
        ("free memory", human_gib(report.auto_free_memory)),
        ("default model", f"{model.name} ({model.where or 'unknown'}; {loads})"),
        ("cache", report.cache_dir),
        ("user models", report.user_models_dir),
        *(("  skipped", problem) for problem in report.skipped_manifests),
        *(("  problem", problem) for problem in report.folder_problems),
        *(("  problem", problem) for problem in report.model_problems),
        (
            "extras",
            ", ".join(
                f"{name} {version}" if version else f"{name} not installed"
                for name, version in report.extras.items()
            ),
        ),
    ]
    return pairs


def _cuda_line(report: SystemReport) -> str:
    if not report.cuda_available:
        return "not available" + ("" if report.torch_cuda else " (CPU-only torch build)")
    return f"{len(report.gpus)} device(s)"


def _or_unknown(value: int | None) -> str:
    return "?" if value is None else str(value)
