"""The package's atomic-write helper: the target is old or new, never a part, no leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketsr_cli import atomicfile
from pocketsr_cli.atomicfile import (
    TEMP_SUFFIX,
    NameTaken,
    TempSweeper,
    replacing,
    sweep_stale_temps,
    temp_path_for,
    write_bytes,
)

try:
    import fcntl
except ImportError:  # Windows: nothing is ever swept there
    fcntl = None  # type: ignore[assignment]

needs_flock = pytest.mark.skipif(fcntl is None, reason="no flock: nothing is ever swept")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{TEMP_SUFFIX}"))


def test_write_bytes_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "memo.json"
    write_bytes(target, b"one")
    write_bytes(target, b"two", fsync=True)
    assert target.read_bytes() == b"two"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_a_failed_block_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), replacing(target) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise error
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_block_that_writes_nothing_raises_and_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError), replacing(target):
        pass
    assert target.read_bytes() == b"old"
    # The temporary file exists (held) from the start: left empty, it is still nothing.
    with pytest.raises(FileNotFoundError), replacing(target) as tmp:
        tmp.write_bytes(b"")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_temporary_names_are_hidden_unique_and_short(tmp_path: Path) -> None:
    long = tmp_path / ("n" * 250 + ".png")
    names = {temp_path_for(long).name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(".") and n.endswith(TEMP_SUFFIX) and len(n) < 255 for n in names)
    assert temp_path_for(long).parent == tmp_path


def test_an_exclusive_block_never_replaces_a_taken_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    with replacing(target, exclusive=True, fsync=True) as tmp:
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(NameTaken), replacing(target, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), replacing(tmp_path / "new.png", exclusive=True) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert not (tmp_path / "new.png").exists() and leftovers(tmp_path) == []

    def no_hard_links(src: object, dst: object) -> None:  # FAT, some network shares
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    with pytest.raises(NameTaken), replacing(target, exclusive=True) as tmp:
        tmp.write_bytes(b"third")
    with replacing(tmp_path / "b.png", exclusive=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"first" and (tmp_path / "b.png").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


# --- temporary files left behind by killed writers --------------------------------------


def stale(path: Path, data: bytes = b"half a PNG", age: float = 3600.0) -> Path:
    """A file at ``path`` last modified ``age`` seconds ago, as a killed run leaves it."""
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def held_elsewhere(fd: int) -> bool:
    """Whether another open file (another writer) holds the lock of the file open as ``fd``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


@needs_flock
def test_a_stale_temporary_file_is_swept_and_nothing_else(tmp_path: Path) -> None:
    left = stale(tmp_path / ".x.png.0123456789ab.pocketsr-tmp")
    others = [
        stale(tmp_path / ".x.png.pocketsr-tmp"),  # not a name temp_path_for makes
        stale(tmp_path / ".x.png.0123456789AB.pocketsr-tmp"),
        stale(tmp_path / "x.png.0123456789ab.pocketsr-tmp"),  # not hidden
        stale(tmp_path / "x.png"),
        stale(tmp_path / ".x.png.pocketsr-claim"),
    ]
    (tmp_path / "sub").mkdir()
    below = stale(tmp_path / "sub" / ".y.png.0123456789ab.pocketsr-tmp")  # another folder
    assert sweep_stale_temps(tmp_path) == 1
    assert not left.exists() and all(p.exists() for p in [*others, below])
    assert sweep_stale_temps(tmp_path / "missing") == 0  # never raises


@needs_flock
def test_a_temporary_file_another_process_holds_is_kept_until_it_lets_go(
    tmp_path: Path,
) -> None:
    temp = stale(tmp_path / ".x.png.0123456789ab.pocketsr-tmp")
    hold = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(temp)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        assert sweep_stale_temps(tmp_path, stale_after=0) == 0
        assert temp.read_bytes() == b"half a PNG"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    assert sweep_stale_temps(tmp_path) == 1 and not temp.exists()  # its writer is gone


