"""The review page: one self-contained HTML file, a card per input.

What :func:`write_report` guarantees:

* the page needs no network: styles and script are inline, and every picture is either
  embedded (``data:`` URLs, small runs) or a file in the folder ``<page stem>_files``
  beside the page (referenced relatively, so page and folder move together);
* an ``ok`` card (and a skip whose output was made with the same settings) shows a
  before/after slider on the most detailed crop of the output at 100 %, a thumbnail of
  the whole output with the crop marked, sizes, model, device and seconds; other cards
  say what happened (error, reason) with whatever the record holds;
* one bad or missing file, or one of another size than logged, becomes a note on its
  card, never a failed page;
* nothing but the page and its own folder is written: the page must end in ``.html`` or
  ``.htm`` and may not be one of the run's inputs or outputs (an earlier review page
  aside: one kept in the folder it reviews is an input of the next run), and an existing
  ``<page stem>_files`` folder is replaced only when pocketsr made it (it holds
  :data:`MARKER`);
* the page appears atomically (``imageio.write_atomic``); the picture folder is built under
  a temporary name and swapped in just before, so a page never points at a half-written
  folder, and an earlier page's folder goes only once the new page is written (until
  then, a stop leaves the earlier page with its pictures);
* a page not written (an error, Ctrl-C or another stop signal) leaves no folder made for
  it: those of its path that did not exist are removed again, when still empty.

The pictures are made in :mod:`~pocketsr_cli.report.pictures`, the HTML in
:mod:`~pocketsr_cli.report.cards`; this module decides where they go.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pocketsr_cli.atomicfile import MadeFolders, folder_write_problem
from pocketsr_cli.errors import ImageWriteError, UsageError
from pocketsr_cli.imageio import temp_path_for, write_atomic
from pocketsr_cli.report.cards import Sink, card, page_html, shown, url
from pocketsr_cli.report.pictures import Shape, make_pictures, pictured
from pocketsr_cli.report.records import Run

MARKER = ".pocketsr-report"
"""The file that marks a picture folder as pocketsr's (and so replaceable)."""

EMBED_UP_TO = 12
"""Runs with at most this many pictured cards embed their pictures (one file to share)."""

PAGE_SUFFIXES = (".html", ".htm")

GENERATOR = b'<meta name="generator" content="pocketsr report">'
"""What every page's head holds (``template.html``): a file of the run that has it is an
earlier review page, which a new one may replace (a page kept in the folder it reviews
is a skipped input of the next run)."""

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PageOptions:
    """How the page is made.

    Attributes:
        crop: side of the crop window in output pixels (smaller outputs: all of it).
        crops: how many crops per image, most detailed first, not overlapping (``c``
            switches between them on the page).
        thumb: long side of each thumbnail in pixels.
        embed: put every picture inside the page; None: only for runs of at most
            :data:`EMBED_UP_TO` pictured images.
        workers: images decoded at once.
    """

    crop: int = 320
    crops: int = 1
    thumb: int = 200
    embed: bool | None = None
    workers: int = 2

    def embeds(self, pictured: int) -> bool:
        """Whether a page of ``pictured`` pictured images embeds every picture."""
        return self.embed if self.embed is not None else pictured <= EMBED_UP_TO


@dataclass(frozen=True)
class PageResult:
    """What :func:`write_report` wrote: the page, its picture folder (None when
    embedded), how many cards, and how many of them carry a note about a file."""

    page: Path
    assets: Path | None
    cards: int
    pictured: int
    notes: int


def assets_dir(page: Path) -> Path:
    """The picture folder of ``page``: ``report.html`` -> ``report_files``."""
    return page.with_name(f"{page.stem}_files")


def check_destination(
    page: Path, protect: Iterable[Path] = (), *, files: bool = True, why: str | None = None
) -> None:
    """Refuse a page path that could replace something that is not a pocketsr page.
    ``files``: the pictures may go to the picture folder beside it (False: all embedded,
    so a folder of that name that is not pocketsr's is left alone, not in the way);
    ``why``: the reason they may, said when that folder is refused.

    Raises:
        UsageError: ``page`` does not end in .html/.htm, is a folder, cannot be made
            where it is (a file in place of its folder, a read-only one), is one of
            ``protect`` (the run's inputs and outputs), or (with ``files``) its picture
            folder exists without pocketsr's marker.
    """
    if page.is_dir():  # before the suffix: '-o out' names a folder, not a page
        raise UsageError(f"{page} is a folder; name the page file (e.g. {page / 'report.html'})")
    if page.suffix.lower() not in PAGE_SUFFIXES:
        raise UsageError(f"the review page must end in .html or .htm, not {page.name!r}")
    problem = folder_write_problem(page.parent)
    if problem is not None:
        raise UsageError(f"cannot write the review page {page}: {problem}")
    target = page.resolve()
    for path in protect:
        if path.resolve() == target and not _is_review_page(path):
            raise UsageError(f"the review page {page} would replace {path}, a file of the run")
    folder = assets_dir(page)
    if files and folder.exists() and not _is_ours(folder):
        raise UsageError(
            f"{folder} exists and was not made by pocketsr; choose another page name "
            f"({why or 'its pictures go in <name>_files beside it'})"
        )


