"""The Python API, ``pocketsr_cli.Upscaler``, with the bicubic model (no weights)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from _imagegen import fake_icc, srgb_icc
from PIL import Image

import pocketsr_cli
from pocketsr_cli import inference
from pocketsr_cli.errors import ImageReadError, ImageWriteError, ModelError, UsageError
from pocketsr_cli.factory import routing_k


def pixels(h: int = 12, w: int = 16, channels: int = 3, dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(channels)
    top = 65535 if dtype == np.uint16 else 255
    return rng.integers(0, top, (h, w, channels), dtype=dtype)


@pytest.fixture(scope="module")
def up() -> pocketsr_cli.Upscaler:
    return pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")


def test_public_class_is_not_the_engine(up: pocketsr_cli.Upscaler) -> None:
    assert pocketsr_cli.Upscaler is not inference.Upscaler
    assert (up.name, up.scale, up.device, up.precision) == ("bicubic", 2, "cpu", "fp32")


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("RGBA", 4), ("L", 1)])
def test_pil_in_pil_out(up: pocketsr_cli.Upscaler, mode: str, channels: int) -> None:
    arr = pixels(channels=channels)
    im = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
    out = up.upscale(im)
    assert isinstance(out, Image.Image)
    assert out.mode == mode and out.size == (32, 24)


def test_pil_16_bit_gray(up: pocketsr_cli.Upscaler) -> None:
    im = Image.fromarray(pixels(channels=1, dtype=np.uint16)[..., 0])
    assert im.mode == "I;16"
    out = up.upscale(im)
    assert out.mode == "I;16" and out.size == (32, 24)


@pytest.mark.parametrize(("mode", "order"), [("I;16B", ">u2"), ("I;16L", "<u2"), ("I;16N", "=u2")])
def test_16_bit_gray_in_any_byte_order_keeps_its_mode_and_values(
    up: pocketsr_cli.Upscaler, mode: str, order: str
) -> None:
    """I;16B (big-endian: a PGM or FITS file's samples) came back as I;16: the same values
    in another mode, whose raw bytes (``tobytes()``) are in the other order."""
    values = pixels(channels=1, dtype=np.uint16)[..., 0]
    im = Image.frombytes(mode, (16, 12), values.astype(order).tobytes())
    out = up.upscale(im)
    assert out.mode == mode and out.size == (32, 24)
    expected = np.asarray(up.upscale(Image.fromarray(values)))
    np.testing.assert_array_equal(np.asarray(out).astype(np.uint16), expected)
    assert out.tobytes() == expected.astype(order).tobytes()


def test_a_32_bit_gray_image_keeps_its_mode_and_is_never_clipped(
    up: pocketsr_cli.Upscaler,
) -> None:
    """Mode I is how Pillow opens 16-bit PNGs: 0..65535 round-trips in mode I; values it
    cannot hold in 16 bits are refused, not clipped to black or white."""
    values = (pixels(channels=1)[..., 0].astype(np.int32)) * 257
    out = up.upscale(Image.fromarray(values))
    assert out.mode == "I" and out.size == (32, 24)
    assert np.asarray(out).min() >= 0 and np.asarray(out).max() <= 65535
    for bad in (values * 1000, values - 70000):
        with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
            up.upscale(Image.fromarray(bad))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(12, 16), (12, 16, 3), (12, 16, 4)])
def test_numpy_in_numpy_out(up: pocketsr_cli.Upscaler, dtype: type, shape: tuple[int, ...]) -> None:
    arr = pixels(channels=shape[2] if len(shape) == 3 else 1, dtype=dtype).reshape(shape)
    out = up.upscale(arr)
    assert isinstance(out, np.ndarray)
    assert out.dtype == dtype and out.shape == (24, 32, *shape[2:])
    # Channel order is kept (RGB in, RGB out): a flat red image stays red.
    if len(shape) == 3:
        red = np.zeros(shape, dtype)
        red[..., 0] = np.iinfo(dtype).max
        assert (up.upscale(red)[..., 0] == np.iinfo(dtype).max).all()
        assert (up.upscale(red)[..., 1:3] == 0).all()


@pytest.mark.parametrize("shape", [(12, 16), (12, 16, 3)])
def test_big_endian_16_bit_samples_are_uint16_too(
    up: pocketsr_cli.Upscaler, shape: tuple[int, ...]
) -> None:
    """A 16-bit PGM or FITS file read with numpy gives ``>u2`` samples: the same image as
    its native-order copy, returned in the order it came in."""
    native = pixels(channels=shape[2] if len(shape) == 3 else 1, dtype=np.uint16).reshape(shape)
    big = native.astype(">u2")
    out = up.upscale(big)
    assert out.dtype == np.dtype(">u2") and out.shape == (24, 32, *shape[2:])
    assert np.array_equal(out, up.upscale(native))


def test_bad_inputs(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        up.upscale(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        up.upscale(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(TypeError):
        up.upscale(42)  # type: ignore[call-overload]
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError):
        up.upscale(tmp_path / "bad.jpg")


def test_path_in_numpy_out(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    for given in (src, str(src)):
        out = up.upscale(given)
        assert isinstance(out, np.ndarray) and out.shape == (24, 32, 3)


class FsPath:
    """A path type of another library: ``os.PathLike``, not a ``pathlib.Path``."""

    def __init__(self, path: str | Path | bytes) -> None:
        self.path = path if isinstance(path, bytes) else str(path)

    def __fspath__(self) -> str | bytes:
        return self.path

    def __str__(self) -> str:  # what str() gives is no path: only __fspath__ is
        return f"<FsPath {self.path!r}>"


def test_any_os_pathlike_is_a_path(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(pixels()).save(src)
    out = up.upscale(FsPath(src))
    assert isinstance(out, np.ndarray) and out.shape == (24, 32, 3)
    assert up.upscale_file(FsPath(src), FsPath(tmp_path / "b.png")) == tmp_path / "b.png"
    (result,) = up.upscale_folder(FsPath(src.parent), FsPath(tmp_path / "out"))
    assert result.status == "ok" and result.output == tmp_path / "out" / "a.png"
    assert pocketsr_cli.Upscaler(FsPath("bicubic"), scale=2, device="cpu").name == "bicubic"
    with pytest.raises(UsageError, match="empty path"):
        up.upscale(FsPath(""))
    with pytest.raises(TypeError, match="bytes"):
        up.upscale_file(src, FsPath(b"b.png"))


def test_what_is_no_path_is_named_in_a_type_error(up: pocketsr_cli.Upscaler) -> None:
    """``model=5`` said os.fspath's "expected str, bytes or os.PathLike object, not int",
    though bytes are refused too; bytes given as an image say how to pass either."""
    with pytest.raises(
        TypeError, match=r"^model must be a str path or an os\.PathLike giving one, not int$"
    ):
        pocketsr_cli.Upscaler(5, device="cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dst must be .*, not bytes$"):
        up.upscale_file("a.png", b"b.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not bytes \(a path is a str; .*Image\.open\(io\.BytesIO"):
        up.upscale(b"a.png")  # type: ignore[call-overload]


def test_what_is_not_taken_says_how_to_give_it(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    """A CHW torch tensor, float pixels, a file object, a CHW array and an output name
    without extension were refused with no word on what to do (``not Tensor``,
    ``unknown output format ''``)."""
    import io

    import torch

    with pytest.raises(TypeError, match=r"not Tensor \(a torch tensor: .*\.permute\(1, 2, 0\)"):
        up.upscale(torch.zeros(3, 8, 8, dtype=torch.uint8))  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"not float32: floats have no fixed range; .* \* 255"):
        up.upscale(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match=r"not BytesIO \(a file object: give Image\.open\(f\)"):
        up.upscale(io.BytesIO(b"\x89PNG"))  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"not \(3, 8, 8\) \(channels come last: .*transpose"):
        up.upscale(np.zeros((3, 8, 8), np.uint8))
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    with pytest.raises(
        UsageError,
        match=r"^cannot tell the output format from 'c': the name has no extension; end it "
        r"in \.png, \.jpg, \.webp, \.tif or \.bmp$",
    ):
        up.upscale_file(src, tmp_path / "c")


def test_a_leading_tilde_is_the_home_folder_in_every_path(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the shell reads ``~/x`` on the command line: ``upscale_file(src, "~/out.png")``
    wrote a folder named ``~`` into the working folder, and ``"~/photo.jpg"`` was "no
    such file"."""
    import shutil

    home, work = tmp_path / "home", tmp_path / "work"
    (home / "in").mkdir(parents=True)
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    Image.fromarray(pixels()).save(home / "in" / "a.png")
    shutil.copy(Path(pocketsr_cli.__file__).parent.parent / "models" / "pcsr-x4.safetensors", home)
    assert up.upscale("~/in/a.png").shape == (24, 32, 3)
    assert up.upscale(Path("~/in/a.png")).shape == (24, 32, 3)
    assert up.upscale_file("~/in/a.png", Path("~/b.png")) == home / "b.png"
    (result,) = up.upscale_folder("~/in", "~/out")
    assert result.status == "ok" and result.output == home / "out" / "a.png"
    assert pocketsr_cli.Upscaler("~/pcsr-x4.safetensors", device="cpu").name.startswith("pcsr")
    assert list(work.iterdir()) == []  # no folder named ~ here
    assert (home / "b.png").is_file()


@pytest.mark.parametrize("value", ["false", "no", None, 1, 0.0])
def test_a_flag_is_true_or_false(up: pocketsr_cli.Upscaler, tmp_path: Path, value: object) -> None:
    """A string is truthy whatever it says: ``overwrite="false"`` replaced every output and
    ``keep_metadata="no"`` kept EXIF; each flag is refused, before any work, unless it is
    True or False (numpy's too)."""
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    Image.fromarray(pixels()).save(src)
    for keyword in ("offline", "allow_unverified", "trust_pickle", "adaptive", "compile"):
        with pytest.raises(UsageError, match=f"^{keyword} must be True or False, not "):
            pocketsr_cli.Upscaler("bicubic", device="cpu", **{keyword: value})
    with pytest.raises(UsageError, match=r"^keep_metadata must be True or False"):
        up.upscale_file(src, tmp_path / "b.png", keep_metadata=value)  # type: ignore[arg-type]
    for keyword in ("recursive", "keep_metadata", "overwrite"):
        with pytest.raises(UsageError, match=f"^{keyword} must be True or False, not "):
            up.upscale_folder(src.parent, tmp_path / "out", **{keyword: value})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    (result,) = up.upscale_folder(src.parent, tmp_path / "out", overwrite=np.bool_(True))
    assert result.status == "ok"


def test_upscale_file_without_metadata_keeps_the_colour_profile(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    src = tmp_path / "a.jpg"
    Image.fromarray(pixels()).save(src, exif=exif.tobytes(), icc_profile=icc)
    written = up.upscale_file(src, tmp_path / "b.jpg", keep_metadata=False)
    with Image.open(written) as im:
        assert im.info.get("icc_profile") == icc and 0x010F not in im.getexif()


def test_upscale_file_writes_a_valid_file(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    written = up.upscale_file(src, tmp_path / "out" / "a.jpg", quality=90)
    assert written == tmp_path / "out" / "a.jpg"
    with Image.open(written) as im:
        assert im.format == "JPEG" and im.size == (32, 24)
    assert [p.name for p in written.parent.iterdir()] == ["a.jpg"]  # no temp file left
    with pytest.raises(UsageError):
        up.upscale_file(src, tmp_path / "a.gif")


def test_a_lossless_webp_stays_lossless_as_the_command_line_keeps_it(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """``upscale_file`` and ``upscale_folder`` as ``pocketsr upscale``: without a quality a
    lossless WebP written as WebP stays lossless; with one it is lossy at it."""
    from pocketsr_cli.imageio import read_image, read_provenance_text
    from pocketsr_cli.provenance import loads

    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.webp"
    Image.fromarray(pixels()).save(src, lossless=True)
    kept = up.upscale_file(src, tmp_path / "kept.webp")
    lossy = up.upscale_file(src, tmp_path / "lossy.webp", quality=90)
    assert read_image(kept).lossless and not read_image(lossy).lossless
    assert (loads(read_provenance_text(kept) or "") or {}).get("quality") == "lossless"
    assert (loads(read_provenance_text(lossy) or "") or {}).get("quality") == 90
    for fmt, quality, lossless in ((None, None, True), ("webp", 80, False)):
        out = tmp_path / f"o{quality}"
        (result,) = list(up.upscale_folder(src.parent, out, fmt=fmt, quality=quality))
        assert result.status == "ok", result.error
        assert read_image(out / "a.webp").lossless is lossless


def test_upscale_file_removes_what_killed_writers_left_in_its_folder(tmp_path: Path) -> None:
    """Once per folder and Upscaler: a file left there later waits for the next one."""
    import os
    import time

    def left(name: str) -> Path:
        path = tmp_path / "out" / f".{name}.0123456789ab.pocketsr-tmp"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
        os.utime(path, (time.time() - 3600,) * 2)
        return path

    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    first = left("a.png")
    claim = tmp_path / "out" / ".z.png.pocketsr-claim"  # a run killed after its rename left it
    claim.write_bytes(b"")
    os.utime(claim, (time.time() - 3600,) * 2)
    up.upscale_file(src, tmp_path / "out" / "a.png")
    assert not first.exists() and not claim.exists()
    second = left("b.png")
    up.upscale_file(src, tmp_path / "out" / "b.png")
    assert second.exists()  # that folder was swept already
    pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu").upscale_file(
        src, tmp_path / "out" / "c.png"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_upscale_file_holds_its_outputs_claim_as_a_run_does(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of one output, an Upscaler and a run (or another Upscaler): it took no
    claim, so neither knew of the other.  While one holds the claim the other is refused
    at once, as a run skips such an output (``concurrent``), and nothing of it is left."""
    from pocketsr_cli import claims

    src, dst = tmp_path / "a.png", tmp_path / "out" / "b.png"
    Image.fromarray(pixels()).save(src)
    other = claims.acquire(dst)  # a run writing it right now
    assert other is not None
    try:
        with pytest.raises(ImageWriteError, match="another pocketsr run is writing this output"):
            up.upscale_file(src, dst)
        assert sorted(p.name for p in dst.parent.iterdir()) == [other.path.name]
    finally:
        other.release()

    others: list[claims.Claim | None] = []
    run = up._run

    def run_while_another_tries(pixels: np.ndarray) -> np.ndarray:
        others.append(claims.acquire(dst))  # a run's writer, meanwhile
        return run(pixels)

    monkeypatch.setattr(up, "_run", run_while_another_tries)
    assert up.upscale_file(src, dst) == dst
    assert others == [None]  # refused: the Upscaler held it
    assert sorted(p.name for p in dst.parent.iterdir()) == ["b.png"]  # its claim is gone


def test_upscale_file_alpha_to_jpeg_writes_png(tmp_path: Path) -> None:
    seen: list[str] = []
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=seen.append)
    src = tmp_path / "a.png"
    Image.fromarray(pixels(channels=4)).save(src)
    written = up.upscale_file(src, tmp_path / "b.jpg")
    assert written == tmp_path / "b.png" and written.exists()
    assert any("transparency" in w for w in seen)


def test_upscale_file_writes_an_all_opaque_alpha_image_as_the_jpeg_asked(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=seen.append)
    src = tmp_path / "a.png"
    rgb = pixels()
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(src)
    assert up.upscale_file(src, tmp_path / "b.jpg") == tmp_path / "b.jpg"
    assert up.upscale_file(src, tmp_path / "c.bmp") == tmp_path / "c.bmp"
    with Image.open(tmp_path / "b.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 24)
    with Image.open(tmp_path / "c.bmp") as im, Image.open(src) as original:
        expected = np.asarray(original.convert("RGB").resize((32, 24), Image.Resampling.BICUBIC))
        assert im.mode == "RGB"
        assert np.abs(np.asarray(im).astype(int) - expected).max() <= 8
    assert seen == [] and not (tmp_path / "b.png").exists()


def test_upscale_file_says_what_metadata_a_jpeg_has_no_room_for(tmp_path: Path) -> None:
    seen: list[str] = []
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=seen.append)
    src = tmp_path / "a.png"
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x927C] = b"\0" * 70_000  # a maker note too long for one segment
    Image.fromarray(pixels()).save(src, exif=exif)
    up.upscale_file(src, tmp_path / "b.jpg")
    assert seen == [
        "a.png: its EXIF maker note was left out: without it the EXIF block fits a JPEG "
        "(64 KiB at most)"
    ]
    with Image.open(tmp_path / "b.jpg") as im:
        assert im.getexif()[0x010F] == "Canon"
    exif[0x010E] = "d" * 70_000  # an image description: nothing can be cut out instead
    Image.fromarray(pixels()).save(src, exif=exif)
    up.upscale_file(src, tmp_path / "c.jpg")
    assert seen[1].startswith("a.png: its EXIF block (") and "not copied" in seen[1], seen


def test_upscale_file_writes_a_bmp_and_its_record_into_a_new_folder(tmp_path: Path) -> None:
    """The record staged first had no folder to go to yet (write_atomic made it later)."""
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=lambda _m: None)
    src = tmp_path / "a.bmp"
    Image.fromarray(pixels()).save(src)
    dst = tmp_path / "new" / "deeper" / "a_x2.bmp"
    assert up.upscale_file(src, dst) == dst
    assert sorted(p.name for p in dst.parent.iterdir()) == ["a_x2.bmp", "a_x2.bmp.pocketsr.json"]
    # A sidecar name taken by a folder: failed, and no image is left without its record.
    (tmp_path / "d" / "a_x2.bmp.pocketsr.json").mkdir(parents=True)
    with pytest.raises(ImageWriteError):
        up.upscale_file(src, tmp_path / "d" / "a_x2.bmp")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a_x2.bmp.pocketsr.json"]


def test_upscale_folder_yields_each_result(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(pixels()).save(src / "a.png")
    Image.fromarray(pixels()).save(src / "sub" / "b.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (src / "notes.txt").write_text("hello")
    results = list(up.upscale_folder(src, tmp_path / "out", recursive=True, fmt="png"))
    by_name = {r.job.input.name: r for r in results}
    assert set(by_name) == {"a.png", "b.jpg", "broken.jpg", "notes.txt"}
    assert by_name["a.png"].status == "ok" and by_name["b.jpg"].status == "ok"
    assert by_name["broken.jpg"].status == "failed" and by_name["broken.jpg"].error
    assert by_name["notes.txt"].status == "skipped"
    assert (tmp_path / "out" / "sub" / "b.png").exists()
    with Image.open(tmp_path / "out" / "a.png") as im:
        assert im.size == (32, 24)
    # A second pass keeps what is there (skip-existing, as the CLI).
    second = up.upscale_folder(src, tmp_path / "out", recursive=True, fmt="png")
    again = {r.job.input.name: r for r in second}
    assert again["a.png"].status == "skipped"
    # The reason names the keyword that changes it, not the command line's --overwrite.
    assert again["a.png"].reason == "output exists (use overwrite=True to replace it)"


def test_upscale_folder_with_a_suffix_writes_beside_the_inputs(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    Image.fromarray(pixels()).save(tmp_path / "a.png")
    # Without a suffix the outputs would replace the inputs: the advice names a keyword
    # upscale_folder takes.
    with pytest.raises(UsageError, match=r"choose another output folder or a suffix$"):
        list(up.upscale_folder(tmp_path, tmp_path))
    (result,) = up.upscale_folder(tmp_path, tmp_path, suffix="_x2")
    assert result.status == "ok" and result.output == tmp_path / "a_x2.png"
    with Image.open(tmp_path / "a_x2.png") as im:
        assert im.size == (32, 24)
    # Run again: the output is known as one (by its suffix), and a.png's is kept.
    again = {r.job.input.name: r for r in up.upscale_folder(tmp_path, tmp_path, suffix="_x2")}
    assert again["a.png"].reason_code == "exists"
    assert again["a_x2.png"].status == "skipped"
    with pytest.raises(UsageError, match=r"^suffix '/x' contains a path separator"):
        list(up.upscale_folder(tmp_path, tmp_path, suffix="/x"))


def test_upscale_folder_says_a_mistake_when_called_not_when_first_iterated(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """Its arguments, its inputs and where they would go are checked by the call: as a
    generator it raised nothing until the first ``next()``, outside a ``try`` around the
    call (``results = up.upscale_folder(...)`` then a loop elsewhere)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(pixels()).save(src / "a.png")
    Image.fromarray(pixels()).save(src / "a.jpg")
    (tmp_path / "empty").mkdir()
    mistakes = {
        "input not found": lambda: up.upscale_folder(tmp_path / "nope", tmp_path / "o"),
        "no image files": lambda: up.upscale_folder(tmp_path / "empty", tmp_path / "o"),
        "quality": lambda: up.upscale_folder(src, tmp_path / "o", quality=101),
        "unknown fmt": lambda: up.upscale_folder(src, tmp_path / "o", fmt="gif"),
        "overwrite input": lambda: up.upscale_folder(src, src),
        "both be written": lambda: up.upscale_folder(src, tmp_path / "o", fmt="png"),
    }
    for words, call in mistakes.items():
        with pytest.raises(UsageError, match=words):
            call()
    assert not (tmp_path / "o").exists()
    results = up.upscale_folder(src, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing runs until the loop asks
    assert sorted(r.status for r in results) == ["ok", "ok"]


def test_a_folder_run_that_kept_outputs_made_otherwise_warns_as_the_cli_does(
    tmp_path: Path,
) -> None:
    warned: list[str] = []
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=warned.append)
    src, out = tmp_path / "in", tmp_path / "out"
    for folder in (src, out):
        folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(pixels()).save(src / name)
    Image.fromarray(pixels()).save(out / "a.png")  # another program's: no record
    first = {r.job.input.name: r.reason_code for r in up.upscale_folder(src, out)}
    assert first == {"a.png": "unrecorded", "b.png": None, "c.png": None}
    assert warned == [
        "1 existing output(s) were kept although they were not made with these settings or "
        "carry no pocketsr record; use overwrite=True to redo them"
    ]
    # Runs that keep nothing made otherwise say nothing.
    warned.clear()
    assert {r.status for r in up.upscale_folder(src, out, overwrite=True)} == {"ok"}
    assert {r.reason_code for r in up.upscale_folder(src, out)} == {"exists"}
    assert warned == []


def test_a_folder_run_without_recursive_warns_of_the_sub_folders_it_left_out(
    tmp_path: Path,
) -> None:
    warned: list[str] = []
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=warned.append)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(pixels()).save(src / "a.png")
    Image.fromarray(pixels()).save(src / "sub" / "b.png")
    assert [r.status for r in up.upscale_folder(src, tmp_path / "o")] == ["ok"]
    assert warned == [
        f"{src} has 1 sub-folder not scanned (add recursive=True to upscale its images too)"
    ]
    warned.clear()
    assert [r.status for r in up.upscale_folder(src, tmp_path / "o2", recursive=True)] == [
        "ok",
        "ok",
    ]
    assert warned == []


def test_messages_name_the_apis_keywords_not_flags() -> None:
    with pytest.raises(UsageError, match=r"^tile must be auto, 0 or a number of pixels"):
        pocketsr_cli.Upscaler("bicubic", device="cpu", tile="big")
    with pytest.raises(UsageError, match=r"^outscale must be a factor from 0\.01 to 64, not -1$"):
        pocketsr_cli.Upscaler("bicubic", device="cpu", outscale=-1)


@pytest.mark.parametrize("factor", [0, 0.001, 64.5, 1e6])
def test_outscale_takes_the_command_lines_factors(factor: float) -> None:
    """As ``--outscale``, 0.01 to 64: ``1e6`` was taken, and the resize to a
    8,000,000-pixel-wide result of an 8-pixel image raised OpenCV's bare cv2.error."""
    with pytest.raises(UsageError, match=r"^outscale must be a factor from 0\.01 to 64, not "):
        pocketsr_cli.Upscaler("bicubic", device="cpu", outscale=factor)
    for edge in (0.01, 64):
        up = pocketsr_cli.Upscaler("bicubic", device="cpu", outscale=edge)
        assert up.scale == edge
        assert up.upscale(pixels(2, 3)).shape == ((1, 1, 3) if edge < 1 else (128, 192, 3))


def test_tile_overlap_is_the_command_lines_tile_overlap(tmp_path: Path) -> None:
    """The advice for a tile too small names a keyword the API takes, and it works."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    with pytest.raises(UsageError, match=r"^tile=40 leaves 8 px .* or a smaller tile_overlap$"):
        pocketsr_cli.Upscaler("bicubic", device="cpu", tile=40)
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", tile=40, tile_overlap=8)
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    record = loads(read_provenance_text(up.upscale_file(src, tmp_path / "b.png")) or "")
    assert record is not None and record["tile"] == "40/8"  # as --tile 40 --tile-overlap 8
    for bad in (-1, 257, 8.0, True, "8"):
        with pytest.raises(UsageError, match=r"^tile_overlap must be a whole number from 0 to"):
            pocketsr_cli.Upscaler("bicubic", device="cpu", tile_overlap=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keyword", "value", "shown"),
    [
        ("tile", -1, "-1"),
        ("tile", True, "True"),
        ("tile", 1.5, "1.5"),
        ("tile", None, "None"),
        ("ensemble", 1, "1"),
        ("ensemble", "FANCY", "'FANCY'"),
    ],
)
def test_a_refused_value_is_shown_as_given_not_as_its_text(
    keyword: str, value: object, shown: str
) -> None:
    """``tile=-1`` was refused as ``not '-1'`` and ``tile=True`` as ``not 'True'``, the
    text it was read as, which reads as though a string had been given."""
    with pytest.raises(
        UsageError, match=rf"^{keyword} (must be|takes) .*, not {re.escape(shown)}$"
    ):
        pocketsr_cli.Upscaler("bicubic", device="cpu", **{keyword: value})
    assert pocketsr_cli.Upscaler("bicubic", device="cpu", tile=np.int64(64)).tile_overlap == 16


def test_tile_overlap_auto_is_taken_in_any_case_as_the_other_words() -> None:
    """``tile_overlap="AUTO"`` was refused where ``tile="AUTO"``, ``precision="FP16"``,
    ``ensemble="FLIP8"`` and ``device="CPU"`` were taken, as the command line takes them."""
    for auto in ("AUTO", " Auto "):
        up = pocketsr_cli.Upscaler("bicubic", device="CPU", tile="AUTO", tile_overlap=auto)
        assert up.tile_overlap == 16 and up.device == "cpu"


@pytest.mark.parametrize(
    ("tile", "label"), [("AUTO", "auto/16"), (" 64 ", "64/16"), ("064", "64/16")]
)
def test_the_record_says_tile_as_read_not_as_typed(tmp_path: Path, tile: str, label: str) -> None:
    """``tile="AUTO"`` recorded ``AUTO/16`` and ``" 64 "`` `` 64 /16``: the text as typed."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", tile=tile)
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    record = loads(read_provenance_text(up.upscale_file(src, tmp_path / "b.png")) or "")
    assert record is not None and record["tile"] == label


@pytest.mark.parametrize("tile", ["\u0666\u0664", "\u00b2", "6\u2074"])
def test_a_tile_in_other_digits_than_ascii_is_refused(tile: str) -> None:
    """Arabic-Indic ``٦٤`` was taken as 64 (``str.isdigit``, then ``int``); a superscript
    ``²`` passed ``isdigit`` and ``int`` raised a bare ValueError."""
    with pytest.raises(UsageError, match=r"^tile must be auto, 0 or a number of pixels, not "):
        pocketsr_cli.Upscaler("bicubic", device="cpu", tile=tile)


def test_an_overlap_too_small_for_the_model_is_warned_of_where_an_image_is_cut() -> None:
    """QA's case: tile=16, tile_overlap=0 drew the default model's tiles up to 146 levels
    off the untiled result, silently; the docs said there were no seams."""
    image = np.random.default_rng(1).integers(0, 255, (21, 13, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match=r"^tile_overlap=0 is less than the 16 pixels "):
        pocketsr_cli.Upscaler(device="cpu", tile=16, tile_overlap=0).upscale(image)
    told: list[str] = []
    up = pocketsr_cli.Upscaler(device="cpu", tile=16, tile_overlap=4, on_warning=told.append)
    up.upscale(image)
    up.upscale(image)
    assert told == [
        "tile_overlap=4 is less than the 16 pixels pocketsr-compact-x4 needs: its tiles "
        "differ from the whole image's result along their seams; use tile_overlap=16 or "
        "more and tile=64 or more for seamless tiles, or tile=0 to run images whole"
    ]
    for tile in (0, 32):  # whole images: no seams, nothing to say
        quiet = pocketsr_cli.Upscaler(
            device="cpu", tile=tile, tile_overlap=0, on_warning=told.append
        )
        quiet.upscale(image)
    assert len(told) == 1


def test_bad_model_name_raises_model_error() -> None:
    with pytest.raises(ModelError, match="no-such-model"):
        pocketsr_cli.Upscaler("no-such-model", offline=True)


@pytest.mark.parametrize(
    ("ref", "path"),
    [("file:///tmp/4x.pth", "/tmp/4x.pth"), ("file:///tmp/my%20w.pth", "/tmp/my w.pth")],
)
def test_a_file_url_as_the_model_names_the_path_as_the_api_takes_it(ref: str, path: str) -> None:
    """``model='PATH'``, not the command line's ``-m PATH``, an option the API lacks."""
    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.spelling import spelled
    from pocketsr_cli.weights.resolve import resolve_model

    with pytest.raises(ModelError) as info:
        pocketsr_cli.Upscaler(ref)
    assert str(info.value).endswith(f"give the path itself, model={path!r}"), info.value
    with spelled(flag_spelling), pytest.raises(ModelError) as info:
        resolve_model(ref)
    assert str(info.value).endswith(f"give the path itself, -m {path}"), info.value


@pytest.mark.parametrize("ref", [".", ".."])
def test_this_folder_as_the_model_is_said_to_be_a_folder(ref: str) -> None:
    """``Upscaler("/tmp")`` said it is a folder, ``Upscaler(".")`` "unknown model '.'"."""
    with pytest.raises(ModelError, match=rf"^{re.escape(ref)} is a folder: model takes a "):
        pocketsr_cli.Upscaler(ref)


def test_an_ncnn_model_as_the_model_names_the_command_that_converts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Upscaler("x.param")`` said only "not a PyTorch checkpoint or safetensors file"."""
    from pocketsr_cli.cli._flags import flag_spelling
    from pocketsr_cli.spelling import spelled
    from pocketsr_cli.weights.resolve import resolve_model

    monkeypatch.chdir(tmp_path)
    Path("x.param").write_text("7767517\n1 1\nInput data 0 1 data\n")
    Path("x.bin").write_bytes(b"\0" * 8)
    command = "`pocketsr models import-ncnn x.param x.bin --name NAME`"
    for ref, part in (("x.param", "graph"), ("x.bin", "weights")):
        with pytest.raises(ModelError) as info:
            pocketsr_cli.Upscaler(ref)
        message = str(info.value)
        assert f"it is an ncnn model's {part}: import the two files once" in message, message
        assert message.endswith(f"{command}, then use model='NAME'")
    with spelled(flag_spelling), pytest.raises(ModelError) as info:
        resolve_model("x.param")
    assert str(info.value).endswith(f"{command}, then use -m NAME"), info.value


def test_an_image_given_as_the_model_says_where_the_api_takes_images(tmp_path: Path) -> None:
    """Not "given after the command (pocketsr upscale photo.jpg)", a command line's words."""
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.jpg")
    with pytest.raises(ModelError) as info:
        pocketsr_cli.Upscaler(tmp_path / "photo.jpg")
    message = str(info.value)
    assert message.endswith("an image to upscale is an input, given to upscale() or upscale_file()")
    assert "pocketsr upscale" not in message and "-m" not in message


def test_bad_device_raises_usage_error() -> None:
    with pytest.raises(UsageError):
        pocketsr_cli.Upscaler("bicubic", device="tpu")


def test_ensemble_runs_is_recorded_and_validated(tmp_path: Path) -> None:
    from pocketsr_cli.ensemble import Ensemble
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    flip = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", ensemble="flip8")
    assert flip.ensemble == Ensemble("flip8")
    arr = pixels(20, 24)
    out = flip.upscale(arr)
    assert out.shape == (40, 48, 3) and out.dtype == np.uint8
    # The average over flips and rotations commutes with them (to rounding).
    mirrored = flip.upscale(np.ascontiguousarray(arr[:, ::-1])).astype(int)
    assert np.abs(mirrored[:, ::-1] - out.astype(int)).max() <= 1
    src = tmp_path / "a.png"
    Image.fromarray(arr).save(src)
    pad = pocketsr_cli.Upscaler("bicubic", scale=2, ensemble="pad", ensemble_weight=0.8)
    record = loads(read_provenance_text(pad.upscale_file(src, tmp_path / "b.png")) or "")
    assert record is not None
    assert (record["ensemble"], record["ensemble_weight"]) == ("pad", 0.8)
    # The API names its own keywords, not the command line's flags.
    with pytest.raises(UsageError, match=r"^ensemble_weight applies to ensemble='pad', not to"):
        pocketsr_cli.Upscaler("bicubic", ensemble="flip8", ensemble_weight=0.8)
    with pytest.raises(UsageError, match="none, pad or flip8"):
        pocketsr_cli.Upscaler("bicubic", ensemble="tta")


def test_a_read_only_array_upscales_without_a_torch_warning() -> None:
    """``np.asarray(pil_image)`` is read-only; torch warns about wrapping such an array,
    though pocketsr only reads it.  A fresh process with warnings as errors (torch warns
    once per process)."""
    import subprocess
    import sys

    script = (
        "import numpy as np, pocketsr_cli\n"
        "a = np.zeros((24, 32, 3), np.uint8); a.flags.writeable = False\n"
        "print(pocketsr_cli.Upscaler(device='cpu').upscale(a).shape)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(96, 128, 3)"


def test_upscale_file_never_replaces_its_input_nor_a_file_it_was_not_given(
    tmp_path: Path,
) -> None:
    """An RGBA ``a.png`` asked as ``a.jpg`` would be written as PNG to ``a.png``: itself.
    Nor may that switch replace another existing ``.png``; nor ``dst`` be ``src``."""
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=lambda _m: None)
    src = tmp_path / "a.png"
    Image.fromarray(pixels(channels=4)).save(src)
    original = src.read_bytes()
    with pytest.raises(UsageError, match=r"a\.png is the input"):
        up.upscale_file(src, tmp_path / "a.jpg")
    with pytest.raises(UsageError, match="is the input"):
        up.upscale_file(src, src)
    (tmp_path / "b.png").write_bytes(b"someone else's")
    with pytest.raises(UsageError, match=r"b\.png exists: name a \.png file"):
        up.upscale_file(src, tmp_path / "b.jpg")
    assert src.read_bytes() == original
    assert (tmp_path / "b.png").read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_api_mistakes_are_pocketsr_errors_said_before_any_work(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    for kwargs in ({"scale": 0}, {"scale": True}, {"scale": "4"}, {"outscale": float("inf")}):
        with pytest.raises(UsageError):
            pocketsr_cli.Upscaler("bicubic", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="device must be a string"):
        pocketsr_cli.Upscaler("bicubic", device=None)  # type: ignore[arg-type]
    for callback in (5, "print"):  # was called only at the first warning: 'not callable'
        with pytest.raises(UsageError, match=r"on_warning must be a callable .*not"):
            pocketsr_cli.Upscaler("bicubic", on_warning=callback)  # type: ignore[arg-type]
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    for quality in (0, 101, 95.5, "high"):
        with pytest.raises(UsageError, match="quality must be a whole number"):
            up.upscale_file(src, tmp_path / "a.jpg", quality=quality)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has none"):
        up.upscale(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(TypeError, match="mode F"):
        up.upscale(Image.fromarray(np.zeros((4, 4), np.float32)))
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        up.upscale(tmp_path / "nope.png")
    (tmp_path / "afile").write_text("x")
    for src_dir, dst_dir, says in [
        ("", tmp_path / "o", "an empty folder name"),
        (tmp_path, tmp_path / "afile", "afile is a file, not a folder"),
    ]:
        with pytest.raises(UsageError, match=says):
            next(up.upscale_folder(src_dir, dst_dir))
    assert not (tmp_path / "a.jpg").exists() and not (tmp_path / "o").exists()


def test_a_path_reports_what_its_file_loses_and_a_palette_keeps_its_alpha(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    seen: list[str] = []
    talking = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu", on_warning=seen.append)
    frames = [Image.new("RGB", (10, 10), c) for c in ("black", "red")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    talking.upscale(tmp_path / "anim.gif")
    assert seen == ["anim.gif: animated: only the first frame was upscaled"]
    rgba = pixels(channels=4)
    rgba[..., 3] = np.arange(16, dtype=np.uint8) * 16
    quantized = Image.fromarray(rgba).quantize()  # palette mode RGBA, no 'transparency'
    assert up.upscale(quantized).mode == "RGBA"


@pytest.mark.parametrize(
    ("mode", "key", "alpha_mode"), [("RGB", (9, 9, 9), "RGBA"), ("L", 9, "LA")]
)
def test_a_pil_images_transparent_colour_is_alpha_as_its_files_is(
    up: pocketsr_cli.Upscaler, tmp_path: Path, mode: str, key: object, alpha_mode: str
) -> None:
    """A PNG with a tRNS colour key opens in Pillow as RGB or L with
    ``info["transparency"]``: upscaled, it keeps its transparency as the same file read
    by path does (it came back opaque, the transparent background filled in)."""
    arr = pixels(channels=3)
    arr[:6] = 9  # the top half in the key colour
    Image.fromarray(arr if mode == "RGB" else arr[..., 0]).save(
        tmp_path / "keyed.png", transparency=key
    )
    with Image.open(tmp_path / "keyed.png") as im:
        assert im.mode == mode and "transparency" in im.info
        out = up.upscale(im)
    assert out.mode == alpha_mode
    by_path = up.upscale(tmp_path / "keyed.png")
    np.testing.assert_array_equal(np.asarray(out), by_path.reshape(np.asarray(out).shape))
    assert np.asarray(out)[:8, :, -1].max() == 0 and np.asarray(out)[-8:, :, -1].min() == 255


@pytest.mark.parametrize(
    ("mode", "icc", "kept"),
    [
        ("CMYK", fake_icc(b"CMYK"), False),
        ("L", srgb_icc(), False),  # an RGB profile on gray pixels
        ("RGB", srgb_icc(), True),
        ("L", fake_icc(b"GRAY"), True),
    ],
)
def test_a_pil_images_profile_is_kept_only_where_it_fits_the_result(
    up: pocketsr_cli.Upscaler, tmp_path: Path, mode: str, icc: bytes, kept: bool
) -> None:
    """A CMYK image comes back RGB, as its file read by path does: the CMYK profile (in its
    ``info``, as Pillow opens a CMYK JPEG) was copied onto the RGB result, so that saving
    it wrote RGB pixels tagged as CMYK.  A profile of the wrong colour space is dropped as
    when a file is read; one that fits is kept."""
    im = Image.fromarray(pixels(), "RGB").convert(mode)
    im.save(tmp_path / "in.jpg", quality=100, icc_profile=icc)
    with Image.open(tmp_path / "in.jpg") as opened:
        assert opened.mode == mode and opened.info["icc_profile"] == icc
        out = up.upscale(opened)
    assert out.mode == ("RGB" if mode == "CMYK" else mode)
    assert out.info.get("icc_profile") == (icc if kept else None)
    by_path = up.upscale(tmp_path / "in.jpg")
    np.testing.assert_array_equal(np.asarray(out), by_path.reshape(np.asarray(out).shape))


def test_a_cmyk_pil_image_is_converted_through_its_profile_as_its_file_is(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same CMYK file gives the same colours by path and as a PIL image: both through
    its profile (here a stand-in conversion that a naive one cannot give), where the PIL
    image was converted naively, without its profile."""
    from PIL import ImageCms

    def through_profile(im: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        return Image.fromarray(255 - np.asarray(im.convert("RGB")))

    monkeypatch.setattr(ImageCms, "profileToProfile", through_profile)
    cmyk = Image.fromarray(pixels(), "RGB").convert("CMYK")
    cmyk.save(tmp_path / "in.jpg", quality=100, icc_profile=fake_icc(b"CMYK"))
    with Image.open(tmp_path / "in.jpg") as opened:
        out = np.asarray(up.upscale(opened))
    by_path = up.upscale(tmp_path / "in.jpg")
    naive = up.upscale(np.asarray(Image.open(tmp_path / "in.jpg").convert("RGB")))
    np.testing.assert_array_equal(out, by_path)
    assert np.abs(out.astype(int) - naive).mean() > 50


def test_a_pil_image_of_a_cut_off_file_is_an_image_read_error(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """``Image.open`` reads only the header: a truncated file is found when the pixels are
    loaded, inside ``upscale``, which says so as an ImageReadError naming the file, as it
    does for the same file given by path (it raised Pillow's bare OSError)."""
    Image.fromarray(pixels(48, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "cut.png") as im, pytest.raises(ImageReadError) as caught:
        up.upscale(im)
    assert str(caught.value).startswith(f"{tmp_path / 'cut.png'}: its pixels cannot be loaded: ")
    with pytest.raises(ImageReadError, match=r"cut\.png: file is truncated"):
        up.upscale(tmp_path / "cut.png")


def test_a_closed_pil_image_is_an_image_read_error(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """A PIL image closed before it is upscaled (its pixels freed by ``close()``, or its
    file closed at the end of its ``with`` block before they were read) is an
    ImageReadError that names its file and says so: it raised Pillow's bare ValueError
    ("Operation on closed image") or an empty AssertionError."""
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    in_memory = Image.fromarray(pixels())
    in_memory.close()
    with pytest.raises(ImageReadError, match=r"^a PIL image: .*closed image"):
        up.upscale(in_memory)
    loaded = Image.open(src)
    loaded.load()
    loaded.close()
    with pytest.raises(ImageReadError, match=f"^{re.escape(str(src))}: .*closed image"):
        up.upscale(loaded)
    for close_it in (lambda im: im.close(), lambda im: im.__exit__(None, None, None)):
        unread = Image.open(src)
        close_it(unread)
        with pytest.raises(ImageReadError, match=r"its file was closed .* load\(\)"):
            up.upscale(unread)
    with Image.open(src) as im:
        im.load()
    assert up.upscale(im).size == (32, 24)  # read inside its block: its pixels are kept


def test_running_out_of_memory_outside_the_tiles_is_an_out_of_memory_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 8-bit resampler path and the resize to the asked size run outside the tiler's
    back-off: the allocator's own RuntimeError or numpy's MemoryError is the documented
    OutOfMemoryError, not an error that looks like pocketsr's bug."""
    from pocketsr_cli import pipeline
    from pocketsr_cli.archs import resize
    from pocketsr_cli.errors import OutOfMemoryError

    def no_room(*_args: object) -> np.ndarray:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
            "allocate memory: you tried to allocate 1728000000 bytes. Error code 12"
        )

    monkeypatch.setattr(resize, "_torch_bicubic_uint8", no_room)
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")
    with pytest.raises(OutOfMemoryError, match=r"^out of memory: a 16x12 image upscaled to 32x24"):
        up.upscale(pixels())
    monkeypatch.undo()

    def too_big(*_args: object) -> np.ndarray:
        raise MemoryError("Unable to allocate 6.4 GiB for an array")

    monkeypatch.setattr(pipeline, "resize_output", too_big)
    three = pocketsr_cli.Upscaler("bicubic", scale=4, outscale=3, device="cpu")
    with pytest.raises(OutOfMemoryError, match=r"Unable to allocate 6\.4 GiB"):
        three.upscale(pixels())
    # Other errors are not dressed up as memory.
    monkeypatch.setattr(pipeline, "resize_output", lambda *_a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        three.upscale(pixels())


def test_a_resize_whose_result_opencv_cannot_allocate_is_an_out_of_memory_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenCV says it has no memory with its own ``cv2.error`` (``outscale=64`` of a
    400-pixel photo under a 1.5 GB ulimit raised it bare): the resize to the asked size
    raises MemoryError for it, which ``upscale`` says as its OutOfMemoryError."""
    from pocketsr_cli import pipeline
    from pocketsr_cli.errors import OutOfMemoryError

    huge = (8_000_000, 8_000_000)  # 192 TB of RGB: no allocator gives it
    with pytest.raises(MemoryError, match=r"^cannot allocate the 8000000x8000000 result: "):
        pipeline.resize_output(pixels(), huge)
    real = pipeline.resize_output
    monkeypatch.setattr(pipeline, "resize_output", lambda out, _size: real(out, huge))
    three = pocketsr_cli.Upscaler("bicubic", scale=4, outscale=3, device="cpu")
    with pytest.raises(OutOfMemoryError, match=r"^out of memory: a 16x12 image upscaled to 48x36"):
        three.upscale(pixels())


def test_default_warnings_point_at_the_callers_line(tmp_path: Path) -> None:
    """Without ``on_warning`` a warning is Python's, shown at the caller's line whichever
    call made it (the constructor, ``upscale`` of a path, ``upscale_file``), not at a
    line inside pocketsr."""
    import warnings

    frames = [Image.new("RGB", (10, 10), c) for c in ("black", "red")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        three = pocketsr_cli.Upscaler("pocketsr-compact", scale=3, device="cpu")
        up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")
        up.upscale(tmp_path / "anim.gif")
        up.upscale_file(tmp_path / "anim.gif", tmp_path / "out.png")
    assert three.scale == 3
    said = [(str(w.message), Path(w.filename).name) for w in caught]
    assert said == [
        ("pocketsr-compact has no ×3 variant: running ×4 and resizing to ×3", "test_api.py"),
        ("anim.gif: animated: only the first frame was upscaled", "test_api.py"),
        ("anim.gif: animated: only the first frame was upscaled", "test_api.py"),
    ]


def test_the_fp32_fallbacks_warning_points_at_the_callers_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine's forward pass runs inside torch's ``inference_mode`` decorator: a
    warning made there is still shown at the caller's line, not at torch's."""
    import warnings

    up = pocketsr_cli.Upscaler("pocketsr-compact", scale=4, device="cpu", precision="bf16")
    engine = up._engine
    network = engine._network
    monkeypatch.setattr(
        engine, "_network", lambda args, p: network(args, p) * (float("nan") if p != "fp32" else 1)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        up.upscale(pixels(8, 8))
    said = [(str(w.message).split(";")[0], Path(w.filename).name) for w in caught]
    assert said == [("bf16 gave NaN/inf values with pocketsr-compact-x4", "test_api.py")]


def test_numpys_integers_are_whole_numbers(tmp_path: Path) -> None:
    """``np.arange`` gives numpy integers: a scale or a quality from one is taken (the
    record stores it as a plain number), not refused as no whole number."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    up = pocketsr_cli.Upscaler("bicubic", scale=np.arange(2, 3)[0], device="cpu")
    assert up.scale == 2 and type(up.scale) is int
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.png"
    Image.fromarray(pixels()).save(src)
    out = up.upscale_file(src, tmp_path / "a.jpg", quality=np.int64(80))
    record = loads(read_provenance_text(out) or "")
    assert record is not None and record["quality"] == 80
    for result in up.upscale_folder(src.parent, tmp_path / "o", fmt="webp", quality=np.uint8(70)):
        assert result.status == "ok", result.error
    for bad in (np.float64(80.0), np.bool_(True)):
        with pytest.raises(UsageError, match="quality must be a whole number"):
            up.upscale_file(src, tmp_path / "b.jpg", quality=bad)  # type: ignore[arg-type]


def test_numpys_floats_are_numbers(tmp_path: Path) -> None:
    """A factor or a routing knob computed with numpy (a np.float32, a np.int64) is taken
    as the number it is, as ``ensemble_weight`` takes one, not refused as "no finite
    number", and the record stores it as a plain number."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    up = pocketsr_cli.Upscaler("bicubic", outscale=np.float32(2.5), device="cpu")
    assert up.scale == 2.5 and type(up.scale) is float
    assert up.upscale(pixels(12, 16)).shape == (30, 40, 3)
    src = tmp_path / "a.png"
    Image.fromarray(pixels()).save(src)
    record = loads(read_provenance_text(up.upscale_file(src, tmp_path / "b.png")) or "")
    assert record is not None and record["target"] == "x2.5"
    whole = pocketsr_cli.Upscaler("bicubic", outscale=np.int64(3), device="cpu")
    assert whole.scale == 3 and type(whole.scale) is int
    assert routing_k(np.float32(0.5)) == 0.5 and type(routing_k(np.int64(2))) is float
    for bad in (np.float64("nan"), np.bool_(True)):
        with pytest.raises(UsageError, match=r"^outscale must be a finite number"):
            pocketsr_cli.Upscaler("bicubic", outscale=bad, device="cpu")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"^pcsr_k must be a finite number"):
            routing_k(bad)


def test_a_path_with_a_nul_character_is_a_usage_error(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """No file's name holds NUL: each path argument with one is a bad argument, said in
    the API's keyword before any work (the OS calls raised a bare ValueError, 'embedded
    null byte', and src_dir's was 'input not found')."""
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "a.png"
    Image.fromarray(pixels()).save(src)
    calls = {
        "image": lambda: up.upscale(f"{src}\0"),
        "src": lambda: up.upscale_file(f"{src}\0", tmp_path / "b.png"),
        "dst": lambda: up.upscale_file(src, tmp_path / "b\0.png"),
        "src_dir": lambda: next(up.upscale_folder(f"{src.parent}\0", tmp_path / "o")),
        "dst_dir": lambda: next(up.upscale_folder(src.parent, f"{tmp_path}/o\0")),
        "model": lambda: pocketsr_cli.Upscaler("bicubic\0", device="cpu"),
    }
    for keyword, call in calls.items():
        with pytest.raises(UsageError, match=f"^{keyword} '.*' contains a NUL character"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_compile_reaches_the_engine_and_its_warm_up_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``compile=True`` is the command line's ``--compile``: the engine compiles, and the
    API reports its warm-up (here a stand-in compile that fails: its attempt is timed)."""
    import torch

    calls: list[object] = []

    def failing_compile(module: object, **_: object) -> object:
        calls.append(module)

        def run(*_args: object) -> object:
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    warnings: list[str] = []
    up = pocketsr_cli.Upscaler(
        "pocketsr-compact-x4", device="cpu", compile=True, on_warning=warnings.append
    )
    out = up.upscale(np.full((12, 10, 3), 128, np.uint8))
    assert out.shape == (48, 40, 3) and calls
    assert up.compile_seconds > 0 and any("no compiler here" in w for w in warnings)
    plain = pocketsr_cli.Upscaler("pocketsr-compact-x4", device="cpu")
    plain.upscale(np.full((12, 10, 3), 128, np.uint8))
    assert plain.compile_seconds == 0.0


def test_a_file_drawn_on_the_8_bit_path_is_recorded_as_uint8(tmp_path: Path) -> None:
    """As the command line's records (Variant.compute_for): bicubic draws an 8-bit image
    on its 8-bit path, where no precision applies, but its record said ``cpu fp32``."""
    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    src = tmp_path / "a.png"
    Image.fromarray(pixels(24, 32)).save(src)
    written = pocketsr_cli.Upscaler("bicubic", device="cpu").upscale_file(src, tmp_path / "b.png")
    record = loads(read_provenance_text(written) or "")
    assert record is not None and record["precision"] == "cpu uint8"


def test_a_file_redrawn_in_fp32_after_a_nan_is_recorded_as_fp32(tmp_path: Path) -> None:
    """As the command line's records (pipeline, Variant.compute_for): upscale_file wrote
    its own record with the precision the run opened with, ``cpu fp16``, for an image the
    network redrew in fp32 after fp16 overflowed."""
    import torch
    from safetensors.torch import load_file

    from pocketsr_cli.imageio import read_provenance_text
    from pocketsr_cli.provenance import loads

    weights = load_file(Path(__file__).parents[1] / "models" / "pocketsr-compact-x4.safetensors")
    weights["body.0.weight"] = weights["body.0.weight"] * 3000  # past fp16's range, not fp32's
    torch.save({"params": weights}, tmp_path / "hot.pth")
    src = tmp_path / "a.png"
    Image.fromarray(pixels(24, 32)).save(src)
    warnings: list[str] = []
    hot = pocketsr_cli.Upscaler(
        tmp_path / "hot.pth", device="cpu", precision="fp16", on_warning=warnings.append
    )
    assert hot.precision == "fp16"
    written = hot.upscale_file(src, tmp_path / "b.png")
    assert any("fp16 gave NaN/inf values" in w for w in warnings)
    record = loads(read_provenance_text(written) or "")
    assert record is not None and record["precision"] == "cpu fp32"
    assert hot.precision == "fp32"  # every later image runs in fp32 too


def test_upscale_file_to_a_folder_or_into_a_file_fails_before_the_upscale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found when writing, after the upscale (seconds or minutes of it), before; and a
    file where the folder should be was said as 'File exists'."""
    up = pocketsr_cli.Upscaler("bicubic", scale=2)
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 6)).save(src)
    (tmp_path / "taken.png").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "notes").write_text("a file")

    def no_upscale(*args: object, **kwargs: object) -> None:
        raise AssertionError("upscaled before the output was checked")

    monkeypatch.setattr(up, "_run", no_upscale)
    for dst, why in [
        (tmp_path / "taken.png", "is a folder"),
        (tmp_path / "notes" / "b.png", "is a file, not a folder"),
        # A folder without an image extension was "cannot tell the output format from
        # 'out'", the working folder "... from ''".
        (
            tmp_path / "out",
            re.escape(f"is a folder; name the image file (such as {tmp_path}/out/a.png)"),
        ),
    ]:
        with pytest.raises(ImageWriteError, match=why):
            up.upscale_file(src, dst)
    monkeypatch.chdir(tmp_path / "out")
    with pytest.raises(
        ImageWriteError, match=r"^cannot write \.: it is a folder; .*\(such as a\.png\)"
    ):
        up.upscale_file(src, ".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "notes", "out", "taken.png"]
    assert list((tmp_path / "out").iterdir()) == []
    assert list((tmp_path / "taken.png").iterdir()) == []


def test_the_repr_of_an_upscaler_whose_opening_failed_does_not_raise() -> None:
    """A traceback's locals (pytest, debuggers) show the half-made object."""
    half = pocketsr_cli.Upscaler.__new__(pocketsr_cli.Upscaler)
    assert repr(half) == "Upscaler(<not opened>)"
    up = pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")
    assert repr(up).startswith("Upscaler('bicubic', scale=2, device=cpu")
