"""Files that appear whole or not at all: the one atomic-write helper of the package.

:func:`replacing` hands out a fresh temporary name beside the target (:func:`temp_path_for`:
hidden, unique, ending in :data:`TEMP_SUFFIX`, so folder walks skip it); whatever the caller
writes there is renamed over the target when the block ends normally, and removed when it
ends by any exception, KeyboardInterrupt included.  The rename is ``os.replace`` within one
folder, so readers see the old file or the new one, never a part.  :func:`write_bytes` is
the one-call form.  ``exclusive=True`` never replaces: the temporary file is linked to the
target's name only while that name is free, else :class:`NameTaken` is raised.  Image
outputs use ``imageio.write_atomic``, a thin wrapper that gives OS errors the image error
type.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".pocketsr-tmp"


class NameTaken(FileExistsError):
    """An exclusive :func:`replacing` found its target's name taken: nothing was written."""


def folder_write_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder``, or None.  A folder that does not exist yet
    is judged by the nearest existing one above it, where it would be made: a file there,
    a read-only file system or no write permission is a problem.  A cheap check before a
    long run (``os.access``, ``os.statvfs``); writes can still fail later (a full disk)."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        if probe.is_symlink():  # a link that leads nowhere, or round in a loop
            try:
                os.stat(probe)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return f"{probe} is a symbolic link that loops back on itself"
            return f"{probe} is a symbolic link to nothing that exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{probe} is on a read-only file system"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable (permission denied)"
    return None


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, unique, ending in :data:`TEMP_SUFFIX`."""
    # The name is shortened so that the temporary name stays within NAME_MAX.
    return path.with_name(f".{path.name[:100]}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


@contextlib.contextmanager
def replacing(
    path: Path, *, fsync: bool = False, mkdir: bool = True, exclusive: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; put it in place at the end.

    On a normal exit the temporary file (which the block must have created) is renamed over
    ``path``; ``fsync=True`` first flushes it to the disk, so that it also survives power
    loss.  On any exception it is removed and ``path`` is untouched.  ``mkdir`` creates the
    parent folders first.

    ``exclusive=True`` never replaces an existing ``path``: the temporary file is
    hard-linked to its final name, which fails when the name exists, so a file that appeared
    meanwhile is kept whoever wrote it.  On file systems without hard links (FAT, some
    network shares) the name is checked just before the rename instead.

    Raises:
        NameTaken: ``exclusive`` and ``path`` exists (the temporary file is removed).
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
        if not exclusive:
            os.replace(tmp, path)
        elif not _link_or_keep(tmp, path):
            raise NameTaken(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    finally:  # after a rename there is nothing left to remove; after a link, the old name
        with contextlib.suppress(OSError):
            tmp.unlink()


def _link_or_keep(tmp: Path, path: Path) -> bool:
    """Give ``tmp`` the name ``path`` unless that name exists (False then)."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        pass
    if os.path.lexists(path):
        return False
    os.replace(tmp, path)
    return True


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`replacing` (raises OSError as it does)."""
    with replacing(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