@needs_flock
def test_every_temporary_file_is_held_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli.imageio import atomic, sidecar_written, write_atomic

    def check_held() -> None:
        (temp,) = leftovers(tmp_path)
        fd = os.open(tmp_path / temp, os.O_RDONLY)
        try:
            assert held_elsewhere(fd)
        finally:
            os.close(fd)
        assert sweep_stale_temps(tmp_path, stale_after=0) == 0  # even this very process's
        assert leftovers(tmp_path) == [temp]

    with replacing(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"data")
        check_held()
    monkeypatch.setattr(atomic, "_pause_for_tests", check_held)
    write_atomic(tmp_path / "b.png", b"image")
    monkeypatch.undo()
    with sidecar_written(tmp_path / "c.bmp", '{"pocketsr": 1}') as place:
        check_held()  # the staged record
        place()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.bin",
        "b.png",
        "c.bmp.pocketsr.json",
    ]


@needs_flock
def test_links_folders_and_fifos_named_as_temporary_files_are_left_alone(
    tmp_path: Path,
) -> None:
    target = stale(tmp_path / "precious.png")
    link = tmp_path / ".a.png.0123456789ab.pocketsr-tmp"
    link.symlink_to(target)
    os.utime(link, (0, 0), follow_symlinks=False)
    folder = tmp_path / ".b.png.0123456789ab.pocketsr-tmp"  # report's picture folders
    folder.mkdir()
    os.utime(folder, (0, 0))
    fifo = tmp_path / ".c.png.0123456789ab.pocketsr-tmp"
    os.mkfifo(fifo)
    os.utime(fifo, (0, 0))
    assert sweep_stale_temps(tmp_path, stale_after=0) == 0
    assert link.is_symlink() and folder.is_dir() and fifo.exists()
    assert target.read_bytes() == b"half a PNG"


@needs_flock
def test_a_recent_unlocked_temporary_file_may_be_an_older_versions_and_is_kept(
    tmp_path: Path,
) -> None:
    temp = stale(tmp_path / ".x.png.0123456789ab.pocketsr-tmp", age=5.0)
    future = stale(tmp_path / ".y.png.0123456789ab.pocketsr-tmp", age=-3600.0)  # clock skew
    assert sweep_stale_temps(tmp_path) == 0 and temp.exists() and future.exists()
    stale(temp, age=atomicfile.STALE_AFTER + 1)
    assert sweep_stale_temps(tmp_path) == 1 and not temp.exists() and future.exists()


@needs_flock
def test_a_run_sweeps_each_folder_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = stale(tmp_path / "a" / ".x.png.0123456789ab.pocketsr-tmp")
    sweeper = TempSweeper()
    assert sweeper.sweep(tmp_path / "a") == 1 and not first.exists()
    again = stale(tmp_path / "a" / ".y.png.0123456789ab.pocketsr-tmp")
    other = stale(tmp_path / "b" / ".y.png.0123456789ab.pocketsr-tmp")
    assert sweeper.sweep(tmp_path / "a" / ".." / "a") == 0 and again.exists()  # done already
    assert sweeper.sweep(tmp_path / "b") == 1 and not other.exists()
    assert sweeper.removed == 2


@needs_flock
def test_a_writer_whose_new_file_is_swept_before_it_locks_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep removes what it can lock: a file created but not yet locked can go."""
    lock = atomicfile.try_lock
    calls: list[str] = []

    def swept_first(fd: int) -> bool | None:
        if not calls:  # a sweep takes the file between its creation and its lock
            (name,) = leftovers(tmp_path)
            calls.append(name)
            os.unlink(tmp_path / name)
        return lock(fd)

    monkeypatch.setattr(atomicfile, "try_lock", swept_first)
    with replacing(tmp_path / "out.png") as tmp:
        assert tmp.name != calls[0] and tmp.exists()
        tmp.write_bytes(b"whole")
    assert (tmp_path / "out.png").read_bytes() == b"whole" and leftovers(tmp_path) == []


def test_without_flock_writes_work_and_nothing_is_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows, or a file system that refuses locks: temporary files are not held (nor
    kept open: Windows renames no open file), so none can be told stale."""
    monkeypatch.setattr(atomicfile, "fcntl", None)
    left = stale(tmp_path / ".x.png.0123456789ab.pocketsr-tmp")
    with replacing(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "out.png").read_bytes() == b"whole"
    assert sweep_stale_temps(tmp_path, stale_after=0) == 0 and left.exists()


