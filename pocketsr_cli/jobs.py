"""Turning the command line's inputs into a list of (input, output) jobs.

Rules (SPEC, "Command-line contract"):

* an input is any mix of files and folders; folders are scanned (``recursive`` descends),
  optionally filtered by ``glob`` (matched against the path relative to the folder and
  against the bare file name, ignoring case on every platform: ``*.jpg`` takes ``IMG.JPG``);
* finding no file at all (empty folders, only sub-folders without ``recursive``, a
  ``glob`` that matches nothing) is a usage error that says why, not a run that quietly
  does nothing; a folder named on the command line that holds files *and* sub-folders
  has those sub-folders left out without ``recursive``, and that is said once, as a
  warning (``on_warning``: "FOLDER has 2 sub-folders not scanned"), counting neither
  hidden folders, nor the output folder, nor a review page's picture folder;
* with an output folder, each folder's tree is mirrored under it (paths relative to that
  folder); a file given directly lands at the top of the output folder;
* without one, each output goes next to its input as ``{stem}{suffix}{ext}``, the suffix
  defaulting to ``_{tag}``: ``_x4``, ``_x1.5``, or for a size target ``_w3840``,
  ``_h2160``, ``_l4096`` (``sizing.Target.label``);
* hidden files and folders (and our own temporary files and claims), and the sidecar files
  that hold a BMP output's record (``*.pocketsr.json``) are ignored; other non-image files become
  ``skipped`` jobs so that they are reported, never fatal;
* when scanning a folder, files that look like our own outputs are skipped, so a second
  run never upscales an earlier run's results, whatever factor or size it asked for: a
  name ending with this run's suffix, a name ending with any default tag (``_x2``,
  ``_x1.5``, ``_w3840``, ``_h2160``, ``_l4096``) *beside an image of the name without it*
  (``coffee_x4.jpg`` next to ``coffee.jpg``; a photo that merely ends in ``_w2`` is kept),
  and anything inside the output folder.  That is decided by names alone: files of a
  folder that pass are marked ``from_folder``, and the pipeline's reader skips those whose
  header carries a pocketsr record (``imageio.read_provenance_text``), which catches
  outputs renamed or made with another ``--suffix``.  A file named on the command line is
  always upscaled;
* an output path equal to an input path, or two inputs mapping to one output, is a usage
  error raised before anything is written; where the output's file system ignores case
  (macOS and Windows by default: :func:`~pocketsr_cli.fscase.case_blind`), names that
  differ only in case are one output.  The output path checked is the final one: an
  input whose output format depends on its content (transparency asked as JPEG or BMP is
  written as PNG; GIF, HEIF and AVIF become PNG) has its header read here
  (``imageio.read_header``, kept in :attr:`Job.header` for the run) so that ``photo.png``
  with alpha asked as ``--format jpg`` is known to be written to ``photo.png``.  "Equal"
  includes the same file under another name (a hard link, a symbolic link);
* ``--suffix`` is part of a file name: a path separator, ``..`` or NUL in it is a usage
  error, so every output lies in the output folder (or beside its input); on Windows so
  are the characters it forbids in names (``<>:"|?*``, control characters);
* whatever a folder holds, each entry ends as one job or none (hidden files): a file that
  cannot be read as an image although its name says it is one (a broken symbolic link, a
  FIFO, a device, a socket; never opened) is a job that fails (``Job.failure``), as is a
  folder that cannot be read (the rest of the run goes on); ``recursive`` follows
  symbolic links to folders outside the scanned folder, but one that leads back to a
  folder containing it (a loop), into the scanned folder itself, or to a folder already
  scanned is not followed and is reported as ``skipped`` (``link-loop``,
  ``link-duplicate``);
* a sub-folder holding the file :data:`REPORT_MARKER` is the picture folder of a review
  page (``pocketsr report``, ``upscale --report``): it is not scanned and is reported as
  ``skipped`` (``own-output``).  A folder named on the command line is scanned whatever
  it holds.
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import hashlib
import itertools
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pocketsr_cli import fscase, libwarnings
from pocketsr_cli.atomicfile import folder_write_problem
from pocketsr_cli.claims import CLAIM_SUFFIX
from pocketsr_cli.errors import (
    ImageReadError,
    UsageError,
    present,
    unexpanded_home,
    unreachable,
    windows_separators,
)
from pocketsr_cli.imageio import (
    READABLE,
    SIDECAR_SUFFIX,
    TEMP_SUFFIX,
    ImageHeader,
    extension_for,
    format_label,
    format_of_path,
    is_image_path,
    plan_output,
    read_header,
)
from pocketsr_cli.sizing import scale_label
from pocketsr_cli.spelling import FORMAT, GLOB, OUTPUT, RECURSIVE, SUFFIX, offers

__all__ = [
    "REPORT_MARKER",
    "Job",
    "JobStream",
    "Naming",
    "SkipCode",
    "collect_jobs",
    "iter_jobs",
    "not_a_file",
    "scale_label",
    "unscanned_note",
    "with_headers",
]

SkipCode = Literal["not-image", "own-output", "link-loop", "link-duplicate", "duplicate"]
"""Why planning skipped an input (``pipeline.ReasonCode`` lists every skip)."""

PLAN_AHEAD = 2000
"""How many jobs :func:`iter_jobs` plans before it returns: a collision among them is a
usage error before anything is written; one found later fails its input."""

REPORT_MARKER = ".pocketsr-report"
"""The file that marks a review page's picture folder (``report.page.MARKER``: the report
package is not imported here, on the upscale path)."""

# The tags default output names end with: _x4, _x1.5 (factors), _w3840, _h2160, _l4096.
_OUTPUT_TAG = re.compile(r"_(?:x\d+(?:\.\d+)?|[whl]\d+)$")


@dataclass(frozen=True)
class Naming:
    """How output paths are made.

    Attributes:
        out_dir: mirror folders under this directory; ``None`` writes beside the inputs.
        suffix: appended to the stem; ``None`` means ``_{tag}`` without ``out_dir`` and
            nothing with it.
        scale_label: the factor shown in the default suffix (``4``, ``2``, ``1.5``) when
            ``tag`` is not given.
        fmt: output format key (``png``, ``jpeg``...) or ``None`` to keep the input's.
        tag: the default suffix's text after the underscore (``sizing.Target.label``:
            ``x3``, ``w3840``, ``h2160``, ``l4096``); ``None``: ``x{scale_label}``.
    """

    out_dir: Path | None
    suffix: str | None
    scale_label: str = "4"
    fmt: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.suffix is not None:
            problem = _suffix_problem(self.suffix)
            if problem is not None:
                raise UsageError(f"{SUFFIX} {self.suffix!r} {problem}")

    @property
    def effective_suffix(self) -> str:
        if self.suffix is not None:
            return self.suffix
        if self.out_dir is not None:
            return ""
        return f"_{self.tag}" if self.tag is not None else f"_x{self.scale_label}"

    def output_for(
        self, path: Path, relative_parent: Path | None, *, has_alpha: bool = False
    ) -> Path:
        """Output for ``path``; ``relative_parent`` is its folder relative to a scanned root.

        ``has_alpha`` matters where :meth:`alpha_matters` says so: the format is then
        switched as ``imageio.plan_output`` will switch it (transparency asked as JPEG or BMP
        is written as PNG), and so is a GIF, HEIF or AVIF input's, which no writer here
        keeps.
        """
        ext = path.suffix if self.fmt is None else extension_for(self.fmt)
        final = self._final_format(path, has_alpha)
        if final is not None:
            ext = extension_for(final)
        name = f"{path.stem}{self.effective_suffix}{ext}"
        if self.out_dir is None:
            return path.with_name(name)
        return self.out_dir / (relative_parent or Path()) / name

    def alpha_matters(self, path: Path) -> bool:
        """Whether ``path``'s output format depends on whether it has transparency."""
        return self._final_format(path, True) != self._final_format(path, False)

    def _final_format(self, path: Path, has_alpha: bool) -> str | None:
        """The output format when it is not the one asked for (or the input's), else None."""
        source = format_of_path(path)
        if source is None:
            return None
        final = plan_output(source, self.fmt, has_alpha=has_alpha, bit_depth=8).format
        return final if final != (self.fmt or source) else None


