"""Files that appear whole or not at all: the one atomic-write helper of the package.

:func:`replacing` hands out a fresh temporary name beside the target (:func:`temp_path_for`:
hidden, unique, ending in :data:`TEMP_SUFFIX`, so folder walks skip it); whatever the caller
writes there is renamed over the target when the block ends normally, and removed when it
ends by any exception, KeyboardInterrupt included.  The rename is ``os.replace`` within one
folder, so readers see the old file or the new one, never a part.  :func:`write_bytes` is
the one-call form.  Image outputs use ``imageio.write_atomic``, which adds the exclusive
(never-replace) mode and the image error type on top of these names.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".pocketsr-tmp"


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, unique, ending in :data:`TEMP_SUFFIX`."""
    # The name is shortened so that the temporary name stays within NAME_MAX.
    return path.with_name(f".{path.name[:100]}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


@contextlib.contextmanager
def replacing(path: Path, *, fsync: bool = False, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; put it in place at the end.

    On a normal exit the temporary file (which the block must have created) is renamed over
    ``path``; ``fsync=True`` first flushes it to the disk, so that it also survives power
    loss.  On any exception it is removed and ``path`` is untouched.  ``mkdir`` creates the
    parent folders first.

    Raises:
        OSError: from the folder creation, the flush or the rename (the temporary file is
            removed then too); the block's own exceptions pass through unchanged.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:  # after the rename there is nothing left to remove
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`replacing` (raises OSError as it does)."""
    with replacing(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
