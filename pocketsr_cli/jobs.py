"""Turning the command line's inputs into a list of (input, output) jobs.

Rules (SPEC, "Command-line contract"):

* an input is any mix of files and folders; folders are scanned (``recursive`` descends),
  optionally filtered by ``glob`` (matched against the path relative to the folder and
  against the bare file name, ignoring case on every platform: ``*.jpg`` takes ``IMG.JPG``);
* finding no file at all (empty folders, only sub-folders without ``recursive``, a
  ``glob`` that matches nothing) is a usage error that says why, not a run that quietly
  does nothing;
* with an output folder, each folder's tree is mirrored under it (paths relative to that
  folder); a file given directly lands at the top of the output folder;
* without one, each output goes next to its input as ``{stem}{suffix}{ext}``, the suffix
  defaulting to ``_{tag}``: ``_x4``, ``_x1.5``, or for a size target ``_w3840``,
  ``_h2160``, ``_l4096`` (``sizing.Target.label``);
* hidden files and folders (and our own temporary files), and the sidecar files that hold
  a BMP output's record (``*.pocketsr.json``) are ignored; other non-image files become
  ``skipped`` jobs so that they are reported, never fatal;
* when scanning a folder, files that look like our own outputs are skipped, so a second
  run never upscales an earlier run's results, whatever factor or size it asked for: a
  name ending with this run's suffix, a name ending with any default tag (``_x2``,
  ``_x1.5``, ``_w3840``, ``_h2160``, ``_l4096``) *beside an image of the name without it*
  (``coffee_x4.jpg`` next to ``coffee.jpg``; a photo that merely ends in ``_w2`` is kept),
  and anything inside the output folder.  Names are all this module looks at: files of a
  folder that pass are marked ``from_folder``, and the pipeline's reader skips those whose
  header carries a pocketsr record (``imageio.read_provenance_text``), which catches
  outputs renamed or made with another ``--suffix``.  A file named on the command line is
  always upscaled;
* an output path equal to an input path, or two inputs mapping to one output, is a usage
  error raised before anything is written.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pocketsr_cli.errors import UsageError
from pocketsr_cli.imageio import SIDECAR_SUFFIX, TEMP_SUFFIX, extension_for, is_image_path
from pocketsr_cli.sizing import scale_label

__all__ = ["Job", "Naming", "collect_jobs", "scale_label"]

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

    @property
    def effective_suffix(self) -> str:
        if self.suffix is not None:
            return self.suffix
        if self.out_dir is not None:
            return ""
        return f"_{self.tag}" if self.tag is not None else f"_x{self.scale_label}"

    def output_for(self, path: Path, relative_parent: Path | None) -> Path:
        """Output for ``path``; ``relative_parent`` is its folder relative to a scanned root."""
        ext = path.suffix if self.fmt is None else extension_for(self.fmt)
        name = f"{path.stem}{self.effective_suffix}{ext}"
        if self.out_dir is None:
            return path.with_name(name)
        return self.out_dir / (relative_parent or Path()) / name


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes.

    ``skip_reason`` is set for files that will not be processed (not an image, an earlier
    output...), with ``skip_code`` saying which (``not-image``, ``own-output``);
    ``display`` is the path as the user should see it; ``from_folder`` is set for files
    found by scanning a folder (rather than named), which the reader still checks for a
    pocketsr record before upscaling them.
    """

    input: Path
    output: Path
    display: str
    skip_reason: str | None = None
    from_folder: bool = False
    skip_code: Literal["not-image", "own-output"] | None = None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_ours(name: str) -> bool:
    """Files pocketsr writes besides outputs: records of BMP outputs, temporary files."""
    return name.endswith((SIDECAR_SUFFIX, TEMP_SUFFIX))


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Files under ``root`` in a stable (sorted) order, hidden entries left out."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise UsageError(f"cannot read folder {root}: {exc.strerror or exc}") from exc
    subdirs = []
    for entry in entries:
        if _is_hidden(entry.name) or _is_ours(entry.name):
            continue
        if entry.is_dir():
            subdirs.append(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)
    if recursive:
        for sub in subdirs:
            yield from _walk(sub, recursive)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def collect_jobs(
    inputs: Sequence[Path], naming: Naming, *, recursive: bool = False, glob: str | None = None
) -> list[Job]:
    """Expand ``inputs`` into jobs, in command-line order, folders sorted by name.

    Non-image files become ``skipped`` jobs; the list is never empty.

    Raises:
        UsageError: an input does not exist, no file was found at all, an output would
            overwrite an input, or two inputs would write the same output.
    """
    if not inputs:
        raise UsageError("no input given: name image files and/or folders")
    jobs: list[Job] = []
    for given in inputs:
        if not given.exists():
            raise UsageError(f"input not found: {given}")
        if given.is_dir():
            jobs.extend(_folder_jobs(given, naming, recursive, glob))
        else:
            jobs.append(_file_job(given, naming, None, str(given)))
    if not jobs:
        raise UsageError(_nothing_found(inputs, recursive, glob))
    _check_outputs(jobs)
    return jobs


