"""Provenance storage: where an output keeps pocketsr's record of how it was made.

The record itself (one line of JSON) is ``pocketsr_cli.provenance``'s business; this
module stores and finds it: a PNG ``tEXt`` chunk with the keyword ``pocketsr``, the XMP
property ``pocketsr:record`` (merged into the camera's XMP packet, an older record
replaced) in JPEG, WebP and TIFF, and for BMP, which has no room for metadata, a sidecar
file ``NAME.bmp.pocketsr.json``.  A JPEG whose camera packet leaves no room for the record
in its 64 KiB segment keeps it in a comment segment instead (:func:`jpeg_record`); a WebP
or TIFF, whose one XMP packet is the only place for it, gives up a camera packet the
record cannot join (:func:`packet_with_record`).
:func:`read_provenance_text` finds it again from the file header alone and never raises.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from pocketsr_cli.atomicfile import held_temp
from pocketsr_cli.errors import ImageReadError, ImageWriteError
from pocketsr_cli.imageio.atomic import write_atomic
from pocketsr_cli.imageio.backends import open_pillow
from pocketsr_cli.imageio.formats import TIFF_MAGIC
from pocketsr_cli.imageio.metadata import xmp_bytes
from pocketsr_cli.imageio.tiff import read_tiff_tags

PROVENANCE_KEYWORD = b"pocketsr"
"""The PNG text chunk keyword of the record."""

SIDECAR_SUFFIX = ".pocketsr.json"
"""Appended to a BMP output's name for the file holding its record."""

_TAG_XMP = 700  # a TIFF's XMP packet

_XMP_NAMESPACE = "urn:pocketsr:ns:1.0/"
# The block xmp_with_record writes, to be replaced when an output is upscaled again.
_XMP_OUR_BLOCK = re.compile(
    rb'\s*<rdf:Description rdf:about="" xmlns:pocketsr="'
    + re.escape(_XMP_NAMESPACE.encode())
    + rb'">\s*<pocketsr:record>.*?</pocketsr:record>\s*</rdf:Description>',
    re.S,
)
_XMP_RECORD_ELEMENT = re.compile(rb"<pocketsr:record>(.*?)</pocketsr:record>", re.S)
_XMP_RECORD_ATTRIBUTE = re.compile(rb"\spocketsr:record\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_XMP_PACKET = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">%s\n </rdf:RDF>\n'
    b"</x:xmpmeta>\n"
    b'<?xpacket end="w"?>'
)


def embeds_provenance(fmt: str) -> bool:
    """Whether an output of format ``fmt`` holds its record itself (BMP needs a sidecar)."""
    return fmt in ("png", "jpeg", "webp", "tiff")


def sidecar_path(path: Path) -> Path:
    """Where the record of ``path`` goes when its format cannot hold it: ``a.bmp.pocketsr.json``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


COMMENT_PREFIX = b"pocketsr "
"""What a JPEG comment (COM) segment holding the record starts with, the record after it."""

_XMP_PADDING = re.compile(rb"\s+(<\?xpacket\s+end=)")


def xmp_without_record(xmp: bytes) -> bytes:
    """``xmp`` without any ``pocketsr:record`` (an earlier upscale's), all else as it was."""
    cleaned = _XMP_OUR_BLOCK.sub(b"", xmp)
    return _XMP_RECORD_ATTRIBUTE.sub(b"", _XMP_RECORD_ELEMENT.sub(b"", cleaned))


def jpeg_record(
    xmp: bytes | None, record: str, limit: int, notes: list[str] | None = None
) -> tuple[bytes, bytes | None]:
    """The XMP packet of a JPEG output, whose segment holds ``limit`` bytes, and the
    payload of the comment segment to write beside it (None: none), so that the output
    carries both ``xmp`` (the camera's) and ``record``.

    The record goes in the packet where it fits there (:func:`xmp_with_record`); else in
    the packet without its padding (the whitespace XMP writers leave before the trailer for
    in-place edits, which says nothing); else the camera's packet is kept as it was (less
    an earlier record) and the record goes in a comment segment, ``pocketsr {...}``, which
    :func:`read_provenance_text` reads as well.  A packet too large for the segment even
    alone gives way to one holding the record alone, with a line in ``notes``."""
    if xmp is None:
        return xmp_with_record(None, record), None
    for packet in (xmp, _XMP_PADDING.sub(rb"\n\1", xmp)):
        merged = xmp_with_record(packet, record)
        if len(merged) <= limit and _xmp_record(merged) == record:
            return merged, None
    kept, comment = xmp_without_record(xmp), COMMENT_PREFIX + record.encode("latin-1")
    if len(kept) <= limit and len(comment) <= limit:
        return kept, comment
    if notes is not None:
        notes.append(
            f"its XMP packet ({len(xmp):,} bytes) is too large for a JPEG (64 KiB at most): "
            "not copied"
        )
    return xmp_with_record(None, record), None


def packet_with_record(xmp: bytes | None, record: str, notes: list[str] | None = None) -> bytes:
    """The XMP packet of a WebP or TIFF output, carrying both ``xmp`` (the camera's; None:
    none) and ``record``.

    The record joins the packet (:func:`xmp_with_record`).  A packet it cannot join
    (malformed: no ``</rdf:RDF>`` to add it before) gives way to one holding the record
    alone, with a line in ``notes``: these formats have no other place for the record, and
    without it every later run would call the output another program's."""
    merged = xmp_with_record(xmp, record)
    if _xmp_record(merged) == record:
        return merged
    if notes is not None:
        notes.append("its XMP packet is malformed (pocketsr's record cannot join it): not copied")
    return xmp_with_record(None, record)


def _comment_record(applist: object) -> str | None:
    """The record in a JPEG's comment segments (Pillow's ``applist``), or None."""
    for marker, payload in applist if isinstance(applist, list) else ():
        if marker == "COM" and isinstance(payload, bytes) and payload.startswith(COMMENT_PREFIX):
            return payload[len(COMMENT_PREFIX) :].decode("latin-1").strip() or None
    return None


def xmp_with_record(xmp: bytes | None, record: str) -> bytes:
    """``xmp`` (None: a new packet) with ``pocketsr:record`` set to ``record``.

    The record goes in a ``rdf:Description`` of its own, so the camera's properties are
    left byte for byte; an older record (an output upscaled again) is removed first.  A
    packet without ``</rdf:RDF>`` cannot be merged into and is returned unchanged.
    """
    from xml.sax.saxutils import escape

    block = (
        f'\n  <rdf:Description rdf:about="" xmlns:pocketsr="{_XMP_NAMESPACE}">'
        f"<pocketsr:record>{escape(record)}</pocketsr:record></rdf:Description>"
    ).encode()
    if not xmp:
        return _XMP_PACKET % block
    cleaned = xmp_without_record(xmp)
    end = cleaned.rfind(b"</rdf:RDF>")
    if end < 0:
        return xmp
    return cleaned[:end] + block + b"\n " + cleaned[end:]


def _xmp_record(xmp: object) -> str | None:
    """The ``pocketsr:record`` value in an XMP packet (element or attribute form), or None."""
    import html

    packet = xmp_bytes(xmp)
    if not packet or b"pocketsr:record" not in packet:
        return None
    found = _XMP_RECORD_ELEMENT.search(packet) or _XMP_RECORD_ATTRIBUTE.search(packet)
    if found is None:
        return None
    raw = next(group for group in found.groups() if group is not None)
    return html.unescape(raw.decode("utf-8", "replace"))


def _png_record(handle: IO[bytes]) -> str | None:
    """The ``pocketsr`` text chunk's text, reading chunk headers only up to the image data."""
    handle.seek(8)
    while True:
        head = handle.read(8)
        if len(head) < 8:
            return None
        (length,) = struct.unpack(">I", head[:4])
        kind = head[4:]
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind in (b"tEXt", b"iTXt") and length <= 1 << 20:
            keyword, _, rest = handle.read(length).partition(b"\x00")
            handle.seek(4, os.SEEK_CUR)
            if keyword != PROVENANCE_KEYWORD:
                continue
            if kind == b"tEXt":
                return rest.decode("latin-1")
            if rest[:1] != b"\x00":  # compressed iTXt: not what we write
                return None
            # iTXt after the keyword: compression flag and method, language, NUL,
            # translated keyword, NUL, UTF-8 text.
            text = rest[2:].split(b"\x00", 2)
            return text[2].decode("utf-8", "replace") if len(text) == 3 else None
        handle.seek(length + 4, os.SEEK_CUR)


def read_provenance_text(path: Path) -> str | None:
    """The record ``path`` carries (see :func:`encode_image`), or None when it has none.

    Reads what precedes the pixels only (PNG chunk headers up to the image data; a
    TIFF's XMP tag, found with seeks; the JPEG/WebP header through Pillow; a BMP's
    sidecar file), so it costs about a millisecond, not a decode.  Never raises: an
    unreadable or corrupt file has no record.
    """
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(12)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                return _png_record(handle)
            if head[:2] == b"BM":
                return sidecar_path(Path(path)).read_text(encoding="utf-8").strip() or None
            if head[:4] in TIFF_MAGIC:  # no Pillow open: it reads every tag (or fails)
                return _xmp_record(read_tiff_tags(handle, {_TAG_XMP}).get(_TAG_XMP))
            handle.seek(0)
            comment = None
            try:
                with open_pillow(handle) as im:
                    xmp = im.info.get("xmp") or getattr(im, "tag_v2", {}).get(_TAG_XMP)
                    if im.format == "JPEG":  # where a large camera packet left no room
                        comment = _comment_record(getattr(im, "applist", None))
            except ImageReadError:
                return None
            return _xmp_record(xmp) or comment
    except Exception:  # a record is optional: any problem reading it means "none"
        return None


def write_sidecar(image: Path, record: str | None) -> None:
    """Write ``record`` beside ``image`` (:func:`sidecar_path`), atomically; None removes a
    sidecar left there by an earlier run.

    Raises:
        ImageWriteError: as :func:`write_atomic`.
    """
    target = sidecar_path(image)
    if record is None:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        return
    write_atomic(target, (record + "\n").encode("utf-8"))


@contextlib.contextmanager
def stage_sidecar(image: Path, record: str | None) -> Iterator[Path | None]:
    """Write ``record`` to a temporary file beside ``image``'s sidecar and yield it, to be
    put in place by :func:`place_sidecar` once the image is: a sidecar that cannot be
    written then fails before the image (or an older output) is touched.  The file stays
    locked while the block runs (``atomicfile.held_temp``: no other run's sweep takes it)
    and is removed on leaving unless it was put in place.  Yields None for no record.

    Raises:
        ImageWriteError: on entering, the temporary file cannot be written (nothing is left).
    """
    if record is None:
        yield None
        return
    target = sidecar_path(image)
    with contextlib.ExitStack() as stack:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # as write_atomic does
            staged = stack.enter_context(held_temp(target))
            staged.write_bytes((record + "\n").encode("utf-8"))
        except OSError as exc:
            raise ImageWriteError(f"cannot write {target}: {exc.strerror or exc}") from exc
        yield staged


def place_sidecar(image: Path, staged: Path | None) -> None:
    """Put a :func:`stage_sidecar` file in place as ``image``'s sidecar; None removes a
    sidecar left there by an earlier run.

    Raises:
        ImageWriteError: the rename failed (the staged file is removed), or the earlier
            sidecar cannot be removed (a folder in its place, no permission).
    """
    target = sidecar_path(image)
    if staged is None:
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # it would describe the new image wrongly
            raise ImageWriteError(
                f"cannot remove the earlier record {target}: {exc.strerror or exc}"
            ) from exc
        return
    try:
        os.replace(staged, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise ImageWriteError(f"cannot write {target}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def sidecar_written(image: Path, record: str | None) -> Iterator[Callable[[], None]]:
    """Write ``image``'s sidecar record around the writing of the image itself.

    On entering, ``record`` is staged (:func:`stage_sidecar`): one that cannot be written
    fails before the image, or an older output, is touched.  The block writes the image,
    then calls the function yielded, which puts the record in place (:func:`place_sidecar`;
    None removes an older sidecar) or, when even that fails, takes the image away again:
    no image is left without its record.  A staged record that was not placed (the image
    was not written) is removed on leaving.

    Raises:
        ImageWriteError: the record cannot be staged (on entering) or placed.
    """
    with stage_sidecar(image, record) as staged:

        def place() -> None:
            try:
                place_sidecar(image, staged)
            except ImageWriteError:
                with contextlib.suppress(OSError):
                    image.unlink()
                raise

        yield place