def test_on_windows_a_write_refused_for_a_reason_windows_leaves_unsaid_says_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses to rename over a file another program has open (a viewer showing
    the last run's output): "Access is denied" alone does not say what to do.  And a path
    past its 260 characters fails as "No such file or directory", although the output's
    own path may fit: the temporary file beside it has a longer name."""
    from pocketsr_cli import errors
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.imageio import write_atomic

    def refused(src: object, dst: object) -> None:
        raise PermissionError(13, "Access is denied", str(src), None, str(dst))

    (tmp_path / "a.png").write_bytes(b"old")
    monkeypatch.setattr(atomicfile.os, "replace", refused)
    monkeypatch.setattr(errors.sys, "platform", "win32")
    with pytest.raises(ImageWriteError, match=r"Access is denied \(Windows replaces no file"):
        write_atomic(tmp_path / "a.png", b"new")
    with pytest.raises(ImageWriteError, match=r"Access is denied$"):  # nothing to replace
        write_atomic(tmp_path / "b.png", b"new")
    assert (tmp_path / "a.png").read_bytes() == b"old" and leftovers(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(errors.sys, "platform", "win32")
    deep = tmp_path / ("d" * (errors.WINDOWS_MAX_PATH - 60 - len(str(tmp_path))))
    output = deep / ("f" * 40 + ".png")
    assert len(str(output)) < errors.WINDOWS_MAX_PATH  # it fits; its temporary file does not
    real_open = os.open

    def windows_open(path: str, *args: int) -> int:  # no long paths enabled
        if len(str(path)) >= errors.WINDOWS_MAX_PATH:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, *args)

    monkeypatch.setattr(atomicfile.os, "open", windows_open)
    with pytest.raises(ImageWriteError, match=r"longer than the 259 characters Windows allows"):
        write_atomic(output, b"new")


def test_on_windows_a_temporary_file_refused_does_not_blame_an_open_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "another program has it open" hint is for the rename over the output; a folder
    where Windows refuses the temporary file beside it (no right to write there) said so
    too, since the output existed."""
    from pocketsr_cli import errors
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.imageio import write_atomic

    def refused(path: str, *args: int) -> int:
        raise PermissionError(13, "Access is denied", str(path))

    (tmp_path / "a.png").write_bytes(b"old")
    monkeypatch.setattr(atomicfile.os, "open", refused)
    monkeypatch.setattr(errors.sys, "platform", "win32")
    with pytest.raises(ImageWriteError, match=r"Access is denied$"):
        write_atomic(tmp_path / "a.png", b"new")
    assert (tmp_path / "a.png").read_bytes() == b"old"


def test_abandoned_temps_of_a_long_name_are_not_taken_for_anothers_where_nothing_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary file's name keeps an output's first 100 characters, so outputs that share
    them share the shape of their temporary names: where nothing can be locked (Windows),
    removing what a killed writer of one left (``claims.remove_leftovers``, under that
    output's claim alone) removed the temporary file another output's live writer (holding
    its own claim; the file closed between writes there) was about to rename."""
    monkeypatch.setattr(atomicfile, "fcntl", None)
    stem = "p" * 100
    own, other = tmp_path / f"{stem}_a.png", tmp_path / f"{stem}_b.png"
    others = atomicfile.temp_path_for(other)
    others.write_bytes(b"being written")
    assert atomicfile.remove_abandoned_temps(own) == 0
    assert others.exists()
    short = tmp_path / "a.png"  # a name kept whole: its temporary files are its own
    left = atomicfile.temp_path_for(short)
    left.write_bytes(b"left")
    assert atomicfile.remove_abandoned_temps(short) == 1 and not left.exists()


def test_a_probe_folder_left_by_a_killed_check_is_removed_by_the_next_one(
    tmp_path: Path,
) -> None:
    """The check of an output folder still to be made makes a hidden folder where it would
    be made and removes it at once; a run killed outright in between (``kill -9``) left it
    for good.  The next check there removes such folders once they are a minute old and
    empty, and nothing else: not a live check's (recent), nor one with something in it,
    nor a link or a file of that name."""
    probe = ".." + "pocketsr-probe.0123456789ab" + TEMP_SUFFIX  # as temp_path_for names it

    def made(name: str, age: float = atomicfile.STALE_AFTER + 1) -> Path:
        path = tmp_path / name
        path.mkdir()
        os.utime(path, (time.time() - age,) * 2)
        return path

    left = made(probe)
    live = made(probe.replace("0123", "4567"), age=1.0)
    full = tmp_path / probe.replace("0123", "89ab")
    full.mkdir()
    (full / "keep.txt").write_text("a user's")
    os.utime(full, (0, 0))
    other = made(".x.png.0123456789ab" + TEMP_SUFFIX)  # report's picture folders
    link = tmp_path / probe.replace("0123", "cdef")
    link.symlink_to(other)
    assert atomicfile.folder_write_problem(tmp_path / "new" / "out") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, full.name, other.name, link.name]
    )
    assert not left.exists() and (full / "keep.txt").exists()


@needs_flock
def test_a_probe_file_left_by_a_killed_check_is_removed_by_the_next_one(tmp_path: Path) -> None:
    """The check of an existing folder makes a hidden file there and removes it at once; a
    check killed outright in between left it, and only a run writing outputs straight into
    that folder swept it (never in the models folder, a report's, or one whose outputs go
    to subfolders).  The next check there removes such files once they are a minute old
    and no one holds them, and nothing else: not a live check's (locked, or recent)."""
    probe = ".." + "pocketsr-probe.0123456789ab" + TEMP_SUFFIX  # as temp_path_for names it
    old = time.time() - atomicfile.STALE_AFTER - 1

    def made(name: str, mtime: float = old) -> Path:
        path = tmp_path / name
        path.write_bytes(b"")
        os.utime(path, (mtime, mtime))
        return path

    left = made(probe)
    recent = made(probe.replace("0123", "4567"), mtime=time.time())
    held = made(probe.replace("0123", "89ab"))
    other = made(".x.png.0123456789ab" + TEMP_SUFFIX)  # a run's to sweep, not the check's
    with open(held, "rb+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # a live check's
        os.utime(held, (old, old))
        assert atomicfile.folder_write_problem(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [recent.name, held.name, other.name]
    )
    assert not left.exists()


def test_a_probe_folder_left_above_a_folder_made_since_is_removed_by_its_check(
    tmp_path: Path,
) -> None:
    """A check of ``out`` before ``out`` existed probed its parent with a folder; killed
    outright, it left that folder, and once ``out`` exists its checks probe ``out`` itself:
    they also look in its parent, so the folder left there goes (nothing else of it)."""
    probe = ".." + "pocketsr-probe.0123456789ab" + TEMP_SUFFIX
    left = tmp_path / probe
    left.mkdir()
    os.utime(left, (0, 0))
    kept = tmp_path / probe.replace("0123", "4567")
    kept.mkdir()  # a live check's
    (tmp_path / "out").mkdir()
    assert atomicfile.folder_write_problem(tmp_path / "out") is None
    assert not left.exists() and kept.exists()


def test_a_folder_is_swept_of_probes_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that writes file after file (``Upscaler.upscale_file``) checks the
    folder each time: the sweep for leftover probes (a scan, milliseconds in a folder of
    thousands) is made the first time only, for the folder and its parent alike."""
    scanned: list[Path] = []
    real = atomicfile._remove_stale_probes
    monkeypatch.setattr(atomicfile, "_remove_stale_probes", lambda p: scanned.append(p) or real(p))
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(3):
        assert atomicfile.folder_write_problem(out) is None
    assert scanned == [out, tmp_path]
