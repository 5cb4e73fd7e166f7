"""A loopback HTTP server for download tests, shared by several test modules.

It runs in a thread on 127.0.0.1, serves in-memory files with Range support of its own,
logs every request, and can misbehave per path (404, 503 with a Retry-After, cut the
connection, ignore Range, wrong content, slow answers, redirects).  Nothing leaves the machine.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Behaviour:
    """How the server answers one path."""

    status: int = 200
    status_requests: int | None = None  # answer ``status`` to this many first requests only
    headers: dict[str, str] = field(default_factory=dict)  # sent with a ``status`` answer
    body: bytes | None = None  # served instead of the real file (wrong content)
    cut_after: int | None = None  # close the connection after this many body bytes ...
    cut_requests: int = 1  # ... on this many first requests
    ignore_range: bool = False
    header_delay: float = 0.0  # silence before the status line (client timeouts)
    chunk_delay: float = 0.0  # pause between 1 KiB body chunks (slow transfers)
    redirect: str | None = None
    redirect_status: int = 302  # the status a ``redirect`` is answered with
    gate: threading.Event | None = None  # after the first chunk, hold the rest until set
    content_type: str | None = None  # a Content-Type header for a 200 or 206 answer
    length: bool = True  # False: no Content-Length, the body ends when the connection does


@dataclass
class Hit:
    path: str
    range: str | None
    user_agent: str | None
    status: int = 0
    bytes_sent: int = 0
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Loopback:
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def bytes_served(self) -> int:
        return sum(h.bytes_sent for h in self.hits)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        state = self.server.state
        hit = Hit(self.path, self.headers.get("Range"), self.headers.get("User-Agent"))
        hit.started = time.monotonic()
        with state.lock:
            index = sum(1 for h in state.hits if h.path == self.path)
            state.hits.append(hit)
        behaviour = state.behaviours.get(self.path, Behaviour())
        time.sleep(behaviour.header_delay)
        data = behaviour.body if behaviour.body is not None else state.files.get(self.path)
        if behaviour.redirect is not None:
            hit.status = behaviour.redirect_status
            self.send_response(hit.status)
            self.send_header("Location", behaviour.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        failing = behaviour.status != 200 and (
            behaviour.status_requests is None or index < behaviour.status_requests
        )
        if data is None or failing:
            hit.status = 404 if data is None else behaviour.status
            if behaviour.headers and data is not None:
                self.send_response(hit.status)
                for name, value in behaviour.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_error(hit.status)
            return
        start, hit.status = 0, 200
        if hit.range is not None and not behaviour.ignore_range:
            start = int(hit.range.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                hit.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            hit.status = 206
        body = data[start:]
        self.send_response(hit.status)
        if behaviour.length:
            self.send_header("Content-Length", str(len(body)))
        if behaviour.content_type is not None:
            self.send_header("Content-Type", behaviour.content_type)
        if hit.status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        limit = len(body)
        if behaviour.cut_after is not None and index < behaviour.cut_requests:
            limit = behaviour.cut_after
        for offset in range(0, limit, 1024):
            chunk = body[offset : min(offset + 1024, limit)]
            self.wfile.write(chunk)
            hit.bytes_sent += len(chunk)
            if behaviour.gate is not None:
                behaviour.gate.wait(timeout=30)
            time.sleep(behaviour.chunk_delay)
        hit.finished = time.monotonic()
        self.close_connection = True  # a cut transfer ends here: the client sees EOF early


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping must not block teardown
    state: Loopback

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or give up leave broken pipes; that is expected


@contextmanager
def serve(files: dict[str, bytes] | None = None) -> Iterator[Loopback]:
    """Run a loopback server serving ``files`` (path -> bytes) for the ``with`` block."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = Loopback(port=httpd.server_address[1], files=dict(files or {}))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any TCP connection attempt fail the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected network access: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
