"""How much memory a device has left, whether an exception means it ran out, and how much
one image will need.

Everything here answers questions; nothing here decides what to do about the answer (that
is the tiler's business, see ``tiling.TilePolicy``, and the pipeline's, which refuses an
image whose :func:`predict`-ed need does not fit and admits images one after another while
what is in flight fits).  Every query about the machine returns ``None`` rather than
guessing when the platform does not say.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pocketsr_cli import hostmem

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

# cgroup v2, then v1: (limit file, usage file).  A container's limit is invisible in
# /proc/meminfo, and exceeding it gets the process killed, not a MemoryError.
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    ),
)
# cgroup v1 writes "no limit" as a huge page-aligned number rather than "max".
_CGROUP_UNLIMITED = 1 << 60

_OOM_MESSAGE = re.compile(r"out of memory", re.IGNORECASE)


def free_bytes(device: torch.device) -> int | None:
    """Bytes this process could still allocate on ``device``, or ``None`` if unknown.

    - CUDA: the driver's free memory plus what PyTorch's caching allocator holds but does
      not use (it is free to us, though the driver counts it as taken).
    - MPS: Metal's recommended working-set size minus what the driver has allocated for
      this process, and never more than the host's available RAM (memory is unified).
    - CPU (and anything else): :func:`host_available_bytes`, plus the freed memory glibc
      keeps for this process (``hostmem.retained_bytes``: free to us, though the kernel
      counts it as taken).
    """
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free) + max(0, int(cached))
    if device.type == "mps":
        return _mps_free_bytes()
    host = host_available_bytes()
    return None if host is None else host + hostmem.retained_bytes()


def _mps_free_bytes() -> int | None:
    import torch

    mps = getattr(torch, "mps", None)
    recommended = getattr(mps, "recommended_max_memory", None)
    # driver_allocated_memory includes Metal's cached buffers, which count against the
    # working set; current_allocated_memory (tensors only) is the fallback.
    used = getattr(mps, "driver_allocated_memory", None) or getattr(
        mps, "current_allocated_memory", None
    )
    host = host_available_bytes()
    if recommended is None or used is None:
        return host
    free = max(0, int(recommended()) - int(used()))
    return free if host is None else min(free, host)


def host_available_bytes(*, address_space: bool = True) -> int | None:
    """RAM the host can give this process without swapping, or ``None`` if unknown.

    Linux: ``MemAvailable`` from ``/proc/meminfo``, lowered to the cgroup (container)
    limit when there is one.  Elsewhere: ``psutil`` (a dependency there), or if it is
    missing POSIX ``sysconf`` (free pages; an underestimate, since it ignores reclaimable
    cache).  With
    ``address_space`` (the default), lowered to what ``ulimit -v`` still lets this process
    map too: a limit each process has for itself, unlike the host's RAM.
    """
    found: list[int] = []
    meminfo = _read_text("/proc/meminfo")
    if meminfo is not None:
        value = parse_meminfo_available(meminfo)
        if value is not None:
            found.append(value)
    if not found:
        value = _psutil_available() or _sysconf_available()
        if value is not None:
            found.append(value)
    cgroup = cgroup_headroom_bytes()
    if cgroup is not None:
        found.append(cgroup)
    limit = address_space_headroom_bytes() if address_space else None
    if limit is not None:
        found.append(limit)
    return min(found) if found else None


def address_space_headroom_bytes(status: str | None = None) -> int | None:
    """What ``ulimit -v`` (RLIMIT_AS) still allows this process to map, or ``None`` when
    there is no such limit (or no way to tell).  ``status``: a ``/proc/self/status`` text
    (tests); read from there by default (its ``VmSize`` line)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    text = status if status is not None else _read_text("/proc/self/status")
    match = re.search(r"^VmSize:\s+(\d+)\s*kB", text or "", re.MULTILINE)
    if match is None:
        return None
    return max(0, soft - int(match.group(1)) * 1024)


