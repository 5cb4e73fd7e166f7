"""Atomic writes: :func:`write_atomic` leaves a file either untouched or complete.

A thin wrapper over ``atomicfile.replacing``, the package's one atomic-write helper (its
temporary names, its rename or, with ``exclusive=True``, its link-only-while-free): it
writes the bytes, turns OS errors into :class:`ImageWriteError` and a taken name into
False.
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketsr_cli.atomicfile import TEMP_SUFFIX, NameTaken, replacing, temp_path_for
from pocketsr_cli.errors import ImageWriteError, windows_hint

__all__ = ["TEMP_SUFFIX", "temp_path_for", "write_atomic"]


def write_atomic(path: Path, data: bytes, *, fsync: bool = False, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete.

    The bytes go to a temporary file in the same folder (same file system, so the final
    ``os.replace`` is atomic), which is removed on any exception, KeyboardInterrupt
    included.  Parent folders are created.  The file gets the usual permissions (umask), not
    the 0600 of ``tempfile``.  ``fsync=True`` also survives power loss, at some cost.

    ``exclusive=True`` never replaces an existing ``path`` (``atomicfile.replacing``'s
    exclusive mode: a hard link, or on file systems without them a check just before the
    rename); when the name is taken nothing is written and False is returned.  Returns True
    when ``path`` was written.

    Tests may set ``POCKETSR_TEST_PAUSE_BEFORE_RENAME`` (seconds) to hold the complete
    temporary file that long before the rename, so that a signal can arrive while it exists
    (``tests/test_hostile.py``).

    Raises:
        ImageWriteError: an OS error (permissions, disk full, path is a folder...).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageWriteError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    try:
        with replacing(path, fsync=fsync, mkdir=False, exclusive=exclusive) as tmp:
            with open(tmp, "r+b") as handle:  # made (and locked) by replacing
                handle.write(data)
            _pause_for_tests()
    except NameTaken:
        return False
    except OSError as exc:
        raise ImageWriteError(
            f"cannot write {path}: {exc.strerror or exc}{windows_hint(exc, path)}"
        ) from exc
    return True


def _pause_for_tests() -> None:
    seconds = os.environ.get("POCKETSR_TEST_PAUSE_BEFORE_RENAME")
    if seconds:
        import time

        time.sleep(float(seconds))
