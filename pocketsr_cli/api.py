"""The Python API: open a model once, then upscale images, files and folders with it.

Example::

    import numpy as np
    from PIL import Image

    from pocketsr_cli import Upscaler

    up = Upscaler("pocketsr-compact", scale=4)     # resolves (downloads) the model once
    big = up.upscale(Image.open("photo.jpg"))      # PIL in -> PIL out (same mode family)
    arr = up.upscale(np.zeros((64, 64, 3), np.uint8))  # numpy RGB in -> numpy RGB out
    up.upscale_file("photo.jpg", "photo_x4.jpg")   # atomic write, EXIF/ICC/XMP kept
    for result in up.upscale_folder("shoot/", "upscaled/", recursive=True):
        print(result.job.display, result.status, result.error or "")

Contracts:

* Numpy arrays are ``H x W x C`` (C in 1..4) or ``H x W``, dtype uint8 or uint16, with
  channels in **RGB(A) order, not OpenCV's BGR**: convert with
  ``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)`` first.  The result has the input's dtype,
  number of dimensions and channels.
* One :class:`Upscaler` holds one network on one device; the calls are not thread-safe
  (give each thread its own instance).
* Nothing here prints.  Warnings (a half-precision NaN fallback, a format switch, an
  animated file of which only the first frame was upscaled, outputs made with other
  settings that a folder run kept, sub-folders a folder run without ``recursive=True``
  left out) go to ``on_warning``, by default Python's
  :func:`warnings.warn`; except that in :meth:`Upscaler.upscale_folder` what is said of
  one file (its format switch, its animation) is in its ``Result.warnings``, and only what
  is said of the run goes to ``on_warning``.
* Errors are :mod:`pocketsr_cli.errors` types: :class:`~pocketsr_cli.errors.ModelError`
  (unknown model, missing weights), :class:`~pocketsr_cli.errors.DeviceError` (bad
  device or precision), :class:`~pocketsr_cli.errors.ImageReadError` /
  :class:`~pocketsr_cli.errors.ImageWriteError` (files).  Only :meth:`upscale_folder`
  never raises for one bad file: that file's ``Result`` has status ``"failed"``.

Heavy imports (torch) happen when an :class:`Upscaler` is made, not when this module is
imported.  This is the public face of :class:`pocketsr_cli.inference.Upscaler`, the
low-level numpy engine the pipeline drives.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from pocketsr_cli.atomicfile import TempSweeper, folder_write_problem
from pocketsr_cli.claims import sweep_stale_claims
from pocketsr_cli.errors import (
    ImageReadError,
    ImageWriteError,
    OutOfMemoryError,
    UsageError,
    first_line,
    windows_hint,
)
from pocketsr_cli.pipeline import NullReporter

if TYPE_CHECKING:
    from PIL import Image

    from pocketsr_cli.ensemble import Ensemble
    from pocketsr_cli.imageio import DecodedImage, OutputPlan
    from pocketsr_cli.pipeline import Result, Summary, Variant
    from pocketsr_cli.sizing import Target

__all__ = ["FolderRun", "Upscaler"]

# Pillow's 16-bit gray modes and their samples' byte order: each comes back in its own.
_PIL_MODES_16 = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}
# Pillow modes that are upscaled as they are; anything else is converted first.
_PIL_DIRECT = ("RGB", "RGBA", "L", "LA", *_PIL_MODES_16, "I")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _default_warning(message: str) -> None:
    """``warnings.warn``, attributed to the caller's line that led to it: the frame that
    called into this package (the one past its outermost frame), however deep in it the
    warning was made (a file's notes, the engine's fp32 fallback) and whatever other
    library's frames lie between (torch's ``inference_mode`` wraps the engine's forward
    pass), so that Python's ``file:line`` and its filters see the caller's code.  Made
    where no caller's frame is (a pipeline thread): this one's."""
    level, caller, frame = 2, 2, sys._getframe(1)
    while frame.f_back is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            caller = level + 1
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=caller)


class Upscaler:
    """A model resolved once, ready to upscale PIL images, numpy arrays, files and folders.

    Args:
        model: a registry name (``pocketsr-compact``, ``pocketsr-compact-x2``,
            ``bicubic``...) or a weights file; None: the default model.
        scale: the output factor, as ``pocketsr upscale -s``: the model's ×N variant, or
            its nearest larger one with the result resized to ×N.  None: the model's own.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (half precision falls back to
            fp32 when it gives NaN/inf, with a warning).
        tile: tile side in input pixels, ``"auto"`` (fit free memory) or 0 (whole image);
            a side must be at least 16 and 4 × ``tile_overlap`` (64 with the default).
        tile_overlap: as ``--tile-overlap``: the context pixels, 0 to 256, each tile shares
            with its neighbours, feather-blended.  None (or ``"auto"``, in any case, as
            each word an option here takes): the model's own (its manifest's
            ``overlap``: 16 for the default model, 40 for realesrgan-x4plus), at least 16,
            and at most a quarter of a fixed ``tile`` (the overlap in use is
            :attr:`tile_overlap`).  With the model's own or more tiles match the whole
            image's result to within a level or two; with less they draw seams, and the
            first image cut into tiles says so to ``on_warning`` (an image that runs whole
            has no seams).
        ensemble: ``"none"``, ``"pad"`` (GenDR-Pix's two padded passes, blended by
            ``ensemble_weight``; twice the time) or ``"flip8"`` (the eight flips and
            rotations, averaged; eight times); see :mod:`pocketsr_cli.ensemble`.
            ``True`` means ``"pad"``.
        ensemble_weight: ``pad``'s ω in ``ω·A + (1 − ω)·B``, 0 to 3; None: 0.5.
        offline: never touch the network (weights must be on disk already).
        allow_unverified: as ``--allow-unverified``: fetch (or take from the cache) weights
            whose publisher gives no SHA-256, and pin the digest they arrived with; every
            later load is held to it (:mod:`pocketsr_cli.weights.trust`).
        trust_pickle: as ``--trust-pickle``: read a weights pickle that needs code to load
            (after its digest is checked), once, into a safetensors copy used from then on.
        on_warning: receives each warning line; None: :func:`warnings.warn`.
        outscale: as ``--outscale``: the output factor (0.01 to 64), reached by
            resizing the variant's result, or drawn at that factor by a PCSR model (>= 1).
        pcsr_k / adaptive: as ``--pcsr-k`` / ``--adaptive``: a PCSR model's routing
            (after each image, :attr:`heavy_fraction` is the share of heavy pixels).
        compile: as ``--compile``: run the network through ``torch.compile`` (faster on
            GPUs for long runs, after a warm-up per new image size that
            :attr:`compile_seconds` adds up; a network that cannot be compiled runs as it
            is, with a warning).

    Opening one makes glibc keep freed memory for reuse in this process, as the CLI does
    (:func:`pocketsr_cli.hostmem.retain_freed_memory`: up to 1 GiB held between images, so
    large CPU tensors cost no page faults; ``POCKETSR_KEEP_FREED_MEMORY=0`` turns it off).

    Raises:
        ModelError: unknown model, weights that cannot be had or loaded, no such scale.
        DeviceError: unknown or unavailable device, unknown precision.
        UsageError: a bad ``tile``, ``tile_overlap``, ``ensemble`` or ``pcsr_k`` value
            (a ``tile`` below 4 × ``tile_overlap`` too), an ``outscale`` outside 0.01 to
            64, a flag (``offline``, ``adaptive``...) that is not True or False, an
            ``on_warning`` that is not
            callable, a ``model`` with a NUL character; ``pcsr_k`` or
            ``adaptive`` with a model that is not PCSR; ``POCKETSR_CPU_BF16`` or
            ``POCKETSR_KEEP_FREED_MEMORY`` set to neither a yes nor a no.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        scale: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        tile: str | int = "auto",
        tile_overlap: int | str | None = None,
        ensemble: str | bool = "none",
        ensemble_weight: float | None = None,
        offline: bool = False,
        allow_unverified: bool = False,
        trust_pickle: bool = False,
        on_warning: Callable[[str], None] | None = None,
        outscale: float | None = None,
        pcsr_k: float | None = None,
        adaptive: bool = False,
        compile: bool = False,
    ) -> None:
        from pocketsr_cli import sizing
        from pocketsr_cli.cli._options import MAX_OVERLAP, tile_side, upscaler_spec
        from pocketsr_cli.ensemble import Ensemble
        from pocketsr_cli.factory import open_upscaler, routing_k
        from pocketsr_cli.hostmem import retain_freed_memory
        from pocketsr_cli.pipeline import Variant
        from pocketsr_cli.provenance import tile_label

        if on_warning is not None and not callable(on_warning):
            raise UsageError(
                f"on_warning must be a callable taking each warning's text, not {on_warning!r}"
            )
        self._warn = on_warning or _default_warning
        # As the CLI does at start: without it every large CPU tensor of every image is
        # mapped and faulted in afresh (a 4K upscale on the CPU about 1.5x slower).
        retain_freed_memory()
        if scale is not None:
            scale = _whole(scale, "scale", 1, 16)
        if outscale is not None:
            # Numpy's numbers count (a factor computed with numpy is a np.float32 or
            # np.int64), and become Python's, which the output's JSON record can hold.
            if (
                isinstance(outscale, bool)
                or not isinstance(outscale, numbers.Real)
                or not math.isfinite(outscale)
            ):
                raise UsageError(f"outscale must be a finite number, not {outscale!r}")
            outscale = float(outscale)
            if not sizing.OUTSCALE_MIN <= outscale <= sizing.OUTSCALE_MAX:
                raise UsageError(
                    f"outscale must be a factor from {sizing.OUTSCALE_MIN:g} to "
                    f"{sizing.OUTSCALE_MAX:g}, not {outscale:g}"
                )
        pcsr_k = routing_k(pcsr_k)
        offline, allow_unverified, trust_pickle, adaptive, compile = (
            _flag(offline, "offline"),
            _flag(allow_unverified, "allow_unverified"),
            _flag(trust_pickle, "trust_pickle"),
            _flag(adaptive, "adaptive"),
            _flag(compile, "compile"),
        )
        for option, value in (("device", device), ("precision", precision)):
            if not isinstance(value, str):
                raise UsageError(f"{option} must be a string such as 'auto', not {value!r}")
        # "auto" in any case, as --tile-overlap, tile, precision, ensemble and device take
        # their words; a number is a number, not its text.
        auto = isinstance(tile_overlap, str) and tile_overlap.strip().lower() == "auto"
        overlap = (
            None
            if tile_overlap is None or auto
            else _whole(tile_overlap, "tile_overlap", 0, MAX_OVERLAP)
        )
        side = tile_side(tile, overlap)  # the --tile reading; checked before any loading
        self._ensemble = Ensemble.of(ensemble, ensemble_weight)
        spec = upscaler_spec(
            device,
            precision,
            side,
            overlap,
            compile=compile,
            offline=offline,
            allow_unverified=allow_unverified,
            trust_pickle=trust_pickle,
        )
        family = spec.family(None if model is None else _path_text(model, "model"))
        target = sizing.target_from_options(outscale=outscale)
        plan = sizing.plan_run(
            family.name, family.scales, family.default_scale, scale=scale, target=target
        )
        (run_scale,) = plan.scales or (family.default_scale,)
        desc = family.load(run_scale)
        native, routing = _pcsr_options(desc, plan.target, pcsr_k, adaptive)
        if plan.note is not None and native is None:
            self._warn(plan.note)
        engine = open_upscaler(
            desc,
            spec,
            ensemble=self._ensemble,
            on_warning=self._warn,
            outscale=native,
            routing=routing,
        )
        compute = engine.compute
        self._variant: Variant = Variant(
            engine, model=desc.name, sha256=desc.sha256, compute=str(compute)
        )
        self._target: Target = plan.target
        factor = plan.target.value
        self._scale: float = int(factor) if factor.is_integer() else factor
        self._engine = engine
        self._compute = compute
        self._tile = tile_label(side, [engine.overlap])  # the record's, as the CLI's
        # upscale_file: each output folder swept once (temporary files, stale claims)
        self._sweeper = TempSweeper(sweep_stale_claims)

    # -- properties ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The network that runs (``pocketsr-compact-x4``, ``bicubic``...)."""
        return self._variant.model

    @property
    def scale(self) -> float:
        """The output factor: every output is this many times its input's size (an
        integer unless ``outscale`` made it a fraction)."""
        return self._scale

    @property
    def heavy_fraction(self) -> float | None:
        """For a PCSR model, the share of the last image's output pixels that took the
        heavy path; None for other models and before any image."""
        return self._engine.heavy_fraction

    @property
    def compile_seconds(self) -> float:
        """With ``compile=True``: seconds spent so far in forward passes that compiled (the
        warm-up, an upper bound); ``0.0`` otherwise."""
        return self._engine.compile_seconds

    @property
    def tile_overlap(self) -> int:
        """The context pixels tiles share: ``tile_overlap`` as given, or the model's own
        (``tile_overlap=None``, the default)."""
        return self._engine.overlap

    @property
    def device(self) -> str:
        """Where it runs, as torch names it (``cpu``, ``cuda:0``, ``mps``)."""
        return str(self._compute.device)

    @property
    def precision(self) -> str:
        """``fp32``, ``fp16`` or ``bf16``: what ``precision="auto"`` chose, or ``fp32`` once
        a half-precision pass gave NaN/inf and every later one runs in fp32."""
        return "fp32" if self._engine.fell_back_to_fp32 else self._compute.precision

    @property
    def ensemble(self) -> Ensemble:
        """The self-ensemble every image runs with (``.mode``, ``.weight``; falsy for none)."""
        return self._ensemble

    def __repr__(self) -> str:
        if not hasattr(self, "_compute"):  # its __init__ raised (a traceback's locals)
            return "Upscaler(<not opened>)"
        return f"Upscaler({self.name!r}, scale={self.scale}, device={self._compute})"

    # -- in memory -----------------------------------------------------------------------
    @overload
    def upscale(self, image: np.ndarray) -> np.ndarray: ...
    @overload
    def upscale(self, image: str | os.PathLike[str]) -> np.ndarray: ...
    @overload
    def upscale(self, image: Image.Image) -> Image.Image: ...

    def upscale(self, image: Any) -> Any:
        """Upscale one image by :attr:`scale`.

        * a PIL image -> a PIL image: RGB, RGBA, L, LA, I and the 16-bit gray modes (I;16,
          and I;16B, I;16L, I;16N in their byte order) keep their mode; other
          modes are converted first (P -> RGB or RGBA, 1 -> L, CMYK/YCbCr -> RGB) and come
          back in that mode.  A transparent colour (``info["transparency"]``: a PNG's tRNS
          key) becomes alpha, as when the file is read: an RGB, L or 1 image that has one
          comes back RGBA or LA.  A CMYK image is converted through its ICC profile (to
          sRGB) where it has one, as when its file is read.  Its ICC profile is copied to
          the result's ``info`` where it describes the result's pixels (gray or RGB), as a
          written file keeps it: a CMYK or Lab profile is not (the pixels are RGB now), nor
          an RGB one on gray pixels.  EXIF orientation is not applied (the pixels are taken
          as they are stored).
        * a numpy array (``H x W x C`` or ``H x W``, uint8/uint16 in either byte order,
          **RGB order**) -> an array of the same dtype and layout.
        * a path (a str, or any ``os.PathLike`` such as ``pathlib.Path``; a leading ``~``
          is the home folder, in every path argument here) -> the decoded
          file (EXIF orientation applied) upscaled, as a numpy RGB(A) array (gray files
          give ``H x W x 1``, gray with alpha ``H x W x 2``).

        Raises:
            TypeError: another kind of object, a numpy dtype other than uint8/uint16, or a
                float PIL image (mode F).
            ValueError: an array shape that is not an image.
            UsageError: an empty path, or one with a NUL character.
            ImageReadError: a path that cannot be read or decoded, or a PIL image whose
                pixels Pillow cannot load from its file (``Image.open`` reads lazily: a
                truncated or corrupt file is found here), or that was closed (its pixels
                freed by ``close()``, or its file closed before they were read).
            OutOfMemoryError: even the smallest tile does not fit, or the whole result
                does not.
        """
        if isinstance(image, (str, os.PathLike)):
            path = _path_text(image, "image")
            if not path.strip():
                raise UsageError("an empty path: name an image file")
            decoded = self._read(Path(path))
            return self._run(decoded.pixels)
        if isinstance(image, np.ndarray):
            return self._upscale_array(image)
        if _is_pil_image(image):
            return self._upscale_pil(image)
        hint = ""
        if isinstance(image, (bytes, bytearray, memoryview)):
            hint = " (a path is a str; an encoded file's bytes: Image.open(io.BytesIO(data)))"
        elif _is_tensor(image):
            hint = (
                " (a torch tensor: give its pixels as a numpy array, H x W x C: "
                "t.permute(1, 2, 0).cpu().numpy() for a C x H x W tensor, t.cpu().numpy() "
                "for an H x W x C one)"
            )
        elif callable(getattr(image, "read", None)):  # io.BytesIO, an open file
            hint = (
                " (a file object: give Image.open(f), or the file's path, here or to "
                "upscale_file())"
            )
        raise TypeError(
            f"expected a PIL image, a numpy array or a path, not {type(image).__name__}{hint}"
        )

    def _read(self, path: Path) -> Any:
        """``imageio.read_image(path)``, its notes (first frame of an animation...) sent to
        the warning callback, its errors naming the file."""
        from pocketsr_cli.imageio import read_image

        try:
            image = read_image(path)
        except ImageReadError as exc:
            raise ImageReadError(f"{path}: {exc}") from exc
        for message in image.warnings:
            self._warn(f"{path.name}: {message}")
        return image

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        from pocketsr_cli.memory import is_out_of_memory
        from pocketsr_cli.pipeline import resize_output

        if 0 in pixels.shape[:2]:
            raise ValueError(f"an image of {pixels.shape[1]}x{pixels.shape[0]} pixels has none")

        h, w = pixels.shape[:2]
        size = self._target.size_for(w, h)
        try:
            out = self._variant.upscaler.upscale(np.ascontiguousarray(pixels))
            return resize_output(out, size)
        except (RuntimeError, MemoryError) as exc:
            # The tiles back off by themselves (and raise OutOfMemoryError); what runs
            # outside them (an 8-bit resampler, the resize to the asked size) raises
            # torch's or numpy's own error, which is no internal failure.
            if not is_out_of_memory(exc):
                raise
            raise OutOfMemoryError(
                f"out of memory: a {w}x{h} image upscaled to {size[0]}x{size[1]} does not "
                "fit in the memory this process may use now (taken by other programs, "
                f"capped by a ulimit); {first_line(exc)}"
            ) from exc

    def _upscale_array(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.dtype.kind == "u" and pixels.dtype.itemsize == 2 and not pixels.dtype.isnative:
            # 16-bit samples in the other byte order (big-endian: a PGM or FITS file read
            # with numpy) are uint16 all the same: upscaled in the machine's order,
            # returned in theirs.
            return self._upscale_array(pixels.astype(np.uint16)).astype(pixels.dtype)
        if pixels.dtype not in (np.uint8, np.uint16):
            hint = ""
            if pixels.dtype.kind == "f":  # as a PIL mode F image is told
                hint = (
                    ": floats have no fixed range; scale them to 8 or 16 bits first, such "
                    "as (a.clip(0, 1) * 255).round().astype(np.uint8) for values in 0..1"
                )
            raise TypeError(f"expected uint8 or uint16 pixels, not {pixels.dtype}{hint}")
        if pixels.ndim == 2:
            return self._run(pixels[:, :, None])[:, :, 0]
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
            hint = ""
            if pixels.ndim == 3 and pixels.shape[0] in (1, 2, 3, 4):
                hint = " (channels come last: a C x H x W array is a.transpose(1, 2, 0))"
            elif pixels.ndim == 4 and pixels.shape[0] == 1:
                hint = " (one image, not a batch: a[0])"
            raise ValueError(
                f"expected H x W or H x W x C with C in 1..4, not {pixels.shape}{hint}"
            )
        return self._run(pixels)

    def _upscale_pil(self, im: Image.Image) -> Image.Image:
        from PIL import Image

        from pocketsr_cli.imageio import cmyk_to_rgb, icc_for_channels

        _load_pil(im)
        if im.mode == "F":
            raise TypeError(
                "a float image (PIL mode F) has no fixed range: convert it to 8 or 16 bits "
                "(L, I;16) first"
            )
        if im.mode == "CMYK":  # as when its file is read: through its profile, if any
            im = cmyk_to_rgb(im, im.info.get("icc_profile"))
        keyed = im.mode in ("1", "L", "RGB") and "transparency" in im.info
        if im.mode not in _PIL_DIRECT or keyed:
            # A colour key is transparency as a file's is (imageio.pillow_pixels): an
            # upscaled image keeps no pixel at exactly the key's value, so it becomes alpha.
            palette = getattr(im, "palette", None)
            has_alpha = (
                "transparency" in im.info
                or im.mode in ("PA", "RGBa", "La")
                or (im.mode == "P" and getattr(palette, "mode", "") == "RGBA")
            )
            gray = im.mode in ("1", "L", "La")
            im = im.convert(
                ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
            )
        mode = im.mode
        if mode == "I":  # 32-bit integer gray, as Pillow opens 16-bit PNGs
            values = np.asarray(im)
            low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
            if low < 0 or high > 65535:
                raise ValueError(
                    f"a 32-bit gray image (PIL mode I) with values from {low} to {high}, "
                    "outside 0..65535: scale it to 16 bits (I;16) first"
                )
            pixels = values.astype(np.uint16)
        elif mode in _PIL_MODES_16:
            pixels = np.asarray(im).astype(np.uint16)
        else:
            pixels = np.asarray(im)
        out = self._upscale_array(pixels)
        if mode in _PIL_MODES_16:
            samples = out.astype(_PIL_MODES_16[mode]).tobytes()
            result = Image.frombytes(mode, (out.shape[1], out.shape[0]), samples)
        elif mode == "I":
            result = Image.fromarray(out).convert("I")  # uint16 H x W -> "I;16" -> "I"
        else:
            result = Image.fromarray(out, mode=mode) if out.ndim == 3 else Image.fromarray(out)
        # Only a profile that describes the result's pixels: a CMYK or Lab one on the RGB
        # pixels converted from them would have them read as CMYK or Lab once saved.
        icc = icc_for_channels(im.info.get("icc_profile"), out.shape[2] if out.ndim == 3 else 1)
        if icc:
            result.info["icc_profile"] = icc
        return result

    # -- files ---------------------------------------------------------------------------
    def upscale_file(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        *,
        quality: int | None = None,
        keep_metadata: bool = True,
    ) -> Path:
        """Upscale the file ``src`` into ``dst``, atomically, and return the path written.

        The format follows ``dst``'s extension (``.jpg``, ``.png``, ``.webp``, ``.tif``,
        ``.bmp``); where it cannot hold the image (transparency in JPEG/BMP) PNG is
        written instead, beside ``dst`` with a ``.png`` extension, with a warning.  An
        alpha channel that is fully opaque is no transparency: it is left out there.
        ``quality`` is the JPEG/WebP quality (None: 95, and a lossless WebP written as
        WebP stays lossless, as ``--quality`` left out does).  EXIF,
        ICC and XMP are kept; with ``keep_metadata`` False, EXIF and XMP are dropped and
        the colour profile stays (as ``--strip-metadata``); pocketsr's record of how
        the file was made is written as the CLI writes it.  ``dst`` is replaced if it
        exists; it is never left half-written.  From the moment ``src`` is decoded until
        ``dst`` is written, ``dst``'s claim is held (:mod:`pocketsr_cli.claims`), as every
        ``pocketsr upscale`` run holds its outputs': while another process (a run, another
        :class:`Upscaler`) is writing ``dst``, it is refused at once, before upscaling, as
        a run skips such an output (``concurrent``), and neither replaces the other's
        file half-way.  The first file written into a folder removes the temporary files
        and the claims that killed runs left there (``atomicfile.sweep_stale_temps``,
        ``claims.sweep_stale_claims``; each folder once per :class:`Upscaler`).

        Raises:
            UsageError: ``dst`` has no known image extension, is ``src``, or either path is
                empty or has a NUL character; ``quality`` is not 1 to 100,
                ``keep_metadata`` not True or False.
            ImageReadError: ``src`` cannot be read or decoded.
            ImageWriteError: the output cannot be encoded or written, or another process
                is writing it right now (its message says so); said before the upscale
                where ``dst`` is a folder or its folder cannot be written (a file in its
                place, read-only, no permission).
        """
        from pocketsr_cli.imageio import (
            OUTPUT_FORMATS,
            drop_opaque_alpha,
            extension_for,
            format_from_name,
            plan_for,
        )

        src_text, dst_text = _path_text(src, "src"), _path_text(dst, "dst")
        if not src_text.strip() or not dst_text.strip():
            raise UsageError("an empty path: name the image file to read and the one to write")
        src, dst = Path(src_text), Path(dst_text)
        if quality is not None:
            quality = _whole(quality, "quality", 1, 100)
        keep_metadata = _flag(keep_metadata, "keep_metadata")
        if dst.is_dir():  # not "cannot tell the output format from 'out'" (or from '')
            raise ImageWriteError(
                f"cannot write {dst}: it is a folder; name the image file "
                f"(such as {dst / src.name})"
            )
        if not dst.suffix:  # not "unknown output format ''"
            *others, last = map(extension_for, OUTPUT_FORMATS)
            raise UsageError(
                f"cannot tell the output format from {dst.name!r}: the name has no "
                f"extension; end it in {', '.join(others)} or {last}"
            )
        try:
            fmt = format_from_name(dst.suffix)
        except ValueError as exc:
            raise UsageError(f"cannot tell the output format from {dst.name!r}: {exc}") from None
        if _same_file(src, dst):
            raise UsageError(f"{dst} is the input {src}: write the result to another file")
        # Said before the upscale, not found when writing after it (seconds, minutes).
        problem = folder_write_problem(dst.parent)
        if problem is not None:
            raise ImageWriteError(f"cannot write {dst}: {problem}")
        image, _ = drop_opaque_alpha(self._read(src), fmt)
        plan = plan_for(image, fmt, quality=quality)
        if plan.format != fmt:
            switched = dst.with_suffix(extension_for(plan.format))
            is_input = _same_file(src, switched)
            if is_input or switched.exists():
                what = "is the input" if is_input else "exists"
                raise UsageError(
                    f"{dst.suffix} cannot hold {src.name} (it is written as "
                    f"{plan.format.upper()}), and {switched} {what}: name a "
                    f"{extension_for(plan.format)} file to write it there"
                )
            dst = switched
        if dst.is_dir():
            raise ImageWriteError(f"cannot write {dst}: it is a folder; name the image file")
        for message in plan.warnings:
            self._warn(f"{src.name}: {message}")
        with _claimed(dst):
            self._write(src, dst, image, plan, quality, keep_metadata)
        return dst

    def _write(
        self,
        src: Path,
        dst: Path,
        image: DecodedImage,
        plan: OutputPlan,
        quality: int | None,
        keep_metadata: bool,
    ) -> None:
        """:meth:`upscale_file`'s work once ``dst`` is claimed: upscale ``image`` (``src``
        decoded), encode it as ``plan`` says and write it as ``dst`` with its record."""
        from pocketsr_cli import __version__, provenance
        from pocketsr_cli.imageio import (
            DEFAULT_QUALITY,
            embeds_provenance,
            encode_image,
            sidecar_written,
            write_atomic,
        )

        out = self._run(image.pixels)
        record = provenance.make_record(
            provenance.RunSettings(
                version=__version__,
                ensemble=self._ensemble,
                quality=DEFAULT_QUALITY if quality is None else quality,
                tile=self._tile,
            ),
            model=self._variant.model,
            model_sha256=self._variant.sha256,
            model_scale=self._variant.scale,
            routing=self._variant.routing,
            target=self._target.label,
            fmt=plan.format,
            lossless=plan.lossless,
            size=(out.shape[1], out.shape[0]),
            precision=self._variant.compute_for(image.pixels.dtype),  # uint8, fp32 after NaN
            source=src.name,
        )
        text = provenance.dumps(record)
        embedded = embeds_provenance(plan.format)
        notes: list[str] = []
        data = encode_image(
            out,
            plan,
            quality=quality,
            metadata=image.metadata if keep_metadata else image.metadata.colour_only(),
            provenance=text if embedded else None,
            notes=notes,
        )
        for note in notes:  # metadata the format has no room for
            self._warn(f"{src.name}: {note}")
        self._sweeper.sweep(dst.parent)
        with sidecar_written(dst, None if embedded else text) as place_record:
            write_atomic(dst, data)
            if not embedded:
                place_record()

    def upscale_folder(
        self,
        src_dir: str | os.PathLike[str],
        dst_dir: str | os.PathLike[str],
        *,
        recursive: bool = False,
        fmt: str | None = None,
        quality: int | None = None,
        keep_metadata: bool = True,
        overwrite: bool = False,
        encode_threads: int | None = None,
        suffix: str | None = None,
    ) -> FolderRun:
        """Upscale every image of ``src_dir`` into ``dst_dir`` (its tree mirrored), yielding
        one :class:`~pocketsr_cli.pipeline.Result` per file as each finishes.  Once the
        loop has run to its end, the generator's :attr:`FolderRun.summary` holds the run's
        totals, as the command line's ``--json`` summary line: among them
        ``leftovers_removed``, the temporary files killed runs had left in the output
        folders that this run removed.

        Behaves as ``pocketsr upscale SRC -o DST``: non-image files and earlier outputs
        are ``skipped``, existing outputs are kept (``skipped``) unless ``overwrite``, an
        unreadable or corrupt file is ``failed`` (``Result.error`` says why) and the
        others go on.  ``fmt`` is an output format (``jpg``, ``png``...; None: each
        input's own); ``quality`` as in :meth:`upscale_file`.  ``suffix``, as
        ``--suffix``, is added to each output's name (None: nothing), so that
        ``dst_dir`` may be ``src_dir``: ``suffix="_x4"`` writes ``a_x4.jpg`` beside
        ``a.jpg``, and a later run skips those.  ``encode_threads`` is how many images are
        encoded at once (None: a quarter of the CPUs, 1 to 4; see
        :func:`pocketsr_cli.pipeline.default_encode_threads`); outputs and the order of
        results are the same whatever it is.

        An existing output whose record shows other settings, or that has none, is kept
        too (``skipped``, ``reason_code`` ``different-settings`` or ``unrecorded``); once
        the loop has ended (run to its end, or closed), ``on_warning`` is told how many were,
        as the command line warns after its summary.

        It runs the CLI's pipeline (:func:`pocketsr_cli.pipeline.stream`): the next image
        is decoded and the previous one encoded and written while the model upscales, and
        each result is yielded once its file is written.  The model runs only while the
        loop asks for the next result, so the loop's body may use this :class:`Upscaler`
        too.  Leaving the loop early stops reading and upscaling once the generator is
        closed: at once where the ``for`` loop iterates over this call itself; one kept in
        a variable goes on reading ahead, holding the claims of the outputs it has started
        (another run skips them), until its ``close()`` (or ``contextlib.closing``) or its
        garbage collection.  An image already upscaled is still written (atomically), and
        no result is yielded for it.  Once an
        output fails because its disk is full, over quota or read-only, nothing more is
        upscaled: each input not finished is yielded as ``skipped`` (``stopped``; its
        ``reason`` says why).

        Raises:
            UsageError: by this call itself, before it returns the generator and before
                anything is read or written: ``src_dir`` is missing, holds no file or is
                a file itself (:meth:`upscale_file` upscales one), a
                folder's name is empty or has a NUL character, ``fmt`` is unknown (or no
                string), ``quality`` is not 1 to 100, ``recursive``, ``keep_metadata`` or
                ``overwrite`` is not True or False, ``suffix`` is no part of a name (a
                path separator, ``..``), ``encode_threads`` is not a whole number of at
                least 1, ``dst_dir`` is a file, an output would replace an input, or two
                inputs would be written to one output.
            KeyboardInterrupt: from the iterator, after the image being written is
                finished or cleaned up, and each input not finished is yielded as
                ``skipped`` (``interrupted``); from ``close()`` for a Ctrl-C while it
                winds the run down, once :attr:`FolderRun.summary` is set.
        """
        from pocketsr_cli import __version__, provenance
        from pocketsr_cli.cli._options import output_format
        from pocketsr_cli.imageio import DEFAULT_QUALITY
        from pocketsr_cli.jobs import Naming, check_output_folder, collect_jobs
        from pocketsr_cli.pipeline import Options, stream

        if encode_threads is not None:
            encode_threads = _whole(encode_threads, "encode_threads", 1)
        if quality is not None:
            quality = _whole(quality, "quality", 1, 100)
        recursive, keep_metadata, overwrite = (
            _flag(recursive, "recursive"),
            _flag(keep_metadata, "keep_metadata"),
            _flag(overwrite, "overwrite"),
        )
        texts = (_path_text(src_dir, "src_dir"), _path_text(dst_dir, "dst_dir"))
        if not all(text.strip() for text in texts):
            raise UsageError("an empty folder name: name a folder ('.' for this one)")
        source, out_dir = Path(texts[0]), Path(texts[1])
        if source.is_file():  # collect_jobs would take it, as the command line's INPUT
            raise UsageError(
                f"src_dir {source} is a file, not a folder: upscale one file with "
                f"upscale_file(src, dst), or name the folder it is in"
            )
        check_output_folder(out_dir)
        if fmt is not None and not isinstance(fmt, str):
            raise UsageError(f"fmt must be a format name such as 'jpg', not {fmt!r}")
        fmt_key = None if fmt is None else output_format(fmt)  # the --format reading
        if suffix is not None and not isinstance(suffix, str):
            raise UsageError(f"suffix must be a string such as '_x4', not {suffix!r}")
        naming = Naming(out_dir=out_dir, suffix=suffix, fmt=fmt_key, tag=self._target.label)
        # Sub-folders left out (recursive=False) are said of the run, as the CLI says them.
        jobs = collect_jobs([source], naming, recursive=recursive, on_warning=self._warn)
        options = Options(
            fmt=fmt_key,
            quality=quality,
            keep_metadata=keep_metadata,
            overwrite=overwrite,
            target=self._target,
            encode_threads=encode_threads,
            record=provenance.RunSettings(
                version=__version__,
                ensemble=self._ensemble,
                quality=DEFAULT_QUALITY if quality is None else quality,
                tile=self._tile,
            ),
        )
        # Returned, not yielded from: a generator's body, these checks included, would
        # run only at the first next(), out of a caller's try around this call.
        reporter = _WarningsOnly(self._warn)
        return FolderRun(stream(jobs, [self._variant], options, reporter), reporter)


class FolderRun(Generator["Result", None, None]):
    """What :meth:`Upscaler.upscale_folder` returns: a generator of the run's results, in
    order (iterate it, ``close()`` it, as any generator), which holds the run's
    :class:`~pocketsr_cli.pipeline.Summary` once it has ended: run to its end, or closed
    (:attr:`summary`)."""

    def __init__(self, results: Generator[Result, None, None], reporter: _WarningsOnly) -> None:
        self._results = results
        self._reporter = reporter

    @property
    def summary(self) -> Summary | None:
        """The run's totals, as the command line's ``--json`` summary line gives them
        (``count("ok")``, ``seconds``, ``interrupted``, ``stopped``...), among them
        ``leftovers_removed``: the temporary files that killed runs had left in the output
        folders and this run removed.  None until the loop has ended: run to its end (after
        a Ctrl-C too: set before ``KeyboardInterrupt`` is raised), or closed before it
        (``close()``, ``contextlib.closing``), when it holds the totals of what was done,
        the images written as the run wound down included (no result was yielded for
        those), and ``closed`` is True (a Ctrl-C while it wound down sets ``interrupted``
        too, and ``close()`` then raises ``KeyboardInterrupt``).  Closed before its first
        result was asked for, nothing ran: it stays None."""
        return self._reporter.summary

    def send(self, value: None) -> Result:
        return self._results.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Result:
        return self._results.throw(typ, val, tb)

    def close(self) -> None:
        self._results.close()


def _pcsr_options(
    desc: Any, target: Target, pcsr_k: float | None, adaptive: bool
) -> tuple[float | None, Any]:
    """The factor a PCSR model draws natively (None: not PCSR, or below 1) and its routing
    (None: its own).  Raises UsageError for routing options with another model."""
    from pocketsr_cli.factory import routing_for

    routing = routing_for([desc], pcsr_k, adaptive)
    if desc.family != "pcsr":
        return None, None
    return (target.value if target.value >= 1 else None), routing


@contextlib.contextmanager
def _claimed(dst: Path) -> Iterator[None]:
    """``dst``'s claim held for the block (``claims.acquire``, as a run's writers take it).

    Raises:
        ImageWriteError: another process holds it (``claims.describe_busy`` says so), or
            it cannot be made (its folder or claim file cannot be created).
    """
    from pocketsr_cli import claims

    try:
        claim = claims.acquire(dst)
    except OSError as exc:
        reason = f"{exc.strerror or exc}{windows_hint(exc, dst)}"
        raise ImageWriteError(f"cannot write {dst}: {reason}") from exc
    if claim is None:
        raise ImageWriteError(f"cannot write {dst}: {claims.describe_busy(dst)}")
    try:
        yield
    finally:
        claim.release()


def _is_pil_image(obj: object) -> bool:
    """Whether ``obj`` is a PIL image, without importing Pillow for numpy or path inputs."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _is_tensor(obj: object) -> bool:
    """Whether ``obj`` is a torch tensor, without importing torch where nothing has."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _load_pil(im: Image.Image) -> None:
    """Load ``im``'s pixels (``Image.open`` reads only the header: the file is decoded
    here).

    Raises:
        ImageReadError: naming ``im``'s file (or "a PIL image"): the file is truncated or
            corrupt, or ``im`` was closed, its pixels freed by ``close()``, or its file
            closed (the end of its ``with Image.open(...)`` block) before they were read;
            Pillow itself raises a bare ``ValueError``, ``AssertionError`` or (under
            ``python -O``) ``AttributeError`` for those.
    """
    name = getattr(im, "filename", "") or "a PIL image"
    if getattr(im, "tile", None) and getattr(im, "fp", False) is None:
        raise ImageReadError(
            f"{name}: its file was closed (by close(), or at the end of its "
            "'with Image.open(...)' block) before its pixels were read: upscale it inside "
            "the block, or call its load() before closing it"
        )
    try:
        im.load()
    except (OSError, ValueError) as exc:  # ValueError: "Operation on closed image"
        raise ImageReadError(f"{name}: its pixels cannot be loaded: {first_line(exc)}") from exc


class _WarningsOnly(NullReporter):
    """A pipeline reporter that passes run-wide warnings on, and the one the command line
    ends with when outputs made otherwise were kept; it ignores progress."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self.summary: Summary | None = None  # the run's, once it has ended

    def warning(self, message: str) -> None:
        self._warn(message)

    def finished(self, summary: Summary) -> None:
        self.summary = summary
        if summary.conflicts_warning is not None:
            self._warn(summary.conflicts_warning)


def _whole(value: object, keyword: str, low: int, high: int | None = None) -> int:
    """``value`` as an int from ``low`` to ``high`` (None: no limit; ``scale``,
    ``tile_overlap``, JPEG/WebP ``quality``, ``encode_threads``; refused before any work).
    Numpy's integers count (``np.arange`` gives them), and become Python's, which the
    output's JSON record can hold; bools and floats do not."""
    whole = (
        int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None
    )
    if whole is None or whole < low or (high is not None and whole > high):
        bounds = f" from {low} to {high}" if high is not None else f", at least {low}"
        raise UsageError(f"{keyword} must be a whole number{bounds}, not {value!r}")
    return whole


def _flag(value: object, keyword: str) -> bool:
    """``value`` as a bool: True or False (numpy's too: ``np.bool_``), refused before any
    work otherwise; a string is truthy whatever it says, so ``overwrite="false"`` replaced
    every output, and ``keep_metadata="no"`` kept it."""
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{keyword} must be True or False, not {value!r}")
    return bool(value)


def _path_text(value: str | os.PathLike[str], keyword: str) -> str:
    """``value``, a str or any ``os.PathLike`` (``pathlib.Path``, a library's own path
    type), as the str path it names (``os.fspath``), for the ``keyword`` argument, with a
    leading ``~`` or ``~user`` read as that home folder (``os.path.expanduser``), as the
    shell reads the command line's: the OS calls take it as a folder named ``~``, which a
    written output would have made in the working folder.

    Raises:
        TypeError: not a path, or one that gives bytes.
        UsageError: a NUL character in it, which no file's name can hold (the OS calls
            refuse it with a bare ``ValueError``)."""
    # os.fspath's own TypeError lists bytes, which is refused here.
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        given = "bytes" if isinstance(text, bytes) else type(value).__name__
        raise TypeError(f"{keyword} must be a str path or an os.PathLike giving one, not {given}")
    if "\0" in text:
        raise UsageError(f"{keyword} {text!r} contains a NUL character, which no path can hold")
    return os.path.expanduser(text)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (by path, or a link to it)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
