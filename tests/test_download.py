"""Tests for weights/cache.py and weights/download.py against a loopback HTTP server
(``tests/_http.py``: in-memory files, Range support, per-path misbehaviour)."""

from __future__ import annotations

import email.utils
import errno
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from _http import Behaviour, Loopback, refuse_network, serve
from filelock import FileLock

from pocketsr_cli import __version__
from pocketsr_cli.errors import ModelError, UsageError
from pocketsr_cli.weights import cache
from pocketsr_cli.weights.download import download_file

REPO_ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = random.Random(1234).randbytes(64 * 1024)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = bytes(reversed(PAYLOAD))


# --- loopback server (tests/_http.py) -----------------------------------------------------


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve({"/w.bin": PAYLOAD}) as state:
        yield state


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POCKETSR_OFFLINE", raising=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything opens a TCP connection."""
    refuse_network(monkeypatch)


def leftovers(folder: Path) -> set[str]:
    """Names in ``folder`` other than lock files (which stay by design)."""
    return {p.name for p in folder.iterdir() if not p.name.endswith(".lock")}


# --- cache.py -----------------------------------------------------------------------------


def test_home_variable_holds_cache_and_user_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "cache"
    assert cache.user_models_dir() == tmp_path / "models"
    assert cache.weights_path("m", "w.bin") == tmp_path / "cache" / "weights" / "m" / "w.bin"
    assert not (tmp_path / "cache").exists()  # looking a path up creates nothing


