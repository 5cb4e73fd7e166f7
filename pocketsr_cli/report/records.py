"""A run as the review page sees it: one :class:`Entry` per input and the run's facts.

Two sources give the same records: the pipeline's results right after a run
(:meth:`Run.from_summary`, ``upscale --report``) and a saved ``upscale --json`` log
(:func:`load_log`, ``pocketsr report``).  An entry's fields are the ``"type": "image"``
line's keys (``cli/_ui.JsonLinesReporter``); a log may hold only some of them — every field
but the input or output path is optional, and a missing ``status`` is inferred (``error``:
failed, ``reason``: skipped, else ok).  Lines of other types are ignored, so a log from a
later version still loads.  A log that is missing, unreadable, not JSON Lines or without a
single image line raises :class:`~pocketsr_cli.errors.UsageError` saying which line is
wrong.

Paths in a log are as the run was given them, often relative to the folder it ran in;
:meth:`Run.resolve` looks them up against the run's ``bases`` (the current folder, then
the log's own folder).  A log read as a stream (standard input, a pipe: :func:`is_stream`)
has no folder of its own, so its paths are looked up from the current folder only.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pocketsr_cli.errors import UsageError, home_hint

if TYPE_CHECKING:
    from pocketsr_cli.pipeline import Result, Summary

KNOWN_STATUSES = ("ok", "skipped", "failed", "planned")
"""Statuses the pipeline gives (``pipeline.Status``); a log may carry others, shown as is."""


@dataclass(frozen=True)
class Entry:
    """One input of a run: what became of it and where its files are (as logged)."""

    input: str | None
    output: str | None = None
    status: str = "ok"
    error: str | None = None
    reason: str | None = None
    reason_code: str | None = None
    width: int | None = None
    height: int | None = None
    out_width: int | None = None
    out_height: int | None = None
    seconds: float | None = None
    model: str | None = None
    device: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The input's file name (the output's when the input is unknown)."""
        return Path(self.input or self.output or "?").name

    @classmethod
    def from_result(cls, result: Result, *, model: str | None, device: str | None) -> Entry:
        """The entry of a pipeline result, with the values ``upscale --json`` would log."""
        return cls(
            input=str(result.job.input),
            output=None if result.output is None else str(result.output),
            status=result.status,
            error=result.error,
            reason=result.reason,
            reason_code=result.reason_code,
            width=result.width,
            height=result.height,
            out_width=result.out_width,
            out_height=result.out_height,
            seconds=None if result.seconds is None else round(result.seconds, 4),
            model=result.model or model,
            device=result.device or device,
            warnings=tuple(result.warnings),
        )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str) -> Entry:
        """The entry of one ``"type": "image"`` object; ``where`` names it in errors."""
        get = _Getter(obj, where)
        entry = cls(
            input=get.text("input"),
            output=get.text("output"),
            status=get.text("status") or "",
            error=get.text("error"),
            reason=get.text("reason"),
            reason_code=get.text("reason_code"),
            width=get.integer("width"),
            height=get.integer("height"),
            out_width=get.integer("out_width"),
            out_height=get.integer("out_height"),
            seconds=get.number("seconds"),
            model=get.text("model"),
            device=get.text("device"),
            warnings=get.texts("warnings"),
        )
        if entry.input is None and entry.output is None:
            raise UsageError(f"{where}: an image record needs an 'input' or 'output' path")
        if not entry.status:
            inferred = "failed" if entry.error else "skipped" if entry.reason else "ok"
            entry = replace(entry, status=inferred)
        return entry


@dataclass(frozen=True)
class RunInfo:
    """What a run says about itself (the ``"type": "summary"`` line), all optional."""

    seconds: float | None = None
    interrupted: bool = False
    dry_run: bool = False
    model: str | None = None
    device: str | None = None
    error: str | None = None
    logged_total: int | None = None


@dataclass(frozen=True)
class Run:
    """The records a review page is made of.

    Attributes:
        entries: one per input, in the run's order.
        info: the run's own facts.
        source: where the records came from, for the page (``log.jsonl``, ``upscale``).
        bases: folders that relative paths are looked up in, in order.
    """

    entries: tuple[Entry, ...]
    info: RunInfo = RunInfo()
    source: str = ""
    bases: tuple[Path, ...] = field(default_factory=lambda: (Path.cwd(),))

    @classmethod
    def from_summary(
        cls,
        summary: Summary,
        *,
        model: str | None,
        device: str | None,
        source: str = "pocketsr upscale",
    ) -> Run:
        """The records of a run that just finished (what its ``--json`` lines say); its
        summary must keep every result (``pipeline.Summary``: a run of a job list)."""
        entries = tuple(Entry.from_result(r, model=model, device=device) for r in summary.results)
        info = RunInfo(
            seconds=round(summary.seconds, 4),
            interrupted=summary.interrupted,
            dry_run=summary.dry_run,
            model=model,
            device=device,
        )
        return cls(entries, info, source)

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(e.status for e in self.entries)

    def resolve(self, logged: str | None) -> Path | None:
        """The file a logged path names, or None when it is not found in any base."""
        if not logged:
            return None
        path = Path(logged)
        candidates = [path] if path.is_absolute() else [base / path for base in self.bases]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return None

    def paths(self) -> Iterable[Path]:
        """Every input and output path the run names that exists (never to be replaced)."""
        for entry in self.entries:
            for logged in (entry.input, entry.output):
                found = self.resolve(logged)
                if found is not None:
                    yield found


