"""The HTML of a review page: the summary, one card per entry, and the template around
them (``template.html``: styles, the toolbar, the keyboard and slider script).

Every text that comes from a run (file names, errors, model names) goes through
:func:`_e`; the template is filled in one pass, so such text is never read as a slot.
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.pipeline import CONFLICTS
from pocketsr_cli.report.pictures import Pictures
from pocketsr_cli.report.records import Entry, Run

_SLOT = re.compile(r"@([A-Z_]+)@")


class Sink:
    """Where pictures go: ``data:`` URLs (``folder`` None) or files in ``folder``, whose
    final name the page refers to as ``url_dir``."""

    def __init__(self, folder: Path | None, url_dir: str) -> None:
        self.folder = folder
        self.url_dir = url_dir

    def add(self, name: str, data: bytes) -> str:
        mime = "image/png" if name.endswith(".png") else "image/jpeg"
        if self.folder is None:
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        try:
            (self.folder / name).write_bytes(data)
        except OSError as exc:
            raise ImageWriteError(f"cannot write {self.folder / name}: {exc.strerror}") from exc
        return f"{self.url_dir}/{name}"


def shown(value: object) -> str:
    """``value`` as text to show.  A file name that is not UTF-8 (its bytes decoded with
    surrogate escapes, as Python does) shows them as ``\\xNN``, as the log does."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _e(value: object) -> str:
    """``value`` as HTML text (see :func:`shown`)."""
    return html.escape(shown(value), quote=True)


def url(path: str) -> str:
    """A relative path as a URL: percent-encoded bytes, whatever the name's encoding."""
    return quote(os.fsencode(path))


def _size(w: int | None, h: int | None) -> str:
    return f"{w}×{h}" if w is not None and h is not None else "?"


def _factor(entry: Entry, pictures: Pictures) -> str:
    w_in = entry.width or (pictures.in_size or (None, None))[0]
    w_out = entry.out_width or (pictures.out_size or (None, None))[0]
    if not w_in or not w_out:
        return ""
    f = w_out / w_in
    return f" (×{f:.0f})" if abs(f - round(f)) < 1e-6 else f" (×{f:.3g})"


