"""Colour stated by code points (nclx, ITU-T H.273) turned into an ICC profile.

HEIC and AVIF files may say their colour space with four numbers in a ``colr`` box of
type ``nclx`` (primaries, transfer characteristics, matrix, range) instead of an ICC
profile: a phone's Display P3 photo, a wide-gamut AVIF from the web.  No output format
here has a place for those numbers that viewers read, so an output without a profile is
shown as sRGB, less saturated.  :func:`icc_for_nclx` writes the same colour space as a
small ICC v4 display profile (primaries adapted to D50 with Bradford, a parametric tone
curve: sRGB's for sRGB and the BT.709 family, as viewers show them), which every
colour-managed viewer reads; :func:`nclx_of` finds the primary image's code points in a
HEIF/AVIF file's bytes when the decoder does not hand them over (Pillow's AVIF plugin).

HDR transfers (PQ, HLG) have no such profile: :func:`icc_for_nclx` returns None and the
caller says what is lost.  BT.709/sRGB primaries with an SDR transfer need no profile
(they are what a file without one is taken to be).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["HDR_TRANSFERS", "Nclx", "icc_for_nclx", "nclx_of", "needs_profile", "primaries_name"]


@dataclass(frozen=True)
class Nclx:
    """The code points of an ``nclx`` colour box (ITU-T H.273)."""

    primaries: int
    transfer: int
    matrix: int = 0
    full_range: bool = True


_D65 = (0.3127, 0.3290)
_D50_XYZ = np.array([0.9642, 1.0, 0.8249])

# H.273 ColourPrimaries: red, green, blue and white chromaticities, and a name.
_PRIMARIES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), _D65),  # BT.709, sRGB
    5: ((0.640, 0.330), (0.290, 0.600), (0.150, 0.060), _D65),  # BT.601 625 (PAL)
    6: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65),  # BT.601 525 (NTSC)
    7: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), _D65),  # SMPTE 240M
    9: ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), _D65),  # BT.2020
    11: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.314, 0.351)),  # DCI-P3
    12: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), _D65),  # Display P3
}
_NAMES = {
    1: "sRGB/BT.709",
    2: "unspecified",
    5: "BT.601 (625 lines)",
    6: "BT.601 (525 lines)",
    7: "SMPTE 240M",
    9: "BT.2020",
    11: "DCI-P3",
    12: "Display P3",
}

# H.273 TransferCharacteristics as ICC parametric curves (function type, parameters):
# type 0 is Y = X^g; type 3 is Y = (aX + b)^g for X >= d, else Y = cX.
_SRGB = (3, (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
# The BT.709 family (1, 6, 14, 15) is a camera's encoding curve, which still-image viewers
# show as sRGB: it is taken as sRGB here too, as it is under BT.709 primaries (where no
# profile is written at all), so that only the primaries tell two such files apart.
_TRANSFERS: dict[int, tuple[int, tuple[float, ...]]] = {
    1: _SRGB,
    2: _SRGB,  # unspecified: taken as sRGB, as viewers take it
    4: (0, (2.2,)),
    5: (0, (2.8,)),
    6: _SRGB,
    8: (0, (1.0,)),
    13: _SRGB,
    14: _SRGB,
    15: _SRGB,
}
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
"""Transfers no ICC profile here can describe (high dynamic range)."""

_SDR_SRGB_LIKE = {1, 2, 6, 13, 14, 15}  # with BT.709 primaries: what no profile means


def primaries_name(primaries: int) -> str:
    """A name for H.273 colour primaries ``primaries``, for messages."""
    return _NAMES.get(primaries, f"nclx primaries {primaries}")


def needs_profile(nclx: Nclx) -> bool:
    """Whether an output without a profile would show ``nclx``'s colours wrongly."""
    if nclx.primaries in (1, 2) and nclx.transfer in _SDR_SRGB_LIKE:
        return False
    return nclx.primaries != 2


def icc_for_nclx(nclx: Nclx) -> bytes | None:
    """An ICC v4 RGB display profile for ``nclx``'s primaries and transfer, or None when
    none is needed (sRGB-like, :func:`needs_profile`) or none can be made here (an HDR
    transfer, or code points this table does not know)."""
    if not needs_profile(nclx):
        return None
    primaries = _PRIMARIES.get(1 if nclx.primaries == 2 else nclx.primaries)
    curve = _TRANSFERS.get(nclx.transfer)
    if primaries is None or curve is None:
        return None
    colorants, adapt = _colorants_d50(*primaries)
    curve_tag = _para(*curve)
    name = f"{primaries_name(nclx.primaries)} (nclx {nclx.primaries}/{nclx.transfer})"
    tags = [
        (b"desc", _mluc(name)),
        (b"cprt", _mluc("No copyright, use freely")),
        (b"wtpt", _xyz(_D50_XYZ)),
        (b"chad", _sf32(adapt.reshape(-1))),
        (b"rXYZ", _xyz(colorants[:, 0])),
        (b"gXYZ", _xyz(colorants[:, 1])),
        (b"bXYZ", _xyz(colorants[:, 2])),
        (b"rTRC", curve_tag),
        (b"gTRC", curve_tag),
        (b"bTRC", curve_tag),
    ]
    return _profile(tags)


