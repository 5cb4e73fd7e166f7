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

Temporary files left behind.  A writer killed outright (``kill -9``, power loss) leaves its
temporary file; nothing else would ever remove it (a 4K PNG's is about 20 MB).  So every
temporary file is held: :func:`held_temp` creates it and keeps it locked with
``flock(LOCK_EX)`` until it has been renamed or removed, and :func:`sweep_stale_temps`
(called once per output folder by a run, through :class:`TempSweeper`) removes the ones it
can lock, that is the ones whose writer is gone (a lock dies with its process), as
``claims`` does for claim files.  The sweeper removes a name only after locking the file and
checking that the name still refers to the file it locked; a writer that finds its fresh
file swept away before it locked it (a moment's window) starts again under a new name.

Two kinds of writers hold no lock: those of pocketsr versions before this one, and those on
file systems where ``flock`` does not work.  So the sweep also leaves alone any file
modified in the last :data:`STALE_AFTER` seconds (an older version writes a temporary file
in one go and renames it within seconds); a file left by a run killed just now is removed by
a run that starts a minute later.  Where ``flock`` does not exist (Windows) or the file
system refuses it, nothing is ever swept, but by a process that holds the output's claim
(``claims.remove_leftovers``: a ``--devices`` driver, after a worker that was writing it
has been ended outright).  Only regular files named as
:func:`temp_path_for` names them are considered: links, folders (``report``'s picture
folders use these names too), FIFOs and devices are left alone.  The empty probe folder
or file that :func:`folder_write_problem` makes and removes at once, left by a check killed
in between, is removed by the first check of that folder in a later process, whatever the
folder holds (models, a report, subfolders of outputs), and a probe folder also by the
first check of a folder made in it since (:func:`_remove_stale_probes`).  A process sweeps
each folder's probes once (:func:`_sweep_probes_once`: a program writing file after file
checks its folder each time), so one left by another process killed while this one runs
waits for the next process, unless it is a probe file in an output folder: a run's sweep
of temporary files takes it too (:func:`sweep_stale_temps`; both wait :data:`STALE_AFTER`),
without counting it among the leftovers of interrupted runs it reports.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pocketsr_cli.errors import present, unreachable

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIX = ".pocketsr-tmp"

STALE_AFTER = 60.0
"""Seconds since its last change before an unlocked temporary file counts as left behind
(one may belong to a live writer of an older version, which locks nothing)."""

# What temp_path_for makes: hidden, 12 hex digits, the suffix.
_TEMP_NAME = re.compile(r"\..*\.[0-9a-f]{12}" + re.escape(TEMP_SUFFIX), re.DOTALL)
# The probe folders of _mkdir_problem and files of _create_problem: temp_path_for's names
# for _PROBE.
_PROBE = ".pocketsr-probe"
_PROBE_NAME = re.compile(r"\." + re.escape(_PROBE) + r"\.[0-9a-f]{12}" + re.escape(TEMP_SUFFIX))
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# A temporary file is created fresh (never through a link), for writing (NFS locks need it).
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
# The sweep opens for writing too (NFS), never through a link, and never waits on a FIFO.
_PROBE_FLAGS = os.O_RDWR | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW
_ATTEMPTS = 20


class NameTaken(FileExistsError):
    """An exclusive :func:`replacing` found its target's name taken: nothing was written."""


def folder_write_problem(folder: Path) -> str | None:
    """Why files cannot be made in ``folder``, or None.  A folder that does not exist yet
    is judged by the nearest existing one above it, where it would be made: a file there,
    a read-only file system or no write permission is a problem, and so is a path that
    cannot even be looked at (``errors.unreachable``: a name too long for the file system,
    a folder on the way that may not be entered).  There, a folder is then made and
    removed at once (:func:`_mkdir_problem`), as some file systems (``/proc``, ``/sys``)
    refuse what permissions allow; in an existing folder, a file is made and removed
    (:func:`_create_problem`) for the same reason.  A cheap check before a long run
    (``os.access``, ``os.statvfs``, one ``mkdir`` or file); writes can still fail later (a
    full disk)."""
    probe = Path(folder)
    try:
        while not present(probe) and probe.parent != probe:
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
    except OSError as exc:  # a name too long, a folder on the way that may not be entered
        return unreachable(Path(folder), exc)
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{probe} is on a read-only file system"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable (permission denied)"
    if probe != Path(folder):
        return _mkdir_problem(probe)
    return _create_problem(probe)


def _create_problem(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (an existing folder), or None: a temporary
    file is made there and removed at once (:func:`held_temp`: locked while it lives).
    Some file systems refuse what permissions and the mount allow (``/proc``, ``/sys``, a
    read-only overlay).  Where one could be made, the probe files and folders that checks
    killed outright left in ``folder`` are removed (:func:`_remove_stale_probes`: nothing
    else would remove those in a folder no run writes outputs to, such as the models
    folder), and the probe folders left in its parent by checks of ``folder`` made before
    ``folder`` was (no later check looks there again): two ``os.scandir``, the first
    time each folder is checked in this process only (:func:`_sweep_probes_once`), as a
    program that writes file after file (``Upscaler.upscale_file``) checks its folder
    each time, and a scan of a folder of thousands costs milliseconds."""
    try:
        with held_temp(folder / _PROBE):
            pass
    except OSError as exc:
        return f"no file can be made in {folder} ({exc.strerror or exc})"
    _sweep_probes_once(folder)
    if folder.parent != folder:
        _sweep_probes_once(folder.parent)
    return None


def _mkdir_problem(parent: Path) -> str | None:
    """Why no folder can be made in ``parent`` (an existing folder), or None: one is made
    there and removed at once.  Its name is fresh (:func:`temp_path_for`'s kind: hidden,
    skipped by folder scans), so no folder another process makes meanwhile is removed;
    only ``parent``'s modification time changes.  Where one could be made, the probe
    folders that checks killed outright between the two steps left there are removed too
    (:func:`_remove_stale_probes`)."""
    trial = temp_path_for(parent / _PROBE)
    try:
        os.mkdir(trial)
    except FileExistsError:  # 48 random bits taken: folders can be made there
        return None
    except OSError as exc:
        return f"no folder can be made in {parent} ({exc.strerror or exc})"
    with contextlib.suppress(OSError):
        os.rmdir(trial)
    _sweep_probes_once(parent)
    return None


_probes_swept: set[str] = set()  # the folders _sweep_probes_once has swept
_probes_swept_lock = threading.Lock()


def _sweep_probes_once(folder: Path) -> None:
    """:func:`_remove_stale_probes` of ``folder``, the first time this process asks for
    that folder: what checks killed outright left there is gone after one sweep, and one
    left later (by another process killed meanwhile) waits for the next process."""
    key = os.path.abspath(folder)
    with _probes_swept_lock:
        if key in _probes_swept:
            return
        _probes_swept.add(key)
    _remove_stale_probes(folder)


def _remove_stale_probes(parent: Path) -> int:
    """Remove from ``parent`` what checks killed outright (``kill -9``) between making
    their probe and removing it left, named as they name it and unchanged for
    :data:`STALE_AFTER` seconds (a live check's lasts microseconds): the folders (not
    links) of :func:`_mkdir_problem` that are empty (``rmdir`` removes no other), and the
    regular files of :func:`_create_problem` that no process holds locked, as
    :func:`sweep_stale_temps` removes temporary files (where files cannot be locked, by
    their age alone: no check keeps one a minute).  How many were removed; one
    ``os.scandir`` of ``parent``; never raises for file-system trouble."""
    cutoff = time.time() - STALE_AFTER
    removed = 0
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            if not _PROBE_NAME.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    path = Path(entry.path)
                    outcome = None if fcntl is None else _remove_if_stale(path, cutoff)
                    if outcome is None:  # nothing can be locked here
                        outcome = _remove_unlocked(path, cutoff)
                    removed += outcome
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if not entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    continue
                os.rmdir(entry.path)
                removed += 1
    return removed


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, unique, ending in :data:`TEMP_SUFFIX`."""
    # The name is shortened so that the temporary name stays within NAME_MAX.
    return path.with_name(f".{path.name[:_TEMP_NAME_KEPT]}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


_TEMP_NAME_KEPT = 100  # the characters of a name its temporary names keep


def try_lock(fd: int) -> bool | None:
    """``flock(LOCK_EX | LOCK_NB)`` on ``fd``: True locked, False held by another open file
    (another process), None where this system or file system cannot lock (Windows, some
    network file systems).  The lock of temporary files here and of ``claims``."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF):
            return None
        raise
    return True


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``folder`` itself for the block, waiting for it (no lock
    file is left behind): for changes to files there that must not interleave with another
    process's (``models import``, the records of ``weights/trust.py``).  Where folders
    cannot be locked (Windows, some file systems) or ``folder`` cannot be opened, the block
    runs unlocked."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # gone, or not to be opened: nothing to keep apart there
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def still_at(fd: int, path: Path) -> bool:
    """Whether the file open as ``fd`` is still the one named ``path`` (not removed or
    replaced since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def held_temp(path: Path) -> Iterator[Path]:
    """Create a fresh, empty temporary file beside ``path`` (:func:`temp_path_for`) and
    yield its name; it stays locked (``flock``) for the whole block, so that
    :func:`sweep_stale_temps` never removes it.  On leaving, it is removed if it is still
    there (the block may have renamed it away), and only then unlocked.

    The block writes it by name (``open(tmp, "wb")``, ``"r+b"``...): it must not replace
    or remove it, else the lock guards a file that is no longer there.  Where locking is
    not possible (Windows, some file systems) the file is made all the same, unlocked.

    Raises:
        OSError: the file cannot be created (the folder must exist).
    """
    tmp, fd = _create_held(path)
    try:
        yield tmp
    finally:  # after a rename nothing is left to remove; removed before it is unlocked
        with contextlib.suppress(OSError):
            tmp.unlink()
        if fd is not None:
            os.close(fd)


def _create_held(path: Path) -> tuple[Path, int | None]:
    """A fresh temporary file beside ``path`` and the descriptor holding its lock (None
    where nothing can be locked: the file is closed at once then, as Windows renames no
    open file).

    Raises:
        OSError: it cannot be created.
    """
    for _ in range(_ATTEMPTS):
        tmp = temp_path_for(path)
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:  # 48 random bits taken: try another name
            continue
        try:
            locked = try_lock(fd)
            if locked and still_at(fd, tmp):
                return tmp, fd
            # A sweep got it between the creation and the lock (it removes what it locks);
            # if it has let it go, the name is still this file's: remove it, then start again.
            if locked is not None and still_at(fd, tmp):
                with contextlib.suppress(OSError):  # else unlocked: a later sweep's
                    tmp.unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            os.close(fd)
            raise
        os.close(fd)
        if locked is None:
            return tmp, None
    raise OSError(errno.EAGAIN, "cannot create a temporary file", str(path))


@contextlib.contextmanager
def replacing(
    path: Path, *, fsync: bool = False, mkdir: bool = True, exclusive: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; put it in place at the end.

    The temporary file exists, empty, when the block starts (:func:`held_temp`: locked, so
    that no other run's sweep takes it): the block writes it by name and must not replace
    it.  On a normal exit it is renamed over ``path``; ``fsync=True`` first flushes it to
    the disk, so that it also survives power loss.  A block that leaves it empty wrote
    nothing: FileNotFoundError, and ``path`` is untouched (no empty file ever replaces a
    target).  On any exception it is removed and ``path`` is untouched.  ``mkdir`` creates
    the parent folders first.

    ``exclusive=True`` never replaces an existing ``path``: the temporary file is
    hard-linked to its final name, which fails when the name exists, so a file that appeared
    meanwhile is kept whoever wrote it.  On file systems without hard links (FAT, some
    network shares) the name is checked just before the rename instead.

    Raises:
        NameTaken: ``exclusive`` and ``path`` exists (the temporary file is removed).
        FileNotFoundError: the block left the temporary file empty, or removed it.
        OSError: from the folder or temporary file creation, the flush or the rename (the
            temporary file is removed then too); the block's own exceptions pass through
            unchanged.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    # On leaving, held_temp removes the temporary name: nothing after a rename, the old
    # name after a link, the file itself after an exception.
    with held_temp(path) as tmp:
        yield tmp
        if os.stat(tmp).st_size == 0:
            raise FileNotFoundError(errno.ENOENT, "nothing was written", str(tmp))
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        if not exclusive:
            os.replace(tmp, path)
        elif not _link_or_keep(tmp, path):
            raise NameTaken(errno.EEXIST, os.strerror(errno.EEXIST), str(path))


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


def sweep_stale_temps(folder: Path, *, stale_after: float | None = None) -> int:
    """Remove the temporary files that writers which are gone left in ``folder`` (not in
    its subfolders); return how many were removed, not counting the probe files that
    folder checks killed outright left (:func:`_create_problem`'s, removed as the others
    are): those are no writer's leftovers, which a run counts and reports as an
    interrupted run's.

    A file is removed only when all of these hold: its name is one :func:`temp_path_for`
    makes; it is a regular file (not a link, folder, FIFO or device); this process can lock
    it with ``flock(LOCK_EX | LOCK_NB)``, so no live writer holds it (:func:`held_temp`);
    after locking, the name still refers to the locked file; and it was last modified at
    least ``stale_after`` seconds ago (default :data:`STALE_AFTER`; a writer of an older
    version holds no lock).  Where locks do not work (Windows, some file systems) nothing
    is removed.  One ``os.scandir`` of ``folder``, plus an open per temporary name.

    Never raises for file-system trouble (a missing or unreadable folder, a file that
    cannot be opened or removed): what cannot be checked is kept.
    """
    limit = STALE_AFTER if stale_after is None else stale_after
    return _sweep(
        folder,
        time.time() - limit,
        lambda name: True,
        counted=lambda name: not _PROBE_NAME.fullmatch(name),
    )


def sweep_unheld(
    folder: Path,
    suffix: str,
    names: re.Pattern[str],
    *,
    stale_after: float,
    open_files_stay: bool = False,
) -> int:
    """Remove, from ``folder`` (not its subfolders), the regular files whose names end in
    ``suffix`` and match ``names`` that no process holds locked (``flock``, taken as
    :func:`sweep_stale_temps` takes it: lock, check that the name still refers to the
    locked file, remove, unlock) and that were last modified at least ``stale_after``
    seconds ago: the lock files of a package module whose holders were ended outright
    (``claims.sweep_stale_claims``).  Where locks do not work nothing is removed, unless
    ``open_files_stay`` and this system has no ``flock`` at all (Windows): there a file
    that a process holds open cannot be removed, so for files that each holder keeps
    open from their creation to their removal (claims), one that can be removed has no
    holder left, and is removed.  How many were removed; never raises for file-system
    trouble."""
    return _sweep(
        folder,
        time.time() - stale_after,
        lambda name: True,
        unheld=open_files_stay and fcntl is None,
        suffix=suffix,
        names=names,
    )


def remove_abandoned_temps(path: Path) -> int:
    """Remove the temporary files of ``path`` (those :func:`temp_path_for` names for it),
    however recent, for a caller that holds ``path``'s claim (``claims.remove_leftovers``,
    after a writer of ``path`` was ended outright): every writer of ``path`` holds its
    claim while it writes, so none of them is a live writer's.  Where files can be locked,
    one that a process still holds (a killed writer not gone yet) is kept all the same;
    where they cannot (Windows, a file system that refuses locks) they are removed (on
    Windows, one that some process still has open cannot be), but for a name of more than
    100 characters: its temporary names keep only the first 100, which other outputs may
    share, whose writers hold their own claims, so only a lock can tell those apart.  How
    many were removed; never raises for file-system trouble."""
    prefix = f".{path.name[:_TEMP_NAME_KEPT]}."
    length = len(prefix) + 12 + len(TEMP_SUFFIX)
    return _sweep(
        path.parent,
        math.inf,
        lambda name: name.startswith(prefix) and len(name) == length,
        unheld=len(path.name) <= _TEMP_NAME_KEPT,  # else the names of other outputs' too
    )


def _sweep(
    folder: Path,
    cutoff: float,
    wanted: Callable[[str], bool],
    *,
    unheld: bool = False,
    suffix: str = TEMP_SUFFIX,
    names: re.Pattern[str] = _TEMP_NAME,
    counted: Callable[[str], bool] | None = None,
) -> int:
    """Remove, from ``folder``, the regular files named as :func:`temp_path_for` names
    them (or ending in ``suffix`` and matching ``names``), for which ``wanted(name)``
    holds, unchanged since ``cutoff`` (a time) and held by no one
    (:func:`_remove_if_stale`); how many (those for which ``counted(name)`` holds, where
    it is given).  Stops at the first file whose file system
    cannot lock (nothing is safe there), unless ``unheld`` says that no live writer holds
    any of them; never raises for file-system trouble."""
    if fcntl is None and not unheld:
        return 0
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(suffix) or not names.fullmatch(name):
                continue
            if not wanted(name):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_file(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                outcome = None if fcntl is None else _remove_if_stale(path, cutoff)
                if outcome is None:  # this file system cannot lock: nothing is safe
                    if not unheld:
                        break
                    outcome = _remove_unlocked(path, cutoff)
                if counted is None or counted(name):
                    removed += outcome
    return removed


def _remove_if_stale(path: Path, cutoff: float) -> bool | None:
    """Remove ``path`` if it is a regular file unchanged since ``cutoff`` (a time) that no
    one holds; None when this file system cannot lock.

    Raises:
        OSError: it cannot be opened, checked or removed.
    """
    fd = os.open(path, _PROBE_FLAGS)
    try:
        if not _stale(fd, cutoff):
            return False
        locked = try_lock(fd)
        if not locked:
            return locked
        # Locked: no writer holds it now, and none can take it while this lock is held.
        if not still_at(fd, path) or not _stale(fd, cutoff):
            return False
        os.unlink(path)  # before the lock goes, as held_temp and claims do
        return True
    finally:
        os.close(fd)


def _remove_unlocked(path: Path, cutoff: float) -> bool:
    """Remove ``path`` if it is a regular file unchanged since ``cutoff``, without a lock
    (none can be had; the caller knows no live writer holds it, or, on Windows, that its
    holders keep it open, which makes the removal fail).  Not opened first: on Windows an
    open file cannot be removed, this process's own handle included.

    Raises:
        OSError: it cannot be checked or removed (on Windows: another process has it open).
    """
    info = os.stat(path, follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode) or not info.st_mtime < cutoff:
        return False
    os.unlink(path)
    return True


def _stale(fd: int, cutoff: float) -> bool:
    """A regular file last modified before ``cutoff`` (one from the future is not)."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff


class TempSweeper:
    """:func:`sweep_stale_temps` for one run: each folder at most once, however many
    outputs go there (thread-safe).  :attr:`removed` counts the files removed (a check's
    probe files, removed too, are not counted: :func:`sweep_stale_temps`).

    ``claims``: a sweep of the claim files that killed runs left in a folder
    (``claims.sweep_stale_claims``, passed in as that module builds on this one), run on
    each folder after its temporary files; :attr:`claims_removed` counts what it removed.
    """

    def __init__(self, claims: Callable[[Path], int] | None = None) -> None:
        self._seen: set[str] = set()
        self._guard = threading.Lock()
        self._claims = claims
        self.removed = 0
        self.claims_removed = 0

    def sweep(self, folder: Path) -> int:
        """Sweep ``folder`` unless this sweeper already has; how many files were removed.
        Never raises for file-system trouble (see :func:`sweep_stale_temps`)."""
        key = os.path.abspath(folder)
        with self._guard:
            if key in self._seen:
                return 0
            self._seen.add(key)
        count = sweep_stale_temps(Path(key))
        claims = 0 if self._claims is None else self._claims(Path(key))
        with self._guard:
            self.removed += count
            self.claims_removed += claims
        return count


class MadeFolders:
    """The output folders a run makes, so that those it leaves empty are removed at its
    end: a run whose every input failed leaves no empty ``-o`` folder (nor the sub-folders
    it made to mirror a tree) behind.  Thread-safe.

    :meth:`note` is called with an output's folder before anything is made there (the
    run's first look at that output): that folder, and each folder above it that does not
    exist either, is noted.  :meth:`remove_empty`, at the run's end, removes the noted
    folders that are empty, deepest first.  A folder that existed when it was noted is
    never noted, so never removed; one that holds anything is left (``os.rmdir`` refuses
    it), so is one that cannot be looked at.  Another run that made a folder of the same
    name meanwhile and is about to claim an output there makes it again
    (``claims.acquire``).
    """

    def __init__(self) -> None:
        self._looked: set[str] = set()
        self._made: set[str] = set()
        self._guard = threading.Lock()

    def note(self, folder: Path) -> None:
        """Note ``folder`` and the missing folders above it, unless it is noted already.
        Never raises (a folder that cannot be looked at is not noted)."""
        key = os.path.abspath(folder)
        with self._guard:
            if key in self._looked:
                return
            self._looked.add(key)
        missing = []
        probe = key
        try:
            while not present(Path(probe)) and os.path.dirname(probe) != probe:
                missing.append(probe)
                probe = os.path.dirname(probe)
        except OSError:
            return
        with self._guard:
            self._made.update(missing)

    def remove_empty(self) -> int:
        """Remove the noted folders that are empty now, deepest first, and forget them;
        how many were removed.  Never raises."""
        with self._guard:
            made, self._made = self._made, set()
            self._looked.clear()
        removed = 0
        for folder in sorted(made, key=lambda path: path.count(os.sep), reverse=True):
            try:
                os.rmdir(folder)
            except OSError:  # not empty, gone already, or not ours to remove
                continue
            removed += 1
        return removed
