"""Running a model on one image: channels, dtypes, precision, NaN guard, ensemble, tiles.

:class:`Upscaler` adapts any :class:`~pocketsr_cli.descriptor.ModelDescriptor` to the
pipeline's ``ImageUpscaler`` protocol: ``H x W x C`` uint8/uint16 in, the same dtype out,
``C`` in 1..4.  Grayscale is replicated to RGB for the model and folded back (so is a
colour image whose three channels are equal, a black-and-white photo saved in colour,
which comes back with three equal channels: neutral, no colour drawn into it); alpha is
upscaled separately with a bicubic filter (a generative model would invent texture in a
mask) and re-attached, after the colour under fully transparent pixels has been replaced
by the visible colour around it (:mod:`pocketsr_cli.alphafill`), so that none of the
hidden colour shows along the edges.  Half precision runs under autocast with fp32
weights, so when a half-precision result contains NaN or inf (the "black image" bug of
fp16 upscalers) the tile is recomputed in fp32 and the rest of the run stays in fp32, with
a warning; an image some of whose tiles were already drawn in half precision is then drawn
again, wholly in fp32 (once a run at most), so that it is what an fp32 run makes and what
its record says (``fp32``), not a mix of the two; its tiles are reported (``on_tile``) as
going on from the first drawing's, the total grown by theirs.  In bf16 a network's sub-pixel
convolutions stay in fp32 (:mod:`pocketsr_cli.subpixel`).

A model with an 8-bit path (:attr:`~pocketsr_cli.descriptor.ModelDescriptor.upscale_uint8`:
the resamplers) gets 8-bit images on the CPU whole, alpha included (which is then
drawn again with the bicubic filter where the model's is another), and its result is
returned as it is: no float conversion, no tiles (``--tile`` does not apply),
no precision or compile step.  Everything else (16-bit images, other devices, an
ensemble, which must transform what the network sees) goes through the network.

An ensemble (:mod:`pocketsr_cli.ensemble`: ``pad``, GenDR-Pix's two padded passes, or
``flip8``) wraps the tile function, so every tile's passes run inside the tiler.  A model's
chroma guard (:mod:`pocketsr_cli.chroma`) wraps it in turn: each tile's float output has
its colour clamped to its input's before the tiler blends and rounds it.

A PCSR network (``archs/pcsr``) renders any factor itself: ``outscale`` makes it draw the
output at that factor (through :class:`~pocketsr_cli.archs.pcsr.Packing` for fractional
ones, so tiles stay exact) instead of at its trained factor, ``native_sizes`` makes
:meth:`Upscaler.upscale_for` draw each image at the factor a size target needs for it
(``sizing.native_ratio``), and ``routing`` sets its speed/quality knob.  After each image
:attr:`Upscaler.heavy_fraction` says which share of its output pixels took the heavy path.

``compile=True`` runs the network through ``torch.compile``.  Compilation is lazy: it
happens inside the first forward pass that meets a new input shape, dtype or precision,
and the wall time of those passes is added up in :attr:`Upscaler.compile_seconds` (the
warm-up a run pays before compiled kernels are faster).  A network that cannot be compiled
is run as it is, with a warning.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from pocketsr_cli.alphafill import fill_hidden_colour
from pocketsr_cli.anchor import anchor_means, anchor_tensor
from pocketsr_cli.archs.resize import Resize
from pocketsr_cli.chroma import clamp_chroma
from pocketsr_cli.descriptor import ModelDescriptor, Tiling
from pocketsr_cli.devices import Compute
from pocketsr_cli.ensemble import Ensemble
from pocketsr_cli.errors import UsageError
from pocketsr_cli.imageio import opencv
from pocketsr_cli.memory import free_bytes, is_out_of_memory
from pocketsr_cli.sizing import Target, native_ratio
from pocketsr_cli.spelling import ENSEMBLE, HEIGHT, LONG_EDGE, OUTSCALE, TILE, TILE_OVERLAP, WIDTH
from pocketsr_cli.subpixel import keep_subpixel_fp32
from pocketsr_cli.tiling import DEFAULT_OVERLAP, ShrinkFn, TilePolicy, memory_remedy

if TYPE_CHECKING:
    from fractions import Fraction
    from typing import Any

    from pocketsr_cli.archs.pcsr import Packing, Routing, RoutingStats

_RENDERINGS_KEPT = 8  # per-factor tile policies a native_sizes upscaler keeps at a time
_PROBE_OUTPUT = 256  # output pixels per side of a packed memory probe (64 pixels at x4)

# A caller's read-only array (``np.asarray`` of a PIL image) is only ever read here: its
# tensor is copied to floats or to the device at once.  torch warns about such arrays all
# the same; the warning is dropped for this module's own calls only.
warnings.filterwarnings(
    "ignore", message="The given NumPy array is not writable", category=UserWarning, module=__name__
)


@dataclass(frozen=True)
class _Rendering:
    """How the network runs at one factor: the packing that draws it (None: the network
    as it is), the tile policy sized for it, the network call and the tile function."""

    packing: Packing | None
    policy: TilePolicy
    call: Callable[..., torch.Tensor]
    tile_fn: Callable[..., torch.Tensor]


class Upscaler:
    """One model on one device, ready to upscale images (keeps tiling state across images).

    ``ensemble`` is an :class:`~pocketsr_cli.ensemble.Ensemble`, a mode name (``none``,
    ``pad``, ``flip8``) or the on/off of earlier versions (``True`` is ``pad``).  ``tile``
    is a side in input pixels, 0 for the whole image, None to fit free memory (what
    ``--tile`` means is read by the CLI, ``cli._options.tile_side``).  ``overlap`` is the
    context pixels tiles share, as given; None: the model's own (:func:`own_overlap`).
    Runs open it through :func:`pocketsr_cli.factory.open_upscaler`.

    Attributes:
        overlap: the overlap its tiles share (``overlap`` as given, or the model's own).
        ensemble: the :class:`~pocketsr_cli.ensemble.Ensemble` every tile runs with
            (truthy when it runs more than one pass).
        compile_seconds: with ``compile=True``, seconds spent in forward passes that met a
            new input signature (shape, dtype, precision) and so compiled, those passes'
            own run included: an upper bound on the compile warm-up.  ``0.0`` otherwise.
        heavy_fraction: for a PCSR network, the share of the last image's output pixels
            that took the heavy path; None for other networks and before any image.

    ``outscale`` (a PCSR network only) renders at that factor; ``native_sizes`` (a PCSR
    network only) makes :meth:`upscale_for` render each image at the factor its target
    needs; ``routing`` (a PCSR network only) replaces its
    :class:`~pocketsr_cli.archs.pcsr.Routing`.  Any of them with another network raises
    ``ValueError``, as ``outscale`` with ``native_sizes`` does; a fractional ``outscale``,
    or ``native_sizes``, with an ensemble raises :class:`~pocketsr_cli.errors.UsageError`
    (the ensemble flips the image, which the packed tiles cannot follow).
    """

    def __init__(
        self,
        model: ModelDescriptor,
        compute: Compute,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        ensemble: Ensemble | str | bool = "none",
        compile: bool = False,
        on_warning: Callable[[str], None] | None = None,
        outscale: float | None = None,
        routing: Routing | None = None,
        native_sizes: bool = False,
    ) -> None:
        self.model = model
        self.compute = compute
        self.ensemble = Ensemble.of(ensemble)
        self.heavy_fraction: float | None = None
        self._anchored = False  # the last image's mean anchoring ran on the device
        # Where the device anchors an image that runs in one piece (anchor_tensor), before
        # its output is copied back; on the CPU the host does (anchor_means).
        self._anchor_on_device = compute.device.type != "cpu"
        self.native_sizes = native_sizes
        packing = self._pcsr_setup(model, outscale, routing, native_sizes)
        self._overlap_given = overlap is not None
        self.overlap = own_overlap(model, tile) if overlap is None else overlap
        self._tile = tile
        self._warn = on_warning or (lambda _msg: None)
        self._seams_told = False  # the overlap's warning (_seams_watched) is given once
        self._small_tiles_told = False  # the backoff's warning (_tiles_shrunk) is given once
        self._fp32_fallback = compute.precision == "fp32"
        # Network passes that gave finite values in half precision, counted per calling
        # thread (``_half_passes``): threads sharing this upscaler each count their own.
        self._half = threading.local()
        # NHWC convolutions are markedly faster on the CPU (oneDNN) and on CUDA (cuDNN; on an
        # H200 the compact x4 network per 4K output: fp16 7.3 -> 5.3 ms, fp32 9.5 -> 6.7 ms,
        # x4plus fp16 178 -> 143 ms; scripts/gpu_check.sh's "forward" step), and an NHWC
        # result reaches the NHWC host buffer in one plain copy.  MPS keeps the default.
        self._memory_format = (
            torch.channels_last
            if compute.device.type in ("cpu", "cuda")
            else torch.contiguous_format
        )
        model.module.to(compute.device).eval()
        model.module.to(memory_format=self._memory_format)  # type: ignore[call-overload]
        if compute.precision == "bf16":  # a bf16 sub-pixel layer draws a mesh: subpixel.py
            keep_subpixel_fp32(model.module)
        self._tileable = model.tiling is not Tiling.INTERNAL
        self._upscale_uint8 = uint8_path(model, compute.device, self.ensemble)
        self._base = self._rendering(packing)
        self._use(self._base)
        self._renderings: dict[Fraction, _Rendering] = {}
        if not self._tileable and self.policy.mode == "fixed":
            self._warn(f"{model.name} must see the whole image: ignoring {TILE.given(tile)}")
        self._alpha = Resize("bicubic", model.scale)
        self._alpha_policy = TilePolicy.for_side(512, overlap=8)
        self.compile_seconds = 0.0
        # torch.compile only wraps here; dynamo compiles inside the first call per signature.
        self._compiled: Callable[..., torch.Tensor] | None = (
            torch.compile(model.module) if compile and packing is None else None
        )
        self._compiled_signatures: set[tuple[object, ...]] = set()

    def _rendering(self, packing: Packing | None) -> _Rendering:
        """The network drawn through ``packing`` (None: at its own factor), with a tile
        policy whose sizes are in the tiler's pixels (``q x q`` blocks when packed)."""
        tile, overlap = self._tile, self.overlap
        call: Callable[..., torch.Tensor] = self.model.module
        scale = self.model.scale
        if packing is not None:  # the tiler sees q x q blocks: sizes in blocks
            radius = int(self.model.module.receptive_radius)  # type: ignore[arg-type]
            overlap = max(-(-overlap // packing.q), packing.overlap(radius))  # exact tiles
            if tile is not None:
                tile = packing.blocks(tile)
            call = packing.tile_fn(self.model.module)  # type: ignore[arg-type]
            scale = math.ceil(packing.ratio)
        limit: dict[str, int] = {}
        if self.model.max_tile is not None:
            limit["max_side"] = self.model.max_tile
        if packing is not None:
            # A block is q x q pixels that draw p x p: probe about 64 pixels, not blocks,
            # and at a large factor fewer, so that a probe draws about as many pixels as
            # 64 do at x4 (64 pixels at x100 drew 6400 x 6400, and the larger probe
            # 9600 x 9600: ten minutes for a 1-pixel image asked 100 pixels wide).
            limit["probe_side"] = max(1, min(64 // packing.q, _PROBE_OUTPUT // packing.p))
        policy = TilePolicy.for_side(tile, overlap, default_tile=self.model.default_tile, **limit)
        tile_fn = self.ensemble.wrap(self._forward, scale, self.model.size)
        if self.model.chroma_guard is not None and packing is None:
            tile_fn = _guarded(tile_fn)
        return _Rendering(packing, policy, call, tile_fn)

    def _use(self, rendering: _Rendering) -> None:
        """Run the next images as ``rendering`` says."""
        self._packing, self.policy = rendering.packing, rendering.policy
        self._call, self._tile_fn = rendering.call, rendering.tile_fn

    def _pcsr_setup(
        self,
        model: ModelDescriptor,
        outscale: float | None,
        routing: Routing | None,
        native_sizes: bool,
    ) -> Packing | None:
        """Apply ``routing`` to a PCSR network and return the packing that renders it at
        ``outscale`` (None: its own factor, or not asked)."""
        from pocketsr_cli.archs.pcsr import PCSR, Packing

        module = model.module
        if not isinstance(module, PCSR):
            if outscale is not None or routing is not None or native_sizes:
                raise ValueError(f"{model.name} is not a PCSR network: no native scale or routing")
            return None
        if routing is not None:
            module.routing = routing
        if native_sizes and outscale is not None:
            raise ValueError("native_sizes draws each image at its own factor: no outscale")
        if native_sizes and self.ensemble:
            raise UsageError(
                f"an ensemble cannot run {model.name} at the fractional scales that "
                f"{WIDTH}, {HEIGHT} or {LONG_EDGE} need: give no {ENSEMBLE}"
            )
        if outscale is None:
            return None
        packing = Packing.for_scale(outscale)
        if packing.ratio == model.scale:
            return None
        if packing.q > 1 and self.ensemble:
            raise UsageError(
                f"an ensemble cannot run at the fractional scale {outscale:g} of {model.name}: "
                f"give an integer {OUTSCALE}, or no ensemble"
            )
        return packing

    @property
    def fell_back_to_fp32(self) -> bool:
        """Whether a half-precision pass gave NaN/inf, so that this pass and every later
        one run in fp32 (the compute's precision is then no longer what draws)."""
        return self._fp32_fallback and self.compute.precision != "fp32"

    @property
    def routing_label(self) -> str | None:
        """A PCSR network's routing as the output records name it (``"k=0.02"``,
        ``"adaptive"``, with ``", no refine"`` when refinement is off); None for other
        networks.  It changes pixels, so an output made with another routing is not the
        same output (``provenance.COMPARED``)."""
        routing = getattr(self.model.module, "routing", None)
        if routing is None or not hasattr(self.model.module, "total_stats"):
            return None
        label = "adaptive" if routing.adaptive else f"k={routing.k:g}"
        return label if routing.refine else f"{label}, no refine"

    @property
    def scale(self) -> int:
        """The factor the network upscales by: for a fractional native scale, the next
        integer (what memory estimates and records take).  With ``native_sizes``, the
        network's own (what records take; see :meth:`scale_for`)."""
        if self._base.packing is not None:
            return math.ceil(self._base.packing.ratio)
        return self.model.scale

    def ratio_for(self, width: int, height: int, target: Target) -> Fraction | None:
        """The factor :meth:`upscale_for` draws a ``width × height`` image at for
        ``target`` (``sizing.native_ratio``); None when it runs at :attr:`scale` (not
        ``native_sizes``, or a target below the input's size)."""
        if not self.native_sizes:
            return None
        from pocketsr_cli.archs.pcsr.grid import MAX_DENOMINATOR

        return native_ratio(width, height, target, MAX_DENOMINATOR)

    def scale_for(self, width: int, height: int, target: Target) -> int:
        """The factor, rounded up, the network upscales a ``width × height`` image by in
        :meth:`upscale_for` (what its memory estimate takes)."""
        ratio = self.ratio_for(width, height, target)
        return self.scale if ratio is None else math.ceil(ratio)

    def upscale_for(
        self,
        pixels: np.ndarray,
        target: Target,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """:meth:`upscale` for an output of ``target``'s size: with ``native_sizes``, drawn
        at the factor that gives the image that size (:meth:`ratio_for`; within a pixel of
        it where no fraction the network takes gives it exactly), else at :attr:`scale`.
        Resizing the result to exactly ``target.size_for(W, H)`` is the caller's."""
        ratio = self.ratio_for(pixels.shape[1], pixels.shape[0], target)
        if ratio is None:
            return self.upscale(pixels, on_tile)
        self._use(self._rendering_at(ratio))
        try:
            return self.upscale(pixels, on_tile)
        finally:
            self._use(self._base)

    def _rendering_at(self, ratio: Fraction) -> _Rendering:
        """The rendering at ``ratio``, kept for the next images of that factor (the last
        :data:`_RENDERINGS_KEPT` factors: each tile policy learns its tile size)."""
        from pocketsr_cli.archs.pcsr import Packing

        if ratio == self.model.scale:
            return self._base
        rendering = self._renderings.pop(ratio, None)
        if rendering is None:  # (no ensemble: refused with native_sizes)
            rendering = self._rendering(Packing(ratio))
        self._renderings[ratio] = rendering  # the most recently used last
        while len(self._renderings) > _RENDERINGS_KEPT:
            del self._renderings[next(iter(self._renderings))]
        return rendering

    def working_bytes_for(self, width: int, height: int) -> int:
        """The most the network's pass holds in host memory for a ``width`` x ``height``
        image on the CPU (``memory.UpscalerMemory.working_for``), as its tile policy runs
        it (``TilePolicy.working_bytes``).  The first call measures the policy's estimate
        (two small probe passes), which the first image would do anyway; a PCSR-packed or
        untileable network is given the policy's CPU budget."""
        policy = self.policy
        if self.compute.device.type != "cpu" or self._packing is not None or not self._tileable:
            return policy.cpu_budget_bytes
        size = self.model.size
        estimate = policy.estimate(
            self._tile_fn, self.compute.device, self.model.scale, size, 3, self.model.image_stats
        )
        return policy.working_bytes(estimate, size, height, width)

    @property
    def uint8_path(self) -> bool:
        """Whether 8-bit images go whole through the model's own 8-bit path (the
        resamplers on the CPU, without an ensemble), with no float copy and no tiles."""
        return self._upscale_uint8 is not None

    def precision_for(self, dtype: np.dtype | type) -> str:
        """What draws an image of ``dtype`` now: ``uint8`` for 8-bit images on the 8-bit
        path (:attr:`uint8_path`), which no precision applies to; else the compute's
        precision, ``fp32`` once a half-precision pass fell back (:attr:`fell_back_to_fp32`)."""
        if self.uint8_path and np.dtype(dtype) == np.uint8:
            return "uint8"
        return "fp32" if self.fell_back_to_fp32 else self.compute.precision

    @property
    def _half_passes(self) -> int:
        """The network passes of the calling thread that gave finite values in half
        precision (what :class:`_HalfCount` reads around each tile)."""
        passes: int = getattr(self._half, "passes", 0)
        return passes

    # -- tensor level -------------------------------------------------------------------
    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, stats: Any = None) -> torch.Tensor:
        x = x.contiguous(memory_format=self._memory_format)
        args = (x,) if stats is None else (x, stats)
        if self._fp32_fallback:
            return self._network(args, "fp32").float()
        with torch.autocast(device_type=x.device.type, dtype=self.compute.dtype):
            y = self._network(args, self.compute.precision).float()
        if torch.isfinite(y).all():
            self._half.passes = self._half_passes + 1
        else:
            self._fp32_fallback = True
            self._warn(
                f"{self.compute.precision} gave NaN/inf values with {self.model.name}; "
                "recomputing in fp32 (the rest of this run stays fp32)"
            )
            y = self._network(args, "fp32").float()
        return y

    def _network(self, args: tuple[Any, ...], precision: str) -> torch.Tensor:
        """The network on ``args``: compiled when asked for, timing each compiling call."""
        if self._compiled is None or self._packing is not None:
            return self._call(*args)
        x = args[0]
        signature = (tuple(x.shape), x.dtype, precision)
        if signature in self._compiled_signatures:
            return self._compiled(*args)
        start = time.perf_counter()
        try:
            y = self._compiled(*args)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)  # kernels run asynchronously: time them
        except Exception as exc:
            if is_out_of_memory(exc):
                raise  # the tiler's backoff handles it, compiled or not
            self._compiled = None
            first = str(exc).strip().splitlines()
            self._warn(
                f"torch.compile failed for {self.model.name} "
                f"({first[0] if first else type(exc).__name__}); running it uncompiled"
            )
            return self.model.module(*args)
        finally:
            self.compile_seconds += time.perf_counter() - start
        self._compiled_signatures.add(signature)
        return y

    def upscale_tensor(
        self,
        x: torch.Tensor,
        on_tile: Callable[[int, int], None] | None = None,
        out_dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """``(1, 3, H, W)`` float in [0, 1], on the CPU or the compute device ->
        ``(1, 3, H*s, W*s)`` on the CPU.

        The result is float32, or ``out_dtype`` (uint8/uint16/int32: rounded and clamped).
        A native PCSR scale gives ``(1, 3, H*s, W*s)`` rounded half up, and a PCSR network
        sets :attr:`heavy_fraction`.  It is the network's output (chroma-guarded, tile by
        tile, when the model has a ``chroma_guard``), not mean-anchored: the model's
        ``mean_anchor`` is :meth:`upscale`'s.
        """
        return self._upscale_tensor(x, on_tile, out_dtype, anchor=False)[0]

    def _upscale_tensor(
        self,
        x: torch.Tensor,
        on_tile: Callable[[int, int], None] | None,
        out_dtype: torch.dtype | None,
        *,
        anchor: bool,
    ) -> tuple[torch.Tensor, bool]:
        """:meth:`upscale_tensor`, and whether the model's mean anchoring was done on the
        device (``anchor``: where the image ran there in one piece; see
        :meth:`_upscale_tiles`)."""
        tile_fn, asked_on_tile = self._tile_fn, on_tile
        half = None
        if not self._fp32_fallback:  # a pass may give NaN/inf part-way through the image
            half = _HalfCount(self, tile_fn, on_tile)
            tile_fn, on_tile = half.fn, half.on_tile
        count = None
        if hasattr(self.model.module, "total_stats"):  # PCSR: count its routing
            count = _RoutingCount(self.model.module, tile_fn, on_tile)
            tile_fn, on_tile = count.fn, count.on_tile
        if self._packing is not None:
            packing = self._packing
            out = self.policy.upscale(
                packing.pack(x),
                tile_fn,
                scale=packing.tiler_scale,
                device=self.compute.device,
                out_dtype=out_dtype,
                on_tile=on_tile,
                on_shrink=self._tiles_shrunk(packing.q),
            )
            out = packing.unpack(out, *x.shape[-2:])
            anchored = False
        else:
            out, anchored = self._upscale_tiles(x, tile_fn, on_tile, out_dtype, anchor)
        if half is not None and half.drew and self._fp32_fallback:
            # Some tiles were drawn in half precision before one gave NaN/inf: drawn again,
            # all in fp32 now, as its record will say (see the module docs).
            # Its tiles go on counting from the first drawing's (a new total): the progress
            # bar neither starts over nor stays marked finished, and its total is what ran.
            del out  # its memory is the redraw's: no more than one image's output at a time
            on_tile = _counted_after(asked_on_tile, half.done)
            return self._upscale_tensor(x, on_tile, out_dtype, anchor=anchor)
        if count is not None:
            self.heavy_fraction = count.heavy_fraction
        return out, anchored

    def _upscale_tiles(
        self,
        x: torch.Tensor,
        tile_fn: Callable[..., torch.Tensor],
        on_tile: Callable[[int, int], None] | None,
        out_dtype: torch.dtype | None,
        anchor: bool,
    ) -> tuple[torch.Tensor, bool]:
        """The tiler's result, and whether the model's mean anchoring was done on the device.

        With ``anchor``, a model's ``mean_anchor`` off the CPU is the tiler's ``finish``
        (it runs only where the image runs in one piece).  It counts only if the attempt
        that ran it is the one whose output is returned: an out-of-memory error in it or
        after it makes the tiler start again in tiles, which run the network again.
        """
        sigma = self.model.mean_anchor if anchor else None
        finish = None
        anchored = False
        if sigma is not None and self._anchor_on_device:
            run = tile_fn

            def tile_fn(*args: Any) -> torch.Tensor:
                nonlocal anchored
                anchored = False  # a new attempt (or the memory probe) of the tiler
                return run(*args)

            def finish(y: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
                nonlocal anchored
                y = anchor_tensor(y, image, sigma)
                anchored = True
                return y

        out = self.policy.upscale(
            x,
            tile_fn,
            scale=self.model.scale,
            device=self.compute.device,
            size=self.model.size,
            prepare=self.model.image_stats,
            out_dtype=out_dtype,
            on_tile=self._seams_watched(on_tile),
            tileable=self._tileable,
            finish=finish,
            on_shrink=self._tiles_shrunk(),
        )
        return out, anchored

    def _tiles_shrunk(self, unit: int = 1) -> ShrinkFn:
        """The tile policy's ``on_shrink``: warns once, the first time an out-of-memory
        backoff cuts tiles below 4 × the overlap (``TilePolicy.below_overlaps``), that the
        run goes on in them and how much more each pixel then costs.  ``unit``: input
        pixels per unit of the policy's sizes (a PCSR packing's ``q``).  Tiles that small
        still match the whole image's result (the part kept of each is further from its
        edges, not nearer); what they cost is time: with the pocketsr-compact-x4 network,
        34-pixel tiles at an overlap of 16 took 258 s on a 48x40 image, 5 s in 40-pixel
        ones, both within 1 level of the image run whole."""

        def shrunk(side: int, tried: tuple[int, ...]) -> None:
            if self._small_tiles_told:
                return
            self._small_tiles_told = True
            overlap = self.policy.overlap
            times = round((side / max(side - 2 * overlap, 1)) ** 2)
            self._warn(
                f"{self.model.name} ran out of memory on {self.compute.device} in "
                f"{tried[-1] * unit}-pixel tiles and goes on in {side * unit}-pixel tiles, "
                f"less than 4 × {TILE_OVERLAP} ({overlap * unit}): each pixel is computed "
                f"about {times} times over (at most 4 in tiles of {4 * overlap * unit}), "
                f"so this run is much slower; {memory_remedy(self.compute.device)}"
            )

        return shrunk

    def _seams_watched(
        self, on_tile: Callable[[int, int], None] | None
    ) -> Callable[[int, int], None] | None:
        """``on_tile``, also warning once, when an image is cut into tiles, that the
        overlap is below the model's :attr:`~ModelDescriptor.seamless_overlap`.

        Only a cut image is told of: one that runs whole (``--tile 0``, a tile larger
        than the image, ``auto`` on a small one) has no seams whatever the overlap.  (The
        tiler reports each batch with the plan's tile count, after its pass: the
        warning comes with the image's first tiles.)
        """
        need = self.model.seamless_overlap
        if need is None or self.overlap >= need or self._seams_told:
            return on_tile

        def watched(done: int, total: int) -> None:
            if total > 1 and not self._seams_told:
                self._seams_told = True
                self._warn(self._seams_advice(need))
            if on_tile is not None:
                on_tile(done, total)

        return watched

    def _seams_advice(self, need: int) -> str:
        """Why an overlap below ``need`` draws seams (may draw them, for an overlap that
        is derived, not measured: ``ModelDescriptor.overlap_derived``), and what to use
        instead: a larger overlap (and tile), or, where the overlap is the model's own cut
        down to fit a small fixed tile (:func:`own_overlap`), a larger tile."""
        tile = self._tile
        # A derived overlap is an estimate for a shape nobody measured: it may be wider
        # than the model needs, so neither the need nor the seams are stated as facts.
        seams = (
            f"{self.model.name} is estimated to need: its tiles may differ from the whole "
            "image's result along their seams; use"
            if self.model.overlap_derived
            else f"{self.model.name} needs: its tiles differ from the whole image's result "
            "along their seams; use"
        )
        whole = f"for seamless tiles, or {TILE.given(0)} to run images whole"
        if not self._overlap_given:
            return (
                f"{TILE.given(tile)} leaves room for an overlap of {self.overlap} pixels (a "
                f"quarter of a tile), less than the {need} pixels {seams} "
                f"{TILE.given(4 * need)} or more {whole}"
            )
        wider = f" and {TILE.given(4 * need)} or more" if tile and tile < 4 * need else ""
        return (
            f"{TILE_OVERLAP.given(self.overlap)} is less than the {need} pixels {seams} "
            f"{TILE_OVERLAP.given(need)} or more{wider} {whole}"
        )

    # -- image level --------------------------------------------------------------------
    def _input(self, plane: np.ndarray, peak: float) -> torch.Tensor:
        """The network's input for ``plane`` (see :func:`_to_tensor`): on the compute
        device when it is not the CPU and the float image takes at most 1/8 of the memory
        free there, so that 8-bit samples cross (a quarter of the bytes) and no host pass
        converts them; else on the CPU, from where the tiler sends each tile."""
        device = self.compute.device
        if device.type != "cpu":
            free = free_bytes(device)
            if free is not None and 8 * 4 * plane.size > free:
                device = torch.device("cpu")
        return _to_tensor(plane, peak, device)

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """``H x W x C`` uint8/uint16 (C in 1..4) -> ``H*s x W*s x C`` of the same dtype."""
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"expected H x W x C with C in 1..4, got shape {pixels.shape}")
        if pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")
        if pixels.shape[2] in (2, 4):  # no hidden colour bleeds into the edges drawn
            pixels = fill_hidden_colour(pixels)
        if self._upscale_uint8 is not None and pixels.dtype == np.uint8:
            out = self._upscale_uint8(pixels)
            if pixels.shape[2] in (2, 4) and getattr(self.model.module, "kernel", "") != "bicubic":
                # Alpha is bicubic on every path: Lanczos' ringing put alpha 4-8 into the
                # transparent side of an edge and 247-250 into its opaque side.
                alpha = np.ascontiguousarray(pixels[..., -1:])
                out[..., -1:] = self._alpha.upscale_uint8(alpha)
            if on_tile is not None:
                on_tile(1, 1)
            return out
        if pixels.shape[2] in (3, 4) and _is_neutral(pixels):
            # A black-and-white photo saved in colour: run as the gray image (and alpha) it
            # is, so that the network draws no colour fringes into it (the default model's
            # reach 31 levels on a grey edge) and the host's work on it (the fold, the mean
            # anchoring) is done once, then given back with the three equal channels it had.
            return _as_neutral(self._upscale_pixels(pixels[..., 2:], on_tile))
        return self._upscale_pixels(pixels, on_tile)

    def _upscale_pixels(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None
    ) -> np.ndarray:
        """:meth:`upscale` through the network, of pixels checked and filled: gray (and
        alpha) run as R = G = B and folded back, colour as it is."""
        wide = pixels.dtype == np.uint16
        peak = 65535.0 if wide else 255.0
        out_dtype = torch.int32 if wide else torch.uint8
        channels = pixels.shape[2]
        gray = channels in (1, 2)
        x = self._input(pixels[..., :1] if gray else pixels[..., :3], peak)
        if gray:
            x = x.expand(-1, 3, -1, -1).contiguous()
        # This image's own answer, read below: another thread's image may end meanwhile.
        y, anchored = self._upscale_tensor(x, on_tile, out_dtype, anchor=True)
        self._anchored = anchored
        if gray:  # the model saw R = G = B; fold its answer back to one channel
            y = _fold_to_gray(y)
        planes = [y]
        if channels in (2, 4):
            planes.append(self._upscale_alpha(pixels[..., -1:], tuple(y.shape[-2:]), out_dtype))
        if len(planes) > 1:
            y = torch.cat(planes, dim=1)
        out = y[0].permute(1, 2, 0).numpy()  # a view when y is channels-last (the usual)
        out = np.ascontiguousarray(out.astype(pixels.dtype, copy=False))
        if self.model.mean_anchor is not None and not anchored:  # on the host
            anchor_means(out, pixels, self.model.mean_anchor, 1 if gray else 3)
        return out

    def _upscale_alpha(
        self, alpha: np.ndarray, size: tuple[int, ...], out_dtype: torch.dtype
    ) -> torch.Tensor:
        """The alpha plane ``H x W x 1`` (uint8/uint16) drawn at ``size`` = ``(H', W')`` as
        a ``(1, 1, H', W')`` CPU tensor of ``out_dtype``, with the one bicubic filter alpha
        gets on every path (Keys' cubic, a = -0.5, :class:`~pocketsr_cli.archs.resize.Resize`):
        at a whole factor through it; at a PCSR network's fractional one (no whole factor
        gives ``size``) through torch's antialiased bicubic, the same kernel at any size (8-bit
        alpha in 8 bits, no float copy of the output).  Torch's plain bicubic (a = -0.75)
        drew PCSR's alpha at -s 3 with 5 more levels of overshoot along an edge."""
        h, w = alpha.shape[:2]
        peak = 65535.0 if alpha.dtype == np.uint16 else 255.0
        scale = size[0] // h
        if (h * scale, w * scale) == tuple(size):
            resize = self._alpha if scale == self._alpha.scale else Resize("bicubic", scale)
            return self._alpha_policy.upscale(
                _to_tensor(alpha, peak), resize, scale=scale, device="cpu", out_dtype=out_dtype
            )
        interpolate = torch.nn.functional.interpolate
        if alpha.dtype == np.uint8:
            alpha8 = torch.from_numpy(np.ascontiguousarray(alpha)).reshape(1, 1, h, w)
            return interpolate(
                alpha8, size=size, mode="bicubic", align_corners=False, antialias=True
            )
        y = interpolate(
            _to_tensor(alpha, peak),
            size=size,
            mode="bicubic",
            align_corners=False,
            antialias=True,
        )
        return y.mul_(peak).round_().clamp_(0, peak).to(out_dtype)


def uint8_path(
    model: ModelDescriptor, device: torch.device, ensemble: Ensemble
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The path an :class:`Upscaler` of ``model`` on ``device`` with ``ensemble`` sends
    8-bit images through whole: the model's own (``upscale_uint8``) on the CPU without an
    ensemble (which must transform what the network sees); None: the network."""
    return model.upscale_uint8 if device.type == "cpu" and not ensemble else None


class _RoutingCount:
    """The heavy-path share of one image's tiles, the tiler's memory probe left out.

    The probe's calls come before the first tile's, and the tiler reports each batch of
    tiles (``on_tile``) right after the one call that ran it: only that call counts.
    (Overlapping tile borders are counted in each tile that computes them.)
    """

    def __init__(
        self,
        module: torch.nn.Module,
        fn: Callable[..., torch.Tensor],
        on_tile: Callable[[int, int], None] | None,
    ) -> None:
        self._module, self._fn, self._on_tile = module, fn, on_tile
        self._last = (0, 0)
        self.heavy = self.total = 0

    @property
    def heavy_fraction(self) -> float:
        return self.heavy / self.total if self.total else 0.0

    def fn(self, *args: Any) -> torch.Tensor:
        before: RoutingStats = self._module.total_stats  # type: ignore[assignment]
        y = self._fn(*args)
        after: RoutingStats = self._module.total_stats  # type: ignore[assignment]
        self._last = (after.heavy - before.heavy, after.total - before.total)
        return y

    def on_tile(self, done: int, total: int) -> None:
        self.heavy += self._last[0]
        self.total += self._last[1]
        self._last = (0, 0)
        if self._on_tile is not None:
            self._on_tile(done, total)


class _HalfCount:
    """Whether some of one image's tiles were drawn in half precision (by a network pass
    that gave finite values, ``Upscaler._half_passes``, the calling thread's own, so
    that another thread's image on the same upscaler does not count), the tiler's memory
    probe left out, as :class:`_RoutingCount` leaves it out: only the call right before
    each ``on_tile`` counts.  Only the tiles of the tiler's last attempt count: one that
    ran out of memory is started over (its first report is of fewer tiles than the last
    one's, or of another total), and what it drew is thrown away."""

    def __init__(
        self,
        upscaler: Upscaler,
        fn: Callable[..., torch.Tensor],
        on_tile: Callable[[int, int], None] | None,
    ) -> None:
        self._upscaler, self._fn, self._on_tile = upscaler, fn, on_tile
        self._last = False
        self._total = 0
        self.drew = False  # some tile of the image was drawn in half precision
        self.done = 0  # the tiles reported done so far (by the tiler's last attempt)

    def fn(self, *args: Any) -> torch.Tensor:
        before = self._upscaler._half_passes
        y = self._fn(*args)
        self._last = self._upscaler._half_passes > before
        return y

    def on_tile(self, done: int, total: int) -> None:
        if done <= self.done or total != self._total:  # a new attempt of the tiler
            self.drew = False
        self.drew |= self._last
        self._last = False
        self.done, self._total = done, total
        if self._on_tile is not None:
            self._on_tile(done, total)


def own_overlap(model: ModelDescriptor, tile: int | None = None) -> int:
    """The overlap tiles of ``model`` share when a run names none: its
    :attr:`~pocketsr_cli.descriptor.ModelDescriptor.seamless_overlap`, at least
    :data:`~pocketsr_cli.tiling.DEFAULT_OVERLAP` (16, the default model's, and the fixed
    default of earlier versions).  With a fixed ``tile`` side it is at most a quarter of
    it, so that the overlaps take at most half a tile (as ``--tile N`` must), but never
    below the default: ``--tile 64`` runs a model that needs 32 with 16, as before, and
    the upscaler warns of the seams when it cuts an image.
    """
    own = max(DEFAULT_OVERLAP, model.seamless_overlap or 0)
    if tile:
        return min(own, max(DEFAULT_OVERLAP, tile // 4))
    return own


def _counted_after(
    on_tile: Callable[[int, int], None] | None, before: int
) -> Callable[[int, int], None] | None:
    """``on_tile`` told of each tile as the ``before + done``-th of ``before + total``: an
    image drawn again goes on from the tiles its first drawing reported."""
    if on_tile is None or before == 0:
        return on_tile
    return lambda done, total: on_tile(before + done, before + total)


def _guarded(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn``, each tile's output then chroma-guarded against the tile's input
    (``chroma.clamp_chroma``, in place, on the tile's device, before the tiler blends and
    rounds it): the model's ``chroma_guard``.  The tiler's memory probe runs it too, so
    tiles are sized with its buffers counted."""

    def tile_fn(x: torch.Tensor, *rest: Any) -> torch.Tensor:
        y = fn(x, *rest)
        return clamp_chroma(y, x) if x.shape[1] == 3 else y

    return tile_fn


def _is_neutral(pixels: np.ndarray) -> bool:
    """Whether an ``H x W x C`` colour image (C 3 or 4) has R = G = B at every pixel: a
    gray image stored as colour.  A strided sample is compared first, so that a colour
    image costs almost nothing; only a neutral-looking one is compared in full."""
    for view in (pixels[::16, ::16], pixels):
        r = view[..., 0]
        if not (np.array_equal(r, view[..., 1]) and np.array_equal(r, view[..., 2])):
            return False
    return True


def _as_neutral(out: np.ndarray) -> np.ndarray:
    """A gray ``H x W x 1`` or gray-and-alpha ``H x W x 2`` result as the colour image
    it came from: ``H x W x 3`` or ``H x W x 4`` with R = G = B (one OpenCV merge, a
    millisecond for a 4K 8-bit result)."""
    planes = [out[..., 0]] * 3 + [out[..., c] for c in range(1, out.shape[2])]
    return opencv().merge(planes).reshape(*out.shape[:2], len(planes))


def _fold_to_gray(y: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """``(1, 3, H, W)`` integer result -> ``(1, 1, H, W)`` of its dtype: the rounded mean of
    the three channels, computed ``rows`` output rows at a time so that no float copy of
    the whole output is ever held (a 4K gray result: 4 MB of floats at a time, not 100 MB).
    """
    out = torch.empty((1, 1, *y.shape[-2:]), dtype=y.dtype)
    for top in range(0, y.shape[-2], rows):
        band = y[:, :, top : top + rows].float().mean(dim=1, keepdim=True)
        out[:, :, top : top + rows] = band.round_().to(y.dtype)
    return out


def _to_tensor(plane: np.ndarray, peak: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x C`` uint8/uint16 samples -> ``(1, C, H, W)`` float32 ``samples / peak`` on
    ``device``, laid out channels-last.  8-bit samples travel as they are and become
    floats where they arrive, in one pass and an in-place scale (16-bit ones are
    converted on the host first: torch's uint16 kernels are few)."""
    if plane.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(plane)).to(device).to(torch.float32)
    else:
        t = torch.from_numpy(plane.astype(np.float32)).to(device)
    return t.div_(peak).permute(2, 0, 1).unsqueeze(0)