def nclx_of(data: bytes) -> Nclx | None:
    """The code points of the ``colr`` box of type ``nclx`` that a HEIF/AVIF file's bytes
    (``data``) associate with its primary image, or None: the primary's colour is an ICC
    profile or is not stated, or the container cannot be read (cut short, malformed).

    The file's ``meta`` box names the primary item (``pitm``) and lists the item
    properties (``iprp``: the properties in ``ipco``, which ``ipma`` associates with each
    item by 1-based index).  The first ``nclx`` box in the file may be a thumbnail's, an
    alpha plane's or a gain map's, with other code points than the picture's.

    A primary that is a grid (item type ``grid`` in ``iinf``, its tiles the items its
    ``iref`` lists as ``dimg``) without an ``nclx`` box of its own has its first tile's,
    whatever its ICC profile, as libheif gives it (``HeifContext::interpret_heif_file``: a
    grid takes each kind of colour profile it lacks from its first tile); libavif takes the
    first tile's code points from its coded stream, which states the same where a writer
    is consistent.  Other derived images (an overlay, a tone-mapped image) take none."""
    try:
        return _primary_nclx(memoryview(data))
    except (struct.error, IndexError):  # a box's fields run past its end
        return None


def _primary_nclx(file: memoryview) -> Nclx | None:
    meta = _child(file, b"meta")
    if meta is None:
        return None
    meta = meta[4:]  # after its version and flags
    pitm, iprp = _child(meta, b"pitm"), _child(meta, b"iprp")
    ipco = _child(iprp, b"ipco") if iprp is not None else None
    if pitm is None or iprp is None or ipco is None:
        return None
    (primary,) = struct.unpack_from(">H" if pitm[0] == 0 else ">I", pitm, 4)
    properties = list(_boxes(ipco))
    found = _item_nclx(iprp, properties, primary)
    if found is None and _item_type(meta, primary) == b"grid":
        tiles = _references(meta, primary, b"dimg")
        if tiles:
            found = _item_nclx(iprp, properties, tiles[0])
    return found


def _item_nclx(
    iprp: memoryview, properties: list[tuple[bytes, memoryview]], item: int
) -> Nclx | None:
    """The code points of the first ``nclx`` colour box associated with ``item``."""
    for index in _associated(iprp, item):
        if not 0 < index <= len(properties):
            continue  # 0: no property; past the end: a property box that could not be read
        kind, colr = properties[index - 1]
        if kind == b"colr" and colr[:4] == b"nclx":
            primaries, transfer, matrix, flags = struct.unpack_from(">HHHB", colr, 4)
            return Nclx(primaries, transfer, matrix, bool(flags & 0x80))
    return None


def _item_type(meta: memoryview, item: int) -> bytes | None:
    """The type of ``item`` (``hvc1``, ``av01``, ``grid``...) that ``meta``'s ``iinf``
    states in its ``infe`` (version 2: 16-bit id, 3: 32-bit; earlier ones state none)."""
    iinf = _child(meta, b"iinf")
    if iinf is None:
        return None
    entries = iinf[6:] if iinf[0] == 0 else iinf[8:]  # after version, flags, entry count
    for kind, infe in _boxes(entries):
        if kind != b"infe" or infe[0] not in (2, 3):
            continue
        id_format = ">H" if infe[0] == 2 else ">I"
        (entry_item,) = struct.unpack_from(id_format, infe, 4)
        if entry_item == item:
            at = 4 + struct.calcsize(id_format) + 2  # after the protection index
            return bytes(infe[at : at + 4])
    return None


def _references(meta: memoryview, item: int, kind: bytes) -> tuple[int, ...]:
    """The items that ``item`` refers to by references of type ``kind`` (``dimg``: a
    grid's tiles, in order) in ``meta``'s ``iref`` (version 0: 16-bit ids, else 32)."""
    iref = _child(meta, b"iref")
    if iref is None:
        return ()
    id_format = ">H" if iref[0] == 0 else ">I"
    width = struct.calcsize(id_format)
    for found, reference in _boxes(iref[4:]):
        (source,) = struct.unpack_from(id_format, reference, 0)
        if found == kind and source == item:
            (count,) = struct.unpack_from(">H", reference, width)
            return struct.unpack_from(f">{count}{id_format[1]}", reference, width + 2)
    return ()


