"""The hostile corpus, continued (issue 18): what decoding and memory can do to a run.

Classes, numbered as in the issue: 2, memory (an image that cannot fit fails alone, before
it is decoded; images are admitted while what is in flight fits; Pillow's bomb check never
speaks); 4, corrupt files (data that stops early is ``failed``, never ``ok`` with black or
grey filler, while every valid variant passes); 5, transparency (a tRNS colour key becomes
alpha); 10, quiet losses (first frame or page noted, bytes as the extension says, library
warnings and odd messages turned into lines).  And a review page's picture folder is not
scanned.  Each run checks the exact line, the exit code, the good files beside the bad
ones and the inputs, byte for byte (helpers from ``test_hostile``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from _imagegen import make_photo_like
from PIL import Image
from test_hostile import FAST, Doubler, by_input, cli, fingerprint, image, leftovers, runner

from pocketsr_cli import imageio, jobs, libwarnings, memory, pipeline
from pocketsr_cli.cli import app
from pocketsr_cli.errors import ImageReadError
from pocketsr_cli.imageio import read_header, read_image
from pocketsr_cli.jobs import Naming, collect_jobs
from pocketsr_cli.pipeline import MemoryLimit, Options, run

TRUNCATED = "file is truncated or corrupt: {} (incomplete download or copy?)"
CUT = "file is truncated or corrupt (incomplete download or copy?)"  # the decoder's own find

# --- building files byte by byte ------------------------------------------------------------


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_bytes(
    rows: list[bytes],
    width: int,
    height: int,
    *,
    depth: int = 8,
    colour: int = 2,
    interlace: int = 0,
    extra: bytes = b"",
) -> bytes:
    """A PNG whose IDAT holds ``rows`` (filtered scanlines, filter byte included) as one
    complete zlib stream, whatever the header says; ``extra`` chunks go before IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def scanlines(pixels: np.ndarray) -> list[bytes]:
    """Unfiltered rows of an ``H x W x C`` array (16-bit as big-endian samples)."""
    data = pixels.astype(">u2") if pixels.dtype == np.uint16 else pixels
    return [b"\x00" + row.tobytes() for row in data]


def adam7(pixels: np.ndarray) -> list[bytes]:
    """The rows of the seven Adam7 passes, each pass's sub-image unfiltered."""
    rows = []
    for row0, col0, row_step, col_step in imageio.png._ADAM7:
        sub = pixels[row0::row_step, col0::col_step]
        if sub.size:
            rows += scanlines(sub)
    return rows


def encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
        buffer, fmt, **options
    )
    return buffer.getvalue()


def cut_with_end(data: bytes, end: bytes, fraction: float = 0.5) -> bytes:
    """``data`` cut at ``fraction`` with its end marker put back (what a careless repair
    tool or an interrupted copy that is "fixed up" leaves)."""
    return data[: int(len(data) * fraction)] + end


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]


PHOTO = make_photo_like(100, 120, 3)

# --- 4. corrupt or truncated files are failed, never ok ------------------------------------


def corrupt_corpus(folder: Path) -> dict[str, str]:
    """Bad files in ``folder``, each with the exact error its line must carry."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[bytes, str]] = {}
    jpeg = encoded(PHOTO, "JPEG", quality=90)
    progressive = encoded(PHOTO, "JPEG", quality=90, progressive=True)
    short_jpeg = TRUNCATED.format("its JPEG image data stops before the last block")
    cases["half.jpg"] = (cut_with_end(jpeg, b"\xff\xd9"), short_jpeg)
    cases["tail_cut.jpg"] = (cut_with_end(jpeg, b"\xff\xd9", 0.9), short_jpeg)
    cases["half_progressive.jpg"] = (cut_with_end(progressive, b"\xff\xd9"), short_jpeg)
    second_scan = progressive.index(b"\xff\xda", progressive.index(b"\xff\xda") + 2)
    cases["dc_only_progressive.jpg"] = (  # cut after its DC scan, end marker put back
        progressive[:second_scan] + b"\xff\xd9",
        TRUNCATED.format("its progressive JPEG data stops after its first scans"),
    )
    gray = encoded(PHOTO[..., :1], "JPEG", quality=90)
    cases["half_gray.jpg"] = (cut_with_end(gray, b"\xff\xd9"), short_jpeg)
    cases["cut.jpg"] = (jpeg[: len(jpeg) // 2], CUT)
    half = len(jpeg) // 2  # a stray marker in the scan: libjpeg greys out the rest
    cases["stray_end.jpg"] = (jpeg[:half] + b"\xff\xd9" + jpeg[half:], short_jpeg)
    stray_restart = TRUNCATED.format("its JPEG image data holds a stray restart marker")
    cases["stray_restart.jpg"] = (jpeg[:half] + b"\xff\xd3" + jpeg[half:], stray_restart)
    restarts = encoded(PHOTO, "JPEG", quality=90, restart_marker_blocks=2)
    rst = restarts.index(b"\xff\xd2", restarts.index(b"\xff\xda"))
    cases["restart_out_of_order.jpg"] = (
        restarts[: rst + 1] + b"\xd5" + restarts[rst + 2 :],
        stray_restart,
    )
    # Other stray markers cut a scan short as well: APP, COM, DHT in a sequential scan, APP
    # in a progressive one, an end marker or APP just before a restart marker (where the
    # filler probe cannot tell: the restart markers are counted).
    for name, stray in (("app", b"\xff\xe1\x00\x02"), ("com", b"\xff\xfe\x00\x04hi")):
        cases[f"stray_{name}.jpg"] = (jpeg[:half] + stray + jpeg[half:], short_jpeg)
    cases["stray_dht.jpg"] = (jpeg[:half] + b"\xff\xc4\x00\x02" + jpeg[half:], short_jpeg)
    middle = len(progressive) * 3 // 4  # inside its later scans
    while progressive[middle - 1] == 0xFF:
        middle += 1
    cases["stray_app_progressive.jpg"] = (
        progressive[:middle] + b"\xff\xe1\x00\x02" + progressive[middle:],
        short_jpeg,
    )
    for name, stray in (("end", b"\xff\xd9"), ("app", b"\xff\xe1\x00\x02")):
        cases[f"stray_{name}_at_a_restart.jpg"] = (
            restarts[:rst] + stray + restarts[rst:],
            short_jpeg,
        )
    cases["short_idat.png"] = (
        png_bytes(scanlines(PHOTO[:10]), 120, 100),
        TRUNCATED.format("its image data holds 10 of its 100 rows"),
    )
    cases["short_interlaced.png"] = (
        png_bytes(adam7(PHOTO)[:40], 120, 100, interlace=1),
        TRUNCATED.format("its interlaced image data stops at 6 %"),
    )
    wide = PHOTO.astype(np.uint16) * 257
    cases["short16.png"] = (
        png_bytes(scanlines(wide[:50]), 120, 100, depth=16),
        TRUNCATED.format("its image data holds 50 of its 100 rows"),
    )
    png = encoded(PHOTO, "PNG")
    cases["cut_iend.png"] = (
        cut_with_end(png, chunk(b"IEND", b"")),
        TRUNCATED.format("the PNG ends before its end chunk"),
    )
    cases["flipped.png"] = (
        flip(png, png.index(b"IDAT") + 500),
        "corrupt PNG: its IDAT chunk fails its checksum",
    )
    bad_filter = scanlines(wide)
    bad_filter[7] = b"\x09" + bad_filter[7][1:]  # libpng: "bad adaptive filter value"
    cases["bad_filter16.png"] = (
        png_bytes(bad_filter, 120, 100, depth=16),
        "corrupt PNG: a row of its image data has an invalid filter",
    )
    cases["no_data.png"] = (
        png[: png.index(b"IDAT") - 4] + chunk(b"IEND", b""),
        TRUNCATED.format("the PNG holds no image data"),
    )
    deflated = encoded(PHOTO, "TIFF", compression="tiff_adobe_deflate")
    cases["corrupt_deflate.tif"] = (
        flip(deflated, len(deflated) // 2),
        "corrupt image data (decoder error -2)",
    )
    cases["cut.tif"] = (deflated[: len(deflated) // 2], CUT)
    webp = encoded(PHOTO, "WEBP", quality=90)
    cases["cut.webp"] = (webp[: len(webp) // 2], CUT)
    gif = encoded(PHOTO, "GIF")
    cases["cut_trailer.gif"] = (cut_with_end(gif, b"\x00;"), CUT)
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    return {name: error for name, (_, error) in cases.items()}


def test_truncated_and_corrupt_files_fail_with_their_reason(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    expected = corrupt_corpus(folder)
    image(folder / "good.png", seed=1)
    (folder / "good.jpg").write_bytes(encoded(PHOTO, "JPEG", quality=90))
    # Restart markers in order, in a sequential and a progressive file: complete.
    (folder / "good_rst.jpg").write_bytes(
        encoded(PHOTO, "JPEG", quality=90, restart_marker_blocks=2)
    )
    (folder / "good_rst_prog.jpg").write_bytes(
        encoded(PHOTO, "JPEG", quality=90, progressive=True, restart_marker_rows=1)
    )
    before = fingerprint(folder)
    code, images, summary, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 1, err
    lines = by_input(images, folder)
    got = {name: (line["status"], line["error"]) for name, line in lines.items()}
    want = {name: ("failed", error) for name, error in expected.items()}
    for good in ("good.png", "good.jpg", "good_rst.jpg", "good_rst_prog.jpg"):
        want[good] = ("ok", None)
    assert got == want
    assert summary["failed"] == len(expected) and summary["ok"] == 4
    assert sorted(os.listdir(tmp_path / "out")) == [
        "good.jpg",
        "good.png",
        "good_rst.jpg",
        "good_rst_prog.jpg",
    ]
    assert fingerprint(folder) == before
    assert "Traceback" not in err and "Warning" not in err and "libpng" not in err


def test_corrupt_files_never_reach_stderr_from_a_library(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """libtiff (Pillow's), libpng and OpenCV print straight to the file descriptor: the
    checks and the silenced handlers must keep every one of them quiet."""
    expected = corrupt_corpus(tmp_path)
    wide = PHOTO.astype(np.uint16) * 257
    icc = chunk(b"iCCP", b"x\x00\x00" + zlib.compress(b"not a profile"))  # libpng: "too short"
    (tmp_path / "odd_icc16.png").write_bytes(
        png_bytes(scanlines(wide), 120, 100, depth=16, extra=icc)
    )
    capfd.readouterr()
    for name, error in expected.items():
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        assert str(info.value) == error, name
    assert read_image(tmp_path / "odd_icc16.png").pixels.dtype == np.uint16
    assert capfd.readouterr().err == ""


def valid_corpus(folder: Path) -> dict[str, np.ndarray | None]:
    """Unusual but valid files and the pixels each must decode to (None: not compared)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, np.ndarray | None]] = {}
    files["progressive.jpg"] = (encoded(PHOTO, "JPEG", quality=90, progressive=True), None)
    files["restart.jpg"] = (encoded(PHOTO, "JPEG", quality=90, restart_marker_blocks=3), None)
    grey = np.full((64, 72, 3), 128, np.uint8)  # the filler's colour: decoded twice, same
    files["mid_grey.jpg"] = (encoded(grey, "JPEG"), None)
    files["mid_grey_progressive.jpg"] = (encoded(grey, "JPEG", progressive=True), None)
    files["gray.jpg"] = (encoded(PHOTO[..., :1], "JPEG"), None)
    buffer = io.BytesIO()
    Image.fromarray(PHOTO).convert("CMYK").save(buffer, "JPEG")
    files["cmyk.jpg"] = (buffer.getvalue(), None)
    files["motion_photo.jpg"] = (
        encoded(PHOTO, "JPEG") + b"\x00\x00\x00\x18ftypmp42" + bytes(64),
        None,
    )
    wide = make_photo_like(100, 120, 3, np.uint16)
    files["interlaced.png"] = (png_bytes(adam7(PHOTO), 120, 100, interlace=1), PHOTO)
    files["interlaced16.png"] = (png_bytes(adam7(wide), 120, 100, depth=16, interlace=1), wide)
    files["plain16.png"] = (png_bytes(scanlines(wide), 120, 100, depth=16), wide)
    files["trailing_data.png"] = (encoded(PHOTO, "PNG") + b"junk after IEND", PHOTO)
    two_bit = (PHOTO[..., 0] >> 6).astype(np.uint8)
    packed = [
        b"\x00" + np.packbits(np.unpackbits(row[:, None], axis=1)[:, 6:]).tobytes()
        for row in two_bit
    ]
    files["two_bit.png"] = (png_bytes(packed, 120, 100, depth=2, colour=0), two_bit[..., None] * 85)
    files["palette.png"] = (_palette_png(), None)
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: pixels for name, (_, pixels) in files.items()}


