"""imageio.nclx: a HEIF/AVIF colour space stated by code points, carried as an ICC profile.

The profiles are checked against colour science done here in numpy (primaries to XYZ,
the transfer curves of sRGB and BT.709), through LittleCMS as viewers would use them.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, features
from typer.testing import CliRunner

from pocketsr_cli.cli import app
from pocketsr_cli.imageio import read_image
from pocketsr_cli.imageio.nclx import Nclx, icc_for_nclx, nclx_of

D65 = (0.3127, 0.3290)
SRGB = [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)]
P3 = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)]
BT2020 = [(0.708, 0.292), (0.170, 0.797), (0.131, 0.046)]
BT601_525 = [(0.630, 0.340), (0.310, 0.595), (0.155, 0.070)]
SAMPLES = np.array(
    [[[200, 100, 50], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128], [30, 180, 90]]],
    np.uint8,
)


def rgb_to_xyz(primaries: list[tuple[float, float]], white: tuple[float, float]) -> np.ndarray:
    def xyz(x: float, y: float) -> np.ndarray:
        return np.array([x / y, 1.0, (1 - x - y) / y])

    p = np.stack([xyz(*c) for c in primaries], axis=1)
    return p * np.linalg.solve(p, xyz(*white))


def srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0, 1)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def expected_srgb(primaries: list[tuple[float, float]], decode) -> np.ndarray:  # type: ignore[no-untyped-def]
    linear = decode(SAMPLES[0].astype(float) / 255)
    xyz = rgb_to_xyz(primaries, D65) @ linear.T
    return np.round(srgb_encode(np.linalg.solve(rgb_to_xyz(SRGB, D65), xyz).T) * 255)


def through(icc: bytes, pixels: np.ndarray = SAMPLES) -> np.ndarray:
    """``pixels`` in the profile ``icc``, converted to sRGB by LittleCMS."""
    out = ImageCms.profileToProfile(
        Image.fromarray(pixels),
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    assert out is not None
    return np.asarray(out)[0].astype(float)


@pytest.mark.parametrize(
    ("nclx", "primaries", "decode"),
    [
        (Nclx(12, 13), P3, srgb_decode),  # Display P3 (a phone's photo)
        (Nclx(9, 13), BT2020, srgb_decode),  # BT.2020, SDR
        (Nclx(9, 1), BT2020, srgb_decode),  # BT.709's encoding curve: shown as sRGB
        (Nclx(6, 6), BT601_525, srgb_decode),  # as BT.709 primaries' files are: no shift
    ],
)
def test_the_profile_shows_the_colours_the_code_points_say(nclx, primaries, decode) -> None:  # type: ignore[no-untyped-def]
    icc = icc_for_nclx(nclx)
    assert icc is not None and len(icc) % 4 == 0
    assert np.abs(through(icc) - expected_srgb(primaries, decode)).max() <= 1.0
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    assert f"nclx {nclx.primaries}/{nclx.transfer}" in description


def test_dci_p3_white_stays_white_and_its_primaries_are_wider_than_srgb() -> None:
    icc = icc_for_nclx(Nclx(11, 4))  # DCI white point, gamma 2.2
    assert icc is not None
    white, red = through(icc, np.array([[[255, 255, 255], [255, 0, 0]]], np.uint8))
    assert np.abs(white - 255).max() <= 1  # relative colorimetric: the white is the white
    assert red[0] == 255 and red[1:].max() <= 1  # out of sRGB's gamut: clipped to its red


@pytest.mark.parametrize(
    "nclx",
    [
        Nclx(1, 13),  # sRGB: what a file without a profile is taken to be
        Nclx(1, 1),
        Nclx(2, 2),  # unspecified
        Nclx(9, 16),  # PQ: HDR
        Nclx(9, 18),  # HLG: HDR
        Nclx(99, 13),  # unknown primaries
        Nclx(12, 99),  # unknown transfer
    ],
)
def test_no_profile_where_none_is_needed_or_none_can_say_it(nclx: Nclx) -> None:
    assert icc_for_nclx(nclx) is None


def avif(tmp_path: Path, primaries: int, transfer: int) -> Path:
    """A small AVIF whose nclx box says ``primaries`` and ``transfer`` (Pillow writes
    sRGB's; the box is patched, the coded pixels stay as they are)."""
    if not features.check("avif"):
        pytest.skip("Pillow without AVIF")
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), (200, 100, 50), np.uint8)).save(buffer, "AVIF")
    data = bytearray(buffer.getvalue())
    at = data.find(b"colrnclx")
    assert at > 0
    data[at + 8 : at + 12] = primaries.to_bytes(2, "big") + transfer.to_bytes(2, "big")
    path = tmp_path / f"p{primaries}t{transfer}.avif"
    path.write_bytes(bytes(data))
    return path


