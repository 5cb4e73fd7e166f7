"""The record outputs carry: where each format keeps it, reading it back, comparing it."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from _imagegen import bytes_read_by
from PIL import Image, PngImagePlugin

from pocketsr_cli import provenance
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.imageio import (
    Metadata,
    OutputPlan,
    encode_image,
    read_image,
    read_provenance_text,
    sidecar_path,
    write_sidecar,
)

RECORD = provenance.dumps(
    provenance.make_record(
        provenance.RunSettings(version="1.2.3"),
        model="m-x4",
        model_sha256="ab" * 32,
        model_scale=4,
        target="x3",
        fmt="png",
        size=(6, 6),
        source='a <&> "b".jpg',
    )
)
PIXELS = np.full((6, 6, 3), 120, np.uint8)
CAMERA_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
    b"<dc:creator>Ada</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_embedded_records_read_back_and_leave_the_image_readable(tmp_path: Path, fmt: str) -> None:
    meta = Metadata(xmp=CAMERA_XMP)
    data = encode_image(PIXELS, OutputPlan(fmt, 8), metadata=meta, provenance=RECORD)
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(data)
    assert read_provenance_text(path) == RECORD
    assert json.loads(RECORD)["source"] == 'a <&> "b".jpg'
    image = read_image(path)
    assert image.width == 6 and image.metadata.xmp is not None
    assert b"<dc:creator>Ada</dc:creator>" in image.metadata.xmp


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "tiff"])
def test_a_malformed_camera_xmp_packet_does_not_cost_the_record(tmp_path: Path, fmt: str) -> None:
    """A camera packet without ``</rdf:RDF>`` (cut short) cannot take the record: WebP and
    TIFF outputs were written with the camera's packet alone, and every later run called
    them another program's (``unrecorded``).  PNG keeps the record in a chunk of its own,
    JPEG in a comment segment beside the packet; WebP and TIFF, whose one XMP packet is the
    only place, give the malformed packet up for one holding the record, and say so."""
    truncated = CAMERA_XMP[: CAMERA_XMP.index(b"</rdf:RDF>")]
    notes: list[str] = []
    data = encode_image(
        PIXELS,
        OutputPlan(fmt, 8),
        metadata=Metadata(xmp=truncated),
        provenance=RECORD,
        notes=notes,
    )
    path = tmp_path / f"out.{fmt}"
    path.write_bytes(data)
    assert read_provenance_text(path) == RECORD
    xmp = read_image(path).metadata.xmp
    if fmt in ("png", "jpeg"):  # the packet kept as it was, the record elsewhere
        assert xmp == truncated and notes == []
    else:
        assert xmp is not None and b"<dc:creator>" not in xmp
        assert notes == [
            "its XMP packet is malformed (pocketsr's record cannot join it): not copied"
        ]


@pytest.mark.parametrize("layout", ["Photoshop layers", "16-bit gray + alpha"])
def test_a_tiffs_record_is_read_from_its_xmp_tag_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A TIFF's record is its XMP tag, found with seeks: a few KiB, and no Pillow open,
    which read every tag's value (Photoshop's layers, often larger than the image), or,
    for a layout Pillow cannot open, was followed by a read of the whole file."""
    from pocketsr_cli.imageio.tiff import tiff_tags

    path = tmp_path / "out.tif"
    if layout == "Photoshop layers":
        recorded = encode_image(PIXELS, OutputPlan("tiff", 8), provenance=RECORD)
        tags = {700: tiff_tags(recorded)[700], 37724: bytes(range(256)) * 8192}
        Image.fromarray(PIXELS).save(path, "TIFF", tiffinfo=tags)
    else:
        pixels = np.random.default_rng(0).integers(0, 65536, (500, 500, 2), dtype=np.uint16)
        path.write_bytes(encode_image(pixels, OutputPlan("tiff", 16), provenance=RECORD))
    opened: list[object] = []
    pillow_open = Image.open

    def counted(*args: object, **kwargs: object) -> Image.Image:
        opened.append(args[0])
        return pillow_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counted)
    found, read = bytes_read_by(monkeypatch, lambda: read_provenance_text(path))
    assert found == RECORD
    assert opened == [] and read < 64 * 1024, (opened, read, path.stat().st_size)
    assert path.stat().st_size > 900_000


def test_a_second_record_replaces_the_first(tmp_path: Path) -> None:
    first = encode_image(PIXELS, OutputPlan("jpeg", 8), provenance='{"model":"old"}')
    with Image.open(io.BytesIO(first)) as im:
        xmp = im.info["xmp"]
    again = encode_image(
        PIXELS, OutputPlan("jpeg", 8), metadata=Metadata(xmp=xmp), provenance=RECORD
    )
    path = tmp_path / "again.jpg"
    path.write_bytes(again)
    assert read_provenance_text(path) == RECORD
    with Image.open(path) as im:
        assert im.info["xmp"].count(b"<pocketsr:record>") == 1