STDIN_NAME = "standard input"
"""What a log read from standard input is called in messages and on the page."""


DESCRIPTOR_FOLDERS = (Path("/dev"), Path("/proc"))
"""Where a path names one of the process's descriptors (``/dev/stdin``, ``/dev/fd/N``,
``/proc/self/fd/N``) rather than a file with a folder of its own."""


def is_stream(path: Path) -> bool:
    """Whether the log at ``path`` is a stream rather than a file with a name and folder
    of its own: something that exists and is neither a regular file nor a folder (a pipe,
    a named pipe, a shell's ``<(...)``, a terminal), or a path under
    :data:`DESCRIPTOR_FOLDERS` (``/dev/stdin`` is the file ``< run.jsonl`` opened, yet
    ``/dev/stdin.html`` is no place for its page).  Nothing may be named after such a log
    or looked up beside it."""
    if any(path.absolute().is_relative_to(folder) for folder in DESCRIPTOR_FOLDERS):
        return True
    try:
        mode = path.stat().st_mode
    except OSError:  # missing or unreadable: load_log says which
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def is_terminal(path: Path) -> bool:
    """Whether ``path`` opens a terminal (``/dev/tty``, ``/dev/pts/N``, ``/dev/stdin``
    while standard input is one): reading a log from it would wait for typing.

    Only a character device is opened to ask, and without taking it as the controlling
    terminal or waiting on it; a named pipe is never opened here (that would wait for its
    writer, then leave it writing to no one).  A path that cannot be stat'ed or opened is
    no terminal: :func:`load_log` says what is wrong with it.
    """
    try:
        if not stat.S_ISCHR(path.stat().st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def load_log(source: Path | BinaryIO) -> Run:
    """The run recorded in an ``upscale --json`` log (JSON Lines): a file, or a binary
    stream already open (standard input), read to its end.

    Relative paths in it are looked up from the current folder, then from the log's folder
    (a stream, or a path that :func:`is_stream`: the current folder only).

    Raises:
        UsageError: the log is missing, unreadable, has a line that is not a JSON object,
            a field of the wrong type, or no image line at all.
    """
    if isinstance(source, Path):
        path: Path | None = source
        name = str(source)
        data = _read_log(source)
    else:
        path, name = None, STDIN_NAME
        try:
            data = source.read()
        except OSError as exc:
            raise UsageError(f"cannot read the log from {name}: {exc.strerror or exc}") from None
    try:
        text = _log_text(data)
    except UnicodeDecodeError:
        raise UsageError(f"{name} is not a text file (expected an 'upscale --json' log)") from None
    entries: list[Entry] = []
    info = RunInfo()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        obj = _json_object(line, where)
        kind = obj.get("type")
        if kind == "image" or (kind is None and ("input" in obj or "output" in obj)):
            entries.append(Entry.from_json(obj, where))
        elif kind == "summary":
            info = _run_info(obj.get("summary"), where, info)
        elif kind == "error":
            info = replace(info, error=_Getter(obj, where).text("message") or "unknown error")
    if not entries:
        failed = f" (the run failed: {info.error})" if info.error else ""
        raise UsageError(
            f"{name} has no image records{failed}; expected the output of "
            "'pocketsr upscale ... --json'"
        )
    if path is None or is_stream(path):
        return Run(tuple(entries), info, name, (Path.cwd(),))
    bases = tuple(dict.fromkeys([Path.cwd(), path.resolve().parent]))
    return Run(tuple(entries), info, path.name, bases)


def _read_log(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"log not found: {path}{home_hint(path)}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give the file 'upscale --json' wrote") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _log_text(data: bytes) -> str:
    """A log's text: UTF-8, or, after a byte order mark, UTF-8 or UTF-16 (what Windows
    PowerShell 5's ``>`` writes: ``pocketsr upscale ... --json > run.jsonl``).

    Raises:
        UnicodeDecodeError: the bytes are not such text.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def _json_object(line: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        hint = (
            "; an 'upscale --json' log has one JSON object per line (was the log on stderr "
            "written into it too?)"
        )
        raise UsageError(f"{where} is not JSON ({exc.msg}){hint}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{where} is not a JSON object")
    return obj


def _run_info(summary: object, where: str, info: RunInfo) -> RunInfo:
    if not isinstance(summary, dict):
        raise UsageError(f"{where}: 'summary' should be an object")
    get = _Getter(summary, where)
    return RunInfo(
        seconds=get.number("seconds"),
        interrupted=bool(get.flag("interrupted")),
        dry_run=bool(get.flag("dry_run")),
        model=get.text("model"),
        device=get.text("device"),
        error=info.error,
        logged_total=get.integer("total"),
    )


class _Getter:
    """Typed, optional reads of one JSON object; a wrong type is a :class:`UsageError`."""

    def __init__(self, obj: Mapping[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def _wrong(self, key: str, kind: str) -> UsageError:
        return UsageError(f"{self.where}: {key!r} should be {kind}, not {self.obj[key]!r}")

    def text(self, key: str) -> str | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong(key, "a string")

    def integer(self, key: str) -> int | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._wrong(key, "an integer")

    def number(self, key: str) -> float | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._wrong(key, "a number")

    def flag(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self._wrong(key, "true or false")

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.obj.get(key)
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise self._wrong(key, "a list of strings")
