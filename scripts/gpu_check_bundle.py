#!/usr/bin/env python3
"""Download the wheels ``scripts/gpu_check.sh`` needs on the GPU machine into data/gpucheck.

Usage (with the project's virtualenv, whose versions are the ones pinned)::

    .venv/bin/python scripts/gpu_check_bundle.py            # -> data/gpucheck (about 3 MB)

The GPU image has torch, numpy, opencv, pillow, safetensors, rich and (click-based) typer
but installs nothing, so the bundle holds:

* ``wheels/``: always unpacked onto ``PYTHONPATH`` by gpu_check.sh — spandrel (the default
  model is a spandrel Compact), platformdirs, einops, and the CLI's typer>=0.29 with
  pydantic (which that typer needs): all pure Python except pydantic-core, fetched for
  each ``--python-version`` (CPython, manylinux x86-64; several can be unpacked side by
  side, each interpreter loads its own extension);
* ``pytest/``: pytest and its pure-Python requirements, unpacked only where the image has
  no pytest;
* ``bundle.json``: every file with its size and SHA-256.

Each package is pinned to the version installed in the interpreter running this script
(the one the tests ran with), so the GPU machine runs what was tested here.

Exit status: 0 done, 1 error (message on stderr).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from _bundle import write_listing  # beside this script

REPO = Path(__file__).resolve().parents[1]
# Pure-Python distributions that gpu_check.sh always unpacks.
ALWAYS = (
    "spandrel",
    "platformdirs",
    "einops",
    "typer",
    "pydantic",
    "annotated-types",
    "typing-inspection",
    "typing_extensions",
    "annotated-doc",
    "shellingham",
)
BINARY = ("pydantic-core",)  # one wheel per --python-version
PYTEST = ("pytest", "pluggy", "iniconfig", "packaging")  # only where pytest is missing
# manylinux tags a CPython x86-64 wheel may carry; pip matches each tag exactly.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


def pinned(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each distribution, at the version installed here.

    Raises:
        ValueError: a distribution is not installed in this interpreter.
    """
    specs = []
    for name in names:
        try:
            specs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise ValueError(
                f"{name} is not installed here; run with the project's .venv"
            ) from None
    return specs


def download(specs: list[str], dest: Path, extra: list[str]) -> None:
    """``pip download`` of exactly ``specs`` (no dependencies) into ``dest``."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
    subprocess.run([*command, *extra, "-d", str(dest), *specs], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "gpucheck")
    parser.add_argument(
        "--python-version",
        action="append",
        dest="pythons",
        metavar="X.Y",
        help="CPython of the GPU image, for pydantic-core (repeatable; default 3.12)",
    )
    args = parser.parse_args(argv)
    pythons = args.pythons or ["3.12"]
    try:
        if args.out.exists():
            shutil.rmtree(args.out)
        pure = ["--platform", "any"]
        download(pinned(ALWAYS), args.out / "wheels", pure)
        for python in pythons:
            abi = "cp" + python.replace(".", "")
            tags = [f"--platform={p}" for p in PLATFORMS]
            target = ["--python-version", python, "--implementation", "cp", "--abi", abi, *tags]
            download(pinned(BINARY), args.out / "wheels", target)
        download(pinned(PYTEST), args.out / "pytest", pure)
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    count, total = write_listing(args.out, pythons=pythons)
    print(f"{count} files, {total / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