def _suffix_problem(suffix: str) -> str | None:
    """What makes ``suffix`` unusable in a file name, and why, or None."""
    problem = None
    if "\0" in suffix:
        problem = "contains a NUL character"
    elif any(sep and sep in suffix for sep in ("/", "\\", os.sep, os.altsep)):
        problem = "contains a path separator"
    elif ".." in suffix:
        problem = "contains '..'"
    if problem is not None:
        return (
            f"{problem}: it is added to each file name and cannot move outputs elsewhere "
            f"(the {OUTPUT} folder says where they go)"
        )
    if sys.platform == "win32":
        # Refused by Windows in a name; "a:b.png" would even make a file "a" whose hidden
        # stream "b.png" holds the image.
        found = sorted({c for c in suffix if c in _WINDOWS_FORBIDDEN or ord(c) < 32})
        if found:
            shown = ", ".join(repr(c) for c in found)
            return f"contains {shown}, which Windows does not allow in a file name"
    return None


_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')


@dataclass(frozen=True)
class Job:
    """One input and where its result goes.

    ``skip_reason`` is set for files that will not be processed (not an image, an earlier
    output...), with ``skip_code`` saying which (:data:`SkipCode`); ``failure`` is set for
    inputs found unusable while planning (a broken symbolic link, a FIFO, a folder that
    cannot be read: never opened), which are reported as failed; ``display`` is the path as
    the user should see it; ``from_folder`` is set for files found by scanning a folder
    (rather than named), which the reader still checks for a pocketsr record before
    upscaling them.

    ``alt_output`` is set for an input with an alpha channel asked in a format that
    cannot store one (JPEG, BMP): ``output`` is the PNG its transparency needs, and
    ``alt_output`` the name in the format asked for, written instead when decoding finds
    its alpha channel opaque everywhere (``imageio.drop_opaque_alpha``; a screenshot,
    an export).  Planning reserves both names, so neither can be an input or another
    input's output; where the alternative name is not free (an input, or another
    input's output: ``logo.png`` beside ``logo.jpg``) it is left out, and the PNG is
    written whatever the alpha channel holds, so the run is never refused for it.

    ``header`` is the input's header when planning read it (to see whether it has alpha),
    passed along so that the run reads it again only if the file has changed since
    (``imageio.read_header(path, known=job.header)``); None when planning did not read it.
    """

    input: Path
    output: Path
    display: str
    skip_reason: str | None = None
    from_folder: bool = False
    skip_code: SkipCode | None = None
    failure: str | None = None
    alt_output: Path | None = None
    header: ImageHeader | None = field(default=None, compare=False, repr=False)

    @property
    def runs(self) -> bool:
        """Whether this input is to be upscaled (neither skipped nor failed by planning)."""
        return self.skip_reason is None and self.failure is None

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every name this job may write: ``output``, then ``alt_output`` when set."""
        return (self.output,) if self.alt_output is None else (self.output, self.alt_output)


def is_hidden(name: str) -> bool:
    """Whether a file or folder called ``name`` is hidden (a leading dot: macOS's ``._``
    resource forks, editors' and our own temporary files), so left out of every scan."""
    return name.startswith(".")


def _is_ours(name: str) -> bool:
    """Files pocketsr writes besides outputs: records of BMP outputs, temporary files,
    claims (``claims``)."""
    return name.endswith((SIDECAR_SUFFIX, TEMP_SUFFIX, CLAIM_SUFFIX))


_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def kind_of(mode: int) -> str:
    """``"a named pipe (FIFO)"``, ``"a folder"``...: what a non-regular file is."""
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, from ``os.stat`` alone (nothing is opened:
    a FIFO would block, ``/dev/zero`` never ends), or None for a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            if exc.errno == errno.ELOOP:
                return "broken symbolic link: it leads back to itself (a loop)"
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                try:
                    target = os.readlink(path)
                except OSError:
                    target = "its target"
                return f"broken symbolic link: {target} does not exist"
        return f"cannot read the file ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"not a regular file but {kind_of(st.st_mode)}; not opened"


@dataclass(frozen=True)
class _Entry:
    """What scanning a folder found: a file (``notice`` None; maybe not a regular one), or
    a folder that was not scanned, ``notice`` saying why (a skip with ``code``, or a
    failure when ``code`` is None), or (``unscanned`` not empty) the folder just listed
    and the sub-folders of it that a scan without ``recursive`` leaves out, given before
    its files."""

    path: Path
    notice: str | None = None
    code: SkipCode | None = None
    stems: frozenset[str] = frozenset()  # of the image files in its folder (a file's)
    unscanned: tuple[Path, ...] = ()


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop: reported as a broken file
        return False


def _real(path: Path) -> str:
    """``path`` with every symbolic link resolved; never raises, even for a loop."""
    return os.path.realpath(path)


def _within(path: str, folder: str, *, strictly: bool = False) -> bool:
    """Whether real path ``path`` is ``folder`` (unless ``strictly``) or lies under it,
    compared as ``folder``'s disk compares names: where it ignores case (macOS and Windows
    by default, :func:`~pocketsr_cli.fscase.case_blind`), ``-o ~/Photos/Out`` lies in the
    input folder ``~/photos``."""
    if fscase.case_blind(folder):
        path, folder = fscase.folded(path), fscase.folded(folder)
    if path == folder:
        return not strictly
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def _relative(path: str, folder: str) -> str:
    """Real path ``path`` relative to ``folder``, a folder it lies strictly under
    (:func:`_within`: maybe spelt in another case)."""
    return path[len(folder.rstrip(os.sep)) + 1 :]


_Key = tuple[int, int]


def _walk(root: Path, recursive: bool) -> Iterator[_Entry]:
    """Entries under ``root`` in a stable order, hidden entries left out: each folder's
    files sorted by name, then its sub-folders sorted by name (depth first).  Lazy: a
    folder is listed when the walk reaches it, so the first entries come at once however
    large the tree; what is held is one listing per folder on the current path."""
    try:
        st = os.stat(root)
    except OSError as exc:
        yield _Entry(root, f"cannot read folder ({exc.strerror or exc})")
        return
    key = (st.st_dev, st.st_ino)
    yield from _scan(root, recursive, _real(root), {key: root}, {key: root})


def _scan(
    folder: Path,
    recursive: bool,
    root_real: str,
    trail: dict[_Key, Path],
    seen: dict[_Key, Path],
) -> Iterator[_Entry]:
    """``folder``'s entries; ``trail``: the folders above (a loop leads back to one),
    ``seen``: every folder scanned so far (each is scanned once)."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield _Entry(
            folder, f"cannot read folder ({exc.strerror or exc}); the files in it were not seen"
        )
        return
    subdirs = []
    files = []
    for entry in entries:
        if is_hidden(entry.name) or _is_ours(entry.name):
            continue
        if _is_dir(entry):
            subdirs.append(entry)
        else:
            files.append(entry.name)
    del entries
    stems = frozenset(os.path.splitext(name)[0] for name in files if is_image_path(Path(name)))
    if not recursive and subdirs:
        yield _Entry(folder, unscanned=tuple(Path(entry.path) for entry in subdirs))
    for name in files:
        yield _Entry(folder / name, stems=stems)
    del files
    if not recursive:
        return
    for entry in subdirs:
        sub = Path(entry.path)
        try:
            st = entry.stat()
        except OSError as exc:
            yield _Entry(sub, f"cannot read folder ({exc.strerror or exc})")
            continue
        key = (st.st_dev, st.st_ino)
        notice = _not_followed(entry, key, _real(folder), root_real, trail, seen)
        if notice is None and os.path.isfile(os.path.join(sub, REPORT_MARKER)):
            notice = _Entry(
                sub,
                f"the picture folder of a pocketsr review page (it holds {REPORT_MARKER}); "
                "not scanned",
                "own-output",
            )
        if notice is not None:
            yield notice
            continue
        seen[key] = sub
        yield from _scan(sub, recursive, root_real, {**trail, key: sub}, seen)


def _not_followed(
    entry: os.DirEntry[str],
    key: _Key,
    folder_real: str,
    root_real: str,
    trail: dict[_Key, Path],
    seen: dict[_Key, Path],
) -> _Entry | None:
    """Why the sub-folder ``entry`` is not scanned (a loop, a second path to a folder), or
    None to scan it."""
    sub = Path(entry.path)
    link = entry.is_symlink()
    what = "symbolic link" if link else "folder"
    if key in trail:  # a bind mount can loop too
        return _Entry(sub, f"{what} loop: it leads back to {trail[key]}; not followed", "link-loop")
    if link:
        target = _real(sub)
        if _within(folder_real, target):
            return _Entry(
                sub,
                f"symbolic link loop: it leads back to {target}, which contains it; not followed",
                "link-loop",
            )
        if _within(target, root_real):
            return _Entry(
                sub,
                f"symbolic link to {target}, inside the folder being scanned: not followed "
                "(its files are upscaled at their own path)",
                "link-duplicate",
            )
    if key in seen:
        return _Entry(
            sub, f"the same folder as {seen[key]}, scanned already; not followed", "link-duplicate"
        )
    return None


def _identity(path: Path) -> _Key | None:
    """``(device, inode)`` of the file at ``path`` (symbolic links followed), or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _inside(path: Path, folder: Path, *, strictly: bool = False) -> bool:
    return _within(_real(path), _real(folder), strictly=strictly)


def collect_jobs(
    inputs: Sequence[Path],
    naming: Naming,
    *,
    recursive: bool = False,
    glob: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[Job]:
    """Expand ``inputs`` into jobs, in command-line order, folders sorted by name.

    Non-image files become ``skipped`` jobs, unusable ones (a broken link, a FIFO, a folder
    that cannot be read) failing jobs; the list is never empty.  Every output is checked
    against every input before this returns (:func:`iter_jobs` checks as it goes).
    Sub-folders left out because ``recursive`` is off are told to ``on_warning`` (one line
    per folder named; None: not told).

    Raises:
        UsageError: an input does not exist, no file was found at all, an output would
            overwrite an input, or two inputs would write the same output.
    """
    fscase.forget_answers()  # asked afresh by each run (a disk may be mounted anew)
    planned = _planned(inputs, naming, recursive, glob, _named_outputs(inputs, naming), on_warning)
    jobs = list(planned)
    if not jobs:
        raise UsageError(nothing_found(inputs, recursive, glob))
    return _check_outputs(jobs, naming)


def with_headers(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` with the header of each input that runs in :attr:`Job.header`: for a run
    that needs every input's size before it starts (the variants of a size target,
    ``pipeline.scales_for_sizes``), read here once and used again by the run.  A header
    planning read is kept while its file is unchanged; an input whose header cannot be
    read gets None (the run says what is wrong with it)."""
    kept: list[Job] = []
    for job in jobs:
        if job.runs:
            try:
                header: ImageHeader | None = read_header(job.input, known=job.header)
            except ImageReadError:
                header = None
            if header is not job.header:
                job = dataclasses.replace(job, header=header)
        kept.append(job)
    return kept


class JobStream(Iterator[Job]):
    """The jobs :func:`iter_jobs` makes as they are taken (an iterator, never a sequence:
    a run fed by it keeps counts, not results).  ``planned``: how many were planned before
    the first was returned; ``complete``: whether those were all (the walk ended within
    :data:`PLAN_AHEAD`), so that ``planned`` is the number of jobs, known before the run,
    where otherwise only the run's end tells it."""

    def __init__(self, ahead: list[Job], rest: Iterator[Job], *, complete: bool) -> None:
        self.planned = len(ahead)
        self.complete = complete
        self._jobs = itertools.chain(ahead, rest)

    def __next__(self) -> Job:
        return next(self._jobs)


def iter_jobs(
    inputs: Sequence[Path],
    naming: Naming,
    *,
    recursive: bool = False,
    glob: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> JobStream:
    """The jobs of :func:`collect_jobs`, in the same order, made as they are taken: however
    many files the folders hold, at most :data:`PLAN_AHEAD` are planned before the first
    is returned, and no list of the rest is kept (each folder's listing is held while its
    files are planned); the :class:`JobStream` says how many were, and whether that was
    all.

    Outputs are checked as jobs are made (:class:`_StreamingCheck`): an output that would
    overwrite an input (its own, a file named on the command line, an input already
    planned, an input of the folder being planned) or two inputs meeting on one output.
    Among the first :data:`PLAN_AHEAD` jobs, which covers every folder of ordinary size,
    that is a usage error raised here, before anything runs; later (a collision that only
    a later folder reveals in a larger walk) it fails the later input's job
    (``Job.failure``), so that a run already writing goes on.  The same file named twice
    for the same output (``a.jpg a.jpg``, a folder and a file in it) is one job; its
    repeats are ``skipped`` (``duplicate``).  Memory: a few fingerprints per input (about
    300 bytes in all), not the jobs.  What libraries warn about while planning (headers
    read), and sub-folders left out because ``recursive`` is off (one line per folder
    named), go to ``on_warning``.

    Raises:
        UsageError: an input does not exist, no file was found at all, or a collision
            among the first :data:`PLAN_AHEAD` jobs.
    """
    if not inputs:
        raise UsageError("no input given: name image files and/or folders")
    for given in inputs:
        check_input(given)
    fscase.forget_answers()  # asked afresh by each run (a disk may be mounted anew)
    check = _StreamingCheck(inputs, naming, glob, recursive)
    stream = _checked(inputs, naming, recursive, glob, on_warning, check)
    ahead = list(itertools.islice(stream, PLAN_AHEAD))
    if not ahead:
        raise UsageError(nothing_found(inputs, recursive, glob))
    complete = len(ahead) < PLAN_AHEAD  # islice stopped at the walk's end
    ahead = [check.settled(job) for job in ahead]
    check.started = True
    check.alts.clear()
    return JobStream(ahead, stream, complete=complete)


def _checked(
    inputs: Sequence[Path],
    naming: Naming,
    recursive: bool,
    glob: str | None,
    on_warning: Callable[[str], None] | None,
    check: _StreamingCheck,
) -> Iterator[Job]:
    planned = _planned(inputs, naming, recursive, glob, check.named_sources, on_warning)
    while True:
        notes: list[str] = []
        with libwarnings.collecting(notes):
            job = next(planned, None)
        if on_warning is not None:
            for note in notes:
                on_warning(note)
        if job is None:
            return
        yield check(job) if job.runs else job


def _planned(
    inputs: Sequence[Path],
    naming: Naming,
    recursive: bool,
    glob: str | None,
    outputs: Mapping[str, str],
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[Job]:
    """Every input's jobs, lazily, without the output checks; ``outputs``: the named files
    that are the outputs of other named files (:func:`_named_outputs`), skipped.  Each
    folder's note of the sub-folders it leaves out goes to ``on_warning`` once, however
    often the folder is named."""
    if not inputs:
        raise UsageError("no input given: name image files and/or folders")
    said: set[str] = set()

    def warn_once(note: str) -> None:
        if on_warning is not None and note not in said:
            said.add(note)
            on_warning(note)

    for given in inputs:
        check_input(given)
        if given.is_dir():
            yield from _folder_jobs(given, naming, recursive, glob, warn_once)
            continue
        source = outputs.get(_real(given))
        if source is None:
            yield _file_job(given, naming, None, str(given))
            continue
        reason = (
            f"the output of {source}, named in this run too (a shell pattern such as *.jpg "
            "takes the last run's outputs); name it alone to upscale it"
        )
        yield Job(given, naming.output_for(given, None), str(given), reason, skip_code="own-output")


def _named_outputs(inputs: Sequence[Path], naming: Naming) -> dict[str, str]:
    """``{real path: the file it is the output of}`` for the files named on the command
    line that are the output of another named file, by name and by the record they carry:
    ``upscale shoot/*.jpg`` run again names ``a.jpg`` and the ``a_x4.jpg`` the first run
    made of it."""
    files = [p for p in inputs if is_image_path(p) and p.is_file()]
    if len(files) < 2:
        return {}
    made: dict[str, str] = {}
    for source in files:
        for alpha in (False, True):
            made.setdefault(_real(naming.output_for(source, None, has_alpha=alpha)), str(source))
    return {
        real: made[real]
        for p in files
        if (real := _real(p)) in made
        and _real(Path(made[real])) != real
        and _recorded_from(p, Path(made[real]))
    }


def _recorded_from(path: Path, source: Path) -> bool:
    """Whether ``path`` carries pocketsr's record of being made from ``source`` (a file
    that only has the name of its output is someone's own, and stays an input)."""
    from pocketsr_cli import provenance
    from pocketsr_cli.imageio import read_provenance_text

    text = read_provenance_text(path)
    record = provenance.loads(text) if text is not None else None
    return record is not None and record.get("source") in (None, source.name)


def nothing_found(folders: Sequence[Path], recursive: bool, glob: str | None) -> str:
    """Why scanning ``folders`` found nothing to upscale, and what helps: for each, "no
    image files in FOLDER", with its sub-folders (not hidden) counted only when it has
    some and they were not searched (``bench --folder`` says so of a folder of other
    files too)."""
    matching = f" matching {GLOB.given(repr(glob))}" if glob else ""
    reasons = []
    for folder in folders:
        try:
            with os.scandir(folder) as listing:
                subdirs = sum(_is_dir(e) and not is_hidden(e.name) for e in listing)
        except OSError:
            subdirs = 0
        hint = ""
        if subdirs and not recursive:
            # A face without a recursive option (bench --folder) says why, not what to add.
            advice = f"add {RECURSIVE}" if offers(RECURSIVE) else "they are not searched"
            hint = f" (it has {subdirs} sub-folder(s): {advice})"
        reasons.append(f"no image files{matching} in {folder}{hint}")
    return "; ".join(reasons)


def _file_job(path: Path, naming: Naming, rel_parent: Path | None, display: str) -> Job:
    output = naming.output_for(path, rel_parent)
    if not is_image_path(path):
        reason = f"not an image file ({path.suffix or 'no extension'})"
        if rel_parent is None:  # named on the command line: asked for, so it fails
            return Job(path, output, display, failure=f"{reason}; {READABLE}")
        return Job(path, output, display, reason, skip_code="not-image")
    failure = not_a_file(path)
    if failure is not None:
        return Job(path, output, display, failure=failure)
    header = None
    if naming.alpha_matters(path):
        try:
            header = read_header(path)
        except ImageReadError:  # the reader says what is wrong with it
            header = None
        if header is not None and header.has_alpha:
            # PNG, unless its alpha channel turns out opaque everywhere
            switched = naming.output_for(path, rel_parent, has_alpha=True)
            return Job(path, switched, display, alt_output=output, header=header)
    return Job(input=path, output=output, display=display, header=header)


def _own_output_reason(path: Path, suffix: str, image_stems: frozenset[str]) -> str | None:
    """Why ``path``'s name says it is an earlier output, or None (see the module docs);
    ``image_stems``: the stems of the images in its folder."""
    stem = path.stem
    if suffix and stem.endswith(suffix):
        return f"looks like a pocketsr output (name ends with {suffix!r})"
    tag = _OUTPUT_TAG.search(stem)
    if tag is not None and stem[: tag.start()] in image_stems:
        source = stem[: tag.start()]
        return f"looks like a pocketsr output of {source!r} (name ends with {tag.group()!r})"
    return None


def _glob_pattern(glob: str | None) -> re.Pattern[str] | None:
    """``--glob`` as a pattern for names and ``/``-separated relative paths (None: take
    every file).  It ignores case: fnmatch does so only where the file system usually does
    (Windows), and photos from cameras are IMG_0001.JPG, so ``*.jpg`` must take them
    everywhere.  On Windows a backslash is a path separator (``raw\\*.jpg``), as a
    Windows user writes one; elsewhere it is part of a name."""
    if not glob:
        return None
    if sys.platform == "win32":
        glob = glob.replace("\\", "/")
    return re.compile(fnmatch.translate(glob), re.IGNORECASE)


def _unscanned_note(root: Path, subs: Sequence[Path], exclude: Path | None) -> str | None:
    """What to say of ``root``'s sub-folders ``subs`` that a scan without ``recursive``
    left out, or None: the output folder (``exclude``) and review pages' picture folders
    do not count, as a recursive scan would not upscale what they hold either."""
    count = sum(
        not (exclude is not None and _inside(sub, exclude))
        and not os.path.isfile(os.path.join(sub, REPORT_MARKER))
        for sub in subs
    )
    if not count:
        return None
    what = "1 sub-folder" if count == 1 else f"{count} sub-folders"
    advice = f" (add {RECURSIVE} to upscale its images too)" if offers(RECURSIVE) else ""
    return f"{root} has {what} not scanned{advice}"


def unscanned_note(folder: Path) -> str | None:
    """What :func:`collect_jobs` without ``recursive`` tells ``on_warning`` of the
    sub-folders of ``folder`` it leaves out ("FOLDER has 2 sub-folders not scanned",
    counting neither hidden folders nor review pages' picture folders), or None: it has
    none that count (or cannot be read).  For a command that lists a folder's images its
    own way (``eval``), so that it says it in the same words."""
    # A scan without ``recursive`` gives the folder's unscanned sub-folders first.
    first = next(_walk(folder, recursive=False), None)
    if first is None or not first.unscanned:
        return None
    return _unscanned_note(folder, first.unscanned, None)


def _folder_jobs(
    root: Path,
    naming: Naming,
    recursive: bool,
    glob: str | None,
    on_warning: Callable[[str], None],
) -> Iterator[Job]:
    suffix = naming.effective_suffix
    out = naming.out_dir
    # An output folder strictly inside the scanned folder holds earlier results: leave it out.
    exclude = out if out is not None and _inside(out, root, strictly=True) else None
    pattern = _glob_pattern(glob)
    # Each file carries the stems of its folder's images, --glob or not: `coffee_x4.jpg` is
    # an output of `coffee.jpg` even when only `*_x4.jpg` is asked for.
    excluded_said = False
    for entry in _walk(root, recursive):
        path = entry.path
        if entry.unscanned:
            note = _unscanned_note(root, entry.unscanned, exclude)
            if note is not None:
                on_warning(note)
            continue
        if exclude is not None and _inside(path, exclude):
            if not excluded_said:  # its files get no line: the folder gets one
                excluded_said = True
                note = (
                    f"the {OUTPUT} folder, inside this input folder: not scanned (what is in "
                    "it is taken for earlier results)"
                )
                yield Job(exclude, exclude, str(exclude), note, skip_code="own-output")
            continue
        rel = path.relative_to(root)
        if entry.notice is not None:  # a folder: reported whatever --glob says
            output = naming.out_dir / rel if naming.out_dir is not None else path
            if entry.code is None:
                yield Job(path, output, str(path), failure=entry.notice)
            else:
                yield Job(path, output, str(path), entry.notice, skip_code=entry.code)
            continue
        if pattern and not (pattern.match(rel.as_posix()) or pattern.match(path.name)):
            continue
        job = _file_job(path, naming, rel.parent, str(path))
        if not job.runs:
            yield job
            continue
        reason = _own_output_reason(path, suffix, entry.stems)
        if reason is not None:
            reason += "; name the file directly to upscale it"
            yield Job(job.input, job.output, job.display, reason, skip_code="own-output")
        else:
            yield dataclasses.replace(job, from_folder=True)


def _check_outputs(jobs: list[Job], naming: Naming) -> list[Job]:
    """Refuse outputs that are inputs (by path, or the same file under another name) and
    outputs shared by two inputs; ``jobs`` with the repeats of one file for one output
    ``skipped`` (``duplicate``), and without the ``alt_output`` of a job whose alternative
    name is not free (an input, another input's output, or an earlier job's alternative
    name): that job's output is its PNG, as when the alpha channel is transparent."""
    running = [j for j in jobs if j.runs]
    by_path = {_name_key(_real(j.input)): j for j in running}
    by_identity = {key: j for j in running if (key := _identity(j.input)) is not None}
    primaries = {_name_key(_real(j.output)) for j in running}
    seen: dict[str, Job] = {}  # by _name_key of the real path
    checked: list[Job] = []
    for job in jobs:
        if not job.runs:
            checked.append(job)
            continue
        earlier = seen.get(_name_key(_real(job.output)))
        if earlier is not None and _identity(earlier.input) == _identity(job.input):
            checked.append(_repeat(job, earlier.display))
            continue
        if job.alt_output is not None:
            alt = _name_key(_real(job.alt_output))
            key = _identity(job.alt_output)
            if alt in primaries or alt in seen or alt in by_path or key in by_identity:
                job = dataclasses.replace(job, alt_output=None)
        for output in job.outputs:
            out = _name_key(_real(output))
            victim = by_path.get(out)
            how = ""
            if victim is None:
                key = _identity(output)
                victim = by_identity.get(key) if key is not None else None
                how = " (the same file under another name: a hard or symbolic link)"
            if victim is not None:
                raise UsageError(
                    f"output {output} would overwrite input {victim.display}{how}"
                    f"{_switch_note(job, naming)}; choose another {OUTPUT} folder or "
                    f"a {SUFFIX}"
                )
            earlier = seen.get(out)
            if earlier is not None:
                raise UsageError(
                    f"{earlier.display} and {job.display} would both be written to "
                    f"{output}{_case_note(output)}; {_apart_hint(naming)}"
                )
        for output in job.outputs:
            seen[_name_key(_real(output))] = job
        checked.append(job)
    return checked


def check_input(given: Path) -> None:
    """Refuse an input that is not there (a broken symbolic link named as one, saying
    where it leads or that it loops), or that cannot even be looked at: a name in its
    path too long for the file system, a folder on its way that may not be entered
    (``errors.present`` raises for these rather than answer, ``errors.unreachable`` says why).

    Raises:
        UsageError: saying which and why.
    """
    try:
        found = present(given)
    except OSError as exc:
        raise UsageError(f"cannot read the input {given}: {unreachable(given, exc)}") from None
    if not found:
        # A link whose target is missing, or that leads back to itself, is there to see
        # (ls lists it): say what it is rather than leave the user puzzled by "not found".
        link = not_a_file(given) if os.path.islink(given) else None
        hint = link or unexpanded_home(given) or windows_separators(given)
        raise UsageError(f"input not found: {given}" + (f" ({hint})" if hint else ""))


def check_output_folder(folder: Path) -> None:
    """Refuse, before any work, an output folder that files cannot be made in (a file in
    its place, a read-only file system...: ``atomicfile.folder_write_problem``).

    Raises:
        UsageError: saying why.
    """
    problem = folder_write_problem(folder)
    if problem is not None:
        raise UsageError(f"cannot write to the output folder {folder}: {problem}")


def _repeat(job: Job, earlier: str) -> Job:
    """``job`` skipped: the same file for the same output as ``earlier``'s job."""
    reason = f"named twice: the same file as {earlier}, upscaled once"
    return Job(job.input, job.output, job.display, reason, skip_code="duplicate")


def _apart_hint(naming: Naming) -> str:
    """What keeps two inputs from meeting on one output (a suffix cannot: both get it)."""
    hint = f"upscale them in separate runs, each with its own {OUTPUT} folder"
    if naming.fmt is not None:
        hint += f", or leave out {FORMAT} so that each keeps its own format (and extension)"
    return hint


def _switch_note(job: Job, naming: Naming) -> str:
    """Why ``job``'s output has another format than the one asked for, when it has."""
    asked = job.input.suffix if naming.fmt is None else extension_for(naming.fmt)
    if job.output.suffix == asked:
        return ""
    if naming.output_for(job.input, None).suffix == asked:  # its transparency switched it
        name = (naming.fmt or format_of_path(job.input) or "").upper()
        return f" ({name} cannot store its transparency, so it is written as PNG)"
    return " (its format cannot be written, so it is written as PNG)"


def _fingerprint(text: str) -> int:
    """A 64-bit digest of a real path, as :func:`_name_key` compares it: a set of these is
    a fraction of a set of the paths (and two of 200,000 paths share one with a chance of
    about one in 10⁹)."""
    key = _name_key(text)
    return int.from_bytes(hashlib.blake2b(os.fsencode(key), digest_size=8).digest(), "big")


def _case_note(output: Path) -> str:
    """For a message about two outputs on one name: where names ignore case, that they
    may differ in case alone."""
    if not fscase.case_blind(os.path.dirname(_real(output))):
        return ""
    return " (names that differ only in case are one file on this file system)"


def _name_key(real: str) -> str:
    """A real path as its file system compares names: case-folded
    (:func:`~pocketsr_cli.fscase.folded`) where that file system ignores case
    (:func:`~pocketsr_cli.fscase.case_blind`; macOS and Windows by default), so that two
    outputs ``out/Photo.png`` and ``out/photo.png`` are known to be one file there."""
    return fscase.folded(real) if fscase.case_blind(os.path.dirname(real)) else real


def _packed(key: _Key) -> int:
    """A file identity as one int (a set of ints is smaller than one of pairs)."""
    return key[0] << 64 | key[1]


_EARLIER = Path("<an input planned earlier>")  # what victim() says of an output that is one


class _StreamingCheck:
    """:func:`_check_outputs` for jobs that come one at a time (:func:`iter_jobs`).

    An output can only overwrite an input that exists, so only outputs that exist now are
    compared with inputs, by file identity (``(device, inode)``: a path, a symbolic link and
    a hard link to one file are one); two inputs meeting on one output are found by
    fingerprints of the outputs' real paths.  An existing output that is not an input yet
    seen is remembered, and refused when the input it is turns up later.
    """

    def __init__(
        self, inputs: Sequence[Path], naming: Naming, glob: str | None, recursive: bool = False
    ) -> None:
        self.naming = naming
        self.recursive = recursive
        # The folders named on the command line (real paths), and the output folder each
        # leaves out of its scan (the -o folder strictly inside it).
        out_dir = None if naming.out_dir is None else _real(naming.out_dir)
        self.scanned: list[tuple[str, str | None]] = []
        for given in inputs:
            if given.is_dir():
                root = _real(given)
                inside = out_dir is not None and _within(out_dir, root, strictly=True)
                self.scanned.append((root, out_dir if inside else None))
        # Files named on the command line are known before the first job (but for those
        # that are the outputs of other named files: skipped, they are outputs, not inputs;
        # the walk reads this map too, so that their records are read once).
        self.named_sources = _named_outputs(inputs, naming)
        self.named = {
            key: path
            for path in inputs
            if (key := _identity(path)) is not None and _real(path) not in self.named_sources
        }
        self.input_keys: set[int] = set()  # _packed
        self.output_keys: set[int] = set()  # existing outputs, _packed
        self.outputs: set[int] = set()  # fingerprints of the outputs' real paths
        self.named_outputs: dict[int, str] = {}  # the first ones' inputs, for messages
        self.pattern = _glob_pattern(glob)
        self.folder: str | None = None  # the real folder of the last existing output seen
        self.folder_stems: frozenset[str] = frozenset()
        self.started = False  # set once the run has the first jobs: refuse() fails a job
        # Until then, the jobs whose alternative name (Job.alt_output) a later input's
        # output may still take from them (by that name's fingerprint), and those it took
        # (ids of the jobs in the look-ahead, which settled() then plans without it).
        self.alts: dict[int, Job] = {}
        self.taken_alts: set[int] = set()
        # The fingerprints among ``outputs`` that are alternative names: once the run has
        # started, such a name is kept for its input, and a later output onto it is refused
        # with a line that says why (:meth:`collision`).
        self.alt_names: set[int] = set()

    def __call__(self, job: Job) -> Job:
        """``job`` if its output is safe to write; a ``skipped`` job for a repeat of a job
        planned already; for a collision, :class:`UsageError` until :attr:`started` is set,
        then a failing job (``Job.failure``)."""
        found_key = _identity(job.input)
        key = None if found_key is None else _packed(found_key)
        out = _real(job.output)
        digest = _fingerprint(out)
        if self.started and _fingerprint(_real(job.input)) in self.outputs:
            # A file this run has written since it listed the folder (-o onto a folder
            # scanned later, in a walk longer than the look-ahead): its own output.
            reason = "an output of this run (written after its folder was planned)"
            return Job(job.input, job.output, job.display, reason, skip_code="own-output")
        if key is not None and key in self.input_keys and digest in self.outputs:
            return _repeat(job, self.named_outputs.get(digest, "an input planned earlier"))
        if key is not None and key in self.output_keys:
            return self.refuse(
                job,
                f"{job.display} is the output of an input planned earlier (the same file "
                "under another name, or a folder mirrored onto another); choose another "
                f"{OUTPUT} folder or a {SUFFIX}",
            )
        if job.alt_output is not None and not self.alt_is_free(job.alt_output, job):
            job = dataclasses.replace(job, alt_output=None)
        names = [(output, _real(output)) for output in job.outputs]
        digests = [_fingerprint(real) for _, real in names]
        founds = [_identity(output) for output in job.outputs]
        for (output, real), digest, found in zip(names, digests, founds, strict=True):
            refused = self.collision(job, output, real, digest, found)
            if refused is not None:
                return refused
        for digest, found in zip(digests, founds, strict=True):
            if found is not None:
                self.output_keys.add(_packed(found))
            self.outputs.add(digest)
            if len(self.named_outputs) < 1024:
                self.named_outputs[digest] = job.display
        if job.alt_output is not None:
            self.alt_names.add(digests[1])
            if not self.started:
                self.alts[digests[1]] = job
        if key is not None:
            self.input_keys.add(key)
        return job

    def alt_is_free(self, alt: Path, job: Job) -> bool:
        """Whether ``job``'s alternative name ``alt`` (``Job.alt_output``) is neither an
        input nor planned for an earlier input (as its output or its alternative name)."""
        real = _real(alt)
        if _fingerprint(real) in self.outputs:
            return False
        found = _identity(alt)
        return found is None or self.victim(job, found, real) is None

    def settled(self, job: Job) -> Job:
        """``job`` as planned in the look-ahead, without its ``alt_output`` when a later
        input's output took that name (:meth:`collision`)."""
        if job.alt_output is not None and id(job) in self.taken_alts:
            return dataclasses.replace(job, alt_output=None)
        return job

    def collision(
        self, job: Job, output: Path, out: str, digest: int, found: _Key | None
    ) -> Job | None:
        """The refusal when ``output`` (one of ``job``'s names; ``out`` its real path,
        ``digest`` its fingerprint, ``found`` the identity of the file there) would
        overwrite an input or is planned for another input already; else None."""
        if found is not None:
            victim = self.victim(job, found, out)
            if victim is not None:
                how = ""
                if victim is _EARLIER:
                    victim = output
                    how = (
                        " (an input planned earlier, maybe the same file under another name: "
                        "a hard or symbolic link)"
                    )
                elif _real(victim) != out:
                    how = " (the same file under another name: a hard or symbolic link)"
                return self.refuse(
                    job,
                    f"output {output} would overwrite input {victim}{how}"
                    f"{_switch_note(job, self.naming)}; choose another {OUTPUT} "
                    f"folder or a {SUFFIX}",
                )
        owner = self.alts.pop(digest, None) if output == job.output else None
        if owner is not None:  # an earlier job's alternative name: it writes its PNG then
            self.taken_alts.add(id(owner))
            self.outputs.discard(digest)
            self.alt_names.discard(digest)
        if digest in self.outputs:
            earlier = self.named_outputs.get(digest, "an input planned earlier")
            if digest in self.alt_names:
                return self.refuse(job, self.alt_kept(job, output, earlier))
            return self.refuse(
                job,
                f"{earlier} and {job.display} would both be written to {output}"
                f"{_case_note(output)}; "
                f"{_apart_hint(self.naming)}",
            )
        return None

    def alt_kept(self, job: Job, output: Path, earlier: str) -> str:
        """Why ``job`` cannot have ``output``, the alternative name (``Job.alt_output``) of
        ``earlier``, an input planned before it once the run had started: that input may
        still be written there."""
        label = format_label(format_of_path(output) or output.suffix)
        return (
            f"{job.display} would be written to {output}, the {label} name kept for "
            f"{earlier} (its alpha channel may be opaque everywhere, and then its output is "
            f"written there as {label}, not as PNG; only within the first {PLAN_AHEAD:,} "
            f"files planned is such a name given up to a later input); "
            f"{_apart_hint(self.naming)}"
        )

    def refuse(self, job: Job, message: str) -> Job:
        """A collision: a usage error before the run starts, the job's failure after."""
        if not self.started:
            raise UsageError(message)
        return Job(job.input, job.output, job.display, failure=message)

    def victim(self, job: Job, found: _Key, out: str) -> Path | None:
        """The input an existing output (identity ``found``) is, or None."""
        if found == _identity(job.input):
            return job.input
        if found in self.named:
            return self.named[found]
        if _packed(found) in self.input_keys:
            return _EARLIER
        return job.output if self.would_scan(out) else None

    def would_scan(self, out: str) -> bool:
        """Whether the existing file ``out`` (a real path) is one that the scan of a folder
        named on the command line lists as an input: planned later, or earlier without
        its identity being seen (another folder mirrored onto this one)."""
        parent = os.path.dirname(out)
        for root, left_out in self.scanned:
            if not _within(parent, root) or (left_out is not None and _within(out, left_out)):
                continue
            rel = _relative(out, root)
            if not self.recursive and os.path.dirname(rel):
                continue
            if any(is_hidden(part) for part in Path(rel).parts[:-1]):
                continue
            if self.is_listed(out, rel):
                return True
        return False

    def is_listed(self, out: str, rel: str) -> bool:
        """Whether the scan takes the file ``out`` (``rel`` to its scanned folder) as an
        input: an image, not hidden nor pocketsr's own, taken by ``--glob``, and not named
        like an earlier output of an image beside it."""
        parent, name = os.path.split(out)
        if self.folder != parent:  # listed once per folder, only when an output exists
            self.folder = parent
            try:
                names = os.listdir(parent)
            except OSError:
                names = []
            self.folder_stems = frozenset(
                os.path.splitext(n)[0] for n in names if is_image_path(Path(n))
            )
        path = Path(out)
        return (
            is_image_path(path)
            and not is_hidden(name)
            and not _is_ours(name)
            and self.matches(Path(rel))
            and _own_output_reason(path, self.naming.effective_suffix, self.folder_stems) is None
        )

    def matches(self, path: Path) -> bool:
        """Whether ``--glob`` takes ``path`` (its name, or any tail of it: the path relative
        to the scanned folder is one of them)."""
        if self.pattern is None:
            return True
        parts = path.parts
        tails = ("/".join(parts[i:]) for i in range(len(parts)))
        return any(self.pattern.match(tail) for tail in tails)
