"""Python warnings raised inside libraries, as one line each for the run's log.

A library's ``warnings.warn`` would otherwise reach the user as Python prints it: a file
name, a line number and the text, in the middle of the progress output.  Inside
:func:`collecting`, a warning raised *by the same thread* is turned into one line (the
library's name and the message's first line) and appended to a list instead; the pipeline
collects each image's in each stage and puts them on that image's line.  :func:`telling`
hands them to a callback after the block instead (a download's: huggingface_hub's "Not
enough free disk space", told as warning lines).  Warnings raised elsewhere, by other
threads or outside the block, go wherever they went before.

Python's own filters still apply first: a warning filtered out is never seen, and by
default a warning with the same text from the same place is shown only once per process.

How: ``warnings.showwarning`` is replaced, once (again if someone else replaced it since,
as pytest does per test), by a function that looks for the current thread's list and
otherwise calls the one it replaced.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_local = threading.local()
_lock = threading.Lock()


class _Divert:
    """The ``showwarning`` installed here: to the current thread's list, else onwards."""

    def __init__(self, previous: Callable[..., Any]) -> None:
        self.previous = previous

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        sink: list[str] | None = getattr(_local, "sink", None)
        if sink is None:
            self.previous(message, category, filename, lineno, file, line)
            return
        text = describe(message, category, filename)
        if text not in sink:
            sink.append(text)


def describe(message: Warning | str, category: type[Warning], filename: str) -> str:
    """``"PIL: Corrupt EXIF data ..."``: where a warning comes from (the top-level package
    of ``filename``, else its category) and the first line of its text."""
    lines = str(message).strip().splitlines()
    text = lines[0] if lines else category.__name__
    return f"{_origin(filename) or category.__name__}: {text}"


def _origin(filename: str) -> str | None:
    parts = Path(filename).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            if len(rest) > 1:
                return rest[0]
    return None


def _install() -> None:
    with _lock:
        if not isinstance(warnings.showwarning, _Divert):
            warnings.showwarning = _Divert(warnings.showwarning)


@contextlib.contextmanager
def collecting(into: list[str]) -> Iterator[list[str]]:
    """Append the warnings this thread raises inside the block to ``into``, one line each
    (:func:`describe`, each distinct line once), instead of printing them."""
    _install()
    outer = getattr(_local, "sink", None)
    _local.sink = into
    try:
        yield into
    finally:
        _local.sink = outer


@contextlib.contextmanager
def telling(tell: Callable[[str], None] | None) -> Iterator[None]:
    """Tell ``tell`` the warnings this thread raises inside the block, one line each
    (:func:`describe`, each distinct line once), after the block, also when it raises (a
    download that warned of too little disk space, then failed, still says so); with
    ``tell`` None they go where they went before."""
    if tell is None:
        yield
        return
    notes: list[str] = []
    try:
        with collecting(notes):
            yield
    finally:
        for note in notes:
            tell(note)
