"""Fetch one weights file from a list of mirrors: resumable, checksum-verified, atomic.

``download_file`` guarantees that ``dest`` either does not exist or holds exactly the bytes
whose SHA-256 the caller gave; it never prints, and every failure is a ModelError.  A caller
with no digest to give (``sha256=None``: a file whose publisher gives none, fetched once
under trust on first use, ``trust.py``) gets what the first mirror delivered in full and,
given a ``check``, that check passes (a transfer cut short where neither a size nor a
``Content-Length`` tells so), and hashes and pins it itself.  The check is the caller's: this
module knows files, not what is in them.

Files beside ``dest`` (see ``cache.py`` for where ``dest`` usually lives):

``<dest>.incomplete``
    The bytes received so far.  The name is stable, not random, so that the next call can
    resume it with an HTTP ``Range`` request; the lock below makes that safe.  It is kept
    when a connection drops or the user presses Ctrl-C, and deleted when the finished file
    fails verification (a wrong file must not be resumed); a resumed transfer that fails
    so is made again from the first byte, once, from the same URL.
``<dest>.lock``
    A ``filelock.FileLock`` held for the whole transfer, so that a second process fetching
    the same file waits, then finds the verified file and returns without a transfer.  It
    is left in place beside a file or a partial download: deleting a lock file another
    process may be waiting on is racy.  A call that failed and keeps nothing to resume
    removes it, while still holding it, so that a failed fetch leaves nothing behind (as
    ``models remove`` does): a waiter that opened it just before finds it unlinked once it
    has the lock, and filelock opens the name afresh (3.20.4 and later; filelock itself
    leaves the file in place on release from 3.29.5: pyproject.toml asks for that); a
    waiter whose folder the caller then removed (``cache.remove_empty_folder``) makes the
    folder again.

A file wanted once (``models import URL``) is fetched with :func:`downloaded_once`, which
reads it and removes it under the same lock; a file found in the cache that a check
rejects (one cut short, copied there by hand) is removed by :func:`discard`, also under it.

URLs: ``https://`` always; ``http://`` only for loopback hosts (tests, local mirrors),
also when reached by a redirect; ``hf://owner/repo[@revision]/path/in/repo`` through the
optional ``huggingface_hub`` package.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import email.utils
import errno
import hashlib
import http.client
import ipaddress
import math
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from filelock import FileLock, Timeout

from pocketsr_cli import __version__, libwarnings
from pocketsr_cli.errors import ModelError, disk_stop
from pocketsr_cli.manifest import SHA256_RE
from pocketsr_cli.weights.cache import is_offline, remove_empty_folder, sha256_file

FileCheck = Callable[[Path, str], str | None]
"""``check(path, name)``: why the file a mirror delivered, complete at ``path`` and to be
called ``name`` (``path`` is its temporary name), is not the one wanted (one cut short,
another kind of file), or None when it is.  It must not change or move ``path``."""

ProgressCallback = Callable[[int, int | None], None]
"""``on_progress(bytes_done, total_or_None)``; ``bytes_done`` includes a resumed offset.
A callback object with a ``waiting(message)`` method is also told when the download waits
for another process fetching the same file, or for a busy mirror's ``Retry-After``
(``cli/_ui.DownloadBar`` prints it); one with a ``warning(message)`` method is told, one
line each, once, what huggingface_hub warns of while it fetches an ``hf://`` URL (its "Not
enough free disk space to download the file"), instead of Python printing it (without
one, such a warning goes where Python warnings go: ``libwarnings``)."""

USER_AGENT = f"pocketsr/{__version__}"

_READ_SIZE = 1 << 16
_LOCK_QUIET_SECONDS = 0.5  # a wait for another process's download longer than this is said
_ATTEMPTS = 5  # tries at making the folder and taking the lock, should the folder go meanwhile
_PROGRESS_INTERVAL_S = 0.1
_NO_ROOM = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_BUSY = {429, 503}  # "too many requests", "unavailable": a Retry-After may say when to ask again
_RETRY_AFTER_MAX_S = 30  # a longer wait than this is not made: the next mirror is tried instead
_FOLLOWED = {301, 302, 303, 307, 308}  # the redirects followed (_CheckedRedirects)
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class MirrorsFailed(ModelError):
    """Every URL given was tried and failed; the message names each and why.  (Other
    ModelErrors say why none was tried, or that a local error stopped the download.)"""


class _MirrorFailed(Exception):
    """One URL could not deliver the file; the message says why and the next URL is tried."""


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: str | None,
    size: int | None = None,
    on_progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    offline: bool | None = None,
    fetch_hint: str | None = None,
    check: FileCheck | None = None,
) -> Path:
    """Make ``dest`` hold the file with this ``sha256`` (and ``size``) and return ``dest``.

    ``sha256=None`` accepts whatever a mirror delivers in full (its ``Content-Length``, or
    ``size``): for trust on first use only, where the caller pins what it got.  ``check``
    holds each delivered file (and an existing ``dest``) to more than that: a file it
    rejects is deleted, not resumed, and counts as that mirror's failure, in its words.

    An existing ``dest`` with the right hash is returned at once, without network access.
    Otherwise the ``urls`` (mirrors) are tried in order; an HTTP error, a connection error,
    a checksum mismatch or a rejection by ``check`` on one moves on to the next, resuming
    any partial download (a resumed file that fails the checksum is fetched whole from the
    same URL first).  A mirror that answers 429 or 503 with a ``Retry-After`` of at most
    30 s is asked once more after that wait (told to ``on_progress.waiting``); a longer
    wait it asks for is said in its failure.
    ``offline`` (None: the ``POCKETSR_OFFLINE`` variable) forbids the network: a missing
    file is then a ModelError naming ``fetch_hint``, the command that would fetch it.
    ``timeout`` bounds each connection attempt and each read, in seconds.

    Raises ModelError for a malformed hash, an empty URL list, an insecure or unsupported
    URL (checked before any request), an unwritable cache folder or a full disk (also
    huggingface_hub's cache's, for an ``hf://`` URL: no further mirror is tried), and its
    MirrorsFailed when every URL failed (the message names each URL and why).
    KeyboardInterrupt propagates with the partial file kept for a later resume and the
    lock released.
    """
    expected = None if sha256 is None else sha256.strip().lower()
    if expected is not None and not SHA256_RE.fullmatch(expected):
        raise ModelError(f"invalid sha256 {sha256!r} for {dest.name}: expected 64 hex digits")
    if not urls:
        raise ModelError(f"no download URL is known for {dest.name}")
    for url in urls:
        problem = url_problem(url)
        if problem is not None:
            raise ModelError(f"{problem}: {url}")

    if _is_verified(dest, expected, size, check):
        return dest
    if offline is None:
        offline = is_offline()
    if offline:
        raise ModelError(_offline_message(dest, fetch_hint))

    part = dest.with_name(dest.name + ".incomplete")
    failures: list[str] = []
    lock = _acquire(dest, on_progress)
    done = False
    try:
        # Another process may have finished this file while we waited for the lock.
        if _is_verified(dest, expected, size, check):
            done = True
            return dest
        # A damaged file must not survive a failed repair and be mistaken for the model.
        try:
            dest.unlink(missing_ok=True)
        except OSError as exc:
            raise ModelError(f"cannot replace the damaged file {dest}: {exc.strerror}") from exc
        for url in urls:
            try:
                came_from, held = None, False
                if url.startswith("hf://"):
                    _fetch_hf(url, part, expected, size, on_progress, timeout)
                else:
                    came_from, held = _fetch_http(
                        url, part, expected, size, on_progress, timeout, check, dest.name
                    )
                if not held:  # a second check of a pickle checkpoint is a second full load
                    with _failing_at(came_from):
                        _hold_to(check, part, dest.name)
                _install(part, dest)
            except _MirrorFailed as exc:
                failures.append(f"{url} ({exc})")
                continue
            except OSError as exc:
                # Network errors were already turned into _MirrorFailed: this one is local
                # (disk full, permissions), and no other mirror would fare better.
                raise ModelError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from exc
            done = True
            return dest
    finally:
        _release(lock, part, drop=not done)

    kept = part.exists()
    suffix = "; the partial download is kept, run again to resume" if kept else ""
    raise MirrorsFailed(f"could not download {dest.name}: " + "; ".join(failures) + suffix)


def discard(dest: Path, check: FileCheck) -> bool:
    """Delete ``dest`` when ``check`` rejects it, under its download lock, and with it the
    lock file (unless a partial download is kept beside it) and, left empty, its folder:
    nothing of it is left, as after a failed fetch.  Whether it was deleted.

    Nothing is deleted while another process holds the lock (its download replaces
    ``dest``), nor once ``dest`` passes ``check`` when the lock is had (another process put
    another file there meanwhile): the lock is not waited for.

    Raises:
        OSError: the lock cannot be taken, or ``dest`` cannot be deleted.
    """
    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    deleted = False
    try:
        if dest.is_file() and check(dest, dest.name) is not None:
            dest.unlink()
            deleted = True
    finally:
        _release(lock, dest.with_name(dest.name + ".incomplete"), drop=deleted)
    if deleted:
        remove_empty_folder(dest.parent)
    return deleted


@contextlib.contextmanager
def downloaded_once(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: str,
    offline: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> Iterator[Path]:
    """:func:`download_file`, then ``dest`` held under its download lock for the block (read
    it there) and removed on leaving, with its lock file and, left empty, its folder: a
    file wanted once (``models import URL``, into a folder that another import of the same
    name may be using at the same moment).

    Nothing is removed without the lock: not a transfer of another process into the same
    folder (nor the partial download it keeps to resume, beside which the lock file stays,
    as :func:`download_file` leaves it), nor the file another process is reading.  The
    lock, let go at the end of the download, is taken again and ``dest`` checked against
    ``sha256`` again under it: another process may have removed it meanwhile (its own
    import done) or put another file there; it is then fetched again, a few times at most.

    Raises:
        ModelError: as :func:`download_file` (a failure with nothing to resume leaves no
            folder), or ``dest`` was taken away after each of those downloads.
    """
    expected = sha256.strip().lower()
    part = dest.with_name(dest.name + ".incomplete")
    for _ in range(_ATTEMPTS):
        try:
            download_file(urls, dest, sha256=sha256, offline=offline, on_progress=on_progress)
        except ModelError:
            remove_empty_folder(dest.parent)  # only when nothing is kept to resume
            raise
        lock = _acquire(dest, on_progress)
        try:
            if _is_verified(dest, expected, None):
                try:
                    yield dest
                finally:
                    with contextlib.suppress(OSError):
                        dest.unlink()
                return
        finally:
            _release(lock, part, drop=True)
            remove_empty_folder(dest.parent)
    raise ModelError(
        f"{dest.name} was removed or replaced by another process after each download "
        f"into {dest.parent}; run again once that process has ended"
    )


def _release(lock: FileLock, part: Path, *, drop: bool) -> None:
    """Let go of a download lock; with ``drop``, first remove its file unless the partial
    download ``part`` is kept beside it to resume (the lock file would be all there is
    left).  Removed while held, so that no one holds it meanwhile."""
    if drop and not part.exists():
        with contextlib.suppress(OSError):
            os.unlink(lock.lock_file)
    lock.release()


def _acquire(dest: Path, on_progress: ProgressCallback | None) -> FileLock:
    """The download lock of ``dest``, held, its folder made first.  A folder removed
    between the two (by a process tidying after its failed fetch) is made again.

    Raises:
        ModelError: the folder cannot be made or the lock cannot be taken.
    """
    lock = FileLock(str(dest) + ".lock")
    attempt = 0
    while True:
        attempt += 1
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(
                f"cannot create the cache folder {dest.parent}: {exc.strerror}"
            ) from exc
        try:
            try:
                lock.acquire(timeout=_LOCK_QUIET_SECONDS)
            except Timeout:
                _say_waiting(
                    on_progress,
                    f"waiting for another pocketsr process downloading {dest.name} "
                    f"(it holds {lock.lock_file})",
                )
                lock.acquire()
        except FileNotFoundError as exc:
            if attempt < _ATTEMPTS and not dest.parent.is_dir():
                continue  # the folder went: make it again
            raise ModelError(f"cannot lock {dest} for download: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise ModelError(f"cannot lock {dest} for download: {exc.strerror or exc}") from exc
        return lock


def _offline_message(dest: Path, fetch_hint: str | None) -> str:
    state = "is damaged" if dest.exists() else "is not downloaded"
    action = f"run `{fetch_hint}` while online" if fetch_hint else "run again while online"
    return f"{dest.name} {state} ({dest.parent}) and offline mode is on; {action}"


def _is_verified(
    path: Path, expected: str | None, size: int | None, check: FileCheck | None = None
) -> bool:
    try:
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return False
        # Without a digest, a complete file is what an earlier (locked) transfer delivered.
        if expected is not None and sha256_file(path) != expected:
            return False
    except OSError:
        return False
    return check is None or check(path, path.name) is None


def _hold_to(check: FileCheck | None, part: Path, name: str) -> None:
    """Delete the delivered file ``part`` (to be called ``name``) and fail its mirror when
    ``check`` rejects it: it is complete as far as its server told, so resuming it could
    only add to wrong bytes."""
    problem = None if check is None else check(part, name)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise _MirrorFailed(problem)


def _install(part: Path, dest: Path) -> None:
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise ModelError(f"cannot move the download into place at {dest}: {exc}") from exc


# --- URL rules ---------------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Return why ``url`` must not be fetched, or None when it may be."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return None if parts.hostname else "malformed URL"
    if scheme == "http":
        if _is_loopback(parts.hostname):
            return None
        return "refusing insecure URL (plain http is allowed only for loopback hosts; use https)"
    if scheme == "hf":
        if _parse_hf(url) is not None:
            return None
        return "malformed hf:// URL (its form: hf://OWNER/REPO[@REVISION]/PATH/IN/REPO)"
    # A scheme mistyped (htps, hff) is said so, not left to be spotted in the list.
    meant = difflib.get_close_matches(scheme, ("https", "hf"), n=1, cutoff=0.6)
    typo = f": did you mean {meant[0]}://?" if meant else ""
    return (
        f"unsupported URL scheme {scheme!r}{typo} (pocketsr fetches https://, hf://, or "
        "http:// to this machine)"
    )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_hf(url: str) -> tuple[str, str | None, str] | None:
    """Split ``hf://owner/repo[@revision]/path/in/repo`` into (repo_id, revision, filename)."""
    if not url.startswith("hf://"):
        return None
    owner, _, rest = url[len("hf://") :].partition("/")
    repo, _, filename = rest.partition("/")
    repo, _, revision = repo.partition("@")
    pieces = filename.split("/")
    if not owner or not repo or not filename or any(p in ("", ".", "..") for p in pieces):
        return None
    return f"{owner}/{repo}", revision or None, filename


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Applies the URL rules to redirect targets, so https can never be downgraded to http,
    and keeps the last target followed (``target``, None before any): a failure past a
    redirect happened there, not at the URL asked for.  Follows 308 (a permanent 307) on
    every Python pocketsr supports: urllib does only from 3.11."""

    http_error_308 = urllib.request.HTTPRedirectHandler.http_error_302

    def __init__(self) -> None:
        super().__init__()
        self.target: str | None = None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        problem = url_problem(newurl) if scheme in ("http", "https") else "not an http(s) URL"
        if problem is not None:
            fp.close()
            raise _MirrorFailed(f"redirected to {newurl}: {problem}")
        # Python 3.10 refuses a code it does not know; a GET is redirected as by a 307.
        follow = super().redirect_request(
            req, fp, 307 if code == 308 else code, msg, headers, newurl
        )
        if follow is not None:
            self.target = follow.full_url
        return follow


def _opener(url: str, redirects: _CheckedRedirects) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [redirects]
    if _is_loopback(urllib.parse.urlsplit(url).hostname):
        # A proxy from the environment cannot reach this machine's loopback interface.
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


# --- HTTP(S) ------------------------------------------------------------------------------


def _fetch_http(
    url: str,
    part: Path,
    expected: str | None,
    size: int | None,
    on_progress: ProgressCallback | None,
    timeout: float,
    check: FileCheck | None = None,
    name: str = "",
) -> tuple[str | None, bool]:
    """Complete ``part`` from ``url`` and verify it; on return it holds the expected file.
    Returns the URL it came from when a redirect led elsewhere (None otherwise, or when no
    byte was asked for), so that a later rejection of it names that URL (a failure here
    already does), and whether ``check`` has passed it already, so that the caller does
    not check it again.  ``check`` and ``name``: the caller's (see
    :func:`download_file`), by which a partial download with no digest to hold it to may
    be judged whole."""
    offset = _partial_size(part)
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if offset and offset == size:
        # An earlier run received every byte but stopped before verifying.
        if expected is None or sha256_file(part) == expected:
            _report(on_progress, offset, size)
            return None, False
        part.unlink()
        offset = 0

    opened = _request(url, offset, timeout, on_progress)
    if opened is None:  # 416: this server has nothing past the partial file's end
        # Every byte may be here already (no size was given to tell so before asking): a
        # partial with the digest is the file, and with no digest, one the caller's check
        # takes (and then not held to it again).  Else it does not fit what this server
        # has.
        if expected is not None and sha256_file(part) == expected:
            _report(on_progress, offset, offset)
            return None, False
        if expected is None and size is None and check is not None and check(part, name) is None:
            _report(on_progress, offset, offset)
            return None, True
        part.unlink(missing_ok=True)
        offset = 0
        opened = _request(url, 0, timeout, on_progress)
        assert opened is not None  # no Range sent, so no 416 to report
    response, target = opened
    with _failing_at(target):
        with response:
            start, total = _response_span(response, offset)
            page = _web_page_note(response)
            if size is not None and total is not None and total != size:
                raise _MirrorFailed(f"server offers {total} bytes, expected {size}{page}")
            # start is 0 when the server ignored the Range request: begin again.
            expected_total = total if total is not None else size
            digest = _stream(response, part, start, expected_total, on_progress)

        done = part.stat().st_size
        if expected_total is not None and done < expected_total:
            raise _MirrorFailed(f"connection closed after {done} of {expected_total} bytes")
        try:
            _check_digest(part, digest, expected, size)
            return target, False
        except _MirrorFailed as exc:
            if not start:
                raise _MirrorFailed(f"{exc}{page}") from exc
    # The bytes kept from an earlier transfer were not this file's (another mirror's wrong
    # file, an older version of it): they are gone now, and the whole file is asked for
    # once more, rather than failing on bytes this mirror never sent.
    return _fetch_http(url, part, expected, size, on_progress, timeout, check, name)


def _request(
    url: str, offset: int, timeout: float, on_progress: ProgressCallback | None
) -> tuple[http.client.HTTPResponse, str | None] | None:
    """Open ``url`` from byte ``offset``: the response and the URL a redirect led to (None
    without one); None when the server rejects that range (416).  A failure after a
    redirect names where it was redirected to.  A busy server (429, 503) whose
    ``Retry-After`` asks for a short wait is asked once more after it; a longer wait it
    asks for is said in the failure, so that the user knows when to run again."""
    waited: float | None = None
    while True:
        try:
            return _open(url, offset, timeout)
        except _Busy as busy:
            long_wait = ""
            if busy.wait is not None and busy.wait > _RETRY_AFTER_MAX_S:
                long_wait = f"; the server asks to retry after {_duration(busy.wait)}"
            if waited is not None:
                raise _MirrorFailed(
                    f"{busy}, again after the {waited:.0f} s wait it asked for{long_wait}"
                ) from busy
            if busy.wait is None or long_wait:
                raise _MirrorFailed(f"{busy}{long_wait}") from busy
            _say_waiting(
                on_progress, f"{url}: {busy}; trying it again in {busy.wait:.0f} s, as it asks"
            )
            time.sleep(busy.wait)
            waited = busy.wait


class _Busy(_MirrorFailed):
    """The server answered 429 or 503; ``wait``: the seconds its ``Retry-After`` asks for,
    however long (None: no header or a malformed one)."""

    def __init__(self, why: str, wait: float | None) -> None:
        super().__init__(why)
        self.wait = wait


def _duration(seconds: float) -> str:
    """A wait for people, rounded up: ``45.2`` -> ``"46 s"``, ``120`` -> ``"2 min"``,
    ``90000`` -> ``"25 h"``, ``2 * 86400`` -> ``"2 days"``."""
    for unit, length, up_to in (("s", 1, 120), ("min", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{math.ceil(seconds / length)} {unit}"
    return f"{math.ceil(seconds / 86400)} days"


def _open(
    url: str, offset: int, timeout: float
) -> tuple[http.client.HTTPResponse, str | None] | None:
    """One request of :func:`_request`; raises _Busy for a 429 or 503 answer."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    redirects = _CheckedRedirects()
    try:
        response: http.client.HTTPResponse = _opener(url, redirects).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return None
        why = _redirected(redirects.target, _http_failure(exc))
        if exc.code in _BUSY:
            raise _Busy(why, _retry_after(exc.headers.get("Retry-After"))) from exc
        raise _MirrorFailed(why) from exc
    except urllib.error.URLError as exc:
        raise _MirrorFailed(_redirected(redirects.target, f"cannot connect: {exc.reason}")) from exc
    except (OSError, http.client.HTTPException) as exc:
        why = f"connection failed: {exc or type(exc).__name__}"
        raise _MirrorFailed(_redirected(redirects.target, why)) from exc
    return response, redirects.target


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """The wait in seconds a ``Retry-After`` header ``value`` asks for (a number of seconds,
    or an HTTP date, compared with ``now``, a ``time.time()``, by default the current time);
    a date past is no wait.  None for no value or a malformed one."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        wait = float(int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, as an HTTP date always is
            when = when.replace(tzinfo=datetime.timezone.utc)
        wait = max(0.0, when.timestamp() - (time.time() if now is None else now))
    return wait


def _say_waiting(on_progress: ProgressCallback | None, message: str) -> None:
    """Tell ``on_progress.waiting``, where the callback has one, why the download waits."""
    waiting = getattr(on_progress, "waiting", None)
    if callable(waiting):
        waiting(message)


def _redirected(target: str | None, why: str) -> str:
    """``why`` a request failed, said of the redirect ``target`` it failed at, if any."""
    if target is None or why.startswith("redirect loop:"):
        return why  # a loop's message names its last URL itself
    return f"redirected to {target}: {why}"


@contextlib.contextmanager
def _failing_at(target: str | None) -> Iterator[None]:
    """A mirror's failure in the block (a transfer cut short, the wrong file, a web page)
    said of the redirect ``target`` it happened at, as a failure to connect there is:
    the URL asked for may be sound and the one it points to stale."""
    try:
        yield
    except _MirrorFailed as exc:
        raise _MirrorFailed(_redirected(target, str(exc))) from exc


def _web_page_note(response: http.client.HTTPResponse) -> str:
    """What a failure of this response adds when it is a web page (an error or sign-in
    page sent with status 200, a download page rather than the file): nothing otherwise.
    Only a failed transfer says it: a server may label a good file so by mistake."""
    if response.headers.get_content_type() != "text/html":
        return ""
    return "; the server sent a web page (text/html), not the file: is the URL the file's own?"


def _http_failure(exc: urllib.error.HTTPError) -> str:
    """One line for an HTTP error answer.  urllib reports a redirect loop (a URL visited a
    fifth time, or an eleventh redirect) as an error of the last redirect's status whose
    reason spans three lines; that is said as the loop it is."""
    reason = str(exc.reason)
    if reason.startswith(urllib.request.HTTPRedirectHandler.inf_msg):
        return f"redirect loop: too many redirects, the last from {exc.url}"
    status = f"HTTP {exc.code} {(reason.strip().splitlines() or [''])[0]}".rstrip()
    if exc.code in _FOLLOWED and not {"location", "uri"} & {k.lower() for k in exc.headers}:
        # urllib follows these codes wherever a Location points; without one it gives up.
        return f"{status}: a redirect without a Location"
    return status


def _response_span(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Return (first byte offset, total file size or None) of what the response carries."""
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    if response.status != 206:
        return 0, length
    match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        raise _MirrorFailed("malformed Content-Range in a partial response")
    start = int(match.group(1))
    if start != offset:
        raise _MirrorFailed(f"server sent bytes from {start}, asked from {offset}")
    if match.group(3) != "*":
        return start, int(match.group(3))
    return start, start + length if length is not None else None


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    start: int,
    total: int | None,
    on_progress: ProgressCallback | None,
) -> str:
    """Write the response body to ``part`` from byte ``start``; return the whole file's hash.

    Bytes already written stay in ``part`` whatever happens (resumable); a network error
    becomes _MirrorFailed.
    """
    digest = hashlib.sha256()
    done = start
    overflow = False
    try:
        if start:
            with open(part, "rb") as existing:
                while block := existing.read(1 << 20):
                    digest.update(block)
        with open(part, "ab" if start else "wb") as out:
            _report(on_progress, done, total)
            last_report = time.monotonic()
            while True:
                try:
                    # read1: whatever has arrived, so progress moves on slow links.
                    chunk = response.read1(_READ_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    raise _MirrorFailed(
                        f"connection lost after {done} bytes: {exc or type(exc).__name__}"
                    ) from exc
                if not chunk:
                    break
                if total is not None and done + len(chunk) > total:
                    overflow = True
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                now = time.monotonic()
                # A chunk shorter than asked for is all that had arrived: the next read may
                # wait on the network (a stall lasts up to ``timeout``), so what came is
                # told first.  While data keeps coming, it is told every interval.
                if len(chunk) < _READ_SIZE or now - last_report >= _PROGRESS_INTERVAL_S:
                    _report(on_progress, done, total)
                    last_report = now
            out.flush()
            # Durable before the rename, so a power cut cannot leave a verified-looking stub.
            os.fsync(out.fileno())
    except OSError as exc:
        raise ModelError(_write_failure(part, exc)) from exc
    if overflow:
        part.unlink(missing_ok=True)
        raise _MirrorFailed(f"server sent more than {total} bytes")
    _report(on_progress, done, total)
    return digest.hexdigest()


def _write_failure(part: Path, exc: OSError) -> str:
    """Why the download could not go on into ``part``.  A disk that is full or over its
    quota says that the bytes written so far stay and a run once there is room resumes
    them: nothing else would tell the user that freeing space costs no second transfer."""
    reason = disk_stop(exc, part) or exc.strerror or str(exc)
    message = f"cannot write the download to {part}: {reason}"
    if exc.errno not in _NO_ROOM:
        return message
    kept = _partial_size(part)
    if not kept:
        return f"{message}; free some space and run again"
    return (
        f"{message}; the {kept} bytes received so far are kept: free some space and run "
        "again to resume"
    )


def _check_digest(part: Path, digest: str, expected: str | None, size: int | None) -> None:
    actual_size = part.stat().st_size
    if expected is not None and (digest != expected or (size is not None and actual_size != size)):
        part.unlink(missing_ok=True)
        raise _MirrorFailed(
            f"checksum mismatch: got sha256 {digest[:12]}…, expected {expected[:12]}…"
        )
    if size is not None and actual_size != size:
        part.unlink(missing_ok=True)
        raise _MirrorFailed(f"got {actual_size} bytes, expected {size}")


def _partial_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _report(on_progress: ProgressCallback | None, done: int, total: int | None) -> None:
    if on_progress is not None:
        on_progress(done, total)


# --- hf:// --------------------------------------------------------------------------------


def _fetch_hf(
    url: str,
    part: Path,
    expected: str | None,
    size: int | None,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> None:
    """Fetch through huggingface_hub's own cache, then place a verified copy at ``part``."""
    parsed = _parse_hf(url)
    assert parsed is not None  # checked by url_problem before any transfer
    repo_id, revision, filename = parsed
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise _MirrorFailed(
            "hf:// URLs need the optional huggingface_hub package: pip install huggingface_hub"
        ) from exc

    if getattr(hf_hub_download, "__module__", "").startswith("huggingface_hub"):
        _hf_reachable()  # the real library (tests stand in for it without a network)
    _report(on_progress, 0, size)
    try:
        with _hf_progress_bars_off(), _warnings_told(on_progress):
            local = hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=revision,
                etag_timeout=timeout,
                library_name="pocketsr",
                library_version=__version__,
            )
    except Exception as exc:
        full = _hf_disk_full(url, exc)
        if full is not None:  # no other mirror would fare better: the disks are the user's
            raise ModelError(full) from exc
        # huggingface_hub raises many types (HTTP, repository/entry not found, OSError);
        # each only means that this mirror failed.  Its messages span lines: keep the first.
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _MirrorFailed(first_line) from exc

    source = Path(local).resolve()
    part.unlink(missing_ok=True)
    try:
        # A hard link shares huggingface_hub's blob instead of doubling a multi-GB file.
        os.link(source, part)
    except OSError:
        try:
            shutil.copyfile(source, part)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise ModelError(_copy_failure(source, part, exc)) from exc
    _check_digest(part, sha256_file(part), expected, size)
    done = part.stat().st_size
    _report(on_progress, done, done)


def _hf_disk_full(url: str, exc: BaseException) -> str | None:
    """Why huggingface_hub could not download ``url``, when ``exc`` (or an error it was
    raised ``from``) says that the disk of its own cache is full or over quota; else None
    (the mirror's failure).  Said as :func:`_write_failure` says it for the cache, naming
    huggingface_hub's cache (``HF_HUB_CACHE``, not pocketsr's): a download
    stops there, as one into pocketsr's cache does, rather than try the next mirror.
    huggingface_hub keeps nothing of a download cut short, so a rerun starts it again."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    if cause is None or cause.errno not in _NO_ROOM:
        return None
    if cause.filename:  # the file it was writing
        where = Path(os.fsdecode(cause.filename))
    else:
        where = (_hf_cache_folder() or Path("it")) / "blob"
    reason = disk_stop(cause, where)
    return (
        f"cannot download {url} into huggingface_hub's cache: {reason}; free some space "
        "and run again"
    )


def _hf_cache_folder() -> Path | None:
    """huggingface_hub's cache folder (``HF_HUB_CACHE``), or None where it cannot say."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    folder = getattr(constants, "HF_HUB_CACHE", None)
    return None if not folder else Path(folder)


def _copy_failure(source: Path, part: Path, exc: OSError) -> str:
    """Why huggingface_hub's file ``source`` could not be copied to ``part``.  A full disk
    is said as :func:`_write_failure` says it, with what to do; the copy is not kept (it
    costs no transfer: huggingface_hub keeps its file), so a rerun starts it again."""
    reason = disk_stop(exc, part) or exc.strerror or str(exc)
    message = f"cannot copy {source} into the cache: {reason}"
    if exc.errno not in _NO_ROOM:
        return message
    return (
        f"{message}; free some space and run again (huggingface_hub keeps its copy: it is "
        "not downloaded again)"
    )


@contextlib.contextmanager
def _warnings_told(on_progress: ProgressCallback | None) -> Iterator[None]:
    """Tell ``on_progress.warning``, where the callback has one, the Python warnings this
    thread raises in the block (a library's), one line each (``libwarnings.describe``:
    ``huggingface_hub: Not enough free disk space ...``), each distinct line once, after
    the block, also when it raises; without one they go where they went before."""
    tell = getattr(on_progress, "warning", None)
    with libwarnings.telling(tell if callable(tell) else None):
        yield


@contextlib.contextmanager
def _hf_progress_bars_off() -> Iterator[None]:
    """Silence huggingface_hub's own tqdm bars and its log (a line per retry of a failed
    request): the core never prints; callers show progress, and the failure is the
    mirror's one line."""
    import logging

    try:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )
    except ImportError:
        yield
        return
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
        if not was_disabled:
            enable_progress_bars()


def _hf_reachable() -> None:
    """Fail at once when the Hub's host name does not resolve (no network), rather than
    after huggingface_hub's five retries (about 24 s)."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    host = urlsplit(constants.ENDPOINT).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise _MirrorFailed(f"cannot connect: {exc}") from exc
