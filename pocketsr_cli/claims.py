"""Claiming an output, so that two runs never both write it nor both work on it.

Two ``pocketsr upscale`` runs into one folder (two terminals, a cron job and a person) must
not both write an output, nor one replace what the other has just written.  A run holds
the output's claim from the moment it starts on the image (``pipeline``: before decoding)
until it has checked that the output is still as its run saw it and renamed the finished
file into place; another run that finds the claim held skips that image at once, so two
identical runs share the work.  An output whose name only decoding tells (a format switched
by the content) is claimed again for its rename.

``.NAME.pocketsr-claim`` (beside the output; hidden, ignored when folders are scanned)
    Opened, created if missing, and locked with ``flock(LOCK_EX | LOCK_NB)``.  A run that
    cannot lock it knows that another run is writing that output at this moment.  The lock
    dies with its process, so a claim file left behind by a killed run (``kill -9``) never
    blocks a later one: that run locks it, and removes it when done.  The holder removes the
    file *before* it unlocks it; a run that locked a file which is no longer the one at the
    claim's name (removed meanwhile) lets it go and tries again, so two runs never hold one
    claim.

Where ``flock`` does not exist (Windows) or the file system refuses it, the run that
*created* the claim file (``O_EXCL``) holds it, keeping it open until it removes it.  On
Windows that open file is the lock: a file another process holds open cannot be removed
(``os.open`` does not share deletion), so a run that finds a claim file removes it, and if
that works its holder is gone (killed outright, or a ``--devices`` worker ended by the
driver: ``terminate`` runs no clean-up there) and the run claims the output afresh; if not,
the output is busy.  The folder's sweep (:func:`sweep_stale_claims`) removes the claims a
killed run left beside outputs no run claims again by the same rule.

Elsewhere (a file system that refuses ``flock``: some network file systems) a claim left by
a killed run stays, neither taken nor swept, and :func:`describe_busy` says to delete it.
There is no safe rule to tell it from a live run's.  A record of its holder (host, pid,
the process's start time) would be written after the file is made, so a claim may be
seen empty; such file systems are mostly shared between machines, whose processes this
one cannot look up (nor, on one machine, those of another PID namespace: a container);
and, decisive, removing a claim found dead cannot be made safe without a lock: between
the check and the ``unlink`` another process may remove it and a new run make a fresh
claim at that name (inode numbers are reused at once), which the ``unlink`` would then
take from that live run, so that two runs write one output.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pocketsr_cli.atomicfile import remove_abandoned_temps, still_at, sweep_unheld, try_lock

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CLAIM_SUFFIX",
    "Claim",
    "acquire",
    "claim_path",
    "claimed",
    "describe_busy",
    "remove_leftovers",
    "sweep_stale_claims",
]

CLAIM_SUFFIX = ".pocketsr-claim"

STALE_AFTER = 2.0
"""Seconds since its creation before a claim file no process holds counts as left behind
(:func:`sweep_stale_claims`).  Its creator locks it within microseconds; the wait keeps a
sweep from taking a live run's fresh claim in between, which would make that run skip its
image as ``concurrent``."""

_CLAIM_NAME = re.compile(r"\..+" + re.escape(CLAIM_SUFFIX), re.DOTALL)

# Claim files are never followed through a symbolic link, and a FIFO planted at a claim's
# name cannot block the open.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_ATTEMPTS = 50
_NAME_BYTES = 120  # longer output names get a digest, so the claim's name fits NAME_MAX


def claim_path(output: Path) -> Path:
    """The claim file of ``output``: ``.NAME.pocketsr-claim`` beside it."""
    name = output.name
    if len(os.fsencode(name)) > _NAME_BYTES:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return output.with_name(f".{name}{CLAIM_SUFFIX}")


class Claim:
    """A claim this process holds; :meth:`release` removes it (idempotent)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if fcntl is None:  # Windows removes no open file; the file alone is the claim there
            with contextlib.suppress(OSError):
                os.close(fd)
        # Remove before unlocking: whoever locks this file afterwards sees that it is no
        # longer the claim and tries again (see the module docs).
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        if fcntl is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def acquire(output: Path) -> Claim | None:
    """Claim ``output`` (creating its folder), or None while another run holds its claim.

    Raises:
        OSError: the folder or the claim file cannot be created, or something other than a
            regular file sits at the claim's name.
    """
    path = claim_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileNotFoundError:  # its folder, empty, removed meanwhile by the run that
            path.parent.mkdir(parents=True, exist_ok=True)  # made it (MadeFolders)
            continue
        except FileExistsError:
            try:
                fd = os.open(path, _OPEN_FLAGS)
            except FileNotFoundError:  # released meanwhile
                continue
            created = False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EEXIST, "something other than a file is in the way", str(path))
            locked = try_lock(fd)
            if locked is None and created:
                return Claim(path, fd)
            if locked and still_at(fd, path):
                return Claim(path, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if locked is None and _OPEN_FILES_STAY:
            if _remove_unheld(path):
                continue  # its holder was gone: claim it afresh
            return None
        if not locked:
            return None
    return None


# Windows removes no file that another process holds open (see the module docs).
_OPEN_FILES_STAY = sys.platform == "win32"


def _remove_unheld(path: Path) -> bool:
    """Remove the claim file ``path`` unless a process holds it open (Windows refuses);
    True when it is gone (removed now, or already)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return True
    except OSError:  # PermissionError: held open by its run
        return False
    return True


@contextlib.contextmanager
def claimed(output: Path) -> Iterator[Claim | None]:
    """:func:`acquire` for a ``with`` block, released at its end (None: held elsewhere)."""
    claim = acquire(output)
    try:
        yield claim
    finally:
        if claim is not None:
            claim.release()


def remove_leftovers(output: Path, *, wait: float = 0.0) -> int:
    """What a writer of ``output`` ended outright left beside it, once its process is gone
    (a ``--devices`` worker killed, or on Windows ended by the driver: ``terminate`` runs
    no clean-up there; a ``--ray`` actor killed): its claim, then, while this process
    holds the claim, its temporary files (``atomicfile.remove_abandoned_temps``: every
    writer of an output holds its claim while it writes, so none of them is a live
    writer's, even where nothing can be locked, but for a name over 100 characters).  A
    claim another process holds (another run's, or the killed writer's while its process
    is still going away) leaves both alone; it is asked for again for up to ``wait``
    seconds.  How many temporary files were removed; never raises for file-system trouble.
    """
    path = claim_path(output)
    if not path.parent.is_dir():  # nothing was written there (acquire would make it)
        return 0
    deadline = time.monotonic() + wait
    while True:
        try:
            claim = acquire(output)
        except OSError:
            return 0
        if claim is not None:
            break
        if time.monotonic() >= deadline:
            return 0
        time.sleep(0.1)
    try:
        return remove_abandoned_temps(output)
    finally:
        claim.release()


def sweep_stale_claims(folder: Path) -> int:
    """Remove, from ``folder`` (not its subfolders), the claim files that no live process
    holds and that were made at least :data:`STALE_AFTER` seconds ago: those a run ended
    outright left (``kill -9`` after its rename, before the claim's removal), or one that
    could not remove its claim (the folder read-only then).  A run that claims such an
    output removes its claim anyway; this is for outputs that are skipped (already
    written) or no longer made, whose claims would stay for ever.  A live run's claim is
    locked, so it is kept; on Windows, where nothing can be locked, it is held open, so
    it cannot be removed there, and one that can be has no holder left (see the module
    docs); on a file system that refuses ``flock`` (some network file systems) nothing is
    removed.  How many were removed; never raises for file-system trouble.  Once per
    output folder per run (``atomicfile.TempSweeper``)."""
    return sweep_unheld(
        folder,
        CLAIM_SUFFIX,
        _CLAIM_NAME,
        stale_after=STALE_AFTER,
        open_files_stay=_OPEN_FILES_STAY,
    )


def describe_busy(output: Path) -> str:
    """Why ``output`` was not written when its claim was held elsewhere."""
    told = fcntl is not None or _OPEN_FILES_STAY  # a held claim is a live run's
    how = "" if told else f" (if none is running, delete {claim_path(output)})"
    return f"another pocketsr run is writing this output right now{how}"
