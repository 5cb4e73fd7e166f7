"""Opening upscalers: one place from typed settings to a ready ``inference.Upscaler``.

``pocketsr upscale``, ``eval`` and ``bench`` and the Python API each say *how* models run
with one :class:`UpscalerSpec` (device, precision, tiling, compile, how weights may be
had) and open every model through it: :meth:`UpscalerSpec.family` /
:meth:`UpscalerSpec.resolve` find and load a model's descriptor
(``weights/resolve.py``), :func:`open_upscaler` wraps a descriptor in a
:class:`~pocketsr_cli.inference.Upscaler` (its :class:`~pocketsr_cli.devices.Compute`,
tile policy, self-ensemble, compile).

The spec holds typed values only.  Turning what a user typed (``--device cuda:1``,
``--tile auto``) into them is the faces' work: ``cli/_options.py`` for the command line,
``api.py`` for its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pocketsr_cli.ensemble import Ensemble

if TYPE_CHECKING:
    import torch

    from pocketsr_cli.archs.pcsr import Routing
    from pocketsr_cli.descriptor import ModelDescriptor
    from pocketsr_cli.devices import Compute
    from pocketsr_cli.inference import Upscaler
    from pocketsr_cli.weights.download import ProgressCallback
    from pocketsr_cli.weights.resolve import ModelFamily

PrecisionChoice = Literal["auto", "fp32", "fp16", "bf16"]
NO_ENSEMBLE = Ensemble()


@dataclass(frozen=True)
class UpscalerSpec:
    """How every model of a run is opened and run.

    Attributes:
        device: where the networks run (``devices.choose_device`` made it).
        precision: ``auto`` (chosen per model by ``devices.choose_precision``) or one.
        tile: tile side in input pixels; 0 the whole image; None sized from free memory
            (``--tile auto``).
        overlap: context pixels between tiles; None: each model's own, its
            ``seamless_overlap`` and at least 16 (``inference.own_overlap``).
        compile: run the networks through ``torch.compile``.
        cpu_bf16: let ``auto`` pick bf16 on a CPU for the models measured faster in it
            (``devices.choose_precision``); False keeps fp32 there (``pocketsr eval``).
        offline, allow_unverified, trust_pickle: how weights may be had
            (:func:`~pocketsr_cli.weights.resolve.open_family`).
    """

    device: torch.device
    precision: PrecisionChoice = "auto"
    tile: int | None = None
    overlap: int | None = None
    compile: bool = False
    cpu_bf16: bool = True
    offline: bool = False
    allow_unverified: bool = False
    trust_pickle: bool = False

    def compute(self, desc: ModelDescriptor) -> Compute:
        """The device and the precision ``desc`` runs at (``auto`` chosen for it)."""
        from pocketsr_cli.devices import compute_for

        return compute_for(self.device, self.precision, desc, cpu_bf16=self.cpu_bf16)

    def compute_label(self, desc: ModelDescriptor, ensemble: Ensemble = NO_ENSEMBLE) -> str:
        """What an upscaler of ``desc`` that :func:`open_upscaler` opens with this spec
        and ``ensemble`` says draws images before any is read
        (``pipeline.Variant.compute_label``: ``cuda fp16``; ``cpu uint8 (16-bit: fp32)``
        on a resampler's 8-bit path), told without opening one, so for a device this
        machine need not have (a Ray cluster's GPUs).  Where the precision depends on
        that device itself (``auto`` choosing bf16 on a CUDA GPU for a model not
        fp16-safe), this machine's answer is given."""
        from pocketsr_cli.devices import compute_label
        from pocketsr_cli.inference import uint8_path

        compute = self.compute(desc)
        uint8 = uint8_path(desc, compute.device, ensemble) is not None
        return compute_label(f"{compute.device} uint8" if uint8 else str(compute), str(compute))

    def family(self, ref: str | None, on_progress: ProgressCallback | None = None) -> ModelFamily:
        """Every variant of ``ref`` (None: the default model), as ``open_family`` gives them."""
        from pocketsr_cli.weights.resolve import open_family

        return open_family(
            ref,
            offline=self.offline,
            on_progress=on_progress,
            allow_unverified=self.allow_unverified,
            trust_pickle=self.trust_pickle,
        )

    def resolve(self, ref: str | None, scale: int | None = None) -> ModelDescriptor:
        """The model ``ref`` at ``scale`` (None: its own), as ``resolve_model`` loads it."""
        from pocketsr_cli.weights.resolve import resolve_model

        return resolve_model(
            ref,
            scale,
            offline=self.offline,
            allow_unverified=self.allow_unverified,
            trust_pickle=self.trust_pickle,
        )


def precision_choice(value: str) -> PrecisionChoice:
    """``value`` as a :data:`PrecisionChoice` (case and spaces ignored), for the faces.

    Raises:
        DeviceError: not ``auto``, ``fp32``, ``fp16`` or ``bf16``.
    """
    from pocketsr_cli.devices import PRECISION_CHOICES
    from pocketsr_cli.errors import DeviceError

    text = value.strip().lower()
    if text not in PRECISION_CHOICES:
        raise DeviceError(
            f"unknown precision {text!r}; choose one of: {', '.join(PRECISION_CHOICES)}"
        )
    return text  # type: ignore[return-value]


def routing_k(value: object) -> float | None:
    """``value`` as a PCSR network's routing knob ``k`` (``--pcsr-k``, the API's
    ``pcsr_k``): a finite number (numpy's too: one computed with numpy is a np.float32),
    as a Python float, or None when not given; checked before any model is loaded, for
    the faces.

    Raises:
        UsageError: anything else: not a number (a string, a bool), NaN or infinite.
    """
    import math
    import numbers

    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.spelling import PCSR_K

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(f"{PCSR_K} must be a finite number, not {value!r}")
    return float(value)


def routing_for(
    descriptors: Sequence[ModelDescriptor], pcsr_k: float | None, adaptive: bool
) -> Routing | None:
    """The routing ``pcsr_k`` (checked by :func:`routing_k`) and ``adaptive`` ask of the
    PCSR models ``descriptors``: None when neither is given (each model's own).

    Raises:
        UsageError: either is given and a model is not PCSR (or there is none).
    """
    from pocketsr_cli.errors import UsageError
    from pocketsr_cli.spelling import ADAPTIVE, PCSR_K

    if pcsr_k is None and not adaptive:
        return None
    if not descriptors or any(d.family != "pcsr" for d in descriptors):
        names = ", ".join(d.name for d in descriptors if d.family != "pcsr")
        raise UsageError(f"{PCSR_K} and {ADAPTIVE} apply to PCSR models only, not to {names}")
    from pocketsr_cli.archs.pcsr import Routing

    return Routing(k=pcsr_k or 0.0, adaptive=adaptive)


def open_upscaler(
    desc: ModelDescriptor,
    spec: UpscalerSpec,
    *,
    ensemble: Ensemble = NO_ENSEMBLE,
    on_warning: Callable[[str], None] | None = None,
    outscale: float | None = None,
    routing: Routing | None = None,
    native_sizes: bool = False,
) -> Upscaler:
    """``desc`` ready to upscale pixels as ``spec`` says (its ``compute`` is the device
    and the precision chosen for this model).

    ``outscale``, ``native_sizes`` and ``routing``: a PCSR network's native factor, or
    each image's own for a size target, and its routing (see
    :class:`~pocketsr_cli.inference.Upscaler`).

    Raises:
        UsageError: ``spec.tile`` not larger than twice the overlap; a fractional
            ``outscale``, or ``native_sizes``, with an ensemble.
    """
    from pocketsr_cli.inference import Upscaler

    return Upscaler(
        desc,
        spec.compute(desc),
        tile=spec.tile,
        overlap=spec.overlap,
        ensemble=ensemble,
        compile=spec.compile,
        on_warning=on_warning,
        outscale=outscale,
        routing=routing,
        native_sizes=native_sizes,
    )