def parse_meminfo_available(text: str) -> int | None:
    """Bytes in the ``MemAvailable:`` line of a ``/proc/meminfo`` text (``None`` if absent)."""
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def cgroup_headroom_bytes(root: str = "") -> int | None:
    """Memory limit minus usage of this process's cgroup, or ``None`` when unlimited/unknown.

    ``root`` prefixes the ``/sys/fs/cgroup`` paths (tests point it at a temporary folder).
    """
    for limit_path, usage_path in _CGROUP_FILES:
        limit_text = _read_text(root + limit_path)
        usage_text = _read_text(root + usage_path)
        if limit_text is None or usage_text is None:
            continue
        limit_text = limit_text.strip()
        if limit_text == "max" or not limit_text.isdigit() or not usage_text.strip().isdigit():
            return None
        limit = int(limit_text)
        if limit >= _CGROUP_UNLIMITED:
            return None
        return max(0, limit - int(usage_text.strip()))
    return None


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _psutil_available() -> int | None:
    try:
        import psutil  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means a device or the host ran out of memory.

    True for ``torch.OutOfMemoryError`` / ``torch.cuda.OutOfMemoryError``, ``MemoryError``
    and any ``RuntimeError`` whose message says "out of memory" (MPS raises
    "MPS backend out of memory", older CUDA builds "CUDA out of memory", the CPU allocator
    "DefaultCPUAllocator: not enough memory" / "can't allocate memory").
    """
    import torch

    oom_types: tuple[type[BaseException], ...] = (MemoryError,)
    for owner in (torch, getattr(torch, "cuda", None)):
        cls = getattr(owner, "OutOfMemoryError", None)
        if isinstance(cls, type):
            oom_types += (cls,)
    if isinstance(error, oom_types):
        return True
    if isinstance(error, RuntimeError):
        text = str(error)
        return bool(
            _OOM_MESSAGE.search(text)
            or "not enough memory" in text
            or "can't allocate memory" in text
        )
    return False


def release_cached(device: torch.device) -> None:
    """Give cached-but-unused blocks back after an out-of-memory error, so a retry can use them."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        empty = getattr(getattr(torch, "mps", None), "empty_cache", None)
        if empty is not None:
            empty()


# --------------------------------------------------------------------------------------------
# Predicting what one image needs
# --------------------------------------------------------------------------------------------

GIB = 1 << 30