def _palette_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, "PNG")
    return buffer.getvalue()


def test_valid_variants_still_pass(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    expected = valid_corpus(folder)
    for name, pixels in expected.items():
        decoded = read_image(folder / name)
        if pixels is not None:
            np.testing.assert_array_equal(decoded.pixels, pixels, err_msg=name)
    assert capfd.readouterr().err == ""
    before = fingerprint(folder)
    code, images, _, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    assert {name: line["status"] for name, line in by_input(images, folder).items()} == {
        name: "ok" for name in expected
    }
    assert fingerprint(folder) == before


def test_an_mpo_still_reads_as_its_first_image(tmp_path: Path) -> None:
    first, second = Image.fromarray(PHOTO), Image.fromarray(255 - PHOTO)
    first.save(tmp_path / "camera.mpo", "MPO", save_all=True, append_images=[second])
    (tmp_path / "camera.jpg").write_bytes((tmp_path / "camera.mpo").read_bytes())
    decoded = read_image(tmp_path / "camera.jpg")
    assert decoded.format == "jpeg" and decoded.warnings == ()
    assert np.abs(decoded.pixels.astype(int) - PHOTO).mean() < 8


# --- 5. transparency: a tRNS colour key becomes alpha --------------------------------------


def trns_corpus(folder: Path) -> dict[str, tuple[int, int]]:
    """PNGs with a colour key, and (channels, transparent pixels) each must decode to."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = PHOTO.copy()
    rgb[:20, :30] = (10, 200, 30)  # the key colour: 600 pixels
    key_rgb = struct.pack(">HHH", 10, 200, 30)
    gray = PHOTO[..., :1].copy()
    gray[:10, :10] = 7
    gray[gray != 7] |= 8  # 7 occurs only in the corner: 100 pixels
    wide = rgb.astype(np.uint16) * 257
    wide_gray = gray.astype(np.uint16) * 257
    two_bit = np.zeros((100, 120), np.uint8)
    two_bit[:5] = 2  # value 2 of 0..3 is the key: 600 pixels
    packed = [
        b"\x00" + np.packbits(np.unpackbits(row[:, None], axis=1)[:, 6:]).tobytes()
        for row in two_bit
    ]
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=int(np.asarray(palette)[0, 0]))
    transparent_palette = int((np.asarray(palette) == np.asarray(palette)[0, 0]).sum())
    files = {
        "key_rgb.png": (
            png_bytes(scanlines(rgb), 120, 100, extra=chunk(b"tRNS", key_rgb)),
            (4, 600),
        ),
        "key_gray.png": (
            png_bytes(scanlines(gray), 120, 100, colour=0, extra=chunk(b"tRNS", b"\x00\x07")),
            (2, 100),
        ),
        "key_gray_2bit.png": (
            png_bytes(packed, 120, 100, depth=2, colour=0, extra=chunk(b"tRNS", b"\x00\x02")),
            (2, 600),
        ),
        "key_rgb16.png": (
            png_bytes(
                scanlines(wide),
                120,
                100,
                depth=16,
                extra=chunk(b"tRNS", struct.pack(">HHH", *(v * 257 for v in (10, 200, 30)))),
            ),
            (4, 600),
        ),
        "key_gray16.png": (
            png_bytes(
                scanlines(wide_gray),
                120,
                100,
                depth=16,
                colour=0,
                extra=chunk(b"tRNS", struct.pack(">H", 7 * 257)),
            ),
            (2, 100),
        ),
        "palette_trns.png": (buffer.getvalue(), (4, transparent_palette)),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: expected for name, (_, expected) in files.items()}


def test_a_trns_colour_key_becomes_an_alpha_channel(tmp_path: Path) -> None:
    for name, (channels, transparent) in trns_corpus(tmp_path).items():
        decoded = read_image(tmp_path / name)
        assert decoded.channels == channels, name
        alpha = decoded.pixels[..., -1]
        assert int((alpha == 0).sum()) == transparent, name
        assert set(np.unique(alpha).tolist()) == {0, 255 if decoded.bit_depth == 8 else 65535}
        assert read_header(tmp_path / name).channels == channels, name


def test_keyed_transparency_survives_the_run_and_the_format_rules(tmp_path: Path) -> None:
    """Asked as JPEG, a keyed PNG is written as PNG (planned: not onto an input), with its
    transparent corner still transparent; the opaque photo beside it becomes a JPEG."""
    folder = tmp_path / "in"
    trns_corpus(folder)
    (folder / "photo.png").write_bytes(encoded(PHOTO, "PNG"))
    before = fingerprint(folder)
    code, images, _, err = cli(folder, "-o", tmp_path / "out", "--format", "jpg", *FAST)
    assert code == 0, err
    lines = by_input(images, folder)
    assert Path(lines["photo.png"]["output"]).name == "photo.jpg"
    for name in ("key_rgb.png", "key_gray.png", "key_rgb16.png", "palette_trns.png"):
        assert Path(lines[name]["output"]).name == name, name
        assert "JPEG cannot store transparency; writing PNG instead" in lines[name]["warnings"]
        written = read_image(tmp_path / "out" / name)
        assert written.has_alpha and written.pixels[0, 0, -1] == 0, name
        assert written.pixels[-1, -1, -1] == written.pixels.max(), name
    assert fingerprint(folder) == before


# --- 10. quiet losses ----------------------------------------------------------------------


def test_first_frame_and_first_page_are_noted(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.fromarray(PHOTO), Image.fromarray(255 - PHOTO), Image.fromarray(PHOTO // 2)]
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=80)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "one.tif")
    frames[0].save(folder / "anim.png", save_all=True, append_images=frames[1:])
    before = fingerprint(folder)
    code, images, _, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    assert {name: line["warnings"] for name, line in by_input(images, folder).items()} == {
        "anim.webp": ["animated: only the first frame was upscaled"],
        "anim.png": ["animated: only the first frame was upscaled"],
        "pages.tif": ["multi-page TIFF: only the first of its 3 pages was upscaled"],
        "one.tif": [],
    }
    assert "warning: " + str(folder / "pages.tif") in " ".join(err.split())
    assert fingerprint(folder) == before


@pytest.mark.parametrize(
    ("name", "content", "written", "output", "note"),
    [
        (
            "photo.jpg",
            "PNG",
            "JPEG",
            "photo.jpg",
            "PNG, not JPEG as its name says; written as JPEG",
        ),
        ("photo.png", "JPEG", "PNG", "photo.png", "JPEG, not PNG as its name says; written as PNG"),
        (
            "photo.tif",
            "WEBP",
            "TIFF",
            "photo.tif",
            "WebP, not TIFF as its name says; written as TIFF",
        ),
        (
            "photo.webp",
            "BMP",
            "WEBP",
            "photo.webp",
            "BMP, not WebP as its name says; written as WebP",
        ),
        # GIF is written as PNG (planned by name): so is a JPEG named .gif.
        ("photo.gif", "JPEG", "PNG", "photo.png", "JPEG, not GIF as its name says; written as PNG"),
    ],
)
def test_outputs_are_encoded_as_their_extension_says(
    tmp_path: Path, name: str, content: str, written: str, output: str, note: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(encoded(PHOTO, content))
    (folder / "honest.png").write_bytes(encoded(PHOTO, "PNG"))
    before = fingerprint(folder)
    code, images, _, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    line = by_input(images, folder)[name]
    assert (line["status"], Path(line["output"]).name) == ("ok", output)
    assert line["warnings"] == [f"its content is {note}"]
    with Image.open(tmp_path / "out" / output) as out:
        assert out.format == written
    assert by_input(images, folder)["honest.png"]["warnings"] == []
    assert fingerprint(folder) == before


@pytest.mark.parametrize(("name", "mode"), [("logo.jpg", "RGBA"), ("mark.bmp", "LA")])
def test_transparent_content_named_jpg_is_planned_as_png(
    tmp_path: Path, name: str, mode: str
) -> None:
    """One line says both why it is PNG and what its name got wrong: a second line
    saying PNG again ("JPEG cannot store transparency; writing PNG instead") was
    redundant.  Asked as JPEG, a PNG named .png still gets that line alone (its only
    reason)."""
    folder = tmp_path / "in"
    image(folder / "logo.png", mode, seed=2).rename(folder / name)
    code, images, _, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    (line,) = images
    output = Path(name).with_suffix(".png").name
    assert Path(line["output"]).name == output
    named = "JPEG" if name.endswith(".jpg") else "BMP"
    assert line["warnings"] == [
        f"its content is PNG, not {named} as its name says; written as PNG, since {named} "
        "cannot store transparency"
    ]
    assert read_image(tmp_path / "out" / output).has_alpha
    (folder / name).rename(folder / "logo.png")
    code, images, _, err = cli(folder, "-o", tmp_path / "asked", "--format", "jpg", *FAST)
    assert code == 0, err
    assert images[0]["warnings"] == ["JPEG cannot store transparency; writing PNG instead"]


def test_a_library_warning_becomes_a_note_on_its_line(tmp_path: Path) -> None:
    """An EXIF entry pointing past its block: Pillow warns while the TIFF is written."""
    ifd = (
        struct.pack("<2sHI", b"II", 42, 8)
        + struct.pack("<H", 1)
        + struct.pack("<HHII", 270, 2, 100, 0x1000)  # ImageDescription, 100 bytes, nowhere
        + struct.pack("<I", 0)
    )
    source = tmp_path / "camera.jpg"
    Image.fromarray(PHOTO).save(source, exif=b"Exif\x00\x00" + ifd)
    code, images, _, err = cli(source, "-o", tmp_path / "out", "--format", "tiff", *FAST)
    assert code == 0, err
    (line,) = images
    assert line["status"] == "ok"
    assert line["warnings"] == ["PIL: Tag data larger than file. Skipping tag 270"]
    assert "UserWarning" not in err and ".py:" not in err


def test_warnings_are_collected_per_thread() -> None:
    """What another thread warns about meanwhile is neither collected nor lost."""
    mine: list[str] = []
    theirs: list[str] = []
    inside = threading.Event()
    done = threading.Event()

    def other() -> None:
        inside.wait()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("from the other thread", UserWarning, stacklevel=1)
        theirs.extend(str(w.message) for w in caught)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with libwarnings.collecting(mine):
            inside.set()
            done.wait(10)
            warnings.warn("from this thread", UserWarning, stacklevel=1)
            warnings.warn("from this thread", UserWarning, stacklevel=1)
    thread.join()
    assert mine == ["UserWarning: from this thread"]
    assert theirs == ["from the other thread"]


def _junk_models(folder: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    files = {
        "random.pth": rng.bytes(4000),
        "pickle_protocol_4.pth": b"\x80\x04" + rng.bytes(3000),  # torch warned about it
        "empty.pth": b"",
        "zip_junk.pth": b"PK\x03\x04" + rng.bytes(600),
        "random.safetensors": rng.bytes(800),
        "short_header.safetensors": struct.pack("<Q", 100) + b'{"w": {"dtype": "F32"',
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_junk_given_as_a_model_is_a_clear_model_error(tmp_path: Path) -> None:
    """Exit 3 ("the model could not be ... loaded", README), one line that says the file
    is not a weights file (with the reader's own reason), no warning from torch, nothing
    written."""
    photo = image(tmp_path / "in" / "a.png")
    models = tmp_path / "models"
    models.mkdir()
    names = list(_junk_models(models))
    before = fingerprint(tmp_path)
    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = runner.invoke(app, ["upscale", str(photo), "-m", str(models / name)])
        assert result.exit_code == 3, (name, result.stderr)
        message = " ".join(result.stderr.split())
        kind = "safetensors file" if name.endswith(".safetensors") else "PyTorch checkpoint"
        assert message.startswith(f"error (model): cannot read weights {name}: not a {kind}")
        assert "Traceback" not in result.stderr and not caught, (name, caught)
    assert fingerprint(tmp_path) == before  # the junk files included: read, never changed


def test_junk_given_as_a_model_in_a_real_process(tmp_path: Path) -> None:
    photo = image(tmp_path / "a.png")
    (tmp_path / "random.pth").write_bytes(b"\x80\x04" + np.random.default_rng(5).bytes(3000))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pocketsr_cli",
            "upscale",
            str(photo),
            "-m",
            str(tmp_path / "random.pth"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.startswith("error (model): cannot read weights random.pth: not a ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no warning, no traceback


# --- 2. memory ------------------------------------------------------------------------------


def huge_png(path: Path, width: int, height: int, colour: int = 0) -> Path:
    """A small file whose header claims ``width x height``: a complete image of zeros
    (each row compresses to nothing), as a decompression bomb is built."""
    samples = {0: 1, 2: 3}[colour]
    raw = zlib.compressobj(9)
    row = bytes(1 + width * samples)
    data = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_an_image_that_cannot_fit_fails_alone_without_being_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    huge_png(folder / "bomb.png", 9500, 9500)  # Pillow only warns at this size
    image(folder / "small.png", seed=1)
    before = fingerprint(folder)
    decoded: list[str] = []
    real = pipeline.read_image

    def spy(path: Path, **options: object) -> object:
        decoded.append(Path(path).name)
        return real(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "read_image", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        code, images, _, err = cli(folder, "-o", tmp_path / "out", "--max-memory", "1G", *FAST)
    assert code == 1, err
    lines = by_input(images, folder)
    assert lines["bomb.png"]["status"] == "failed"
    need = memory.describe_bytes(
        memory.predict(
            size=(9500, 9500),
            channels=1,
            bit_depth=8,
            scale=2,
            target=(19000, 19000),
            out_format="png",
            out_bit_depth=8,
            file_bytes=(folder / "bomb.png").stat().st_size,
            upscaler=memory.UpscalerMemory(uint8_path=True),
        ).peak
    )
    assert lines["bomb.png"]["error"] == (
        f"needs about {need} of memory to upscale 9500x9500 to 19000x19000 (x2 model), more "
        "than the 1.0 GiB --max-memory allows; not decoded. Choose a smaller scale or size or "
        "--tile, or allow more with --max-memory (or POCKETSR_MAX_MEMORY) if the machine has it"
    )
    assert (lines["bomb.png"]["width"], lines["bomb.png"]["height"]) == (9500, 9500)
    assert lines["small.png"]["status"] == "ok"
    assert decoded == ["small.png"]
    assert os.listdir(tmp_path / "out") == ["small.png"]
    assert fingerprint(folder) == before
    assert "DecompressionBomb" not in err and "could be decompression bomb" not in err


def test_the_limit_comes_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge_png(tmp_path / "big.png", 4000, 4000)
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "256M")
    code, images, _, _ = cli(tmp_path / "big.png", "-o", tmp_path / "out", *FAST)
    assert code == 1
    # The limit is named as the user set it: the variable, not the flag they never gave.
    assert images[0]["error"].endswith(
        "more than the 256 MiB POCKETSR_MAX_MEMORY allows; not decoded. Choose a smaller scale or "
        "size or --tile, or allow more with --max-memory (or POCKETSR_MAX_MEMORY) if the machine "
        "has it"
    )
    # --max-memory, given, wins over the variable and is named.
    code, images, _, _ = cli(
        tmp_path / "big.png", "-o", tmp_path / "out", "--max-memory", "128M", *FAST
    )
    assert code == 1
    assert "more than the 128 MiB --max-memory allows; not decoded" in images[0]["error"]


@pytest.mark.parametrize(
    ("given", "said"), [("1K", "1 KiB"), ("100", "100 bytes"), ("600K", "600 KiB")]
)
def test_a_limit_under_a_mib_is_said_as_given_not_as_1_mib(
    tmp_path: Path, given: str, said: str
) -> None:
    """K is 1024 bytes (``memory.parse_size``): ``--max-memory 1K`` was said as 1 MiB."""
    image(tmp_path / "thumb.png", size=(64, 48))
    code, images, _, _ = cli(tmp_path / "thumb.png", "-o", tmp_path / "out", "--max-memory", given)
    assert code == 1
    assert f"more than the {said} --max-memory allows; not decoded" in images[0]["error"]


def test_a_dry_run_refuses_an_image_too_large_for_the_limit_as_a_run_does(
    tmp_path: Path,
) -> None:
    """A dry run judges each image against the memory budget a run would: one a run
    refuses fails there too (exit 1), where it was ``planned``, with the run's line said
    as what a run would do: a dry run decodes nothing, and its line said ``not decoded``
    as if it had refused to."""
    image(tmp_path / "thumb.png", size=(64, 48))
    args = (tmp_path / "thumb.png", "-o", tmp_path / "out", "--max-memory", "1K")
    code, planned, _, err = cli(*args, "--dry-run")
    assert code == 1, err
    assert planned[0]["status"] == "failed"
    assert planned[0]["error"].startswith("would be refused: needs about "), planned[0]
    assert "more than the 1 KiB --max-memory allows. Choose " in planned[0]["error"]
    assert "decoded" not in planned[0]["error"]
    assert not (tmp_path / "out").exists()
    code, ran, _, err = cli(*args)
    assert code == 1, err
    assert "more than the 1 KiB --max-memory allows; not decoded. Choose " in ran[0]["error"]
    said = "would be refused: " + ran[0]["error"].replace("; not decoded.", ".")
    assert planned[0]["error"] == said


def test_a_thumbnail_upscales_with_the_default_model_under_a_small_limit(tmp_path: Path) -> None:
    image(tmp_path / "thumb.png", size=(64, 48))
    code, images, _, err = cli(
        tmp_path / "thumb.png", "-o", tmp_path / "out", "--max-memory", "256M"
    )
    assert code == 0, err
    assert images[0]["status"] == "ok" and images[0]["model"] == "pocketsr-compact-x4"


@pytest.mark.parametrize("value", ["lots", "-1G", "0", "8X"])
def test_a_bad_memory_limit_is_a_usage_error(tmp_path: Path, value: str) -> None:
    image(tmp_path / "a.png")
    before = fingerprint(tmp_path)
    result = runner.invoke(app, ["upscale", str(tmp_path / "a.png"), "--max-memory", value, *FAST])
    assert result.exit_code == 2
    assert "--max-memory" in result.stderr and "Traceback" not in result.stderr
    assert fingerprint(tmp_path) == before


def test_a_bad_memory_limit_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user gave no --max-memory: the refusal names the variable they set (perhaps
    long ago, in a shell profile), where it named the flag; --max-memory, when given,
    is what counts, and the variable is not read."""
    image(tmp_path / "a.png")
    before = fingerprint(tmp_path)
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "lots")
    result = runner.invoke(app, ["upscale", str(tmp_path / "a.png"), "--dry-run", *FAST])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error (usage): POCKETSR_MAX_MEMORY: not a size: 'lots' (write it as 8G, 512M or a "
        "number of bytes)"
    )
    assert fingerprint(tmp_path) == before
    given = ["upscale", str(tmp_path / "a.png"), "--dry-run", "--max-memory", "1G", *FAST]
    assert runner.invoke(app, given).exit_code == 0
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "1G")
    result = runner.invoke(app, [*given[:3], "--max-memory", "lots", *FAST])
    assert result.exit_code == 2
    assert "error (usage): --max-memory: not a size: 'lots'" in result.stderr


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8G", 8 << 30),
        ("8 GB", 8 << 30),
        ("8GiB", 8 << 30),
        ("512m", 512 << 20),
        ("1.5g", 3 << 29),
        ("4096", 4096),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert memory.parse_size(text) == size