def test_an_avif_in_display_p3_keeps_its_colours_in_the_output(tmp_path: Path) -> None:
    src = avif(tmp_path, 12, 13)
    assert nclx_of(src.read_bytes()) == Nclx(12, 13, 6, True)
    decoded = read_image(src)
    assert decoded.metadata.icc_profile == icc_for_nclx(Nclx(12, 13))
    assert decoded.warnings == ()
    result = CliRunner().invoke(app, ["upscale", str(src), "-m", "bicubic", "-s", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[0])
    with Image.open(line["output"]) as im:
        icc = im.info.get("icc_profile")
        pixels = np.asarray(im.convert("RGB"))
    assert icc == decoded.metadata.icc_profile
    assert np.abs(through(icc, pixels[8:9, 8:9]) - (215, 93, 31)).max() <= 3


def test_an_hdr_avif_says_what_is_lost(tmp_path: Path) -> None:
    decoded = read_image(avif(tmp_path, 9, 16))
    assert decoded.metadata.icc_profile is None
    assert decoded.warnings == (
        "it is HDR (PQ, BT.2020), which no output here can carry: it is written as SDR, "
        "its colours and highlights shown as sRGB",
    )


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big"), *payload)


def nclx_box(nclx: Nclx) -> bytes:
    fields = struct.pack(">HHHB", nclx.primaries, nclx.transfer, nclx.matrix, 0x80)
    return box(b"colr", b"nclx", fields)


THUMB_NCLX, PRIMARY_NCLX = Nclx(1, 13, 6, True), Nclx(12, 13, 6, True)
ISPE = full_box(b"ispe", 0, 0, struct.pack(">II", 16, 16))
ICC = box(b"colr", b"prof", bytes(128))


def heif_head(
    primary: int,
    properties: list[bytes],
    associations: dict[int, list[int]],
    *,
    version: int = 0,
    flags: int = 0,
) -> bytes:
    """An ftyp and a meta box naming item ``primary`` (``pitm`` and ``ipma`` of
    ``version``: 16- or 32-bit ids; ``ipma`` ``flags`` 1: 15-bit indexes, else 7)."""
    item_id, index = (">H" if version == 0 else ">I"), (">H" if flags & 1 else ">B")
    entries = b"".join(
        struct.pack(item_id, item)
        + bytes([len(indexes)])
        + b"".join(struct.pack(index, i) for i in indexes)
        for item, indexes in associations.items()
    )
    meta = full_box(
        b"meta",
        0,
        0,
        full_box(b"hdlr", 0, 0, bytes(4), b"pict", bytes(13)),
        full_box(b"pitm", version, 0, struct.pack(item_id, primary)),
        box(
            b"iprp",
            box(b"ipco", *properties),
            full_box(b"ipma", version, flags, struct.pack(">I", len(associations)), entries),
        ),
    )
    return box(b"ftyp", b"avif", bytes(4), b"avifmif1miaf") + meta


@pytest.mark.parametrize(("version", "flags"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_nclx_of_reads_the_primary_images_box_not_the_first_one(version: int, flags: int) -> None:
    """A thumbnail (item 2) is stated before the picture, with other code points: the
    picture's are found through pitm and ipma, whatever the widths of ids and indexes
    (and with the "essential" bit set on the picture's colour)."""
    primary = 70_000 if version else 1
    padding = [ISPE] * (200 if flags & 1 else 0)  # puts the picture's colr past 127
    properties = [nclx_box(THUMB_NCLX), ISPE, *padding, nclx_box(PRIMARY_NCLX)]
    essential = 0x8000 if flags & 1 else 0x80
    associations = {2: [1, 2], primary: [2, essential | len(properties)]}
    head = heif_head(primary, properties, associations, version=version, flags=flags)
    assert nclx_of(head + box(b"mdat", bytes(32))) == PRIMARY_NCLX


@pytest.mark.parametrize("colour", [[ICC], []], ids=["icc", "none"])
def test_nclx_of_gives_none_when_the_primary_states_no_nclx(colour: list[bytes]) -> None:
    properties = [nclx_box(THUMB_NCLX), ISPE, *colour]
    associations = {2: [1, 2], 1: [2, 3][: 1 + len(colour)]}
    assert nclx_of(heif_head(1, properties, associations)) is None


def test_nclx_of_never_raises_on_a_cut_or_damaged_file() -> None:
    properties = [nclx_box(THUMB_NCLX), ISPE, nclx_box(PRIMARY_NCLX)]
    data = heif_head(1, properties, {2: [1, 2], 1: [2, 3]})
    assert nclx_of(data) == PRIMARY_NCLX
    for end in range(len(data)):  # cut anywhere: the meta box no longer fits
        assert nclx_of(data[:end]) is None
    for at in range(len(data)):  # any one byte damaged: some code points or None, no error
        for value in (0, 1, 0x7F, 0xFF):
            damaged = data[:at] + bytes([value]) + data[at + 1 :]
            assert isinstance(nclx_of(damaged), Nclx | None)
    assert nclx_of(box(b"colr", b"nclx", bytes(7))) is None  # a box alone, no container
    assert nclx_of(b"\0" * 64) is None


TILE_NCLX = Nclx(9, 13, 9, True)


def infe(item: int, kind: bytes) -> bytes:
    return full_box(b"infe", 2, 0, struct.pack(">HH4s", item, 0, kind), b"\0")


def derived_head(
    kind: bytes,
    tiles: list[int],
    properties: list[bytes],
    associations: dict[int, list[int]],
) -> bytes:
    """An ftyp and a meta box whose primary item 1 is a derived image of type ``kind``
    (``grid``, ``iovl``) made of ``tiles`` (items ``hvc1``, ``dimg`` references in order),
    with ``properties`` associated as ``associations`` says (1-based indexes)."""
    entries = b"".join(
        struct.pack(">HB", item, len(indexes)) + bytes(indexes)
        for item, indexes in associations.items()
    )
    items = [infe(1, kind)] + [infe(tile, b"hvc1") for tile in tiles]
    meta = full_box(
        b"meta",
        0,
        0,
        full_box(b"hdlr", 0, 0, bytes(4), b"pict", bytes(13)),
        full_box(b"pitm", 0, 0, struct.pack(">H", 1)),
        full_box(b"iinf", 0, 0, struct.pack(">H", len(items)), *items),
        full_box(
            b"iref",
            0,
            0,
            box(b"thmb", struct.pack(">HHH", 9, 1, 1)),  # a thumbnail's reference first
            box(b"dimg", struct.pack(f">HH{len(tiles)}H", 1, len(tiles), *tiles)),
        ),
        box(
            b"iprp",
            box(b"ipco", *properties),
            full_box(b"ipma", 0, 0, struct.pack(">I", len(associations)), entries),
        ),
    )
    return box(b"ftyp", b"heic", bytes(4), b"mif1heic") + meta


GRID_PROPERTIES = [ISPE, nclx_box(THUMB_NCLX), nclx_box(TILE_NCLX), ICC, nclx_box(PRIMARY_NCLX)]


@pytest.mark.parametrize("own", [[], [4]], ids=["no-colr", "icc"])
def test_a_grid_without_its_own_nclx_has_its_first_tiles(own: list[int]) -> None:
    """A HEIC/AVIF grid states its colour on its tiles only: the first tile's code points
    (libheif's rule), not the second tile's nor a thumbnail's (item 9), nor None."""
    associations = {9: [1, 2], 1: [1, *own], 3: [1, 3], 2: [1, 5]}  # tiles 3 then 2
    assert nclx_of(derived_head(b"grid", [3, 2], GRID_PROPERTIES, associations)) == TILE_NCLX


def test_a_derived_image_keeps_its_own_nclx_and_only_a_grid_takes_its_tiles() -> None:
    associations = {1: [1, 5], 2: [1, 3]}
    assert nclx_of(derived_head(b"grid", [2], GRID_PROPERTIES, associations)) == PRIMARY_NCLX
    associations = {1: [1], 2: [1, 3]}
    assert nclx_of(derived_head(b"iovl", [2], GRID_PROPERTIES, associations)) is None
    assert nclx_of(derived_head(b"grid", [2], GRID_PROPERTIES, {1: [1], 2: [1]})) is None


def test_nclx_of_a_grid_never_raises_on_a_cut_or_damaged_file() -> None:
    data = derived_head(b"grid", [2, 3], GRID_PROPERTIES, {1: [1], 2: [1, 3], 3: [1, 2]})
    assert nclx_of(data) == TILE_NCLX
    for end in range(len(data)):
        assert nclx_of(data[:end]) is None
    for at in range(len(data)):
        for value in (0, 1, 3, 0x7F, 0xFF):
            damaged = data[:at] + bytes([value]) + data[at + 1 :]
            assert isinstance(nclx_of(damaged), Nclx | None)


GRID_ITEMS = [(1, b"grid"), (2, b"av01"), (3, b"av01")]


def avif_grid(tmp_path: Path, tile_nclx: Nclx) -> Path:
    """A 128x64 AVIF grid of two 64x64 tiles (one AV1 image that Pillow wrote, used
    twice), its colour stated by ``tile_nclx`` on the tiles only, none on the grid."""
    if not features.check("avif"):
        pytest.skip("Pillow without AVIF")
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), (200, 100, 50), np.uint8)).save(buffer, "AVIF")
    single = buffer.getvalue()
    ipco = single[single.index(b"ipco") + 4 :]
    tile_properties = []
    for kind in (b"ispe", b"pixi", b"av1C"):  # the tile's, as Pillow wrote them
        at = ipco.index(kind) - 4
        tile_properties.append(ipco[at : at + int.from_bytes(ipco[at : at + 4], "big")])
    tile = single[single.index(b"mdat") + 4 :]
    grid = struct.pack(">BBBBHH", 0, 0, 0, 1, 128, 64)  # 1 row, 2 columns, 128 x 64

    def head(mdat_at: int) -> bytes:
        extents = [(1, mdat_at, len(grid))] + [(t, mdat_at + len(grid), len(tile)) for t in (2, 3)]
        locations = b"".join(struct.pack(">HHHII", item, 0, 1, at, n) for item, at, n in extents)
        associations = struct.pack(">IHBBB", 3, 1, 2, 1, 2) + b"".join(
            struct.pack(">HB4B", item, 4, 3, 4, 0x85, 6) for item in (2, 3)
        )
        meta = full_box(
            b"meta",
            0,
            0,
            full_box(b"hdlr", 0, 0, bytes(4), b"pict", bytes(13)),
            full_box(b"pitm", 0, 0, struct.pack(">H", 1)),
            full_box(b"iloc", 0, 0, b"\x44\x00", struct.pack(">H", 3), locations),
            full_box(b"iinf", 0, 0, struct.pack(">H", 3), *(infe(i, t) for i, t in GRID_ITEMS)),
            full_box(b"iref", 0, 0, box(b"dimg", struct.pack(">HHHH", 1, 2, 2, 3))),
            box(
                b"iprp",
                box(
                    b"ipco",
                    box(b"ispe", bytes(4), struct.pack(">II", 128, 64)),
                    box(b"pixi", bytes(4), b"\x03\x08\x08\x08"),
                    *tile_properties,
                    nclx_box(tile_nclx),
                ),
                full_box(b"ipma", 0, 0, associations),
            ),
        )
        return box(b"ftyp", b"avif", bytes(4), b"avifmif1miaf") + meta

    data = head(len(head(0)) + 8) + box(b"mdat", grid, tile)
    path = tmp_path / "grid.avif"
    path.write_bytes(data)
    return path


def test_an_avif_grid_in_display_p3_stated_on_its_tiles_keeps_its_colours(
    tmp_path: Path,
) -> None:
    """Pillow's AVIF plugin (libavif) hands over no code points: they are read from the
    file, where a grid's colour may be stated on its tiles alone."""
    decoded = read_image(avif_grid(tmp_path, Nclx(12, 13, 6, True)))
    assert decoded.pixels.shape == (64, 128, 3)
    assert decoded.metadata.icc_profile == icc_for_nclx(Nclx(12, 13))
    assert decoded.warnings == ()
    hdr = read_image(avif_grid(tmp_path, Nclx(9, 16, 9, True)))
    assert hdr.metadata.icc_profile is None
    assert hdr.warnings[0].startswith("it is HDR (PQ, BT.2020)")