def check_run_destination(
    page: Path,
    protect: Iterable[Path],
    to_upscale: int | None,
    options: PageOptions | None = None,
) -> None:
    """:func:`check_destination` before the run whose page it is: the run has at most
    ``to_upscale`` images to picture (its inputs to upscale; None: not known before it
    ends), so its picture folder is checked only when the page may need it; a run of at
    most :data:`EMBED_UP_TO` embeds every picture (unless ``options`` says otherwise)
    and leaves a folder of that name alone, whoever made it.

    Raises:
        UsageError: as :func:`check_destination`, the folder's refusal saying why the
            pictures may go there.
    """
    options = options or PageOptions()
    if to_upscale is None:
        files = options.embed is not True
        why = (
            f"how many images the page will show is not known before the run, and one of "
            f"more than {EMBED_UP_TO} puts its pictures in <name>_files beside it"
        )
    else:
        files = not options.embeds(to_upscale)
        why = (
            f"this run has {to_upscale} images to upscale, and a page of more than "
            f"{EMBED_UP_TO} puts its pictures in <name>_files beside it"
        )
    check_destination(page, protect, files=files, why=why if options.embed is None else None)


def _is_ours(folder: Path) -> bool:
    """Whether ``folder`` is a picture folder pocketsr made (it holds :data:`MARKER`)."""
    return (folder / MARKER).is_file()


def _is_review_page(path: Path) -> bool:
    """Whether ``path`` is a page pocketsr wrote (:data:`GENERATOR` in its first KiB)."""
    try:
        with path.open("rb") as f:
            return GENERATOR in f.read(1024)
    except OSError:
        return False


def write_report(
    run: Run,
    page: Path,
    options: PageOptions | None = None,
    *,
    on_progress: Progress | None = None,
) -> PageResult:
    """Write the review page of ``run`` to ``page`` (see the module docs).

    Raises:
        UsageError: see :func:`check_destination`.
        ImageWriteError: the page or a picture could not be written.
    """
    options = options or PageOptions()
    count = sum(pictured(e) for e in run.entries)
    embed = options.embeds(count)
    check_destination(page, run.paths(), files=not embed)
    shape = Shape(options.crop, options.crops, options.thumb, options.workers)
    folder = assets_dir(page)
    new_folders = MadeFolders()  # those the page goes in, made here: removed if it is not
    new_folders.note(page.parent)
    sink = None
    written = False
    try:
        sink = Sink(None if embed else _temp_dir(folder), url(folder.name))
        cards = []
        notes = 0
        total = len(run.entries)
        with closing(make_pictures(run, shape)) as made:  # stops the decoders on an error
            for index, (entry, pictures) in enumerate(made, start=1):
                cards.append(card(entry, index, total, pictures, sink, run, page))
                notes += bool(pictures.notes)
                if on_progress is not None:
                    on_progress(index, total, shown(entry.name))
        text = page_html(run, cards)
        if sink.folder is None:
            write_atomic(page, text.encode("utf-8"))
            _remove_ours(folder)  # an earlier page's pictures, after the page that drops them
        else:
            old = _swap_in(sink.folder, folder)
            try:
                write_atomic(page, text.encode("utf-8"))
            except BaseException:
                _swap_back(folder, old)  # the earlier page keeps its own pictures
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        written = True
    finally:
        if sink is not None and sink.folder is not None and sink.folder.exists():
            shutil.rmtree(sink.folder, ignore_errors=True)
        if not written:  # failed or stopped: no empty folder of ours is left behind
            new_folders.remove_empty()
    return PageResult(page, None if embed else folder, total, count, notes)


def _temp_dir(folder: Path) -> Path:
    temp = temp_path_for(folder)
    try:
        temp.mkdir(parents=True)
        (temp / MARKER).write_text("pictures of a pocketsr review page\n", encoding="utf-8")
    except OSError as exc:
        raise ImageWriteError(f"cannot create {temp}: {exc.strerror or exc}") from exc
    return temp


def _swap_in(new: Path, folder: Path) -> Path | None:
    """Put ``new`` in place as the picture folder; an earlier one (ours:
    :func:`check_destination` found it so) is moved aside to a temporary name, returned
    for the caller to remove once the page that uses ``new`` is written, or to put back
    with :func:`_swap_back` if it is not (None: there was none)."""
    try:
        old = None
        if folder.exists() and _is_ours(folder):
            old = temp_path_for(folder)
            folder.rename(old)
        new.rename(folder)
    except OSError as exc:
        raise ImageWriteError(f"cannot replace {folder}: {exc.strerror or exc}") from exc
    return old


def _swap_back(folder: Path, old: Path | None) -> None:
    """Undo :func:`_swap_in` when the page could not be written: the new pictures go and
    the earlier folder (``old``) comes back, so that the earlier page still finds its own.
    Best effort: this runs while an error or a stop signal is on its way out."""
    gone = temp_path_for(folder)
    try:
        folder.rename(gone)
        if old is not None:
            old.rename(folder)
    except OSError:
        pass
    shutil.rmtree(gone, ignore_errors=True)


def _remove_ours(folder: Path) -> None:
    """Remove the picture folder of an earlier page if pocketsr made it, once the page
    that no longer uses it is written (a run stopped before leaves the earlier page with
    its pictures).  Moved aside first, so that it vanishes at once, never half; one that
    cannot be is left (the page is written: its next run tries again)."""
    if not (folder.exists() and _is_ours(folder)):
        return
    old = temp_path_for(folder)
    try:
        folder.rename(old)
    except OSError:
        return
    shutil.rmtree(old, ignore_errors=True)
