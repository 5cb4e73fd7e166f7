"""Atomic writes: :func:`write_atomic` leaves a file either untouched or complete.

The bytes go to a temporary file beside the target (``atomicfile.temp_path_for``, the
package's one naming of temporary files, ending in ``atomicfile.TEMP_SUFFIX``), which is
renamed into place, or, with ``exclusive=True``, linked into place only when the name is
still free.  The temporary file is removed on any failure, KeyboardInterrupt included.
OS errors come out as :class:`ImageWriteError`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pocketsr_cli.atomicfile import TEMP_SUFFIX, temp_path_for
from pocketsr_cli.errors import ImageWriteError

__all__ = ["TEMP_SUFFIX", "temp_path_for", "write_atomic"]


def write_atomic(path: Path, data: bytes, *, fsync: bool = False, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete.

    The bytes go to a temporary file in the same folder (same file system, so the final
    ``os.replace`` is atomic), which is removed on any exception, KeyboardInterrupt
    included.  Parent folders are created.  The file gets the usual permissions (umask), not
    the 0600 of ``tempfile``.  ``fsync=True`` also survives power loss, at some cost.

    ``exclusive=True`` never replaces an existing ``path``: the temporary file is
    hard-linked to its final name, which fails when the name exists (then nothing is
    written and False is returned), so a file that appeared meanwhile is kept whoever wrote
    it.  On file systems without hard links (FAT) the name is checked just before the
    rename instead.  Returns True when ``path`` was written.

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
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        _pause_for_tests()
        if exclusive:
            return _link_or_keep(tmp, path)
        os.replace(tmp, path)
        return True
    except OSError as exc:
        raise ImageWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
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


def _pause_for_tests() -> None:
    seconds = os.environ.get("POCKETSR_TEST_PAUSE_BEFORE_RENAME")
    if seconds:
        import time

        time.sleep(float(seconds))