def _link(path: Path, page: Path) -> tuple[str, str]:
    """``(href, text)`` of a link from ``page`` to ``path``: the path relative to the page's
    folder, as a URL and as the text shown (the file URI and the absolute path where no
    relative path exists: another drive on Windows).  The text is the place the link
    opens, in the page's own terms, whether the log named the file by an absolute path or
    relative to the folder the run was started in: a card reads ``out/a.png`` for the
    ``out`` beside the page, true still when the page is moved with its folders, not
    ``/home/me/shoot/out/a.png`` beside an ``href`` of ``out/a.png``.

    The link follows the folders as they were named, not where symbolic links lead
    (``photos/a.jpg`` for a ``photos`` that links to another disk, not
    ``../../mnt/disk/photos/a.jpg``), so it keeps working when the page is moved with its
    folder, and names no place that only this machine has.  Where that link would not
    reach the file from the page's real folder (a ``..`` after a symbolic link, or a page
    inside a linked folder), it is made from the resolved paths, as the file system
    finds them.
    """
    folder = page.resolve().parent
    try:
        named = os.path.relpath(os.path.abspath(path), os.path.abspath(page.parent))
        if _same_file(folder / named, path):
            rel = Path(named).as_posix()
        else:
            rel = Path(os.path.relpath(path.resolve(), folder)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_uri(), str(path.resolve())
    return url(rel), rel


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def card(
    entry: Entry,
    index: int,
    total: int,
    pictures: Pictures,
    sink: Sink,
    run: Run,
    page: Path,
) -> str:
    problem = (
        entry.status == "failed"
        or entry.reason_code in CONFLICTS
        or bool(entry.warnings)
        or bool(pictures.notes)
    )
    status = entry.status if entry.status else "unknown"
    parts = [
        f'<article class="card s-{_e(status)}" id="img-{index}" data-status="{_e(status)}" '
        f'data-problem="{int(problem)}" tabindex="-1">',
        f'<header><span class="badge">{_e(status)}</span><h2>{_e(entry.name)}</h2>'
        f'<span class="index">{index} / {total}</span></header>',
        '<div class="body">',
    ]
    if pictures.crops:
        parts.append(_viewer(entry, index, pictures, sink))
    parts.append('<div class="meta">')
    if pictures.thumb is not None and pictures.out_size is not None:
        parts.append(_thumb(index, pictures, sink))
    message = entry.error or entry.reason
    if message:
        parts.append(f'<p class="message">{_e(message)}</p>')
    parts.append(_props(entry, pictures, run, page))
    notes = [*entry.warnings, *pictures.notes]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</div></div></article>")
    return "\n".join(parts)


def _viewer(entry: Entry, index: int, pictures: Pictures, sink: Sink) -> str:
    assert pictures.out_size is not None
    out_w, out_h = pictures.out_size
    frames, infos = [], []
    for k, (box, before, after) in enumerate(pictures.crops):
        hidden = " hidden" if k else ""
        after_url = sink.add(f"{index:04d}-{k}-after.png", after)
        imgs = [
            f'<img class="after" src="{_e(after_url)}" width="{box.w}" height="{box.h}" '
            f'alt="after: {_e(entry.name)}" loading="lazy" decoding="async" draggable="false">'
        ]
        if before is not None:
            before_url = sink.add(f"{index:04d}-{k}-before.png", before)
            imgs.append(
                f'<img class="before" src="{_e(before_url)}" width="{box.w}" '
                f'height="{box.h}" alt="before: {_e(entry.name)}" loading="lazy" '
                'decoding="async" draggable="false">'
            )
        frames.append(
            f'<div class="frame" data-crop="{k}" data-w="{box.w}" data-h="{box.h}" '
            f'style="width:{box.w}px;height:{box.h}px"{hidden}>'
            + "".join(imgs)
            + '<div class="divider"></div></div>'
        )
        which = "most detailed" if k == 0 else f"detail rank {k + 1}"
        infos.append(
            f'<p class="cropinfo"{hidden}>crop {box.w}×{box.h} at ({box.x}, {box.y}) of '
            f"{out_w}×{out_h}, {which}</p>"
        )
    before_label = "before (input)" if pictures.crops[0][1] else "no before"
    return (
        '<div class="viewer" data-pos="50" style="--pos:50%">'
        f'<div class="legend"><span>◀ {before_label}</span><span>after ▶</span></div>'
        '<div class="scroller">' + "".join(frames) + "</div>"
        '<input class="slider" type="range" min="0" max="100" step="any" value="50" '
        f'aria-label="divider between before and after, {_e(entry.name)}">'
        + "".join(infos)
        + "</div>"
    )


def _thumb(index: int, pictures: Pictures, sink: Sink) -> str:
    assert pictures.thumb is not None and pictures.out_size is not None
    data, tw, th = pictures.thumb
    out_w, out_h = pictures.out_size
    url = sink.add(f"{index:04d}-thumb.jpg", data)
    marks = []
    for k, (box, _, _) in enumerate(pictures.crops):
        style = (
            f"left:{100 * box.x / out_w:.3f}%;top:{100 * box.y / out_h:.3f}%;"
            f"width:{100 * box.w / out_w:.3f}%;height:{100 * box.h / out_h:.3f}%"
        )
        on = " on" if k == 0 else ""
        marks.append(
            f'<button type="button" class="mark{on}" style="{style}" '
            f'title="crop {k + 1}" aria-label="show crop {k + 1}"></button>'
        )
    return (
        f'<div class="thumb"><img src="{_e(url)}" width="{tw}" height="{th}" alt="whole output" '
        f'loading="lazy" decoding="async">{"".join(marks)}</div>'
    )


def _props(entry: Entry, pictures: Pictures, run: Run, page: Path) -> str:
    rows: list[tuple[str, str]] = []
    in_size = (entry.width, entry.height)
    if in_size == (None, None) and pictures.in_size:
        in_size = pictures.in_size
    out_size = (entry.out_width, entry.out_height)
    if out_size == (None, None) and pictures.out_size:
        out_size = pictures.out_size
    if in_size != (None, None) or out_size != (None, None):
        rows.append(
            ("size", _e(f"{_size(*in_size)} → {_size(*out_size)}{_factor(entry, pictures)}"))
        )
    if entry.model:
        rows.append(("model", _e(entry.model)))
    if entry.device:
        rows.append(("device", _e(entry.device)))
    if entry.seconds is not None:
        rows.append(("time", f"{entry.seconds:.2f} s"))
    for label, logged in (("input", entry.input), ("output", entry.output)):
        if not logged:
            continue
        found = run.resolve(logged)
        if found is None:  # no file to link to: named as the log names it
            rows.append((label, _e(logged)))
            continue
        href, text = _link(found, page)
        rows.append((label, f'<a href="{_e(href)}">{_e(text)}</a>'))
    return (
        '<dl class="props">'
        + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
        + "</dl>"
    )


def _counted(values: Iterable[str | None]) -> str:
    counts = Counter(v for v in values if v)
    if len(counts) <= 1:
        return next(iter(counts), "")
    return ", ".join(f"{name} ({n})" for name, n in counts.most_common())


def _summary(run: Run) -> tuple[str, str]:
    """The page's title and the HTML of its summary."""
    entries = run.entries
    statuses = run.statuses
    ok = [e for e in entries if e.status == "ok"]
    noun = "image" if len(entries) == 1 else "images"
    title = f"Review: {len(entries)} {noun}" + (f" — {run.source}" if run.source else "")
    model = _counted(e.model for e in entries) or run.info.model or ""
    # The devices that ran: a failed or skipped input's record names the run's device
    # in general ('cpu uint8 (16-bit: fp32)'), which beside the ones that ran
    # ('cpu uint8') would read as a second device.
    device = _counted(e.device for e in ok) or _counted(e.device for e in entries)
    device = device or run.info.device or ""
    facts = [f"model {model}" if model else "", f"on {device}" if device else ""]
    facts.append("made " + time.strftime("%Y-%m-%d %H:%M"))
    run_seconds = run.info.seconds
    if run_seconds is None:
        run_seconds = sum(e.seconds or 0.0 for e in entries)
    per_image = sum(e.seconds or 0.0 for e in ok) / len(ok) if ok else None
    megapixels = sum((e.out_width or 0) * (e.out_height or 0) for e in ok) / 1e6
    tiles = [
        (str(len(entries)), "images", False),
        (str(statuses["ok"]), "written", False),
        (str(statuses["skipped"]), "skipped", False),
        (str(statuses["failed"]), "failed", statuses["failed"] > 0),
    ]
    if statuses["planned"]:
        tiles.append((str(statuses["planned"]), "would write (dry run)", False))
    others = sum(n for s, n in statuses.items() if s not in ("ok", "skipped", "failed", "planned"))
    if others:
        tiles.append((str(others), "other status", False))
    tiles.append((f"{run_seconds:.1f} s", "total time", False))
    if per_image is not None:
        tiles.append((f"{per_image:.2f} s", "per image written", False))
    if megapixels:
        tiles.append((f"{megapixels:.1f}", "output megapixels", False))
    parts = [
        f"<h1>{_e(title)}</h1>",
        '<p class="facts">' + _e(" · ".join(f for f in facts if f)) + "</p>",
        '<ul class="tiles">'
        + "".join(
            f"<li{' class=bad' if bad else ''}><b>{_e(v)}</b><span>{_e(k)}</span></li>"
            for v, k, bad in tiles
        )
        + "</ul>",
    ]
    notices = []
    if run.info.error:
        notices.append(f"the run ended with an error: {run.info.error}")
    if run.info.interrupted:
        notices.append("the run was interrupted: inputs after the last card were not reached")
    if run.info.dry_run:
        notices.append("dry run: nothing was written")
    if run.info.logged_total is not None and run.info.logged_total != len(entries):
        notices.append(
            f"the run's summary counts {run.info.logged_total} inputs but the log has "
            f"{len(entries)} image lines"
        )
    parts += [f'<p class="notice">{_e(n)}</p>' for n in notices]
    failed = [(i, e) for i, e in enumerate(entries, start=1) if e.status == "failed"]
    if failed:
        parts.append(f"<p>{len(failed)} failed:</p>")
        parts.append(
            '<ul class="failures">'
            + "".join(
                f'<li><a href="#img-{i}">{_e(e.name)}</a>: {_e(e.error or "no reason logged")}</li>'
                for i, e in failed
            )
            + "</ul>"
        )
    return title, "\n".join(parts)


def page_html(run: Run, cards: list[str]) -> str:
    title, summary = _summary(run)
    values = {
        "TITLE": _e(title),
        "SUMMARY": summary,
        "COUNT_ALL": str(len(cards)),
        "COUNT_PROBLEMS": str(sum('data-problem="1"' in card for card in cards)),
        "COUNT_WRITTEN": str(run.count("ok")),
        "CARDS": "\n".join(cards),
    }
    template = resources.files("pocketsr_cli.report").joinpath("template.html")
    # One pass over the template: text filled in (file names...) is never scanned again.
    return _SLOT.sub(lambda m: values[m.group(1)], template.read_text(encoding="utf-8"))