MAX_MEMORY_ENV = "POCKETSR_MAX_MEMORY"
"""The environment variable behind ``upscale --max-memory``."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in ``"8G"``, ``"8 GB"``, ``"8GiB"``, ``"512M"``, ``"1.5g"`` or ``"1048576"``
    (K, M, G, T are powers of 1024, with or without ``B``/``iB``).

    Raises:
        ValueError: anything else, or zero.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (write it as 8G, 512M or a number of bytes)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"a memory size must be more than zero, not {text!r}")
    return size


_BINARY_UNITS = ((GIB, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def _unit_for(size: int) -> tuple[int, str]:
    """The largest of GiB, MiB and KiB that ``size`` reaches, else bytes (1, "bytes")."""
    return next(((u, name) for u, name in _BINARY_UNITS if size >= u), (1, "bytes"))


def describe_bytes(size: int, *, apart_from: int | None = None) -> str:
    """``"2.3 GiB"``, ``"640 MiB"``, ``"1 KiB"``, ``"100 bytes"``: a size for a message,
    in the largest binary unit it reaches (as :func:`parse_size` reads K, M, G: ``1K`` is
    ``"1 KiB"``, never rounded up to a larger unit, nor to 1024 of its own: a byte short of
    1 MiB is ``"1023 KiB"``, so that no size under 1 MiB reads as one).  With
    ``apart_from``, another size the message compares it with, enough digits to tell the
    two apart (``"1.04 GiB"`` beside ``"1.0 GiB"``, bytes if need be)."""
    unit, name = _unit_for(size)
    if unit == 1:
        text = f"{size} byte" if size == 1 else f"{size} bytes"
    elif unit == GIB:
        text = f"{size / GIB:.1f} GiB"
    else:
        text = f"{_amount(size, unit, 0)} {name}"
    if apart_from is None or apart_from == size or text != describe_bytes(apart_from):
        return text
    unit, name = _unit_for(max(size, apart_from))
    for digits in (2, 3):
        text = f"{_amount(size, unit, digits)} {name}"
        if text != f"{_amount(apart_from, unit, digits)} {name}":
            return text
    return f"{size:,} bytes"


def _amount(size: int, unit: int, digits: int) -> str:
    """``size / unit`` to ``digits`` decimals, rounded to the nearest, but never up to 1024
    in a unit below GiB (the largest), whose 1024 is the next unit's 1: ``1023``,
    ``1023.99``.  There ``size`` is under 1024 ``unit`` (:func:`_unit_for`)."""
    text = f"{size / unit:.{digits}f}"
    if unit < GIB and float(text) >= 1024:
        text = f"{1024 - 10**-digits:.{digits}f}"
    return text


@dataclass(frozen=True)
class UpscalerMemory:
    """How an upscaler uses host memory, as far as :func:`predict` needs to know.

    Attributes:
        uint8_path: 8-bit images take a whole-image 8-bit path (the resamplers on the CPU,
            ``ModelDescriptor.upscale_uint8``): no float copy, no tiles.
        working_bytes: the most the network's tiles hold at once in host memory (the tiler
            sizes tiles to fit it on the CPU; on a GPU the tiles live in device memory and
            only small transfers are on the host).
        working_for: ``(width, height) -> bytes``: the working set for one input size,
            at most ``working_bytes`` (a small image's pass is far below the budget);
            None: ``working_bytes`` for every image.
        anchored: the result's mean is anchored on the host after it is assembled
            (``anchor.anchor_means``: float grids of the input's size at most, and strips
            of 256 output rows).
    """

    uint8_path: bool = False
    working_bytes: int = GIB
    working_for: Callable[[int, int], int] | None = field(default=None, compare=False)
    anchored: bool = False


@dataclass(frozen=True)
class ImageMemory:
    """Host memory one image needs, in bytes above what the process already holds, at the
    peak of each stage of the pipeline (see :func:`predict`)."""

    decode: int
    upscale: int
    encode: int

    @property
    def peak(self) -> int:
        return max(self.decode, self.upscale, self.encode)


# Compressed output bytes per raw output byte, at most: upscaled noise, WebP at quality 95
# with chroma kept whole.  PNG (OpenCV's Deflate), on 4000x3000 upscaled noise: 0.86 at 8
# bits (Lanczos x4), 0.97 at 16 (bicubic); noise at the output's own size, which no upscale
# makes, 1.002, which the three files budgeted below cover: its encode holds two at most
# (3 x 0.9 > 2 x 1.002).  TIFF: Deflate stores what it cannot shrink, so noise costs its
# raw bytes and a little more (measured on 4000x3000: 1.001 on noise, 0.97 on 16-bit and
# 0.87 on 8-bit upscaled noise, 0.40-0.42 on a photo; 16-bit photo 0.80).  JPEG: see
# _JPEG_COMPRESSED.
_COMPRESSED = {"png": 0.9, "tiff": 1.01, "webp": 0.5, "bmp": 1.0}
# JPEG's compressed bytes per raw byte grow with the quality: (up to this quality, colour,
# gray).  Measured with OpenCV's encoder on upscaled noise (Lanczos x4), colour / gray:
# q85 0.14 / 0.33 (4:2:0 below 90), q90 0.26 / 0.39, q95 0.35 / 0.53, q98 0.49 / 0.67,
# q99 0.60 / 0.74, q100 0.70 / 0.79; a photo 0.11 at q95, 0.31 at q100.  (Noise at the
# output's own size, which no upscale makes: q95 0.81 / 1.01, q100 1.37 / 1.58.)
_JPEG_COMPRESSED = ((90, 0.3, 0.45), (95, 0.4, 0.6), (98, 0.55, 0.75), (100, 0.8, 0.85))


def predict_decode(*, size: tuple[int, int], channels: int, bit_depth: int, file_bytes: int) -> int:
    """The decode stage of :func:`predict`: the file, Pillow's image (4 bytes a pixel for
    colour) and our copy of the pixels, for an image of ``size`` = (width, height),
    ``channels`` and ``bit_depth`` as decoded, from a file of ``file_bytes``."""
    w, h = size
    b = 2 if bit_depth > 8 else 1
    return 2 * file_bytes + w * h * (12 + 2 * channels * b)


def predict(
    *,
    size: tuple[int, int],
    channels: int,
    bit_depth: int,
    scale: int,
    target: tuple[int, int],
    out_format: str,
    out_bit_depth: int,
    file_bytes: int,
    upscaler: UpscalerMemory,
    out_lossless: bool = False,
    out_quality: int | None = None,
) -> ImageMemory:
    """What upscaling one image needs, from its header: ``size`` = (width, height),
    ``channels`` and ``bit_depth`` as decoded, the model's ``scale``, the ``target`` size it
    is resized to, and how the output is encoded (``out_lossless``: a lossless WebP;
    ``out_quality``: ``--quality``, None for ``imageio.DEFAULT_QUALITY``).

    An upper bound that follows what the code holds at each stage (one bytes-per-pixel
    term per buffer), checked against measured peaks in ``tests/test_hostile_decode.py``:

    - decode: the file, Pillow's image (4 bytes a pixel for colour), our copy of the pixels;
    - upscale: the decoded input plus, on the 8-bit path, the result and the resampler's
      buffers; on the network path the float input (padded), the result in its dtype
      (uint8, or int32 for 16-bit), the gray fold (the folded plane, floats only for 256
      rows at a time; a colour image whose channels are equal is folded too), alpha (one
      plane more, concatenated, then made contiguous), mean anchoring's grids and strips,
      and the tiles' working set; then the resize to ``target``, with the result still
      held;
    - encode: the result at ``target`` and the encoder's copies (Pillow's own image, the
      channel-swapped copy OpenCV encodes, one TIFF strip), plus the compressed bytes two
      or three times, and what the 8-bit path's resampler left in the heap of the thread
      that upscaled.
    """
    w, h = size
    p = w * h
    big = p * scale * scale  # pixels out of the model
    tw, th = target
    t = tw * th
    c, b = channels, 2 if bit_depth > 8 else 1
    gray, alpha = c in (1, 2), c in (2, 4)

    decode = predict_decode(
        size=size, channels=channels, bit_depth=bit_depth, file_bytes=file_bytes
    )

    if upscaler.uint8_path and b == 1:
        # The result plus the resampler's own buffers: Pillow's 4-byte RGB image and one
        # band of its rows copied out (archs/resize), or each band's image, its bytes and
        # its array.  Measured on 1000x750 -> 4000x3000 (peak resident memory above the
        # start, the input included, in a fresh process): RGB 7.3 B an output pixel on
        # noise, 7.0 on a photo (6.9 in use while freed memory is kept, hostmem), RGBA
        # 7.1, gray + alpha 5.1, gray 3.0.  So 10 B for RGB leaves 32 MB over the worst at
        # 4000x3000, and more elsewhere.  (Through one ``tobytes`` of the whole RGB image
        # it was 10.2 B: the 2 MB input all the margin.)
        model = (c + 7) * big
    else:
        out = 1 if b == 1 else 4  # the tiler's result dtype: uint8, or int32 for 16-bit
        kept = 1 if gray else 3  # channels of the network's result, once folded
        colour = 3 * out * big
        # gray, or colour with R = G = B (known only once decoded, so counted for every
        # image): the folded plane, and one band of 256 rows of float copies at a time
        fold = colour + out * big + 16 * 256 * w * scale
        if alpha:  # alpha plane, both concatenated, then a contiguous copy in the input dtype
            stacked = (kept + 1) * out * big
            assemble = kept * out * big + out * big + stacked + (kept + 1) * b * big
        else:  # 16-bit: int32 converted to a uint16 copy
            assemble = kept * out * big + (kept * b * big if b == 2 else 0)
        working = upscaler.working_bytes
        if upscaler.working_for is not None:
            working = min(working, upscaler.working_for(w, h))
        # mean anchoring, once assembled: the result, three float grids of the input's size
        # at most, two float strips of 256 output rows
        anchor = kept * b * big + 12 * kept * p + 2048 * kept * w * scale
        model = 28 * p + max(fold, assemble, anchor if upscaler.anchored else 0) + working
    resize = c * b * (big + t) if t != big else 0
    upscale = c * b * p + max(model, resize)

    held = c * b * t
    ob = 2 if out_bit_depth > 8 and out_format in ("png", "tiff") else 1
    oc = 3 + (1 if alpha else 0) if out_format == "webp" and gray else c
    raw = oc * ob * t
    convert = 8 * c * t + c * t if b == 2 and ob == 1 else 0  # 16 -> 8 bits via uint32
    lossless = out_lossless and out_format == "webp"
    # Lossless WebP holds upscaled noise in no fewer bytes than the raw samples.
    if lossless:
        compressed = raw
    elif out_format == "jpeg":
        compressed = int(_jpeg_compressed(out_quality, gray=oc == 1) * raw)
    else:
        compressed = int(_COMPRESSED.get(out_format, 1.0) * raw)
    if out_format == "jpeg":  # OpenCV's: the channel-swapped copy of colour; its buffer,
        # which grows by doubling, then NumPy's copy of it, then the joined file.  Measured
        # on 4000x3000 upscaled noise at quality 100: the copy and 2.65 times the file
        copies = (raw if oc > 1 else 0) + 3 * compressed
    elif out_format in ("webp", "bmp"):  # Pillow's own 4-byte (or 1-byte gray) image
        copies = (4 if oc > 1 else 1) * t + (raw if oc != c else 0) + 2 * compressed
        if lossless:  # libwebp's lossless encoder (method 1): 27 B a pixel, measured on 4K
            copies += 30 * t  # noise, RGB and RGBA alike
        elif out_format == "webp":  # libwebp's own planes, statistics and token buffers,
            # which grow with what it encodes.  Measured on 3840x2160 (what encode_image
            # allocated, less Pillow's image and the file twice) at quality 95 / 100: RGB 12
            # / 15 B a pixel on a photo, 17 / 20 on upscaled noise, 26 / 30 on noise; RGBA
            # 32 on a photo, 30 on noise, 37 on upscaled noise, at either quality
            copies += (40 if alpha else 32) * t
    elif out_format == "png":  # OpenCV's channel swap, or our gray + alpha writer's rows;
        # the encoder's growing buffer, our copy of it and the joined file.  Measured on
        # 4000x3000 noise (what encode_png allocated, less the swapped copy), times the
        # file: RGB 1.87-1.93, RGBA 1.33-1.44, gray 1.51-1.65, 16-bit RGB 1.87-1.89
        copies = (4 * raw if oc == 2 else raw if oc > 1 else 0) + 3 * compressed
    else:  # TIFF: the compressed strips and the joined file, and one strip (1 MiB) in
        # flight: differenced, its bytes, deflated.  Measured on 4000x3000 noise (what
        # encode_tiff allocated, tracemalloc's peak): twice the file and 1 MB more, RGB,
        # RGBA, gray and 16-bit RGB alike (3.02 times the raw bytes while it differenced
        # the whole image before its strips)
        copies = 2 * compressed + (3 << 20)
    encoder = convert + copies
    # On the 8-bit path an image with alpha is resampled band by band (Pillow has no mode
    # for it); what that freed, malloc keeps in the heap of the thread that upscaled, and
    # the encoder's thread does not reuse it.  Measured after Lanczos on 4000x3000 RGBA
    # and gray + alpha: 31 MB (2.6 B an output pixel); bicubic (torch's, all bands at
    # once) 4 MB.  RGB, copied out of Pillow's image in bands of rows: 6.6 MB (0.55 B),
    # noise and photo alike (what encode_tiff found allocated on entry, less the result
    # and the input).
    leftover = (3 if alpha else 1) * big if upscaler.uint8_path and b == 1 else 0
    encode = c * b * p + held + leftover + encoder
    return ImageMemory(decode=int(decode), upscale=int(upscale), encode=int(encode))


def _jpeg_compressed(quality: int | None, *, gray: bool) -> float:
    """JPEG's compressed bytes per raw byte at most, at ``quality`` (None: the default)."""
    from pocketsr_cli.imageio import DEFAULT_QUALITY

    q = DEFAULT_QUALITY if quality is None else quality
    colour, mono = next((c, g) for top, c, g in _JPEG_COMPRESSED if q <= top)
    return mono if gray else colour


def predict_upscale(
    *, size: tuple[int, int], scale: int, target: tuple[int, int], upscaler: UpscalerMemory
) -> int:
    """The upscale stage of :func:`predict` for an 8-bit RGB image made in memory, neither
    decoded nor encoded (``eval``'s degraded photos, ``bench``'s synthetic one)."""
    return predict(
        size=size,
        channels=3,
        bit_depth=8,
        scale=scale,
        target=target,
        out_format="png",
        out_bit_depth=8,
        file_bytes=0,
        upscaler=upscaler,
    ).upscale