def test_pillows_bomb_check_is_ours_now(tmp_path: Path) -> None:
    """Pillow would refuse this header (over twice its limit) or warn; here the header is
    read quietly, and read_image refuses it with our line unless told otherwise."""
    bomb = huge_png(tmp_path / "bomb.png", 20000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_header(bomb).pixels == 180_000_000
        with pytest.raises(ImageReadError) as info:
            read_image(bomb)
    assert str(info.value) == (
        "image is too large to decode safely (20000x9000, over 178,956,970 pixels)"
    )


def test_large_images_are_admitted_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for one image's predicted need but not two, the next image is decoded
    only once the previous one is written: never two in memory together."""
    src = tmp_path / "in"
    for i in range(4):
        image(src / f"{i}.png", size=(64, 48), seed=i)
    need = memory.predict(
        size=(64, 48),
        channels=3,
        bit_depth=8,
        scale=2,
        target=(128, 96),
        out_format="png",
        out_bit_depth=8,
        file_bytes=max((src / f"{i}.png").stat().st_size for i in range(4)),
        upscaler=memory.UpscalerMemory(uint8_path=False, working_bytes=0),
    ).peak
    events: list[str] = []
    real_read, real_write = pipeline.read_image, pipeline.write_atomic

    def read(path: Path, **options: object) -> object:
        events.append(f"read {Path(path).name}")
        return real_read(path, **options)  # type: ignore[arg-type]

    def write(path: Path, data: bytes, **options: object) -> bool:
        done = real_write(path, data, **options)  # type: ignore[arg-type]
        events.append(f"wrote {Path(path).name}")
        return done

    monkeypatch.setattr(pipeline, "read_image", read)
    monkeypatch.setattr(pipeline, "write_atomic", write)
    found = collect_jobs([src], Naming(tmp_path / "out", None))
    summary = run(
        found, Doubler(), Options(memory_limit=MemoryLimit(need * 3 // 2)), pipeline.NullReporter()
    )
    assert [r.status for r in summary.results] == ["ok"] * 4
    assert events == [f"{what} {i}.png" for i in range(4) for what in ("read", "wrote")]
    # With room for all of them, the next image is read while one is being upscaled.
    events.clear()
    ahead = threading.Event()

    def until_read_ahead() -> None:
        if "read 1.png" in events:
            ahead.set()
        ahead.wait(0.5)

    summary = run(
        found,
        Doubler(until_read_ahead),
        Options(memory_limit=MemoryLimit(need * 10), overwrite=True),
        pipeline.NullReporter(),
    )
    assert ahead.is_set() and events.index("read 1.png") < events.index("wrote 0.png")


def test_the_gate_admits_one_image_whatever_its_need() -> None:
    stop = threading.Event()
    gate = pipeline._MemoryGate(100, stop)
    assert gate.acquire(500)  # alone: admitted (what cannot fit at all is refused earlier)
    waiting = threading.Thread(target=gate.acquire, args=(10,))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # waits for the first one to be written
    gate.release(500)
    waiting.join(5)
    assert not waiting.is_alive() and gate.in_use == 10
    stop.set()
    assert not gate.acquire(1000)  # a stopped run admits nothing more


def test_the_profile_follows_the_upscaler() -> None:
    from pocketsr_cli.devices import choose_device, compute_for
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.weights.resolve import open_family

    for model, uint8 in (("bicubic", True), ("pocketsr-compact-x4", False)):
        descriptor = open_family(model).load(4)
        upscaler = Upscaler(descriptor, compute_for(choose_device("cpu"), "auto", descriptor))
        profile = pipeline.upscaler_memory(upscaler)
        assert profile.uint8_path is uint8, model
        assert profile.working_bytes == upscaler.policy.cpu_budget_bytes
    assert pipeline.upscaler_memory(Doubler()) == memory.UpscalerMemory(False, 0)


def test_a_small_image_is_not_charged_the_whole_tile_budget() -> None:
    """The network's working set follows the image: a thumbnail's pass is a few MB, so it
    runs under a ``--max-memory`` far below the 1 GiB tile budget (every image failed
    under 1.1 GB before, whatever its size); a large image is still charged the budget."""
    from pocketsr_cli.devices import choose_device, compute_for
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.weights.resolve import open_family

    descriptor = open_family("pocketsr-compact-x4").load(4)
    upscaler = Upscaler(descriptor, compute_for(choose_device("cpu"), "fp32", descriptor))
    profile = pipeline.upscaler_memory(upscaler)
    assert profile.working_for is not None
    budget = upscaler.policy.cpu_budget_bytes
    small = profile.working_for(64, 48)
    assert 0 < small < 64 << 20
    assert small < profile.working_for(320, 240) < budget
    assert profile.working_for(4000, 3000) == budget

    def need(size: tuple[int, int], profile: memory.UpscalerMemory) -> int:
        return memory.predict(
            size=size,
            channels=3,
            bit_depth=8,
            scale=4,
            target=(size[0] * 4, size[1] * 4),
            out_format="png",
            out_bit_depth=8,
            file_bytes=10_000,
            upscaler=profile,
        ).peak

    tiled = Upscaler(descriptor, compute_for(choose_device("cpu"), "fp32", descriptor), tile=128)
    per_tile = pipeline.upscaler_memory(tiled).working_for
    assert per_tile is not None
    assert per_tile(4000, 3000) == per_tile(1000, 1000) < 64 << 20  # --tile 128: one tile's
    assert per_tile(64, 48) == small

    flat = memory.UpscalerMemory(uint8_path=False, working_bytes=budget)
    assert need((64, 48), profile) < 100 << 20 < budget < need((64, 48), flat)
    assert need((4000, 3000), profile) == need((4000, 3000), flat)


def test_the_reported_kill_is_predicted() -> None:
    """The 9500x9500 gray PNG that drove a run to 23 GB: the default model's three result
    channels are now folded back to one a band of rows at a time, so what is predicted is
    the 8-bit result (three channels, then one: 5.8 GB) and the input's float copies, not
    23 GB of floats; refused on a machine that does not have it."""
    need = memory.predict(
        size=(9500, 9500),
        channels=1,
        bit_depth=8,
        scale=4,
        target=(38000, 38000),
        out_format="png",
        out_bit_depth=8,
        file_bytes=90_000,
        upscaler=memory.UpscalerMemory(uint8_path=False),
    )
    assert 5.8e9 < need.upscale < 12e9 and need.peak == need.upscale


def test_a_jpeg_is_predicted_to_need_more_at_a_higher_quality(tmp_path: Path) -> None:
    """A JPEG's file, which its encoder holds three times over, grows with ``--quality``
    (upscaled noise: 0.35 of the raw bytes at 95, 0.70 at 100): the need a run admits an
    image by follows the quality asked, 95 when none is."""
    source = image(tmp_path / "a.jpg", size=(1000, 750))
    header = read_header(source)
    profile = memory.UpscalerMemory(uint8_path=True)

    def need(quality: int | None) -> int:
        return pipeline.predicted_need(
            source,
            header,
            scale=4,
            target=(4000, 3000),
            requested=None,
            profile=profile,
            quality=quality,
        )

    assert need(None) == need(95) < need(98) < need(100)
    assert need(100) > 145e6  # measured on upscaled noise (the bound test below): 145 MB


def test_a_tiff_output_is_not_budgeted_a_differenced_copy_of_the_image() -> None:
    """The TIFF encoder differences one strip (1 MiB) at a time, no longer a copy of the
    whole image (48 MB for 4000x3000 RGBA): what an RGBA TIFF is predicted to need to
    encode follows (measured on upscaled noise by the bound test below: 167 MB; 232 MB
    were predicted while the copy was budgeted)."""
    need = memory.predict(
        size=(1000, 750),
        channels=4,
        bit_depth=8,
        scale=4,
        target=(4000, 3000),
        out_format="tiff",
        out_bit_depth=8,
        file_bytes=3_000_000,
        upscaler=memory.UpscalerMemory(uint8_path=True),
    )
    assert 167e6 < need.encode < 200e6


def test_an_rgb_image_is_budgeted_what_the_8_bit_path_leaves_in_the_heap() -> None:
    """The 8-bit path copies an RGB result out of Pillow's image in bands of rows, whose
    freed memory stays in the upscaling thread's heap: on 1000x750 -> 4000x3000 noise
    written as TIFF, encode_tiff found 44.9 MB allocated on entry (the 36 MB result, the
    2.25 MB input and 6.6 MB left behind) and peaked at 122.5 MB of resident memory above
    the start (peak RSS in a fresh process), more than the result, the input and the
    encoder's copies budget alone (114 MB)."""
    need = memory.predict(
        size=(1000, 750),
        channels=3,
        bit_depth=8,
        scale=4,
        target=(4000, 3000),
        out_format="tiff",
        out_bit_depth=8,
        file_bytes=2_250_000,
        upscaler=memory.UpscalerMemory(uint8_path=True),
    )
    assert need.encode > 122.5e6


PEAK_SCRIPT = """
import json, sys
from pathlib import Path
from typing import Any
from pocketsr_cli.evaluation.peakmem import PeakMemory, current_rss_bytes
from pocketsr_cli.devices import choose_device, compute_for
from pocketsr_cli.imageio import format_of_path, read_header
from pocketsr_cli.inference import Upscaler
from pocketsr_cli.jobs import Naming, collect_jobs
from pocketsr_cli.memory import predict
from pocketsr_cli.pipeline import NullReporter, Options, Variant, run, upscaler_memory
from pocketsr_cli.weights.resolve import open_family

model, source, out, fmt = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
quality = int(sys.argv[5]) if len(sys.argv) > 5 else None
descriptor = open_family(model).load(4)
upscaler = Upscaler(descriptor, compute_for(choose_device("cpu"), "auto", descriptor))
naming = Naming(out, None, fmt=None if fmt == "same" else fmt)
found = collect_jobs([source], naming)
header = read_header(source)
need = predict(
    size=(header.width, header.height), channels=header.channels, bit_depth=header.bit_depth,
    scale=4, target=(header.width * 4, header.height * 4),
    out_format=format_of_path(found[0].output),
    out_bit_depth=header.bit_depth, file_bytes=source.stat().st_size,
    upscaler=upscaler_memory(upscaler), out_lossless=header.lossless and fmt == "same",
    out_quality=quality,
).peak
start = current_rss_bytes()
with PeakMemory() as peak:
    options = Options(fmt=naming.fmt, quality=quality)
    summary = run(found, [Variant(upscaler)], options, NullReporter())
result = summary.results[0]
written = read_header(result.output).format if result.output and result.output.exists() else None
print(json.dumps({"status": result.status, "error": result.error, "written": written,
                  "expected": format_of_path(found[0].output), "start": start,
                  "peak": peak.host_peak_bytes, "predicted": need,
                  "anonymous_start": peak.anonymous_start_bytes,
                  "anonymous_peak": peak.anonymous_peak_bytes}))
"""


def _measure(tmp_path: Path, model: str, source: Path, fmt: str = "same") -> dict[str, Any]:
    """What :data:`PEAK_SCRIPT` measures, written as ``fmt`` (``same``: the input's format;
    ``jpeg@100``: at ``--quality`` 100)."""
    fmt, _, quality = fmt.partition("@")
    command = [PEAK_SCRIPT, model, str(source), str(tmp_path / "out"), fmt]
    done = subprocess.run(
        [sys.executable, "-c", *command, *([quality] if quality else [])],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["status"] == "ok", figures
    assert figures["written"] == figures["expected"], figures  # the encoder predicted ran
    return figures


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="samples /proc/self/statm")
@pytest.mark.parametrize(
    ("channels", "depth", "ext", "fmt", "model", "content"),
    [
        (3, 8, ".jpg", "same", "bicubic", "photo"),
        (1, 8, ".png", "same", "bicubic", "photo"),
        (2, 8, ".png", "same", "bicubic", "photo"),  # our own gray + alpha PNG writer
        (4, 8, ".png", "same", "bicubic", "photo"),
        (4, 8, ".png", "same", "lanczos", "noise"),  # OpenCV's Deflate: 0.86 of the raw bytes
        (3, 8, ".png", "same", "lanczos", "noise"),
        (3, 8, ".png", "webp", "lanczos", "photo"),  # libwebp's own buffers
        (3, 8, ".png", "webp", "lanczos", "noise"),  # ... which grow with what they encode
        (4, 8, ".png", "webp", "lanczos", "noise"),
        (3, 8, ".webp", "same", "lanczos", "photo"),  # lossless WebP: the lossless encoder
        (4, 8, ".png", "tiff", "lanczos", "photo"),
        (4, 8, ".png", "tiff", "lanczos", "noise"),  # Deflate stores noise, bytes and all
        (3, 8, ".png", "tiff", "lanczos", "noise"),  # RGB: the upscale stage peaks
        (3, 16, ".png", "tiff", "bicubic", "noise"),  # 0.97 of the raw bytes; upscale peaks
        (3, 8, ".png", "jpeg@100", "lanczos", "noise"),  # --quality 100: 0.7 of the raw bytes
        (3, 16, ".png", "same", "bicubic", "photo"),  # 16-bit: the float path, in tiles
        (3, 8, ".jpg", "same", "pocketsr-compact-x4", "photo"),
        (1, 8, ".png", "same", "pocketsr-compact-x4", "photo"),  # gray: float copies
        (4, 8, ".png", "same", "pocketsr-compact-x4", "photo"),  # alpha: concatenated, copied
        (-3, 8, ".png", "same", "pocketsr-compact-x4", "photo"),  # R = G = B: folded as gray
    ],
)
def test_the_prediction_bounds_the_measured_peak(
    tmp_path: Path, channels: int, depth: int, ext: str, fmt: str, model: str, content: str
) -> None:
    """In a fresh process: the peak of what the run allocates (resident memory less
    file-backed pages: library code paged in as it first runs, more of it the warmer the
    page cache, is no image's need) never exceeds the prediction, and the prediction is
    not wildly above the peak RSS (it would refuse images that fit)."""
    side = (400, 300) if model.startswith("pocketsr") else (1000, 750)
    neutral, channels = channels < 0, abs(channels)  # -3: a gray photo stored as RGB
    dtype = np.uint16 if depth == 16 else np.uint8
    pixels = make_photo_like(side[1], side[0], 1 if neutral else channels, dtype)
    if content == "noise":  # what compresses worst: uniform noise in every channel
        top = np.iinfo(dtype).max + 1
        pixels = np.random.default_rng(7).integers(0, top, pixels.shape, dtype=dtype)
    if neutral:
        pixels = np.repeat(pixels.reshape(side[1], side[0], 1), 3, axis=2)
    source = tmp_path / f"photo{ext}"
    if depth == 16:
        cv2.imwrite(str(source), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    else:
        lossless = {"lossless": True} if ext == ".webp" else {}
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(
            source, quality=95, **lossless
        )
    figures = _measure(tmp_path, model, source, fmt)
    above = figures["peak"] - figures["start"]
    allocated = figures["anonymous_peak"] - figures["anonymous_start"]
    print(f"{model} {channels}x{depth}-bit {content} -> {fmt}: ", end="")
    print(f"{above / 1e6:.0f} MB RSS above the start, ", end="")
    print(f"{allocated / 1e6:.0f} MB allocated, predicted {figures['predicted'] / 1e6:.0f} MB")
    assert allocated <= figures["predicted"], figures
    assert figures["predicted"] <= 3 * above + (1 << 30), figures


def _twelve_megapixel_photo(path: Path) -> Path:
    """A 4000x3000 photo-like JPEG (gradients, texture, noise), as a camera writes it."""
    rng = np.random.default_rng(12)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    planes = [np.sin(x / 97) * 60 + 128, np.cos(y / 71) * 60 + 128, np.sin((x + y) / 53) * 60 + 128]
    pixels = np.stack(planes, -1) + rng.normal(0, 12, (3000, 4000, 3)).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="peak RSS from resource.getrusage")
@pytest.mark.parametrize("model", ["bicubic", None, "pcsr-x4"])
def test_a_12_megapixel_photo_at_x4_stays_within_8_bytes_per_output_pixel(
    tmp_path: Path, model: str | None
) -> None:
    """The issue's target, on the real command: peak RSS of ``pocketsr upscale`` (the whole
    process: Python, torch, the model, decode, upscale, encode) at most 8 bytes per output
    pixel + 0.6 GB for an 8-bit RGB 12 MP photo at x4.  The default model takes minutes
    on a 2-core CPU."""
    source = _twelve_megapixel_photo(tmp_path / "photo.jpg")
    args = [str(source), "-o", str(tmp_path / "out"), "--json"] + (["-m", model] if model else [])
    command = [sys.executable, "-m", "pocketsr_cli", "upscale", *args]
    # A wrapper whose only child is the run: its children's peak RSS is the run's.
    done = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, *command],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.splitlines()[0])
    assert (line["status"], line["out_width"], line["out_height"]) == ("ok", 16000, 12000)
    peak = int(done.stderr.strip().splitlines()[-1].removeprefix("peak "))
    target = 8 * 16000 * 12000 + 600_000_000
    name = model or "the default model"
    print(
        f"peak RSS {peak / 1e9:.2f} GB with {name} in {line['device']}, "
        f"{line['seconds']:.1f} s (target {target / 1e9:.2f} GB)"
    )
    assert peak <= target
    assert leftovers(tmp_path) == []