def test_records_other_tools_rewrote_are_still_found(tmp_path: Path) -> None:
    # XMP editors may turn the element into an attribute, and PNG tools may save iTXt.
    attribute = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
        b'02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:pocketsr="urn:pocketsr:ns:'
        b'1.0/" pocketsr:record="{&quot;model&quot;:&quot;m&quot;}"/></rdf:RDF></x:xmpmeta>'
    )
    path = tmp_path / "a.jpg"
    Image.fromarray(PIXELS).save(path, xmp=attribute)
    assert read_provenance_text(path) == '{"model":"m"}'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("pocketsr", '{"model":"ü"}')
    Image.fromarray(PIXELS).save(tmp_path / "b.png", pnginfo=info)
    assert read_provenance_text(tmp_path / "b.png") == '{"model":"ü"}'


def test_files_without_a_record(tmp_path: Path) -> None:
    Image.fromarray(PIXELS).save(tmp_path / "plain.png")
    Image.fromarray(PIXELS).save(tmp_path / "plain.jpg", xmp=CAMERA_XMP)
    Image.fromarray(PIXELS).save(tmp_path / "plain.bmp")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + zlib.compress(b"x"))
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("plain.png", "plain.jpg", "plain.bmp", "junk.png", "empty.jpg", "absent.png"):
        assert read_provenance_text(tmp_path / name) is None, name


def test_bmp_records_live_in_a_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "a.bmp"
    path.write_bytes(encode_image(PIXELS, OutputPlan("bmp", 8), provenance=RECORD))
    assert read_provenance_text(path) is None  # BMP has no room for it
    write_sidecar(path, RECORD)
    assert sidecar_path(path).name == "a.bmp.pocketsr.json"
    assert read_provenance_text(path) == RECORD
    write_sidecar(path, None)
    assert not sidecar_path(path).exists() and read_provenance_text(path) is None


def test_differences_name_what_changed() -> None:
    old = json.loads(RECORD)
    assert provenance.differences(old, dict(old, precision="cuda fp16", tile="0/0")) == []
    assert provenance.differences(old, dict(old, model="n-x4", model_sha256="cd" * 32)) == [
        "model m-x4 → n-x4"
    ]
    assert provenance.differences(old, dict(old, model_scale=2, ensemble="flip8")) == [
        "variant ×4 → ×2",
        "ensemble none → flip8",
    ]
    pad = dict(old, ensemble="pad", ensemble_weight=0.5)
    assert provenance.differences(pad, dict(pad, ensemble_weight=1.5)) == [
        "ensemble weight 0.5 → 1.5"
    ]
    assert provenance.differences(old, pad) == ["ensemble none → pad"]
    assert provenance.loads("[1, 2]") is None and provenance.loads("not json") is None


def test_ensembles_are_recorded_and_earlier_on_off_records_still_compare() -> None:
    def record(ensemble: Ensemble) -> dict[str, object]:
        settings = provenance.RunSettings(version="1.2.3", ensemble=ensemble)
        return provenance.make_record(
            settings, model="m-x4", model_sha256=None, model_scale=4, target="x4", fmt="png"
        )

    none, pad, flip8 = record(Ensemble()), record(Ensemble("pad")), record(Ensemble("flip8"))
    assert none["ensemble"] == "none" and "ensemble_weight" not in none
    assert (pad["ensemble"], pad["ensemble_weight"]) == ("pad", 0.5)
    assert flip8["ensemble"] == "flip8" and "ensemble_weight" not in flip8
    # Earlier versions wrote a boolean: off is none, on was pad's plain average.
    assert provenance.differences(dict(none, ensemble=False), none) == []
    assert provenance.differences(dict(none, ensemble=True), pad) == []
    assert provenance.differences(dict(none, ensemble=True), flip8) == ["ensemble pad → flip8"]
    assert provenance.differences(pad, record(Ensemble("pad", 0.8))) == [
        "ensemble weight 0.5 → 0.8"
    ]


def test_a_pcsr_routing_is_recorded_and_compared() -> None:
    def record(routing: str | None) -> dict[str, object]:
        return provenance.make_record(
            provenance.RunSettings(version="1.2.3"),
            model="pcsr-x4",
            model_sha256=None,
            model_scale=4,
            routing=routing,
            target="x4",
            fmt="png",
        )

    fast, exact = record("k=0.02"), record("k=-1")
    assert fast["routing"] == "k=0.02" and "routing" not in record(None)
    assert provenance.differences(fast, exact) == ["routing k=0.02 → k=-1"]
    assert provenance.differences(fast, record("adaptive")) == ["routing k=0.02 → adaptive"]
    # A record written before routings were recorded says nothing about it.
    assert provenance.differences(record(None), fast) == []


def test_an_older_record_that_cannot_be_removed_takes_the_new_image_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written without a record (``--no-provenance``) over an older BMP output, the older
    sidecar must go: kept, it would describe the new image wrongly."""
    from pocketsr_cli.errors import ImageWriteError
    from pocketsr_cli.imageio import sidecar_path, sidecar_written

    image = tmp_path / "a.bmp"
    sidecar_path(image).write_text("older record\n")
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self == sidecar_path(image):
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    with (
        pytest.raises(ImageWriteError, match=r"cannot remove the earlier record .*denied"),
        sidecar_written(image, None) as place_record,
    ):
        image.write_bytes(b"new image")
        place_record()
    assert not image.exists()