def _nothing_found(folders: Sequence[Path], recursive: bool, glob: str | None) -> str:
    """Why scanning ``folders`` (files would have given jobs) found nothing, and what helps."""
    matching = f" matching --glob {glob!r}" if glob else ""
    reasons = []
    for folder in folders:
        try:
            subdirs = sum(e.is_dir() and not _is_hidden(e.name) for e in os.scandir(folder))
        except OSError:
            subdirs = 0
        hint = (
            f" (it has {subdirs} sub-folder(s): add -r/--recursive)"
            if subdirs and not recursive
            else ""
        )
        reasons.append(f"no image files{matching} in {folder}{hint}")
    return "; ".join(reasons)


def _file_job(path: Path, naming: Naming, rel_parent: Path | None, display: str) -> Job:
    output = naming.output_for(path, rel_parent)
    if is_image_path(path):
        return Job(input=path, output=output, display=display)
    reason = f"not an image file ({path.suffix or 'no extension'})"
    return Job(path, output, display, reason, skip_code="not-image")


def _own_output_reason(path: Path, suffix: str, image_stems: set[tuple[Path, str]]) -> str | None:
    """Why ``path``'s name says it is an earlier output, or None (see the module docs)."""
    stem = path.stem
    if suffix and stem.endswith(suffix):
        return f"looks like a pocketsr output (name ends with {suffix!r})"
    tag = _OUTPUT_TAG.search(stem)
    if tag is not None and (path.parent, stem[: tag.start()]) in image_stems:
        source = stem[: tag.start()]
        return f"looks like a pocketsr output of {source!r} (name ends with {tag.group()!r})"
    return None


def _folder_jobs(root: Path, naming: Naming, recursive: bool, glob: str | None) -> Iterator[Job]:
    suffix = naming.effective_suffix
    out = naming.out_dir
    # An output folder strictly inside the scanned folder holds earlier results: leave it out.
    exclude = (
        out if out is not None and out.resolve() != root.resolve() and _inside(out, root) else None
    )
    # fnmatch ignores case only where the file system usually does (Windows); photos from
    # cameras are IMG_0001.JPG, so `--glob '*.jpg'` must take them everywhere.
    pattern = re.compile(fnmatch.translate(glob), re.IGNORECASE) if glob else None
    paths = list(_walk(root, recursive))
    # Every image's (folder, stem), --glob or not: `coffee_x4.jpg` is an output of
    # `coffee.jpg` even when only `*_x4.jpg` is asked for.
    image_stems = {(p.parent, p.stem) for p in paths if is_image_path(p)}
    for path in paths:
        rel = path.relative_to(root)
        if pattern and not (pattern.match(rel.as_posix()) or pattern.match(path.name)):
            continue
        if exclude is not None and _inside(path, exclude):
            continue
        job = _file_job(path, naming, rel.parent, str(path))
        if job.skip_reason is not None:
            yield job
            continue
        reason = _own_output_reason(path, suffix, image_stems)
        if reason is not None:
            reason += "; name the file directly to upscale it"
            yield Job(job.input, job.output, job.display, reason, skip_code="own-output")
        else:
            yield Job(job.input, job.output, job.display, from_folder=True)


def _check_outputs(jobs: list[Job]) -> None:
    inputs = {j.input.resolve() for j in jobs if j.skip_reason is None}
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.skip_reason is not None:
            continue
        out = job.output.resolve()
        if out in inputs or _same_file(job.input, job.output):
            raise UsageError(
                f"output {job.output} would overwrite input {job.display}; "
                "choose another --output folder or a --suffix"
            )
        if out in seen:
            raise UsageError(
                f"{seen[out].display} and {job.display} would both be written to "
                f"{job.output}; upscale them in separate runs or use --suffix"
            )
        seen[out] = job
