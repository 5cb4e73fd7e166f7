"""What the two device bundles (``gpu_bundle.py``, ``gpu_check_bundle.py``) share: the
``bundle.json`` listing of every file that travels, with its size and sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def write_listing(out: Path, **extra: Any) -> tuple[int, int]:
    """Write ``out/bundle.json``: ``extra``, ``total_bytes`` and ``files`` (relative path →
    size and sha256 of every file under ``out``).  Returns (file count, total bytes)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "bundle.json")
    listing = {
        str(p.relative_to(out)): {
            "size": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in files
    }
    total = sum(entry["size"] for entry in listing.values())
    summary = {**extra, "total_bytes": total, "files": listing}
    (out / "bundle.json").write_text(json.dumps(summary, indent=2) + "\n")
    return len(files), total