PEAK_OF_CHILD = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print("peak", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr)
sys.exit(done.returncode)
"""


# --- a review page's picture folder is not scanned ----------------------------------------


def test_a_review_pages_picture_folder_is_skipped(tmp_path: Path) -> None:
    from pocketsr_cli.report.page import MARKER

    assert jobs.REPORT_MARKER == MARKER
    root = tmp_path / "in"
    image(root / "a.png", seed=1)
    image(root / "sub" / "b.png", seed=2)
    image(root / "review_files" / "crop_1.png", seed=3)
    (root / "review_files" / MARKER).write_text("pictures of a pocketsr review page\n")
    before = fingerprint(root)
    code, images, _, err = cli(root, "-r", "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    got = {
        name: (line["status"], line["reason_code"], line["reason"])
        for name, line in by_input(images, root).items()
    }
    assert got == {
        "a.png": ("ok", None, None),
        "sub/b.png": ("ok", None, None),
        "review_files": (
            "skipped",
            "own-output",
            "the picture folder of a pocketsr review page (it holds .pocketsr-report); not scanned",
        ),
    }
    assert not (tmp_path / "out" / "review_files").exists()
    assert fingerprint(root) == before
    # Named on the command line, it is scanned like any folder.
    code, images, _, _ = cli(root / "review_files", "-o", tmp_path / "out2", *FAST)
    assert code == 0 and [line["status"] for line in images] == ["ok"]


def test_discovery_without_recursion_never_looks_for_the_marker(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    (tmp_path / "review_files").mkdir()
    (tmp_path / "review_files" / jobs.REPORT_MARKER).write_text("")
    found = collect_jobs([tmp_path], Naming(tmp_path / "out", None))
    assert [job.input.name for job in found] == ["a.png"]


def test_a_refusal_tells_the_need_from_the_limit() -> None:
    """ "needs about 1 MiB ... more than the 1 MiB --max-memory allows" read as a paradox."""
    assert memory.describe_bytes(640 << 20) == "640 MiB"
    assert memory.describe_bytes(3 << 30, apart_from=1 << 20) == "3.0 GiB"
    need, limit = (1 << 20) + 300_000, 1 << 20
    assert memory.describe_bytes(need, apart_from=limit) == "1.29 MiB"
    assert memory.describe_bytes(limit, apart_from=need) == "1.00 MiB"
    assert memory.describe_bytes(10, apart_from=12) == "10 bytes"
    assert memory.describe_bytes(12, apart_from=10) == "12 bytes"
    # Under a MiB: KiB, then bytes, never rounded up to "1 MiB".
    assert memory.describe_bytes(1 << 10) == "1 KiB"
    assert memory.describe_bytes(600 << 10) == "600 KiB"
    assert memory.describe_bytes(1) == "1 byte"
    assert memory.describe_bytes(1000) == "1000 bytes"
    assert memory.describe_bytes(1 << 10, apart_from=(1 << 10) + 100) == "1.00 KiB"
    assert memory.describe_bytes(21 << 20, apart_from=1 << 10) == "21 MiB"


def test_a_size_just_under_a_unit_never_reads_as_1024_of_the_unit_below() -> None:
    """A byte short of 1 MiB read "1024 KiB" (rounded to the nearest KiB): 1 MiB, written
    oddly, for a size that does not reach it, as "1 MiB" beside it showed."""
    assert memory.describe_bytes((1 << 20) - 1) == "1023 KiB"
    assert memory.describe_bytes((1 << 30) - 1) == "1023 MiB"
    assert memory.describe_bytes((1 << 20) - 1, apart_from=1 << 20) == "1023 KiB"
    assert memory.describe_bytes(1 << 20, apart_from=(1 << 20) - 1) == "1 MiB"
    # Told apart from a size just below: more digits, still short of 1024.
    assert memory.describe_bytes((1 << 20) - 1, apart_from=(1 << 20) - 600) == "1023.99 KiB"
    assert memory.describe_bytes((1 << 20) - 600, apart_from=(1 << 20) - 1) == "1023.41 KiB"
    # GiB is the largest unit: a byte short of 1 TiB is as many GiB as it rounds to.
    assert memory.describe_bytes((1 << 40) - 1) == "1024.0 GiB"


def test_a_progressive_jpeg_ending_between_scans_is_read_with_a_warning(tmp_path: Path) -> None:
    """Cut before its last scan with its end marker put back, every block decodes from the
    coarse scans (soft). A scan script may leave coefficients coarse on purpose (jpegtran
    -scans) and the two look alike, so it is read, and said; a whole file says nothing."""
    from pocketsr_cli.imageio.jpeg import COARSE_WARNING

    progressive = encoded(PHOTO, "JPEG", quality=90, progressive=True)
    last_scan = progressive.rindex(b"\xff\xda")
    (tmp_path / "coarse.jpg").write_bytes(progressive[:last_scan] + b"\xff\xd9")
    (tmp_path / "whole.jpg").write_bytes(progressive)
    assert read_image(tmp_path / "coarse.jpg").warnings == (COARSE_WARNING,)
    assert read_image(tmp_path / "whole.jpg").warnings == ()
    code, images, _, err = cli(tmp_path / "coarse.jpg", *FAST)
    assert code == 0, err
    assert images[0]["status"] == "ok" and COARSE_WARNING in images[0]["warnings"]


def _mp_type(mpo: bytes, index: int, mp_type: int) -> bytes:
    """``mpo`` with the MP type of its image ``index`` set to ``mp_type`` (CIPA DC-007)."""
    start = mpo.index(b"MPF\x00") + 4  # the MP index: a TIFF structure from here
    order = "<" if mpo[start : start + 2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", mpo, start + 4)
    (count,) = struct.unpack_from(order + "H", mpo, start + ifd)
    for i in range(count):
        tag, _, _, offset = struct.unpack_from(order + "HHII", mpo, start + ifd + 2 + 12 * i)
        if tag == 0xB002:  # MP entries, 16 bytes each, the attribute first
            data = bytearray(mpo)
            at = start + offset + 16 * index
            (attribute,) = struct.unpack_from(order + "I", data, at)
            struct.pack_into(order + "I", data, at, (attribute & 0xFF000000) | mp_type)
            return bytes(data)
    raise AssertionError("no MP entries")


def test_a_stereo_mpo_says_its_second_view_is_left_out(tmp_path: Path) -> None:
    """A stereo camera's .mpo lost its right-eye view without a word; a camera JPEG whose
    second image is a preview of the same picture says nothing."""
    first, second = Image.fromarray(PHOTO), Image.fromarray(255 - PHOTO)
    first.save(tmp_path / "pair.mpo", "MPO", save_all=True, append_images=[second])
    plain = (tmp_path / "pair.mpo").read_bytes()
    (tmp_path / "stereo.mpo").write_bytes(_mp_type(plain, 1, 0x020002))  # disparity
    (tmp_path / "preview.jpg").write_bytes(_mp_type(plain, 1, 0x010002))  # large thumbnail
    (warning,) = read_image(tmp_path / "stereo.mpo").warnings
    assert "holding 1 more view(s)" in warning and "only the first was upscaled" in warning
    assert read_image(tmp_path / "preview.jpg").warnings == ()


def test_a_whole_arithmetic_coded_progressive_jpeg_is_read() -> None:
    """``cjpeg -arithmetic -progressive`` (libjpeg-turbo 2.1.5, a 74x67 crop of a test
    photo): the arithmetic decoder read the probe's filler after the last scan as data, so
    5 of 36 such whole files were refused as cut short."""
    path = Path(__file__).with_name("data") / "arithmetic_progressive.jpg"
    decoded = read_image(path)
    assert decoded.warnings == ()
    with Image.open(path) as im:
        np.testing.assert_array_equal(decoded.pixels, np.asarray(im.convert("RGB")))


def test_a_bmp_alpha_channel_that_is_zero_everywhere_is_read_as_opaque(tmp_path: Path) -> None:
    """32-bit BMP writers leave the fourth byte at 0 for "no alpha" (browsers and Windows
    show such a file opaque); it must not come out as a fully transparent PNG.  A BMP whose
    alpha channel is all opaque stays a BMP; one with real transparency becomes a PNG."""
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = make_photo_like(24, 32, seed=4)
    cases = {"unused.bmp": 0, "opaque.bmp": 255, "cutout.bmp": None}
    for name, value in cases.items():
        alpha = np.full(rgb.shape[:2], 255 if value is None else value, np.uint8)
        if value is None:
            alpha[:, :10] = 0
        bgra = cv2.cvtColor(np.dstack([rgb, alpha]), cv2.COLOR_RGBA2BGRA)
        assert cv2.imwrite(str(folder / name), bgra)  # BITMAPV5 with an alpha mask
        assert read_header(folder / name).has_alpha, name
    unused = read_image(folder / "unused.bmp")
    assert unused.channels == 3 and np.array_equal(unused.pixels, rgb)
    assert unused.warnings == (
        "its alpha channel is zero everywhere, which BMP writers use for no alpha at all: "
        "read as opaque",
    )
    assert read_image(folder / "opaque.bmp").channels == 4
    code, images, _, err = cli(folder, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    lines = by_input(images, folder)
    outputs = {name: Path(line["output"]).name for name, line in lines.items()}
    assert outputs == {
        "unused.bmp": "unused.bmp",
        "opaque.bmp": "opaque.bmp",
        "cutout.bmp": "cutout.png",
    }
    for name in ("unused.bmp", "opaque.bmp"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode == "RGB", name
            assert np.asarray(im).mean() == pytest.approx(rgb.mean(), abs=3), name
    with Image.open(tmp_path / "out" / "cutout.png") as im:
        assert im.mode == "RGBA" and np.asarray(im)[:, :16, 3].max() <= 10


MOTION_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    b'xmlns:GCamera="http://ns.google.com/photos/1.0/camera/" '
    b'xmlns:Container="http://ns.google.com/photos/1.0/container/" '
    b'xmlns:Item="http://ns.google.com/photos/1.0/container/item/" '
    b'GCamera:MotionPhoto="1" GCamera:MotionPhotoVersion="1">'
    b"<Container:Directory><rdf:Seq>"
    b'<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" '
    b'Item:Semantic="Primary" Item:Length="0"/></rdf:li>'
    b'<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="video/mp4" '
    b'Item:Semantic="MotionPhoto" Item:Length="4000"/></rdf:li>'
    b"</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def test_a_motion_photo_is_written_as_a_still_that_points_at_no_video(tmp_path: Path) -> None:
    """A phone's motion photo carries its video after the picture, found through its XMP
    (counted back from the end of the file). Copied as it was, the XMP made viewers take
    the output's last 4000 bytes for the video; the output is a still, and says so."""
    import xml.etree.ElementTree as ET

    buffer = io.BytesIO()
    Image.fromarray(make_photo_like(40, 60, seed=5)).save(buffer, "JPEG", xmp=MOTION_XMP)
    src = tmp_path / "in" / "PXL_0001.MP.jpg"
    src.parent.mkdir()
    src.write_bytes(buffer.getvalue() + b"\0\0\0\x18ftypmp42" + bytes(3988))
    decoded = read_image(src)
    note = "a motion photo: its video was left out, only the picture was upscaled"
    assert decoded.warnings == (note,)
    code, images, _, err = cli(src.parent, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    assert note in images[0]["warnings"]
    with Image.open(tmp_path / "out" / src.name) as im:
        xmp = im.info["xmp"]
    ET.fromstring(xmp)  # still well-formed
    assert b'GCamera:MotionPhoto="0"' in xmp and b"Container:Directory" not in xmp
    assert b"video/mp4" not in xmp and b'GCamera:MotionPhotoVersion="1"' in xmp


@pytest.mark.parametrize(
    ("xmp", "expected"),
    [
        (  # the older form, an element and an offset from the end
            b'<rdf:Description GCamera:MicroVideoOffset="5120" a="b">'
            b"<GCamera:MicroVideo>1</GCamera:MicroVideo></rdf:Description>",
            b'<rdf:Description a="b"><GCamera:MicroVideo>0</GCamera:MicroVideo></rdf:Description>',
        ),
        (  # an Ultra HDR picture's gain map, listed by a self-closing directory
            b'<rdf:Description hdrgm:Version="1.0"><Container:Directory x="1"/></rdf:Description>',
            b'<rdf:Description hdrgm:Version="1.0"></rdf:Description>',
        ),
    ],
)
def test_what_an_xmp_lists_after_the_picture_is_dropped_from_it(
    xmp: bytes, expected: bytes
) -> None:
    from pocketsr_cli.imageio.metadata import without_attached_media

    cleaned, note = without_attached_media(xmp)
    assert cleaned == expected and note is not None


def test_an_xmp_that_lists_nothing_after_the_picture_is_kept_as_it_is() -> None:
    from pocketsr_cli.imageio.metadata import without_attached_media

    plain = b'<rdf:Description GCamera:MotionPhoto="0" tiff:Make="Pixel"/>'
    assert without_attached_media(plain) == (plain, None)


def test_extended_xmp_is_said_to_be_left_out(tmp_path: Path) -> None:
    """Metadata too large for one segment (a phone's depth map, an editor's history) goes
    into extended XMP segments, which no decoder hands over: dropped, but not silently."""
    buffer = io.BytesIO()
    Image.fromarray(make_photo_like(24, 32, seed=6)).save(buffer, "JPEG")
    data = buffer.getvalue()
    payload = b"http://ns.adobe.com/xmp/extension/\0" + b"0" * 32 + struct.pack(">II", 6000, 0)
    payload += b"x" * 6000
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    (tmp_path / "plain.jpg").write_bytes(data)
    (tmp_path / "extended.jpg").write_bytes(data[:2] + segment + data[2:])
    assert read_image(tmp_path / "extended.jpg").warnings == (
        "its extended XMP (6 KiB of large metadata, such as a depth map or an edit history) "
        "was left out",
    )
    assert read_image(tmp_path / "plain.jpg").warnings == ()
