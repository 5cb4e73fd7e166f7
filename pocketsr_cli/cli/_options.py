"""Option declarations shared by several commands (one spelling, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registry name (see 'pocketsr models list') or a weights file "
        "(.safetensors/.pth/.ckpt/.pt).",
        show_default="the bundled default",
    ),
]
ScaleOpt = Annotated[
    int | None,
    typer.Option("--scale", "-s", min=1, max=16, help="Pick the model variant for this factor."),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps.")
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="auto, fp32, fp16 or bf16. auto = fp16 on GPUs for half-safe models, fp32 on CPU.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="JSON Lines on stdout (a failure gives one 'type': 'error' object); "
        "progress, warnings and errors stay on stderr.",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or per-image lines; errors only.")
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline", envvar="POCKETSR_OFFLINE", help="Never touch the network (POCKETSR_OFFLINE=1)."
    ),
]
TileOpt = Annotated[
    str, typer.Option("--tile", help="Tile side in input pixels: auto, 0 (whole image), N.")
]
