"""errors.disk_stop: which write failures stop a whole run."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pocketsr_cli.errors import ImageWriteError, disk_stop


def raised_from(cause: BaseException) -> ImageWriteError:
    try:
        raise ImageWriteError("cannot write out/a.png") from cause
    except ImageWriteError as exc:
        return exc


@pytest.mark.parametrize(
    ("code", "state"),
    [(errno.ENOSPC, "is full"), (errno.EDQUOT, "is over its quota"), (errno.EROFS, "is read-only")],
)
def test_a_full_or_read_only_disk_stops_the_run(code: int, state: str) -> None:
    cause = OSError(code, "words of the OS")
    where = Path("out") / "a.png"
    assert disk_stop(cause, where) == f"the disk that holds out {state} (words of the OS)"
    assert disk_stop(raised_from(cause), where) == disk_stop(cause, where)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EISDIR, errno.ENAMETOOLONG, errno.EFBIG])
def test_a_failure_of_one_file_does_not(code: int) -> None:
    assert disk_stop(raised_from(OSError(code, "no")), Path("out/a.png")) is None


def test_an_error_without_an_os_cause_does_not() -> None:
    assert disk_stop(ImageWriteError("could not encode PNG"), Path("a.png")) is None


def test_windows_sigbreak_stops_a_command_as_sighup_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-Break, and closing the console window, send SIGBREAK on Windows: left to its
    default it ended the process at once, the file in hand left behind.  Emulated here
    with SIGUSR1 standing in for it."""
    import os
    import signal

    from pocketsr_cli.cli import _errors

    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    found = _errors.present_signals()
    assert signal.SIGUSR1 in found and signal.SIGINT in found
    monkeypatch.setattr(_errors, "STOP_SIGNALS", found)
    before = {number: signal.getsignal(number) for number in found}
    try:
        with pytest.raises(_errors.Interrupted), _errors.stop_signals() as stops:
            os.kill(os.getpid(), signal.SIGUSR1)
        assert stops.exit_code == 128 + signal.SIGUSR1
    finally:  # a stopped command keeps ignoring stop signals: this process goes on
        for number, handler in before.items():
            signal.signal(number, handler)


def test_windows_hint_counts_a_relative_path_from_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' 260 characters are those of the full path: ``-o out`` run from a deep
    folder fails there as "No such file or directory" although ``out\\photo.png`` is short,
    and the hint did not say why."""
    import os

    from pocketsr_cli import errors

    deep = tmp_path
    while len(str(deep)) < errors.WINDOWS_MAX_PATH - 40:
        deep = deep / ("d" * 50)
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.setattr(errors.sys, "platform", "win32")
    output = Path("out") / "photo.png"
    temp = os.path.join("out", ".photo.png.0123456789abcdef.pocketsr-tmp")
    exc = FileNotFoundError(2, "No such file or directory", temp)
    assert "longer than the 259 characters" in errors.windows_hint(exc, output)
    monkeypatch.chdir(tmp_path)
    assert errors.windows_hint(exc, output) == ""
