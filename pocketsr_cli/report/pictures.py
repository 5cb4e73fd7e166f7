"""The pictures of a review page: for each pictured entry its crops (PNG), before and
after, and a thumbnail (JPEG), encoded from the files the run wrote.

Only ``ok`` entries, and skips whose existing output was made with the run's settings
(:data:`PICTURED_SKIPS`), are pictured.  A file that is missing or cannot be decoded
becomes a note on its entry (:attr:`Pictures.notes`), never an error: one bad file must
not cost the whole page.  So does a file whose size is not the one the log gives (replaced
since the run): an input that changed gives no before, as it is not what the model saw.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio import read_image
from pocketsr_cli.report.crops import (
    Box,
    after_crop,
    before_crop,
    choose_crops,
    thumbnail,
    to_display,
    whole_scale,
)
from pocketsr_cli.report.records import Entry, Run

PICTURED_SKIPS = ("exists",)
"""Skips whose existing output was made with this run's settings: pictured like ``ok``."""


@dataclass(frozen=True)
class Shape:
    """What pictures to make: ``crop``-pixel windows, ``crops`` of them per image (most
    detailed first), thumbnails ``thumb`` pixels on their long side; ``workers`` images
    decoded at once."""

    crop: int = 320
    crops: int = 1
    thumb: int = 200
    workers: int = 2


@dataclass
class Pictures:
    """An entry's encoded pictures and notes about its files.

    Attributes:
        out_size, in_size: the output's and input's ``(width, height)`` as decoded.
        crops: ``(window, before PNG or None without an input, after PNG)``, in output
            pixels, most detailed first.
        thumb: ``(JPEG, width, height)`` of the whole output.
    """

    out_size: tuple[int, int] | None = None
    in_size: tuple[int, int] | None = None
    crops: list[tuple[Box, bytes | None, bytes]] = field(default_factory=list)
    thumb: tuple[bytes, int, int] | None = None
    notes: list[str] = field(default_factory=list)


def pictured(entry: Entry) -> bool:
    return bool(entry.output) and (
        entry.status == "ok" or (entry.status == "skipped" and entry.reason_code in PICTURED_SKIPS)
    )


def make_pictures(run: Run, shape: Shape) -> Generator[tuple[Entry, Pictures], None, None]:
    """Each entry with its pictures, in order.  Images are decoded ``shape.workers`` at a
    time (decoders and resizes release the GIL), and only a few ahead of the page, so
    memory stays bounded however long the run was."""

    def one(entry: Entry) -> Pictures:
        if not pictured(entry):
            return Pictures()
        try:
            return _make(entry, run, shape)
        except MemoryError:
            return Pictures(notes=["too large to make pictures of in the memory available"])

    workers = max(1, shape.workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pocketsr-report")
    pending: deque[tuple[Entry, Future[Pictures]]] = deque()
    try:
        for entry in run.entries:
            pending.append((entry, pool.submit(one, entry)))
            if len(pending) > 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _make(entry: Entry, run: Run, shape: Shape) -> Pictures:
    result = Pictures()
    out_path = run.resolve(entry.output)
    if out_path is None:
        result.notes.append(f"output not found: {entry.output}")
        return result
    try:
        decoded_out = read_image(out_path)
    except ImageReadError as exc:
        result.notes.append(f"cannot read the output: {exc}")
        return result
    out = to_display(decoded_out.pixels)
    out_icc = decoded_out.metadata.icc_profile
    del decoded_out
    height, width = out.shape[:2]
    result.out_size = (width, height)
    logged = _changed(entry.out_width, entry.out_height, width, height)
    if logged:
        result.notes.append(f"the output is {width}×{height} now, not the {logged} the run wrote")
    source: np.ndarray | None = None
    in_icc = None
    in_path = run.resolve(entry.input)
    if in_path is None:
        result.notes.append(f"input not found: {entry.input} (no before)")
    else:
        try:
            decoded_in = read_image(in_path)
            source, in_icc = to_display(decoded_in.pixels), decoded_in.metadata.icc_profile
            result.in_size = (decoded_in.width, decoded_in.height)
        except ImageReadError as exc:
            result.notes.append(f"cannot read the input: {exc} (no before)")
        else:
            logged = _changed(entry.width, entry.height, decoded_in.width, decoded_in.height)
            if logged:  # not the picture the model was given: no before to compare with
                source = None
                result.notes.append(
                    f"the input is {decoded_in.width}×{decoded_in.height} now, not the "
                    f"{logged} the run read (no before)"
                )
    if source is not None and source.shape[2] != out.shape[2]:  # alpha on one side only
        source, out = source[:, :, :3], out[:, :, :3]
    align = (1, 1)
    if source is not None:
        align = (whole_scale(source.shape[1], width), whole_scale(source.shape[0], height))
    for box in choose_crops(out, shape.crop, shape.crops, align=align):
        before = None
        if source is not None:
            before = _png(before_crop(source, (width, height), box), in_icc)
        result.crops.append((box, before, _png(after_crop(out, box), out_icc)))
    small = thumbnail(out, shape.thumb)
    result.thumb = (_jpeg(small, out_icc), small.shape[1], small.shape[0])
    return result


def _changed(logged_w: int | None, logged_h: int | None, width: int, height: int) -> str:
    """The logged size as ``"W×H"`` when the file found now has another one (replaced
    since the run), else ``""`` (also when the log gives no size)."""
    if logged_w is None or logged_h is None or (logged_w, logged_h) == (width, height):
        return ""
    return f"{logged_w}×{logged_h}"


def _rgb_profile(icc: bytes | None) -> dict[str, bytes]:
    """Pillow's ``icc_profile`` option for an RGB picture: the image's own profile when it
    is an RGB one (gray pictures are shown as RGB, and a gray profile would not fit)."""
    return {"icc_profile": icc} if icc and icc[16:20] == b"RGB " else {}


def _png(pixels: np.ndarray, icc: bytes | None) -> bytes:
    """Lossless: a photographer judges exactly the pixels the model drew."""
    buffer = io.BytesIO()
    extra = _rgb_profile(icc)
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=6, **extra)
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray, icc: bytes | None) -> bytes:
    if pixels.shape[2] == 4:  # over mid grey, as the page's background
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        pixels = (pixels[:, :, :3] * alpha + 90.0 * (1.0 - alpha)).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=82, **_rgb_profile(icc))
    return buffer.getvalue()
