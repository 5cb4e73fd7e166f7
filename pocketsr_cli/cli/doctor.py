"""``pocketsr doctor``: what this machine offers (versions, devices, memory), on stdout."""

from __future__ import annotations


def doctor() -> None:
    """Show versions, available devices and what 'auto' would choose."""
    import platform

    import torch

    from pocketsr_cli import __version__
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.devices import choose_device
    from pocketsr_cli.memory import free_bytes

    auto = choose_device("auto")
    rows = [
        ("pocketsr", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("CPU threads", str(torch.get_num_threads())),
        ("CUDA", _cuda_line()),
        ("MPS", "available" if auto.type == "mps" else "not available"),
        ("auto device", str(auto)),
    ]
    free = free_bytes(auto)
    if free is not None:
        rows.append(("free memory", f"{free / 2**30:.1f} GiB"))
    _ui.print_pairs(_ui.make_report_console(), rows)


def _cuda_line() -> str:
    import torch

    if not torch.cuda.is_available():
        return "not available" + (" (CPU-only torch build)" if torch.version.cuda is None else "")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{len(names)} device(s): " + ", ".join(names)