@pytest.mark.parametrize("value", [None, "", "  "])
def test_platform_folders_without_home(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("POCKETSR_HOME", raising=False)
    else:
        monkeypatch.setenv("POCKETSR_HOME", value)
    assert cache.cache_dir() == Path(platformdirs.user_cache_dir("pocketsr"))
    assert cache.user_models_dir() == Path(platformdirs.user_data_dir("pocketsr")) / "models"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_weights_path_rejects_non_plain_names(name: str) -> None:
    with pytest.raises(ModelError):
        cache.weights_path(name, "w.bin")
    with pytest.raises(ModelError):
        cache.weights_path("m", name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("1", True), ("true", True), ("TRUE", True), ("Yes", True), (" yes ", True)],
        # The words pydantic reads a bool with, as earlier versions' --offline did.
        *[("on", True), ("T", True), ("y", True)],
        *[("0", False), ("false", False), ("no", False), ("", False), ("off", False)],
        *[("n", False), ("F", False)],
        (None, False),
    ],
)
def test_is_offline(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("POCKETSR_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("POCKETSR_OFFLINE", value)
    assert cache.is_offline() is expected


def test_an_offline_value_that_says_neither_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A usage error (each command: test_models_cli.py); the downloader went online instead."""
    monkeypatch.setenv("POCKETSR_OFFLINE", "maybe")
    with pytest.raises(UsageError, match=r"POCKETSR_OFFLINE='maybe' is neither yes nor no"):
        cache.is_offline()


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert cache.sha256_file(path, chunk=1000) == PAYLOAD_SHA
    path.write_bytes(b"")
    assert cache.sha256_file(path) == hashlib.sha256(b"").hexdigest()


# --- download_file: success paths ---------------------------------------------------------


def test_good_download(server: Loopback, tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "w.bin"
    calls: list[tuple[int, int | None]] = []
    got = download_file(
        [server.url("/w.bin")],
        dest,
        sha256=PAYLOAD_SHA.upper(),
        size=len(PAYLOAD),
        on_progress=lambda done, total: calls.append((done, total)),
        timeout=5,
    )
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == {"w.bin"}
    assert [(h.range, h.user_agent) for h in server.hits] == [(None, f"pocketsr/{__version__}")]
    assert calls[0] == (0, len(PAYLOAD))
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_localhost_name_is_allowed_over_http(server: Loopback, tmp_path: Path) -> None:
    dest = tmp_path / "w.bin"
    download_file([server.url("/w.bin", host="localhost")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD


def test_existing_good_file_needs_no_request(
    server: Loopback, tmp_path: Path, no_network: None
) -> None:
    dest = tmp_path / "w.bin"
    dest.write_bytes(PAYLOAD)
    assert download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA) == dest
    assert server.hits == []


def test_existing_good_file_is_used_offline(tmp_path: Path, no_network: None) -> None:
    dest = tmp_path / "w.bin"
    dest.write_bytes(PAYLOAD)
    urls = ["https://example.com/w.bin"]
    assert download_file(urls, dest, sha256=PAYLOAD_SHA, offline=True) == dest
    dest.write_bytes(WRONG)
    with pytest.raises(ModelError, match=r"w\.bin is damaged .* offline mode is on"):
        download_file(urls, dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), offline=True)


def test_existing_damaged_file_is_replaced(server: Loopback, tmp_path: Path) -> None:
    dest = tmp_path / "w.bin"
    dest.write_bytes(WRONG)
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits) == 1


def test_second_mirror_after_404(server: Loopback, tmp_path: Path) -> None:
    dest = tmp_path / "w.bin"
    urls = [server.url("/missing.bin"), server.url("/w.bin")]
    download_file(urls, dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.path, h.status) for h in server.hits] == [("/missing.bin", 404), ("/w.bin", 200)]


def test_second_mirror_after_timeout(server: Loopback, tmp_path: Path) -> None:
    server.files["/slow.bin"] = PAYLOAD
    server.behaviours["/slow.bin"] = Behaviour(header_delay=1.0)
    dest = tmp_path / "w.bin"
    started = time.monotonic()
    download_file(
        [server.url("/slow.bin"), server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=0.2
    )
    assert time.monotonic() - started < 1.0  # gave up on the slow mirror, did not wait it out
    assert dest.read_bytes() == PAYLOAD


def test_second_mirror_after_wrong_content(server: Loopback, tmp_path: Path) -> None:
    server.files["/bad.bin"] = WRONG
    dest = tmp_path / "w.bin"
    download_file([server.url("/bad.bin"), server.url("/w.bin")], dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    # The bad mirror's bytes were discarded: the good mirror started from zero.
    assert [h.range for h in server.hits] == [None, None]


def test_a_file_the_callers_check_rejects_fails_its_mirror(
    server: Loopback, tmp_path: Path
) -> None:
    """No digest, no size, no Content-Length: a transfer cut short ends like a whole one.
    The caller's check (what the downloader knows nothing of: is it a weights file?) sees
    it, under the name it is to have; the file is that mirror's failure, deleted, not
    resumed, and the next mirror's file is the one put in place."""
    server.files["/cut.bin"] = PAYLOAD
    server.behaviours["/cut.bin"] = Behaviour(cut_after=1000, cut_requests=3, length=False)
    server.behaviours["/w.bin"] = Behaviour(length=False)
    dest = tmp_path / "w.bin"
    seen: list[tuple[int, str]] = []

    def whole(path: Path, name: str) -> str | None:
        seen.append((path.stat().st_size, name))
        return None if path.read_bytes() == PAYLOAD else "not the whole file"

    urls = [server.url("/cut.bin"), server.url("/w.bin")]
    assert download_file(urls, dest, sha256=None, check=whole) == dest
    assert dest.read_bytes() == PAYLOAD
    assert seen == [(1000, "w.bin"), (len(PAYLOAD), "w.bin")]
    assert [(h.path, h.range) for h in server.hits] == [("/cut.bin", None), ("/w.bin", None)]
    assert leftovers(tmp_path) == {"w.bin"}
    # Every mirror's file rejected: each says why, and nothing is left to resume.
    dest.unlink()
    with pytest.raises(ModelError) as caught:
        download_file([urls[0], urls[0]], dest, sha256=None, check=whole)
    assert str(caught.value) == (
        f"could not download w.bin: {urls[0]} (not the whole file); {urls[0]} (not the whole file)"
    )
    assert leftovers(tmp_path) == set()
    # A file already in place that the check rejects is fetched again, not returned.
    dest.write_bytes(PAYLOAD[:1000])
    assert download_file(urls[1:], dest, sha256=None, check=whole) == dest
    assert dest.read_bytes() == PAYLOAD


# --- download_file: failures --------------------------------------------------------------


def test_checksum_mismatch_leaves_nothing(server: Loopback, tmp_path: Path) -> None:
    server.behaviours["/w.bin"] = Behaviour(body=WRONG)
    dest = tmp_path / "w.bin"
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # its lock file included: nothing to resume


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_is_followed_on_every_supported_python(
    server: Loopback, tmp_path: Path, status: int
) -> None:
    """308 too, which Python 3.10's urllib does not follow (3.11 does): pyproject.toml's
    requires-python takes 3.10."""
    server.behaviours["/a"] = Behaviour(redirect=server.url("/w.bin"), redirect_status=status)
    dest = tmp_path / "w.bin"
    download_file([server.url("/a")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.path, h.status) for h in server.hits] == [("/a", status), ("/w.bin", 200)]


def test_a_redirect_loop_is_said_in_one_line_and_the_next_mirror_tried(
    server: Loopback, tmp_path: Path
) -> None:
    """urllib's own reason for a redirect loop spans three lines; the user gets one."""
    server.behaviours["/a"] = Behaviour(redirect=server.url("/a"))
    dest = tmp_path / "w.bin"
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert str(info.value) == (
        f"could not download w.bin: {server.url('/a')} (redirect loop: too many redirects, "
        f"the last from {server.url('/a')})"
    )
    download_file([server.url("/a"), server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_failure_past_a_redirect_names_where_it_was_redirected_to(
    server: Loopback, tmp_path: Path
) -> None:
    gone = f"http://127.0.0.1:{_closed_port()}/w.bin"
    server.behaviours["/a"] = Behaviour(redirect=gone)
    server.behaviours["/b"] = Behaviour(redirect=server.url("/missing"))
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a"), server.url("/b")], tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    message = str(info.value)
    assert f"{server.url('/a')} (redirected to {gone}: cannot connect: " in message
    assert f"{server.url('/b')} (redirected to {server.url('/missing')}: HTTP 404 " in message


def test_a_failure_after_a_redirected_transfer_began_names_where_it_was_redirected_to(
    server: Loopback, tmp_path: Path
) -> None:
    """Not only a failure to connect: the wrong file, a transfer cut short, a web page or
    a file the caller's check rejects is said of the URL that sent it."""
    page = b"<html><body>Please sign in</body></html>"
    server.files["/cut"] = PAYLOAD
    server.behaviours["/wrong"] = Behaviour(body=WRONG)
    server.behaviours["/cut"] = Behaviour(cut_after=1000)
    server.behaviours["/page"] = Behaviour(body=page, content_type="text/html")
    dest = tmp_path / "w.bin"
    for target, why, size in [
        ("/wrong", "checksum mismatch: ", None),
        ("/cut", f"connection closed after 1000 of {len(PAYLOAD)} bytes", None),
        ("/page", f"server offers {len(page)} bytes, expected {len(PAYLOAD)}; ", len(PAYLOAD)),
    ]:
        server.behaviours["/a"] = Behaviour(redirect=server.url(target))
        with pytest.raises(ModelError) as info:
            download_file([server.url("/a")], dest, sha256=PAYLOAD_SHA, size=size, timeout=5)
        assert f"{server.url('/a')} (redirected to {server.url(target)}: {why}" in str(info.value)
        (tmp_path / "w.bin.incomplete").unlink(missing_ok=True)
    server.behaviours["/a"] = Behaviour(redirect=server.url("/wrong"))
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a")], dest, sha256=None, check=lambda path, name: "not weights")
    assert str(info.value) == (
        f"could not download w.bin: {server.url('/a')} (redirected to {server.url('/wrong')}: "
        "not weights)"
    )


def test_a_redirect_without_a_location_is_said_to_be_one(server: Loopback, tmp_path: Path) -> None:
    server.files["/a"] = PAYLOAD
    server.behaviours["/a"] = Behaviour(status=302)  # sent with send_error: no Location
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a")], tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    assert str(info.value) == (
        f"could not download w.bin: {server.url('/a')} (HTTP 302 Found: a redirect without "
        "a Location)"
    )


class _Waits(list[str]):
    """An ``on_progress`` callback that keeps what ``waiting`` is told."""

    def __call__(self, done: int, total: int | None) -> None:
        pass

    def waiting(self, message: str) -> None:
        self.append(message)


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(503, lambda: "1"), (429, lambda: email.utils.formatdate(time.time() + 2, usegmt=True))],
    ids=["seconds", "http-date"],
)
def test_a_busy_mirror_is_asked_again_after_the_short_wait_it_asks_for(
    server: Loopback, tmp_path: Path, status: int, retry_after: Any
) -> None:
    server.behaviours["/w.bin"] = Behaviour(
        status=status, status_requests=1, headers={"Retry-After": retry_after()}
    )
    said = _Waits()
    started = time.monotonic()
    download_file([server.url("/w.bin")], tmp_path / "w.bin", sha256=PAYLOAD_SHA, on_progress=said)
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD
    assert [h.status for h in server.hits] == [status, 200]
    assert server.hits[1].started - server.hits[0].started >= 0.9
    assert time.monotonic() - started < 10
    assert len(said) == 1 and said[0].startswith(f"{server.url('/w.bin')}: HTTP {status} ")
    assert "trying it again in " in said[0]


def test_a_mirror_still_busy_after_its_wait_is_left_for_the_next(
    server: Loopback, tmp_path: Path
) -> None:
    server.files["/a"] = PAYLOAD
    server.behaviours["/a"] = Behaviour(status=503, headers={"Retry-After": "1"})
    download_file([server.url("/a"), server.url("/w.bin")], tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    assert [h.path for h in server.hits] == ["/a", "/a", "/w.bin"]
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a")], tmp_path / "x.bin", sha256=PAYLOAD_SHA)
    assert str(info.value) == (
        f"could not download x.bin: {server.url('/a')} (HTTP 503 Service Unavailable, again "
        "after the 1 s wait it asked for)"
    )


@pytest.mark.parametrize("retry_after", [None, "31", "soon"])
def test_a_busy_mirror_without_a_short_retry_after_is_not_waited_for(
    server: Loopback, tmp_path: Path, retry_after: str | None
) -> None:
    server.files["/a"] = PAYLOAD
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    server.behaviours["/a"] = Behaviour(status=503, headers=headers)
    said = _Waits()
    download_file(
        [server.url("/a"), server.url("/w.bin")],
        tmp_path / "w.bin",
        sha256=PAYLOAD_SHA,
        on_progress=said,
    )
    assert [h.path for h in server.hits] == ["/a", "/w.bin"]
    assert said == []


@pytest.mark.parametrize(
    ("retry_after", "said"),
    [
        (lambda: "31", "31 s"),
        (lambda: "120", "2 min"),
        (lambda: email.utils.formatdate(time.time() + 3 * 3600 - 5, usegmt=True), "3 h"),
        (lambda: "172800", "2 days"),
    ],
    ids=["31s", "2min", "http-date", "2days"],
)
def test_a_wait_too_long_to_make_is_said_in_the_failure(
    server: Loopback, tmp_path: Path, retry_after: Any, said: str
) -> None:
    """A busy mirror asking for a longer wait than pocketsr makes is not waited for, but
    the failure says when the server asks to be tried again: when to run again."""
    server.files["/a"] = PAYLOAD
    server.behaviours["/a"] = Behaviour(status=429, headers={"Retry-After": retry_after()})
    with pytest.raises(ModelError) as info:
        download_file([server.url("/a")], tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    assert str(info.value) == (
        f"could not download w.bin: {server.url('/a')} (HTTP 429 Too Many Requests; the "
        f"server asks to retry after {said})"
    )
    assert len(server.hits) == 1


def test_a_web_page_sent_with_200_is_said_to_be_one(server: Loopback, tmp_path: Path) -> None:
    """A sign-in or error page sent with status 200 fails the size or checksum check, and
    the message says what was received instead of the file; a file labelled text/html
    by mistake is still taken."""
    page = b"<html><body>Please sign in</body></html>"
    server.behaviours["/page"] = Behaviour(body=page, content_type="text/html; charset=utf-8")
    dest = tmp_path / "w.bin"
    note = "the server sent a web page (text/html), not the file: is the URL the file's own?"
    for size, check in [(len(PAYLOAD), f"server offers {len(page)} bytes"), (None, "checksum")]:
        with pytest.raises(ModelError) as info:
            download_file([server.url("/page")], dest, sha256=PAYLOAD_SHA, size=size, timeout=5)
        assert check in str(info.value) and str(info.value).endswith(f"; {note})")
    server.behaviours["/w.bin"] = Behaviour(content_type="text/html")
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), timeout=5)
    assert dest.read_bytes() == PAYLOAD


def test_a_failure_with_a_partial_download_keeps_it_and_its_lock(
    server: Loopback, tmp_path: Path
) -> None:
    server.behaviours["/w.bin"] = Behaviour(cut_after=20_000)
    dest = tmp_path / "w.bin"
    with pytest.raises(ModelError, match="run again to resume"):
        download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert {p.name for p in tmp_path.iterdir()} == {"w.bin.incomplete", "w.bin.lock"}


def test_a_full_disk_keeps_the_partial_and_says_a_rerun_resumes(
    server: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills during the transfer keeps what was written: the message says so
    and that a run once there is room resumes it, which it does."""
    from pocketsr_cli.weights import download

    room = 20_000

    class FillingFile:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> FillingFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            left = room - self.handle.tell()
            if len(data) > left:
                self.handle.write(data[: max(left, 0)])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return int(self.handle.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.handle, name)

    def filling_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(path, mode, *args, buffering=0, **kwargs)  # noqa: SIM115
        return FillingFile(handle) if "b" in mode and mode != "rb" else handle

    monkeypatch.setattr(download, "open", filling_open, raising=False)
    dest = tmp_path / "w.bin"
    part = tmp_path / "w.bin.incomplete"
    with pytest.raises(ModelError) as info:
        download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert str(info.value) == (
        f"cannot write the download to {part}: the disk that holds {tmp_path} is full "
        f"({os.strerror(errno.ENOSPC)}); the {room} bytes received so far are kept: free "
        "some space and run again to resume"
    )
    assert part.read_bytes() == PAYLOAD[:room]

    monkeypatch.undo()
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits[-1].range == f"bytes={room}-"


def test_a_wait_survives_the_folder_removed_by_a_failed_fetch(
    server: Loopback, tmp_path: Path
) -> None:
    """While this call waits on the lock, the process holding it fails, removes its lock
    file and, its folder being empty, the folder (as resolve and import do): this call
    makes the folder again and fetches the file."""
    import threading

    dest = tmp_path / "model" / "w.bin"
    dest.parent.mkdir()
    locked, waiting = threading.Event(), threading.Event()

    def failing_process() -> None:  # a thread stands for it: filelock's locks are per thread
        with FileLock(str(dest) + ".lock") as lock:
            locked.set()
            waiting.wait(10)
            time.sleep(0.2)  # the waiter polls the lock file meanwhile
            os.unlink(lock.lock_file)
        dest.parent.rmdir()

    other = threading.Thread(target=failing_process)
    other.start()
    locked.wait(10)

    class Bar:
        def __call__(self, done: int, total: int | None) -> None:
            pass

        def waiting(self, message: str) -> None:
            waiting.set()

    got = download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, on_progress=Bar())
    other.join(10)
    assert waiting.is_set() and got.read_bytes() == PAYLOAD


def test_a_waiter_that_opened_a_lock_file_removed_under_it_does_not_share_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a failed fetch relies on when it removes its lock file while holding it
    (download._release): a waiter that opened that file just before does not come to hold
    the removed file's lock while another process locks the name's new file; it opens the
    name afresh (filelock >= 3.20.4, pyproject.toml; 3.20.3 gives both the lock)."""
    import fcntl

    from filelock import Timeout

    from pocketsr_cli.weights.download import _release

    dest = tmp_path / "w.bin"
    holder = FileLock(str(dest) + ".lock")
    holder.acquire()
    real_flock = fcntl.flock
    failed: list[bool] = []

    def flock(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX and not failed:  # the waiter has the old file open
            failed.append(True)
            _release(holder, dest.with_name("w.bin.incomplete"), drop=True)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    waiter = FileLock(str(dest) + ".lock", timeout=5)
    waiter.acquire()
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert failed and not holder.is_locked
    third = FileLock(str(dest) + ".lock", timeout=0)
    with pytest.raises(Timeout):
        third.acquire()
    waiter.release()


# --- resuming -----------------------------------------------------------------------------


def test_interrupted_transfer_resumes_with_range(server: Loopback, tmp_path: Path) -> None:
    cut = 20_000
    server.behaviours["/w.bin"] = Behaviour(cut_after=cut)
    dest = tmp_path / "w.bin"
    part = tmp_path / "w.bin.incomplete"
    with pytest.raises(ModelError, match="run again to resume"):
        download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert not dest.exists()
    assert part.read_bytes() == PAYLOAD[:cut]

    calls: list[tuple[int, int | None]] = []
    download_file(
        [server.url("/w.bin")],
        dest,
        sha256=PAYLOAD_SHA,
        timeout=5,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert [(h.range, h.status) for h in server.hits] == [(None, 200), (f"bytes={cut}-", 206)]
    assert server.bytes_served() == len(PAYLOAD)  # nothing was sent twice
    assert calls[0] == (cut, len(PAYLOAD))  # the bar starts at the resumed offset


def test_resume_continues_on_the_next_mirror(server: Loopback, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    server.behaviours["/a.bin"] = Behaviour(cut_after=10_000, cut_requests=99)
    dest = tmp_path / "w.bin"
    download_file([server.url("/a.bin"), server.url("/w.bin")], dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert [h.range for h in server.hits] == [None, "bytes=10000-"]


def test_a_partial_download_that_is_not_the_file_is_fetched_again_whole(
    server: Loopback, tmp_path: Path
) -> None:
    """Bytes kept from an earlier transfer of another file (an older version, another
    mirror's wrong file) make the resumed file fail its checksum: the same mirror is then
    asked for the whole file, rather than the run failing on bytes it never sent."""
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.incomplete").write_bytes(WRONG[:20_000])
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD), timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [h.range for h in server.hits] == ["bytes=20000-", None]
    assert leftovers(tmp_path) == {"w.bin"}


def test_server_ignoring_range_restarts_from_zero(server: Loopback, tmp_path: Path) -> None:
    server.behaviours["/w.bin"] = Behaviour(ignore_range=True)
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.incomplete").write_bytes(PAYLOAD[:30_000])
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.range, h.status) for h in server.hits] == [("bytes=30000-", 200)]
    assert leftovers(tmp_path) == {"w.bin"}


def test_unsatisfiable_range_restarts_from_zero(server: Loopback, tmp_path: Path) -> None:
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.incomplete").write_bytes(WRONG)  # as long as the file, wrong bytes
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.range, h.status) for h in server.hits] == [
        (f"bytes={len(WRONG)}-", 416),
        (None, 200),
    ]


def test_a_complete_partial_answered_416_is_hashed_and_kept(
    server: Loopback, tmp_path: Path
) -> None:
    """With no size in the manifest a partial holding every byte asks for the rest; the
    server's 416 (nothing after the end) means it may be whole: it is kept when it has the
    digest, not thrown away and fetched again."""
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.incomplete").write_bytes(PAYLOAD)
    seen: list[tuple[int, int | None]] = []
    download_file(
        [server.url("/w.bin")],
        dest,
        sha256=PAYLOAD_SHA,
        timeout=5,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert dest.read_bytes() == PAYLOAD
    assert [(h.range, h.status) for h in server.hits] == [(f"bytes={len(PAYLOAD)}-", 416)]
    assert server.bytes_served() == 0
    assert seen == [(len(PAYLOAD), len(PAYLOAD))]
    assert leftovers(tmp_path) == {"w.bin"}


def test_a_complete_partial_answered_416_without_a_digest_is_kept_when_the_check_takes_it(
    server: Loopback, tmp_path: Path
) -> None:
    """With neither a digest nor a size, the server's 416 after the partial's end is judged
    by the caller's check, as the digest judges it where there is one: a partial it takes
    is the file, one it rejects is fetched again whole.  Each file is checked once (for a
    pickle checkpoint a check is a full load)."""
    dest = tmp_path / "w.bin"
    seen: list[int] = []

    def whole(path: Path, name: str) -> str | None:
        seen.append(path.stat().st_size)
        return None if path.read_bytes() == PAYLOAD else "not the whole file"

    (tmp_path / "w.bin.incomplete").write_bytes(PAYLOAD)
    download_file([server.url("/w.bin")], dest, sha256=None, check=whole, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.range, h.status) for h in server.hits] == [(f"bytes={len(PAYLOAD)}-", 416)]
    assert server.bytes_served() == 0 and leftovers(tmp_path) == {"w.bin"}
    assert seen == [len(PAYLOAD)]

    dest.unlink()
    server.hits.clear()
    seen.clear()
    (tmp_path / "w.bin.incomplete").write_bytes(WRONG)  # as long as the file, wrong bytes
    download_file([server.url("/w.bin")], dest, sha256=None, check=whole, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert [(h.range, h.status) for h in server.hits] == [
        (f"bytes={len(WRONG)}-", 416),
        (None, 200),
    ]
    assert seen == [len(WRONG), len(PAYLOAD)]  # the partial rejected, then what came


def test_complete_but_unverified_partial_needs_no_transfer(
    server: Loopback, tmp_path: Path, no_network: None
) -> None:
    dest = tmp_path / "w.bin"
    (tmp_path / "w.bin.incomplete").write_bytes(PAYLOAD)
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.hits == []


def test_ctrl_c_keeps_partial_and_releases_lock(server: Loopback, tmp_path: Path) -> None:
    server.behaviours["/w.bin"] = Behaviour(chunk_delay=0.004)  # ~0.25 s, so progress ticks
    dest = tmp_path / "w.bin"
    interrupted_at: list[int] = []

    def press_ctrl_c(done: int, total: int | None) -> None:
        if 0 < done < len(PAYLOAD):
            interrupted_at.append(done)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_file(
            [server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, on_progress=press_ctrl_c, timeout=5
        )
    done = interrupted_at[0]
    assert (tmp_path / "w.bin.incomplete").read_bytes() == PAYLOAD[:done]
    probe = FileLock(str(dest) + ".lock", timeout=0)
    probe.acquire()  # raises filelock.Timeout if the interrupted call still held the lock
    probe.release()

    server.behaviours["/w.bin"] = Behaviour()
    download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert server.hits[-1].range == f"bytes={done}-"


def test_bytes_that_came_before_a_stall_are_shown_during_it(
    server: Loopback, tmp_path: Path
) -> None:
    """Progress is told at most every 0.1 s while data keeps coming, but what came just
    before the server goes quiet is told at once: a bar showing less than arrived for the
    whole stall (up to the read timeout) would say the transfer stopped earlier."""
    gate = threading.Event()
    server.behaviours["/w.bin"] = Behaviour(gate=gate)  # 1 KiB, then silence until set
    seen: list[int] = []

    def fetch() -> None:
        download_file(
            [server.url("/w.bin")],
            tmp_path / "w.bin",
            sha256=PAYLOAD_SHA,
            timeout=10,
            on_progress=lambda done, total: seen.append(done),
        )

    fetching = threading.Thread(target=fetch)
    fetching.start()
    try:
        deadline = time.monotonic() + 5
        while 1024 not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen and max(seen) == 1024, seen
        assert server.hits[0].bytes_sent == 1024  # still stalled
    finally:
        gate.set()
        fetching.join(10)
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_a_wait_for_another_download_is_said(server: Loopback, tmp_path: Path) -> None:
    """A second process waiting on the lock says why it does nothing (it looked hung),
    then finds the file the first one fetched."""
    import threading

    dest = tmp_path / "w.bin"
    locked, finished = threading.Event(), threading.Event()

    def other_process() -> None:  # a thread stands for it: filelock's locks are per thread
        with FileLock(str(dest) + ".lock"):
            locked.set()
            finished.wait(10)
            dest.write_bytes(PAYLOAD)

    other = threading.Thread(target=other_process)
    other.start()
    locked.wait(10)
    said: list[str] = []

    class Bar:
        def __call__(self, done: int, total: int | None) -> None:
            pass

        def waiting(self, message: str) -> None:
            said.append(message)
            finished.set()

    got = download_file([server.url("/w.bin")], dest, sha256=PAYLOAD_SHA, on_progress=Bar())
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert said == [
        f"waiting for another pocketsr process downloading w.bin (it holds {dest}.lock)"
    ]
    assert server.hits == []  # the other process's file was used
    other.join(10)


# --- two processes ------------------------------------------------------------------------

_CHILD = """
import sys, time
from pathlib import Path
from pocketsr_cli.weights.download import download_file
print("started", flush=True)
download_file([sys.argv[1]], Path(sys.argv[2]), sha256=sys.argv[3], timeout=10)
"""


def test_two_processes_share_one_transfer(server: Loopback, tmp_path: Path) -> None:
    # The transfer is held after its first chunk until both children have started (they
    # print once their imports are done, however slow the machine) and had half a second
    # more to reach the lock: the second one then really waits on the lock rather than
    # arriving after the file is in place.
    gate = threading.Event()
    server.behaviours["/w.bin"] = Behaviour(gate=gate)
    dest = tmp_path / "w.bin"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-c", _CHILD, server.url("/w.bin"), str(dest), PAYLOAD_SHA]
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            child.stdout.readline()  # "started"
        time.sleep(0.5)
        assert dest.exists() is False  # nobody has finished while the transfer is held
    finally:
        gate.set()
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()
    assert dest.read_bytes() == PAYLOAD
    assert len(server.hits) == 1
    assert server.bytes_served() == len(PAYLOAD)


# --- hf:// --------------------------------------------------------------------------------


def test_hf_without_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ModelError, match="pip install huggingface_hub"):
        download_file(["hf://owner/repo/w.bin"], tmp_path / "w.bin", sha256=PAYLOAD_SHA)


def test_hf_without_network_fails_at_once_and_quietly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Not after huggingface_hub's five retries (about 24 s), each logged to stderr."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "ENDPOINT", "https://no-such-host.invalid")
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"hf://owner/repo/w\.bin \(cannot connect: "):
        download_file(["hf://owner/repo/w.bin"], tmp_path / "w.bin", sha256=PAYLOAD_SHA)
    assert time.monotonic() - start < 5
    assert capfd.readouterr().err == ""


def _fake_hub(
    monkeypatch: pytest.MonkeyPatch, blob: Path, calls: list[dict[str, Any]]
) -> types.ModuleType:
    module = types.ModuleType("huggingface_hub")

    def hf_hub_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        if not blob.exists():
            raise RuntimeError("404 Client Error.\n\nEntry Not Found for url: ...")
        return str(blob)

    module.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return module


def test_hf_url_goes_through_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blob = tmp_path / "hfcache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(PAYLOAD)
    calls: list[dict[str, Any]] = []
    _fake_hub(monkeypatch, blob, calls)
    dest = tmp_path / "cache" / "w.bin"
    download_file(["hf://owner/repo@v1/sub/w.bin"], dest, sha256=PAYLOAD_SHA, timeout=7)
    assert dest.read_bytes() == PAYLOAD
    assert blob.read_bytes() == PAYLOAD  # huggingface_hub's own copy is left alone
    assert len(calls) == 1
    assert calls[0]["repo_id"] == "owner/repo"
    assert calls[0]["filename"] == "sub/w.bin"
    assert calls[0]["revision"] == "v1"
    assert leftovers(dest.parent) == {"w.bin"}


def test_hf_warnings_are_told_to_a_callback_that_takes_them_else_left_to_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What huggingface_hub warns of while it fetches goes, one line each, once, to an
    ``on_progress`` with a ``warning`` method (the CLI's download bar), never to Python's
    printing; a callback without one (the API's) leaves it a Python warning."""
    blob = tmp_path / "hfcache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(PAYLOAD)
    module = _fake_hub(monkeypatch, blob, [])
    origin = "/venv/lib/python3.11/site-packages/huggingface_hub/file_download.py"

    def warning_download(**kwargs: Any) -> str:
        for _ in range(2):
            warnings.warn_explicit("Not enough free disk space\nmore", UserWarning, origin, 1)
        return str(blob)

    module.hf_hub_download = warning_download  # type: ignore[attr-defined]

    class Told:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def __call__(self, done: int, total: int | None) -> None:
            pass

        def warning(self, message: str) -> None:
            self.lines.append(message)

    told = Told()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        download_file(
            ["hf://owner/repo/w.bin"],
            tmp_path / "a" / "w.bin",
            sha256=PAYLOAD_SHA,
            on_progress=told,
        )
    assert told.lines == ["huggingface_hub: Not enough free disk space"]
    assert caught == []

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        download_file(
            ["hf://owner/repo/w.bin"],
            tmp_path / "b" / "w.bin",
            sha256=PAYLOAD_SHA,
            on_progress=lambda done, total: None,
        )
    assert [str(w.message) for w in caught] == ["Not enough free disk space\nmore"] * 2


def test_hf_a_full_disk_during_the_copy_says_to_free_space_and_run_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """huggingface_hub's file is copied into the cache where it cannot be linked (another
    disk): a disk that fills meanwhile is said as a full disk is on any download, with
    what to do, and leaves nothing behind; a run once there is room copies it."""
    from pocketsr_cli.weights import download

    blob = tmp_path / "hfcache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(PAYLOAD)
    _fake_hub(monkeypatch, blob, [])

    def other_disk(*args: Any) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    def filling_copy(source: Any, target: Any) -> None:
        Path(target).write_bytes(PAYLOAD[:1000])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    copyfile = shutil.copyfile
    monkeypatch.setattr(download.os, "link", other_disk)
    monkeypatch.setattr(download.shutil, "copyfile", filling_copy)
    dest = tmp_path / "cache" / "w.bin"
    with pytest.raises(ModelError) as info:
        download_file(["hf://owner/repo/w.bin"], dest, sha256=PAYLOAD_SHA)
    assert str(info.value) == (
        f"cannot copy {blob} into the cache: the disk that holds {dest.parent} is full "
        f"({os.strerror(errno.ENOSPC)}); free some space and run again (huggingface_hub "
        "keeps its copy: it is not downloaded again)"
    )
    assert leftovers(dest.parent) == set()
    monkeypatch.setattr(download.shutil, "copyfile", copyfile)
    download_file(["hf://owner/repo/w.bin"], dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("named", [False, True], ids=["folder", "file"])
def test_hf_a_full_disk_in_huggingface_hubs_cache_is_said_and_stops_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Loopback, named: bool
) -> None:
    """huggingface_hub's own download fills the disk of its cache: said as a full disk is
    on any download, naming that cache (the file it wrote, or its folder), with what to do,
    not as the hf:// mirror failing, and no further mirror is tried (they stop at a full
    disk too); nothing is left in pocketsr's cache."""
    hf_cache = tmp_path / "hfcache"
    blob = hf_cache / "blobs" / "0123abcd.1234.incomplete"
    module = _fake_hub(monkeypatch, blob, [])
    module.constants = types.SimpleNamespace(HF_HUB_CACHE=str(hf_cache))  # type: ignore[attr-defined]

    def full(**kwargs: Any) -> str:
        if named:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(blob))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    module.hf_hub_download = full  # type: ignore[attr-defined]
    dest = tmp_path / "cache" / "w.bin"
    url = "hf://owner/repo/w.bin"
    with pytest.raises(ModelError) as info:
        download_file([url, server.url("/w.bin")], dest, sha256=PAYLOAD_SHA)
    assert type(info.value) is ModelError  # not MirrorsFailed
    folder = blob.parent if named else hf_cache
    assert str(info.value) == (
        f"cannot download {url} into huggingface_hub's cache: the disk that holds {folder} "
        f"is full ({os.strerror(errno.ENOSPC)}); free some space and run again"
    )
    assert server.hits == []
    assert leftovers(dest.parent) == set()


def test_hf_wrong_content_and_errors_fall_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Loopback
) -> None:
    blob = tmp_path / "hfcache" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(WRONG)
    _fake_hub(monkeypatch, blob, [])
    dest = tmp_path / "cache" / "w.bin"
    with pytest.raises(ModelError, match=r"hf://owner/repo/w\.bin \(checksum mismatch"):
        download_file(["hf://owner/repo/w.bin"], dest, sha256=PAYLOAD_SHA)
    assert leftovers(dest.parent) == set()
    assert blob.read_bytes() == WRONG

    blob.unlink()
    with pytest.raises(ModelError, match=r"\(404 Client Error\.\)") as info:
        download_file(["hf://owner/repo/w.bin"], dest, sha256=PAYLOAD_SHA)
    assert "\n" not in str(info.value)

    # A failing hf:// mirror hands over to the next one.
    download_file(["hf://owner/repo/w.bin", server.url("/w.bin")], dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