def _associated(iprp: memoryview, item: int) -> tuple[int, ...]:
    """The ``ipco`` indexes (1-based) of the properties that ``iprp``'s ``ipma`` boxes
    associate with ``item``.  An ``ipma`` of version 0 has 16-bit item ids, else 32-bit;
    with flag 1 its indexes take 15 bits, else 7 (the top bit says "essential")."""
    for kind, ipma in _boxes(iprp):
        if kind != b"ipma":
            continue
        id_format = ">H" if ipma[0] == 0 else ">I"
        index_format, mask = ("H", 0x7FFF) if ipma[3] & 1 else ("B", 0x7F)
        (entries,) = struct.unpack_from(">I", ipma, 4)
        at = 8
        for _ in range(entries):
            (entry_item,) = struct.unpack_from(id_format, ipma, at)
            at += struct.calcsize(id_format)
            count = ipma[at]
            indexes = struct.unpack_from(f">{count}{index_format}", ipma, at + 1)
            if entry_item == item:
                return tuple(index & mask for index in indexes)
            at += 1 + struct.calcsize(f">{count}{index_format}")
    return ()


def _boxes(view: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """The ISOBMFF boxes laid end to end in ``view``: each one's type and payload.  Stops
    at a box whose size does not fit (the rest cannot be found)."""
    at = 0
    while at + 8 <= len(view):
        size, kind = struct.unpack_from(">I4s", view, at)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if at + 16 > len(view):
                return
            (size,) = struct.unpack_from(">Q", view, at + 8)
            header = 16
        elif size == 0:  # to the end of what holds it
            size = len(view) - at
        if not header <= size <= len(view) - at:
            return
        yield kind, view[at + header : at + size]
        at += size


def _child(view: memoryview, kind: bytes) -> memoryview | None:
    """The payload of the first box of type ``kind`` in ``view``, or None."""
    return next((payload for found, payload in _boxes(view) if found == kind), None)


# -- colour science -----------------------------------------------------------------------

_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]]
)


def _xyz_of(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _colorants_d50(
    red: tuple[float, float],
    green: tuple[float, float],
    blue: tuple[float, float],
    white: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The RGB -> XYZ (D50) matrix of these primaries (columns: red, green, blue), and
    the Bradford matrix that adapts ``white`` to D50 (the ``chad`` tag)."""
    p = np.stack([_xyz_of(*red), _xyz_of(*green), _xyz_of(*blue)], axis=1)
    w = _xyz_of(*white)
    rgb_to_xyz = p * np.linalg.solve(p, w)
    cone_src, cone_dst = _BRADFORD @ w, _BRADFORD @ _D50_XYZ
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_dst / cone_src) @ _BRADFORD
    return adapt @ rgb_to_xyz, adapt


# -- ICC encoding -------------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _sf32(values: np.ndarray) -> bytes:
    return b"sf32" + bytes(4) + b"".join(_s15(float(v)) for v in values)


def _xyz(values: np.ndarray) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(float(v)) for v in values)


def _para(function: int, params: tuple[float, ...]) -> bytes:
    return b"para" + bytes(4) + struct.pack(">HH", function, 0) + b"".join(map(_s15, params))


def _mluc(text: str) -> bytes:
    encoded = text.encode("utf-16-be")
    return (
        b"mluc"
        + bytes(4)
        + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(encoded), 28)
        + encoded
    )


def _profile(tags: list[tuple[bytes, bytes]]) -> bytes:
    """A whole profile: header, tag table, tag data (each on a 4-byte boundary)."""
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, body = [], b""
    for signature, payload in tags:
        entries.append(struct.pack(">4sII", signature, offset + len(body), len(payload)))
        body += payload + bytes(-len(payload) % 4)
    size = offset + len(body)
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sI4s4s8sI12s4s16s28s",
        size,
        b"\0\0\0\0",  # preferred CMM: none
        0x04300000,  # version 4.3
        b"mntr",
        b"RGB ",
        b"XYZ ",
        struct.pack(">6H", 2026, 1, 1, 0, 0, 0),
        b"acsp",
        b"\0\0\0\0",  # platform
        0,  # flags
        b"\0\0\0\0",  # manufacturer
        b"\0\0\0\0",  # model
        bytes(8),  # attributes
        0,  # perceptual intent
        b"".join(_s15(float(v)) for v in _D50_XYZ),
        b"\0\0\0\0",  # creator
        bytes(16),  # profile ID: not computed (allowed)
        bytes(28),
    )
    table = struct.pack(">I", len(tags)) + b"".join(entries)
    return header + table + body
