"""Output buffers: the final image allocated once, tiles written in, seams blended.

Where a tile is alone its output is quantised on the compute device, laid out there as the
host buffer is (:func:`host_layout`) and copied in; only the feather bands are summed in
float32 on the host, in strips ``overlap * scale`` output pixels high (or wide): never a
full-size float accumulator or weight buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pocketsr_cli.errors import OutOfMemoryError
from pocketsr_cli.memory import is_out_of_memory
from pocketsr_cli.tiling.plan import Feather

if TYPE_CHECKING:
    import torch

GIB = 1 << 30


def output_max(dtype: torch.dtype) -> float | None:
    """Integer value that 1.0 maps to in a buffer of ``dtype``; ``None`` for float dtypes.

    ``uint8`` -> 255; ``uint16`` and ``int32`` (the stand-in where ``uint16`` lacks kernels)
    -> 65535.
    """
    import torch

    if dtype.is_floating_point:
        return None
    table = {torch.uint8: 255.0, torch.int32: 65535.0}
    uint16 = getattr(torch, "uint16", None)
    if uint16 is not None:
        table[uint16] = 65535.0
    if dtype not in table:
        raise ValueError(f"unsupported output dtype {dtype}")
    return table[dtype]


def allocate_output(channels: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU buffer ``(1, C, H, W)`` laid out channels-last, so that
    ``out[0].permute(1, 2, 0)`` is the ``H x W x C`` image without another copy.

    Raises:
        OutOfMemoryError: the host cannot hold the result at all (smaller tiles would not help).
    """
    import torch

    try:
        return torch.empty(
            (1, channels, height, width), dtype=dtype, memory_format=torch.channels_last
        )
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        size = channels * height * width * torch.empty((), dtype=dtype).element_size()
        raise OutOfMemoryError(
            f"the {width}x{height} result needs {size / GIB:.1f} GiB of RAM that this "
            "machine does not have; use a smaller scale or 8-bit output"
        ) from None


class Assembler:
    """Writes tile outputs, in raster order, into the final buffer; blends only the seams.

    Along each axis a tile's output extent ``[lo, hi)`` is a *solo* range, where its
    weight is exactly one and no other tile reaches, framed by the feather bands it shares
    with its neighbours.  The solo rectangle is quantised on the compute device and copied
    straight into ``out``.  Only the frame is weighted and summed in float32 on the host:
    horizontal bands in full-width strips (one per tile-row border, written out once the
    tile row below is done) and vertical bands in a small buffer shared by neighbours in a
    row.  Nothing full-size is ever held in float.
    """

    def __init__(
        self,
        out: torch.Tensor,
        rows: Sequence[Feather],
        cols: Sequence[Feather],
        origin: int = 0,
    ) -> None:
        """``rows``/``cols`` may reach past ``out`` (padding); that part is dropped.  They
        may also start ``origin`` output pixels before it on both axes (the tiler's
        margin, ``SizeRequirements.margin``): ``out``'s first pixel is ``(origin, origin)``
        in their coordinates, and what lies before it is dropped too."""
        self.out = out
        self.origin = origin
        self.max = output_max(out.dtype)
        self.rows, self.cols = rows, cols
        self.row_solo = _solo_ranges(rows)
        self.col_solo = _solo_ranges(cols)
        self.strips: dict[int, torch.Tensor] = {}  # border r (above tile row r) -> rows
        self.right: torch.Tensor | None = None  # vertical band right of the last tile

    def add(self, r: int, c: int, y: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> None:
        """Add tile ``(r, c)``'s output ``y`` over its extent, weighted by ``wy`` x ``wx``.

        All three live on the compute device; tiles must come in raster order.
        """
        import torch

        row, col = self.rows[r], self.cols[c]
        (r0, r1), (c0, c1) = self.row_solo[r], self.col_solo[c]
        t0, t1, l0, l1 = r0 - row.lo, r1 - row.lo, c0 - col.lo, c1 - col.lo
        self._write(r0, c0, y[:, t0:t1, l0:l1])
        width = self.cols[-1].hi
        host = torch.device("cpu")
        if t0 > 0:
            top = (y[:, :t0] * (wy[:t0, None] * wx[None, :])).to(host, torch.float32)
            self.strips[r][:, :, col.lo : col.hi] += top
        if t1 < y.shape[1]:
            if r + 1 not in self.strips:
                self.strips[r + 1] = torch.zeros((y.shape[0], y.shape[1] - t1, width))
            bottom = (y[:, t1:] * (wy[t1:, None] * wx[None, :])).to(host, torch.float32)
            self.strips[r + 1][:, :, col.lo : col.hi] += bottom
        if l0 > 0:
            left = (y[:, t0:t1, :l0] * wx[:l0]).to(host, torch.float32)
            if self.right is not None:
                left[:, :, : self.right.shape[2]] += self.right
            self._write(r0, col.lo, left)
        self.right = (y[:, t0:t1, l1:] * wx[l1:]).to(host, torch.float32)
        if c == len(self.cols) - 1:
            self.right = None
            strip = self.strips.pop(r, None)
            if strip is not None:
                self._write(row.lo, 0, strip)

    def _write(self, top: int, left: int, block: torch.Tensor) -> None:
        """Quantise ``block`` (on whatever device it is) and copy it to ``out`` at (top, left)
        of the tiles' coordinates (``origin`` before ``out``'s)."""
        top, left = top - self.origin, left - self.origin
        if top < 0 or left < 0:
            block = block[:, max(0, -top) :, max(0, -left) :]
            top, left = max(0, top), max(0, left)
        h = min(block.shape[1], self.out.shape[2] - top)
        w = min(block.shape[2], self.out.shape[3] - left)
        if h <= 0 or w <= 0:
            return
        block = block[:, :h, :w]
        if self.max is not None:
            block = (block * self.max).round_().clamp_(0.0, self.max)
        target = self.out[0, :, top : top + h, left : left + w]
        if block.device == self.out.device:
            target.copy_(block)  # on the CPU, copy_ converts and lays out in the same pass
        else:
            target.permute(1, 2, 0).copy_(host_layout(block, self.out.dtype))


def host_layout(block: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(C, h, w)`` block -> a dense ``(h, w, C)`` tensor of ``dtype`` on the block's own
    device: the output buffer's layout (channels last), made where the block is.

    A copy between devices is one plain transfer only when both sides are laid out alike;
    otherwise torch stages the block in a temporary host buffer in the block's layout and
    transposes it there on the CPU.  Networks often return planar (NCHW) results off the
    CPU (``pixel_shuffle`` does on CUDA, and so do the resamplers' float filters), and a 4K
    8-bit result would then cost 16-20 ms of host time every image on this project's
    2-core CPU (temporary and transposing pass) against 1-2 ms for a plain copy.  On the
    device the cast and the transpose are one cheap pass.  A full-width block then crosses
    in one transfer; a narrower tile's crosses whole and is copied in row by row.
    """
    import torch

    channels, height, width = block.shape
    staged = torch.empty((height, width, channels), dtype=dtype, device=block.device)
    return staged.copy_(block.permute(1, 2, 0))


def _solo_ranges(feathers: Sequence[Feather]) -> list[tuple[int, int]]:
    """Per span, the output range only it covers: ``[previous.hi, next.lo)``."""
    ends = [f.lo for f in feathers[1:]] + [feathers[-1].hi]
    starts = [0] + [f.hi for f in feathers[:-1]]
    return list(zip(starts, ends, strict=True))
