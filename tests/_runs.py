"""Helpers for the tests that run whole upscale jobs: ``--devices`` workers, Ray actors and
a signal arriving mid-write (or a Ctrl-C mid-step, for the trainers' tests)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli import claims
from pocketsr_cli.cli import app

PAUSE = "POCKETSR_TEST_PAUSE_BEFORE_RENAME"
runner = CliRunner()


def folder(root: Path, n: int, first: int = 10) -> Path:
    """``n`` small distinct PNGs ``0.png``… in ``root`` (first pixel value ``first + i``)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = np.full((6, 8, 3), first + i, np.uint8)
        pixels[1:3, 2:5] = (i * 37) % 256
        Image.fromarray(pixels).save(root / f"{i}.png")
    return root


def as_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims and temporary files as on Windows: no flock; a claim is a file kept open by
    its run, removable once that run is gone."""
    from pocketsr_cli import atomicfile

    monkeypatch.setattr(atomicfile, "fcntl", None)
    monkeypatch.setattr(claims, "fcntl", None)
    monkeypatch.setattr(claims, "_OPEN_FILES_STAY", True)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def leftovers(root: Path) -> list[str]:
    """Temporary files and claims under ``root``: none may outlive a run."""
    return sorted(
        name
        for _, _, files in os.walk(root)
        for name in files
        if name.endswith((".pocketsr-tmp", claims.CLAIM_SUFFIX))
    )


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for the block: ``chmod a-w``, or for root, whom permissions
    do not stop, the immutable attribute (``chattr +i``); the test is skipped where neither
    works."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root, and chattr +i cannot make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", folder], check=True)


def unenterable(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``folder`` made to answer as a folder without search permission does, even for root
    (whom permissions do not stop): ``stat`` of anything in it is refused, and
    ``os.access`` says it may not be entered. ``monkeypatch.undo()`` ends it."""
    real_stat, real_access = os.stat, os.access

    def stat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(path).startswith(f"{folder}{os.sep}"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    def access(path, mode, **kwargs):  # type: ignore[no-untyped-def]
        return os.fspath(path) != str(folder) and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", access)


def upscale_json(*args: object) -> tuple[int, list[dict], str]:
    """``pocketsr upscale ... --json`` in-process: exit code, parsed stdout lines, stderr."""
    result = runner.invoke(app, ["upscale", *(str(a) for a in args), "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.stderr


def press_ctrl_c() -> None:
    """What a Ctrl-C does, without a real signal: the SIGINT handler in force runs here
    (Python runs it in the main thread between two bytecodes)."""
    handler = signal.getsignal(signal.SIGINT)
    assert callable(handler)
    handler(signal.SIGINT, None)


def default_stop_signals(ignored: int | None = None) -> None:
    """For a child's ``preexec_fn``: SIGINT, SIGTERM and SIGHUP as a terminal's foreground
    job has them (their default), whatever the test run inherited (one started with
    ``nohup`` or ``&`` ignores SIGHUP or SIGINT, and pocketsr keeps a signal ignored at
    start ignored); then ``ignored`` ignored, as ``nohup`` would."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    if ignored is not None:
        signal.signal(ignored, signal.SIG_IGN)


def signal_mid_write(
    args: list[object],
    number: int,
    env: dict[str, str],
    *,
    seconds: float,
    new_session: bool = False,
) -> tuple[int, str, str]:
    """Run ``pocketsr upscale ARGS`` in a child process, send it (the driver only) signal
    ``number`` once a temporary output exists, and return (exit code, stdout, stderr).
    ``new_session`` puts the child in a session of its own, so that whatever it started
    is killed with it if the run does not end."""
    out = Path(str(args[args.index("-o") + 1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pocketsr_cli", "upscale", *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=new_session,
        preexec_fn=default_stop_signals,
    )
    try:
        deadline = time.monotonic() + seconds
        while not (out.is_dir() and any(n.endswith(".pocketsr-tmp") for n in os.listdir(out))):
            assert time.monotonic() < deadline and proc.poll() is None, "no write started"
            time.sleep(0.02)
        proc.send_signal(number)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            if new_session:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr
