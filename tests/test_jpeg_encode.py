"""``imageio.jpeg_encode``: OpenCV's JPEG with Pillow's metadata segments, the same file as
Pillow writes, encoded without holding the GIL."""

from __future__ import annotations

import io
import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _imagegen import fake_icc, make_exif, make_photo_like, make_xmp, srgb_icc
from PIL import Image

from pocketsr_cli.errors import ImageWriteError
from pocketsr_cli.imageio import OutputPlan, encode_image
from pocketsr_cli.imageio.jpeg_encode import XMP_MAX, encode_jpeg, fits_jpeg
from pocketsr_cli.imageio.metadata import Metadata


def pillow_jpeg(pixels: np.ndarray, quality: int, meta: Metadata) -> bytes:
    """The file as Pillow writes it with pocketsr's settings (written out here, not taken
    from the module, so that both sides are not the same code)."""
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    options: dict[str, object] = {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    if meta.exif:
        options["exif"] = b"Exif\x00\x00" + meta.exif
    if meta.xmp:
        options["xmp"] = meta.xmp
    if meta.icc_profile:
        options["icc_profile"] = meta.icc_profile
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


EXIF = make_exif().tobytes()[6:]
BIG_ICC = fake_icc(b"RGB ") + bytes(range(256)) * 600  # three APP2 segments


@pytest.mark.parametrize("quality", [1, 60, 89, 90, 95, 100])
@pytest.mark.parametrize(
    ("exif", "icc", "xmp"),
    list(itertools.product([None, EXIF], [None, srgb_icc(), BIG_ICC], [None, make_xmp()])),
)
def test_rgb_is_byte_for_byte_what_pillow_writes(
    quality: int, exif: bytes | None, icc: bytes | None, xmp: bytes | None
) -> None:
    pixels = make_photo_like(37, 53)
    meta = Metadata(exif, icc, xmp)
    assert encode_jpeg(pixels, quality, meta) == pillow_jpeg(pixels, quality, meta)


@pytest.mark.parametrize("quality", [50, 95])
def test_gray_is_pillows_file_up_to_the_sampling_factor_pillow_sets_for_one_channel(
    quality: int,
) -> None:
    pixels = make_photo_like(40, 24)[:, :, :1].copy()
    meta = Metadata(EXIF, fake_icc(b"GRAY"), None)
    ours, pillows = encode_jpeg(pixels, quality, meta), pillow_jpeg(pixels, quality, meta)
    with Image.open(io.BytesIO(ours)) as im:
        assert im.mode == "L"
        assert im.info["icc_profile"] == meta.icc_profile
    assert np.array_equal(decoded(ours), decoded(pillows))
    if quality >= 90:
        assert ours == pillows
    else:  # Pillow writes 2x2 for the one component at 4:2:0, libjpeg's gray default 1x1
        assert len(ours) == len(pillows)
        assert sum(a != b for a, b in zip(ours, pillows, strict=True)) == 1


def test_metadata_reads_back_through_pillow() -> None:
    meta = Metadata(EXIF, BIG_ICC, make_xmp(marker="kept"))
    with Image.open(io.BytesIO(encode_jpeg(make_photo_like(16, 16), 95, meta))) as im:
        assert im.info["icc_profile"] == BIG_ICC
        assert im.info["xmp"] == meta.xmp
        assert im.info["exif"] == b"Exif\x00\x00" + EXIF


def test_blocks_too_long_for_a_segment_are_left_out_by_fits_jpeg_and_refused_without_it() -> None:
    long_exif = b"MM\x00*" + bytes(70_000)
    long_xmp = b"<x>" + b"a" * XMP_MAX + b"</x>"
    fitted = fits_jpeg(Metadata(long_exif, srgb_icc(), long_xmp))
    assert fitted == Metadata(None, srgb_icc(), None)
    assert fits_jpeg(Metadata(EXIF, None, b"a" * XMP_MAX)) == Metadata(EXIF, None, b"a" * XMP_MAX)
    pixels = make_photo_like(8, 8)
    for meta in (Metadata(long_exif, None, None), Metadata(None, None, long_xmp)):
        with pytest.raises(ImageWriteError, match="too long for JPEG"):
            encode_jpeg(pixels, 95, meta)
    # encode_image leaves them out, keeps the rest, and says so
    notes: list[str] = []
    data = encode_image(
        pixels, OutputPlan("jpeg", 8), metadata=Metadata(long_exif, None, None), notes=notes
    )
    with Image.open(io.BytesIO(data)) as im:
        assert "exif" not in im.info
    assert notes == [
        "its EXIF block (70,004 bytes) is too large for a JPEG (64 KiB at most): not copied"
    ]


def test_a_camera_xmp_packet_too_large_for_a_jpeg_leaves_room_for_the_record() -> None:
    """Both the camera's packet and pocketsr's record in it were left out, silently, so
    every later run kept the output as another program's (``unrecorded``). A packet that
    fits alone is still kept, without the record."""
    from pocketsr_cli.imageio.record import xmp_with_record

    def camera_packet(size: int) -> bytes:
        return (
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
            b'1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://'
            b'purl.org/dc/elements/1.1/" dc:source="' + b"x" * size + b'"/></rdf:RDF>'
            b"</x:xmpmeta>"
        )

    record = '{"pocketsr": "0"}'
    pixels = make_photo_like(8, 8)
    huge = camera_packet(70_000)
    notes: list[str] = []
    meta = Metadata(None, None, huge)
    data = encode_image(
        pixels, OutputPlan("jpeg", 8), metadata=meta, provenance=record, notes=notes
    )
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["xmp"] == xmp_with_record(None, record)
    assert notes and "its XMP packet" in notes[0] and "not copied" in notes[0]
    fits_alone = camera_packet(XMP_MAX - 300)
    assert len(fits_alone) <= XMP_MAX < len(xmp_with_record(fits_alone, record))
    data = encode_image(
        pixels, OutputPlan("jpeg", 8), metadata=Metadata(None, None, fits_alone), provenance=record
    )
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["xmp"] == fits_alone


def test_a_camera_packet_that_leaves_no_room_for_the_record_keeps_both(tmp_path: Path) -> None:
    """A camera's packet that fits a JPEG's XMP segment alone but not with the record was
    kept without the record, and every later run then called the output another
    program's (``unrecorded``) and kept it.  The packet's padding makes room where it can,
    the record goes in the packet; else the packet stays as it was and the record goes in
    a comment segment.  Both are found again."""
    from pocketsr_cli.imageio.record import read_provenance_text, xmp_with_record

    record = '{"model": "m", "source": "a <&> b.jpg"}'
    pixels = make_photo_like(8, 8)

    def written(packet: bytes, name: str) -> tuple[bytes, list[bytes], Path]:
        data = encode_image(
            pixels, OutputPlan("jpeg", 8), metadata=Metadata(None, None, packet), provenance=record
        )
        path = tmp_path / name
        path.write_bytes(data)
        with Image.open(path) as im:
            comments = [payload for marker, payload in im.applist if marker == "COM"]
            return im.info["xmp"], comments, path

    def camera(size: int, padding: int = 0, earlier: str | None = None) -> bytes:
        """A camera's packet of ``size`` bytes, ``padding`` of them whitespace before its
        trailer, holding an ``earlier`` record if given."""

        def packet(filler: int) -> bytes:
            made = (
                b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
                b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
                b'1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://'
                b'purl.org/dc/elements/1.1/"><dc:source>camera ' + b"m" * filler + b"</dc:source>"
                b"</rdf:Description></rdf:RDF></x:xmpmeta>\n"
                + b" " * padding
                + b'<?xpacket end="w"?>'
            )
            return made if earlier is None else xmp_with_record(made, earlier)

        made = packet(size - len(packet(0)))
        assert len(made) == size and len(made) <= XMP_MAX < len(xmp_with_record(made, record))
        return made

    # 1. Padding (whitespace before the trailer, left for in-place edits) makes room.
    xmp, comments, path = written(camera(XMP_MAX - 50, padding=2000), "padded.jpg")
    assert comments == [] and read_provenance_text(path) == record
    assert b"<dc:source>camera mmm" in xmp and xmp.endswith(b'</x:xmpmeta>\n<?xpacket end="w"?>')
    # 2. None to drop: the packet as it was, the record in a comment segment.
    full = camera(XMP_MAX - 50)
    xmp, comments, path = written(full, "full.jpg")
    assert xmp == full and comments == [b"pocketsr " + record.encode()]
    assert read_provenance_text(path) == record
    # 3. An earlier upscale's record in the packet goes: the comment's is the one found.
    xmp, comments, path = written(camera(XMP_MAX - 10, earlier='{"model": "old"}'), "again.jpg")
    assert b"pocketsr:record" not in xmp and b"<dc:source>camera mmm" in xmp
    assert comments and read_provenance_text(path) == record


def test_an_icc_profile_over_255_segments_is_refused() -> None:
    with pytest.raises(ImageWriteError, match="ICC profile"):
        encode_jpeg(make_photo_like(8, 8), 95, Metadata(None, bytes(65_519 * 255 + 1), None))


def gil_held_share(encode: object, pixels: np.ndarray, rounds: int = 4) -> float:
    """The share of ``encode``'s time a thread that wants the GIL spends waiting for it:
    the encoder runs in a thread while this one sleeps 0.5 ms at a time and counts how
    late each wake-up is (a sleeping thread needs the GIL back to return)."""
    late = 0.0
    done = threading.Event()

    def work() -> None:
        for _ in range(rounds):
            encode(pixels, 95, Metadata())  # type: ignore[operator]
        done.set()

    worker = threading.Thread(target=work)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        t0 = time.perf_counter()
        time.sleep(0.0005)
        late += max(0.0, time.perf_counter() - t0 - 0.0015)  # over 1 ms late counts
    worker.join()
    return late / (time.perf_counter() - start)


def test_encoding_leaves_the_gil_to_other_threads() -> None:
    """What the module is for: Pillow holds the GIL through its encode (measured as the
    control, so the measurement is shown to see it), this encoder does not."""
    pixels = make_photo_like(1080, 1920)
    # Other processes on the cores make wake-ups late too, never early: the least of a few
    # tries is the encoder's own share (a held GIL is late every time).
    ours = 1.0
    for _ in range(3):
        ours = min(ours, gil_held_share(encode_jpeg, pixels))
        if ours < 0.25:
            break
    pillows = gil_held_share(pillow_jpeg, pixels)
    # On a loaded machine both are late more often; the control tells load from a held
    # GIL: this encoder must then be late less than half as often as Pillow.
    assert ours < 0.25 or ours < pillows / 2, (
        f"a waiting thread was late {ours:.0%} of the time (Pillow: {pillows:.0%})"
    )
    if pillows < 0.5:
        pytest.skip(f"this Pillow held the GIL only {pillows:.0%} of its encode: no control")


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[::-1, :, :3],  # upside down (an orientation flip)
        lambda a: a[:, ::2, :3],  # strided
        lambda a: a[..., :3],  # RGBA's colour
        lambda a: a[::-1, ::-1, :1],  # gray, both axes reversed
    ],
)
def test_views_of_other_arrays_encode_as_their_contiguous_copies(view: object) -> None:
    rgba = make_photo_like(24, 30, channels=4)
    pixels = view(rgba)  # type: ignore[operator]
    expected = pillow_jpeg(np.ascontiguousarray(pixels), 95, Metadata())
    assert encode_jpeg(pixels, 95, Metadata()) == expected


def exif_with_thumbnail(thumbnail: int, after: bytes = b"", maker_note_size: int = 100) -> bytes:
    """A little-endian EXIF block: IFD0 with Make ("Canon", out of line) and a link to an
    Exif IFD holding a ``maker_note_size``-byte MakerNote, then IFD1 pointing at a
    ``thumbnail``-byte JPEG at the end; ``after``, when given, is a value IFD0 points at
    placed after the thumbnail."""
    import struct

    make, maker_note = b"Canon\0", b"M" * maker_note_size
    ifd0 = 8
    entries0 = 3 if after else 2
    ifd0_end = ifd0 + 2 + 12 * entries0 + 4
    make_at = ifd0_end
    exif_ifd = make_at + len(make)
    exif_end = exif_ifd + 2 + 12 + 4
    note_at = exif_end
    ifd1 = note_at + len(maker_note)
    ifd1_end = ifd1 + 2 + 24 + 4
    thumb_at = ifd1_end
    after_at = thumb_at + thumbnail
    out = bytearray(b"II*\0" + struct.pack("<I", ifd0))
    out += struct.pack("<H", entries0)
    out += struct.pack("<HHII", 0x010F, 2, len(make), make_at)
    out += struct.pack("<HHII", 0x8769, 4, 1, exif_ifd)
    if after:
        out += struct.pack("<HHII", 0x0131, 2, len(after), after_at)  # Software
    out += struct.pack("<I", ifd1) + make
    out += struct.pack("<H", 1) + struct.pack("<HHII", 0x927C, 7, len(maker_note), note_at)
    out += struct.pack("<I", 0) + maker_note
    out += struct.pack("<H", 2)
    out += struct.pack("<HHII", 0x0201, 4, 1, thumb_at)
    out += struct.pack("<HHII", 0x0202, 4, 1, thumbnail)
    out += struct.pack("<I", 0) + b"\xff\xd8" + b"t" * (thumbnail - 2) + after
    return bytes(out)


def through_jpeg(exif: bytes) -> tuple[Image.Exif, list[str]]:
    """The EXIF of a small JPEG written with ``exif``, and the notes the writer gave."""
    notes: list[str] = []
    data = encode_image(
        make_photo_like(8, 8), OutputPlan("jpeg", 8), metadata=Metadata(exif, None, None),
        notes=notes,
    )  # fmt: skip
    with Image.open(io.BytesIO(data)) as im:
        return im.getexif(), notes


def test_an_exif_block_too_large_only_by_its_thumbnail_keeps_the_rest() -> None:
    """A camera's EXIF from a TIFF or HEIF source, with a large thumbnail: the thumbnail is
    cut off the end and the camera's tags, maker note included, are kept byte for byte."""
    from pocketsr_cli.imageio.metadata import without_thumbnail_data

    exif = exif_with_thumbnail(70_000)
    trimmed = without_thumbnail_data(exif)
    link = 8 + 2 + 12 * 2  # IFD0's link to IFD1, now 0
    assert trimmed is not None and len(trimmed) < 300
    assert trimmed[:link] == exif[:link] and trimmed[link : link + 4] == bytes(4)
    assert trimmed[link + 4 :] == exif[link + 4 : len(trimmed)]
    tags, notes = through_jpeg(exif)
    assert notes == [
        "its EXIF thumbnail was left out: without it the EXIF block fits a JPEG (64 KiB at most)"
    ]
    assert tags[0x010F] == "Canon"
    assert tags.get_ifd(0x8769)[0x927C] == b"M" * 100
    assert tags.get_ifd(0x0201) == {} and 0x0201 not in tags
    # Something IFD0 points at after the thumbnail: cutting would lose it, so all goes.
    blocked = exif_with_thumbnail(70_000, after=b"editor\0")
    assert without_thumbnail_data(blocked) is None
    assert without_thumbnail_data(exif_with_thumbnail(10)[:20]) is None  # cut short


def camera_exif(endian: str, maker_note: bytes) -> Image.Exif:
    """A camera's EXIF as Pillow writes it (a TIFF source's block is rebuilt this way): the
    maker note amid the Exif IFD's values, the lens model's value, the Interoperability
    and GPS IFDs after it."""
    exif = Image.Exif()
    exif.endian = endian
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "EOS R5", 1  # Make, Model, Orientation
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal
    exif_ifd[0x927C] = maker_note
    exif_ifd[0xA434] = "RF24-105mm F4 L IS USM"  # LensModel
    exif_ifd[0x829A] = (1, 250)  # ExposureTime
    exif_ifd[0xA005] = {1: "R98"}  # Interoperability
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.5)
    return exif


def exif_tags(exif: bytes) -> dict[str, dict[int, object]]:
    parsed = Image.Exif()
    parsed.load(b"Exif\x00\x00" + exif)
    return {
        "ifd0": dict(parsed.items()) | {0x8769: None, 0x8825: None},  # offsets move
        "exif": dict(parsed.get_ifd(0x8769)) | {0xA005: None},
        "gps": dict(parsed.get_ifd(0x8825)),
        "interop": dict(parsed.get_ifd(0xA005)),
    }


@pytest.mark.parametrize("endian", ["<", ">"])
def test_an_exif_block_too_large_by_its_maker_note_keeps_the_rest(endian: str) -> None:
    """Without a thumbnail to cut, the whole block (camera, lens, date, GPS) was left out
    for its maker note; the note alone goes, the other tags keep their values."""
    from pocketsr_cli.imageio.metadata import without_maker_note

    exif = camera_exif(endian, b"N" * 70_001).tobytes()[6:]  # odd: Pillow pads it
    trimmed = without_maker_note(exif)
    assert trimmed is not None and len(trimmed) < 400 and trimmed[:8] == exif[:8]
    expected = exif_tags(exif)
    del expected["exif"][0x927C]
    assert exif_tags(trimmed) == expected
    assert exif_tags(trimmed)["exif"][0xA434] == "RF24-105mm F4 L IS USM"
    tags, notes = through_jpeg(exif)
    assert notes == [
        "its EXIF maker note was left out: without it the EXIF block fits a JPEG (64 KiB at most)"
    ]
    assert tags[0x010F] == "Canon" and tags[0x0110] == "EOS R5" and tags[0x0112] == 1
    assert tags.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
    assert tags.get_ifd(0x8769)[0xA434] == "RF24-105mm F4 L IS USM"
    assert 0x927C not in tags.get_ifd(0x8769)
    assert tags.get_ifd(0x8825)[2] == (48.0, 51.0, 29.5)


def test_a_maker_note_is_cut_after_the_thumbnail_or_when_the_thumbnail_cannot_be() -> None:
    """Cut in turn while the block is too large: the thumbnail off the end first, then the
    maker note; a thumbnail that stays moves up with the rest."""
    from PIL import ExifTags

    def fitted(exif: bytes) -> tuple[bytes | None, list[str]]:
        notes: list[str] = []
        return fits_jpeg(Metadata(exif, None, None), notes).exif, notes

    exif, notes = fitted(exif_with_thumbnail(70_000, maker_note_size=70_000))
    assert exif is not None and len(exif) < 200
    assert notes == [
        "its EXIF thumbnail and maker note were left out: without them the EXIF block fits a "
        "JPEG (64 KiB at most)"
    ]
    assert exif_tags(exif)["ifd0"][0x010F] == "Canon"
    # Something after the thumbnail keeps it from being cut: the maker note alone goes.
    exif, notes = fitted(exif_with_thumbnail(1000, after=b"editor\0", maker_note_size=70_000))
    assert exif is not None and len(exif) < 1300
    assert notes == [
        "its EXIF maker note was left out: without it the EXIF block fits a JPEG (64 KiB at most)"
    ]
    parsed = Image.Exif()
    parsed.load(b"Exif\x00\x00" + exif)
    assert parsed[0x010F] == "Canon" and parsed[0x0131] == "editor"
    ifd1 = parsed.get_ifd(ExifTags.IFD.IFD1)
    thumbnail = exif[ifd1[0x0201] : ifd1[0x0201] + ifd1[0x0202]]
    assert thumbnail == b"\xff\xd8" + b"t" * 998
    # Too large without both as well: all goes, as before.
    user_comment = camera_exif("<", b"N" * 100)
    user_comment.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + b"c" * 70_000
    block = user_comment.tobytes()[6:]
    too_large = f"its EXIF block ({len(block):,} bytes) is too large for a JPEG"
    assert fitted(block) == (None, [f"{too_large} (64 KiB at most): not copied"])


def test_a_maker_note_is_kept_where_cutting_it_out_could_break_an_offset() -> None:
    """Offsets the cut does not know how to move, bytes it would take from another tag, or
    a block cut short: None, and the caller leaves the block out."""
    import struct

    from pocketsr_cli.imageio.metadata import without_maker_note

    exif = camera_exif("<", b"N" * 1000).tobytes()[6:]
    assert without_maker_note(exif) is not None
    assert without_maker_note(make_exif().tobytes()[6:]) is None  # no maker note
    assert without_maker_note(exif[:120]) is None
    strips = camera_exif("<", b"N" * 1000)
    strips[0x0111] = 8  # StripOffsets: image data this module does not follow
    assert without_maker_note(strips.tobytes()[6:]) is None
    # The lens model's value pointed into the maker note's bytes.
    note_at = exif.index(b"N" * 1000)
    lens = exif.index(struct.pack("<HHI", 0xA434, 2, 23))
    shared = bytearray(exif)
    struct.pack_into("<I", shared, lens + 8, note_at + 10)
    assert without_maker_note(bytes(shared)) is None


@pytest.mark.parametrize("endian", ["<", ">"])
def test_a_maker_note_in_ifd0_is_cut_out_as_one_in_the_exif_ifd(endian: str) -> None:
    """Some cameras write the maker note in IFD0 rather than the Exif IFD (ExifTool reads
    it there too): it goes the same way, and so do both when a block holds two."""
    from pocketsr_cli.imageio.metadata import without_maker_note

    camera = camera_exif(endian, b"N" * 100)
    del camera.get_ifd(0x8769)[0x927C]
    camera[0x927C] = b"I" * 70_001
    exif = camera.tobytes()[6:]
    trimmed = without_maker_note(exif)
    assert trimmed is not None and len(trimmed) < 400
    expected = exif_tags(exif)
    del expected["ifd0"][0x927C]
    assert exif_tags(trimmed) == expected
    tags, notes = through_jpeg(exif)
    assert notes == [
        "its EXIF maker note was left out: without it the EXIF block fits a JPEG (64 KiB at most)"
    ]
    assert tags[0x010F] == "Canon" and 0x927C not in tags
    assert tags.get_ifd(0x8769)[0xA434] == "RF24-105mm F4 L IS USM"
    assert tags.get_ifd(0x8825)[2] == (48.0, 51.0, 29.5)
    both = camera_exif(endian, b"N" * 40_001)
    both[0x927C] = b"I" * 40_001
    block = both.tobytes()[6:]
    trimmed = without_maker_note(block)
    assert trimmed is not None and len(trimmed) < 400
    expected = exif_tags(block)
    del expected["ifd0"][0x927C], expected["exif"][0x927C]
    assert exif_tags(trimmed) == expected


_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def offsets_inside(exif: bytes) -> bool:
    """Whether every offset a reader follows in a bare EXIF block (IFD0 and its links, the
    Exif, GPS and Interoperability IFDs, values stored out of line, the thumbnail) points
    past the header and at bytes within the block (written out here, apart from the
    module's walk)."""
    import struct

    order = "<" if exif[:2] == b"II" else ">"
    todo, seen = [struct.unpack_from(order + "I", exif, 4)[0]], set()
    while todo:
        at = todo.pop()
        if at < 8 or at + 2 > len(exif):
            return False
        (count,) = struct.unpack_from(order + "H", exif, at)
        if at + 2 + 12 * count + 4 > len(exif):
            return False
        if at in seen:
            continue
        seen.add(at)
        thumbnail, length = None, 0
        for pos in range(at + 2, at + 2 + 12 * count, 12):
            tag, typ, n, value = struct.unpack_from(order + "HHII", exif, pos)
            if typ not in _TYPE_BYTES:
                return False
            if tag in (0x8769, 0x8825, 0xA005):
                todo += [value] if value else []
            elif tag == 0x0201:
                thumbnail = value
            elif _TYPE_BYTES[typ] * n > 4 and not 8 <= value <= len(exif) - _TYPE_BYTES[typ] * n:
                return False
            length = value if tag == 0x0202 else length
        if thumbnail is not None and not 8 <= thumbnail <= len(exif) - length:
            return False
        (after,) = struct.unpack_from(order + "I", exif, at + 2 + 12 * count)
        todo += [after] if after else []
    return True


def exif_blocks() -> list[bytes]:
    """Camera EXIF blocks: built here (a thumbnail, maker notes in the Exif IFD and in
    IFD0, both byte orders), and those of the photos in ``data/`` where it is present."""
    from conftest import REPO

    from pocketsr_cli.imageio.metadata import bare_exif, without_thumbnail

    ifd0_note = camera_exif(">", b"N" * 30)
    ifd0_note[0x927C] = b"I" * 41
    blocks = [
        exif_with_thumbnail(120, maker_note_size=60),
        exif_with_thumbnail(120, after=b"editor\0", maker_note_size=61),
        camera_exif("<", b"N" * 61).tobytes()[6:],
        ifd0_note.tobytes()[6:],
        without_thumbnail(exif_with_thumbnail(90, maker_note_size=20)),  # its link cut
    ]
    photos = sorted((REPO / "data" / "test").glob("*.jpg")) + sorted(
        (REPO / "data" / "val").glob("*.jpg")
    )
    for path in photos[:8]:
        with Image.open(path) as im:
            block = bare_exif(im.info.get("exif"))
        if block is not None and len(block) > 1000:
            blocks.append(block)
    return blocks


def test_cutting_the_thumbnail_or_maker_note_of_damaged_exif_never_breaks_an_offset() -> None:
    """The thumbnail and maker-note cuts walk the block the same way and refuse what they
    cannot follow: on EXIF cut short or with a byte changed anywhere they never raise, and
    what they return has every offset inside it.  (The thumbnail cut used to keep an Exif
    IFD offset pointing past the end, or a value running past it.)"""
    import random

    from pocketsr_cli.imageio.metadata import without_maker_note, without_thumbnail_data

    rng = random.Random(7)
    cuts = (without_thumbnail_data, without_maker_note)
    for exif in exif_blocks():
        assert offsets_inside(exif)
        assert any(cut(exif) is not None for cut in cuts)
        if len(exif) <= 1000:  # built here: every length and every byte
            ends, flips = range(len(exif)), [(at, v) for at in range(len(exif)) for v in (0, 0xFF)]
        else:  # a photo's: a sample
            ends = rng.sample(range(len(exif)), 100)
            flips = [(rng.randrange(len(exif)), rng.randrange(256)) for _ in range(300)]
        damaged = [exif[:end] for end in ends]
        damaged += [exif[:at] + bytes([value]) + exif[at + 1 :] for at, value in flips]
        for block in damaged:
            for cut in cuts:
                edited = cut(block)
                assert edited is None or offsets_inside(edited), (cut.__name__, block)


def test_a_thumbnail_whose_link_was_cut_when_the_photo_was_turned_is_cut_off_too() -> None:
    """Turning the pixels upright cuts IFD0's link to the thumbnail (it would show
    sideways) but left its bytes in the block: a block too large only by them lost all its
    EXIF in a JPEG.  They go, as a linked thumbnail does."""
    from pocketsr_cli.imageio.metadata import (
        patch_exif,
        without_thumbnail,
        without_thumbnail_data,
    )

    exif = exif_with_thumbnail(70_000)
    unlinked = without_thumbnail(exif)
    trimmed = without_thumbnail_data(unlinked)
    assert trimmed is not None and len(trimmed) < 300 and unlinked.startswith(trimmed)
    assert exif_tags(trimmed) == exif_tags(without_thumbnail_data(exif) or b"")
    tags, notes = through_jpeg(unlinked)
    assert notes == [
        "its EXIF thumbnail was left out: without it the EXIF block fits a JPEG (64 KiB at most)"
    ]
    assert tags[0x010F] == "Canon" and tags.get_ifd(0x8769)[0x927C] == b"M" * 100
    # Nothing after what IFD0's side points at: nothing to cut.
    assert without_thumbnail_data(trimmed) is None
    assert without_thumbnail_data(patch_exif(camera_exif("<", b"N" * 10).tobytes()[6:])) is None


def test_ifd_tables_laid_over_each_other_are_walked_in_linear_time() -> None:
    """A crafted block whose IFD0 entries each point at the next entry, read as an IFD
    (big-endian: its count is the low half of that offset), is a chain of tables that
    share their entries: the walk followed every one, quadratic in the block (0.8 MB with
    2,000 entries: 12 s and 0.8 GB; with 65,535 it did not end).  Such a block is not
    understood, and a JPEG leaves it out."""
    import struct

    from pocketsr_cli.imageio.metadata import _walk

    n = 600
    exif = bytearray(b"MM\x00*" + struct.pack(">IH", 8, n))
    for k in range(n):
        exif += struct.pack(">HHII", 0x8769, 4, 1, 8 + 12 * (k + 1))
    exif = bytes(exif + bytes(4 + 12 * 65536))
    layout = _walk(exif)
    assert layout is not None and not layout.understood(thumbnail=True)
    assert len(layout.refs) <= len(exif) // 12  # what tables that do not overlap can hold
    notes: list[str] = []
    assert fits_jpeg(Metadata(exif=exif), notes).exif is None
    assert notes == [
        f"its EXIF block ({len(exif):,} bytes) is too large for a JPEG (64 KiB at most): not copied"
    ]
