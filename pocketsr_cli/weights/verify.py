"""Checking weight files against their manifest's SHA-256 without re-hashing them every run.

Hashing a 1 GB file takes seconds, and ``pocketsr upscale`` resolves its model on every run.
So a successful check is remembered in ``.verified.json`` in the file's own folder (the
cache's ``weights/<model>/``, the user model folder), keyed by file name::

    {"RealESRGAN_x4plus.pth": {"sha256": "4fa0...", "size": 67040989, "mtime_ns": 1717...}}

A later check trusts the memo only while the file's size and modification time are
unchanged and the manifest still asks for the same digest; anything else is hashed again.
This catches truncation, re-downloads and replaced files, not a same-size edit that also
restores the old modification time: ``pocketsr models verify`` always re-hashes.

The memo is an optimisation only: when it cannot be read or written (a read-only install
folder, two processes writing at once) files are simply hashed again next time.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from pocketsr_cli.atomicfile import replacing
from pocketsr_cli.weights.cache import sha256_file

MEMO_NAME = ".verified.json"


def file_matches(path: Path, sha256: str, size: int | None = None, *, rehash: bool = False) -> bool:
    """Whether ``path`` is a file with this ``sha256`` (and ``size``, when given).

    Uses the memo unless ``rehash``; a file that is hashed and matches is remembered, one
    that does not match is forgotten.  A missing or unreadable file does not match.
    """
    expected = sha256.lower()
    try:
        stat = path.stat()
    except OSError:
        return False
    if not path.is_file() or (size is not None and stat.st_size != size):
        return False
    memo = _read(path.parent)
    entry = memo.get(path.name)
    stamp = {"sha256": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if not rehash and entry == stamp:
        return True
    try:
        ok = sha256_file(path) == expected
    except OSError:
        return False
    if ok:
        memo[path.name] = stamp
    else:
        memo.pop(path.name, None)
    if ok or entry is not None:
        _write(path.parent, memo)
    return ok


def remember(path: Path, sha256: str) -> None:
    """Record that ``path`` was just hashed (by its writer) and has ``sha256``."""
    try:
        stat = path.stat()
    except OSError:
        return
    memo = _read(path.parent)
    memo[path.name] = {"sha256": sha256.lower(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _write(path.parent, memo)


def forget(path: Path) -> None:
    """Drop ``path`` from its folder's memo (the file is being removed or replaced)."""
    memo = _read(path.parent)
    if memo.pop(path.name, None) is not None:
        _write(path.parent, memo)


def _read(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MEMO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(folder: Path, memo: dict[str, Any]) -> None:
    # Entries for files that are gone would only grow the memo.
    memo = {name: entry for name, entry in memo.items() if (folder / name).is_file()}
    with contextlib.suppress(OSError), replacing(folder / MEMO_NAME, mkdir=False) as tmp:
        tmp.write_text(json.dumps(memo, indent=1, sort_keys=True), encoding="utf-8")
