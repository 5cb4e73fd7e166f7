"""``pocketsr upscale``: parse -> request -> pipeline.run -> render.

Its product is the files it writes: its human lines are a log on stderr, and only
``--json`` puts anything on stdout (see ``_ui`` for the rule).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from pocketsr_cli import sizing
from pocketsr_cli.cli import _complete
from pocketsr_cli.cli import _options as opt
from pocketsr_cli.cli._errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from pocketsr_cli.cli._help import examples
from pocketsr_cli.errors import UsageError

if TYPE_CHECKING:
    from pocketsr_cli.archs.pcsr import Routing
    from pocketsr_cli.descriptor import ModelDescriptor
    from pocketsr_cli.ensemble import Ensemble
    from pocketsr_cli.factory import UpscalerSpec
    from pocketsr_cli.jobs import Job, JobStream
    from pocketsr_cli.pipeline import MemoryLimit
    from pocketsr_cli.ray_backend import ActorPlan
    from pocketsr_cli.sizing import Target


EPILOG = examples(
    "pocketsr upscale photos/ -o upscaled/       # mirror a folder ×4",
    "pocketsr upscale IMG_0042.jpg               # writes IMG_0042_x4.jpg beside it",
    "pocketsr upscale IMG_0042.jpg -s 3          # runs ×4, resizes to ×3: IMG_0042_x3.jpg",
    "pocketsr upscale shoot/ --long-edge 4096    # each photo to 4096 px on its long side",
    "pocketsr upscale shoot/ -r --glob '*.png' -s 2 --format webp --json > log.jsonl",
    "pocketsr upscale big.tif --tile 512 --device cuda:1 --precision fp16",
    "pocketsr upscale shoot/ -o out/ --report out/review.html   # before/after page",
)

_SIZE_HELP = "Only one of --outscale, --width, --height, --long-edge."

RAY_DRY_RUN = "Ray actors (none started: a dry run contacts no cluster)"
"""Where a ``--ray --dry-run`` on a cluster (``--ray-address``, ``RAY_ADDRESS``) says its
images would be drawn (the first line, ``--json``'s ``device``): it plans them in this
process, so the actors' number and devices, which only the cluster knows, are not known.
On a local cluster they are: :func:`_planned_label`."""


def upscale(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT",
            help="Image files and/or folders.",
            show_default=False,
            parser=opt.path_argument,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Output folder (input folders are mirrored under it). "
            "Default: beside each input (photo.jpg → photo_x4.jpg).",
            file_okay=False,
            parser=opt.path_argument,
        ),
    ] = None,
    model: opt.ModelOpt = None,
    scale: Annotated[
        int | None,
        opt.scale_option(
            "Upscale ×N: the model's ×N variant, or its nearest larger one (then its "
            "largest) with the result resized to ×N. With --outscale or a size option, -s "
            "only picks the variant.",
            outscale=True,
        ),
    ] = None,
    outscale: Annotated[
        float | None,
        opt.number_option(
            "--outscale",
            low=sizing.OUTSCALE_MIN,
            high=sizing.OUTSCALE_MAX,
            whole=False,
            unit="x",
            metavar="FACTOR",
            help="Resize the result to this factor of the input (after the variant that -m "
            f"or -s picked). {_SIZE_HELP}",
        ),
    ] = None,
    width: Annotated[
        int | None,
        opt.number_option(
            "--width",
            low=1,
            unit="px",
            side="width",
            metavar="W",
            help="Make each output W pixels wide (height follows; the smallest variant that "
            "reaches it runs, then a resize; a PCSR model draws it at that size). Names end "
            f"in _wW. {_SIZE_HELP}",
        ),
    ] = None,
    height: Annotated[
        int | None,
        opt.number_option(
            "--height",
            low=1,
            unit="px",
            side="height",
            metavar="H",
            help=f"Make each output H pixels high, as --width. Names end in _hH. {_SIZE_HELP}",
        ),
    ] = None,
    long_edge: Annotated[
        int | None,
        opt.number_option(
            "--long-edge",
            low=1,
            unit="px",
            side="long_edge",
            metavar="L",
            help="Make each output's longer side L pixels, as --width. Names end in _lL. "
            + _SIZE_HELP,
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
    ] = False,
    glob: Annotated[
        str | None,
        typer.Option(
            "--glob", metavar="PATTERN", help="Only files matching this pattern (e.g. '*.jpg')."
        ),
    ] = None,
    device: opt.DeviceOpt = "auto",
    threads: opt.ThreadsOpt = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            metavar="DEV,DEV,...",
            help="Run one worker process per device (cuda:0,cuda:1; cpu,cpu), each loading "
            "the model once, fed from one queue, started only as images need them (a longer "
            "list is cut, with a warning; the first line names the devices used); outputs "
            "and --json as one run. Overrides --device.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster (pip install 'pocketsr[ray]'): one actor per GPU, or "
            "per --ray-cpus-per-worker cores; a local one is started unless --ray-address "
            "(or RAY_ADDRESS) names one. Outputs and --json as one run.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster to connect to (auto, HOST:PORT, ray://HOST:PORT), or "
            "local: start one on this machine, even where RAY_ADDRESS names another.",
            show_default=False,
        ),
    ] = None,
    ray_cpus_per_worker: Annotated[
        int,
        opt.number_option(
            "--ray-cpus-per-worker",
            low=1,
            metavar="N",
            help="CPU cores per Ray actor on a cluster without GPUs.",
        ),
    ] = 1,
    ray_workers: Annotated[
        int | None,
        opt.number_option(
            "--ray-workers",
            low=1,
            metavar="N",
            help="At most N Ray actors (default: one per GPU, or per --ray-cpus-per-worker).",
            show_default=False,
        ),
    ] = None,
    ray_return_bytes: Annotated[
        bool,
        typer.Option(
            "--ray-return-bytes",
            help="Send inputs to the actors and write their outputs here (for a cluster "
            "without a shared file system).",
        ),
    ] = False,
    precision: opt.PrecisionOpt = "auto",
    tile: opt.TileOpt = "auto",
    tile_overlap: opt.TileOverlapOpt = "auto",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="One of " + ", ".join(opt.FORMATS) + ".",
            autocompletion=_complete.formats,
        ),
    ] = "same",
    quality: Annotated[int | None, opt.quality_option()] = None,
    suffix: Annotated[
        str | None,
        typer.Option(
            "--suffix",
            metavar="TEXT",
            help="Appended to output names. Default beside inputs: _xN (_x4, _x1.5 for "
            "--outscale), _wW, _hH or _lL; none under -o.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--skip-existing",
            help="Replace existing outputs, or skip them (default; an output whose pocketsr "
            "record shows other settings, or that has none, is kept too, with a warning).",
        ),
    ] = False,
    strip_metadata: Annotated[
        bool,
        typer.Option(
            "--strip-metadata",
            help=(
                "Drop EXIF and XMP (camera, place, dates, edits) and the print resolution;"
                " the colour profile stays, so colours do not change, and so does"
                " pocketsr's own record."
            ),
        ),
    ] = False,
    no_provenance: Annotated[
        bool,
        typer.Option(
            "--no-provenance",
            help="Write no record of how outputs were made (model, sha256, size, version); "
            "existing outputs are then skipped by name alone.",
        ),
    ] = False,
    ensemble: opt.EnsembleOpt = "none",
    ensemble_weight: opt.EnsembleWeightOpt = None,
    # Not Typer's envvar=: a bad value of the variable would then be refused as if given
    # as --max-memory; _max_memory reads it and names it.
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            metavar="SIZE",
            help="Host memory the images in progress may need together (8G, 512M, 64K: "
            "powers of 1024, said as GiB, MiB, KiB; or bytes). Default: "
            "POCKETSR_MAX_MEMORY if set, else what is available when the run starts. An "
            "image predicted to need more fails without being decoded; large images are "
            "worked on one at a time. --devices workers share it, and so do --ray actors on "
            "a local cluster; on one named by --ray-address (or RAY_ADDRESS) each actor has "
            "all of it.",
            show_default=False,
        ),
    ] = None,
    compile_model: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Compile the network with torch.compile: faster on GPUs for long runs, "
            "after a warm-up of tens of seconds per image size.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show what would be done; write no image (a --report page still lists "
            "what would be written). With --ray, no cluster is contacted and no actor "
            "started: the images are planned here.",
        ),
    ] = False,
    report_page: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="PAGE",
            help="After the run, write a review page (.html, no network needed): "
            "before/after at 100 % on each output's most detailed crop, sizes, model, "
            "seconds, failures. Pictures are embedded up to 12 images, else written to "
            "a folder beside it named after the page (review.html: review_files/; 'pocketsr "
            "report' makes a page from a --json log).",
            dir_okay=False,
            show_default=False,
            parser=opt.path_argument,
        ),
    ] = None,
    json_lines: opt.JsonOpt = False,
    quiet: opt.QuietOpt = False,
    offline: opt.OfflineOpt = False,
    allow_unverified: opt.AllowUnverifiedOpt = False,
    trust_pickle: opt.TrustPickleOpt = False,
    pcsr_k: opt.PcsrKOpt = None,
    adaptive: opt.AdaptiveOpt = False,
) -> None:
    """Upscale images and folders of images."""
    from collections.abc import Callable

    from pocketsr_cli import __version__, libwarnings, sizing
    from pocketsr_cli.cli import _ui
    from pocketsr_cli.factory import open_upscaler, routing_k
    from pocketsr_cli.imageio import DEFAULT_QUALITY, format_label, is_image_path
    from pocketsr_cli.jobs import (
        Naming,
        check_input,
        check_output_folder,
        collect_jobs,
        iter_jobs,
        with_headers,
    )
    from pocketsr_cli.pipeline import Options, Variant, run, scales_for_sizes
    from pocketsr_cli.provenance import RunSettings, tile_label

    offline = opt.offline_mode(offline)  # a bad POCKETSR_OFFLINE is refused before any work
    fmt_key = opt.output_format(fmt)
    overlap = opt.tile_overlap(tile_overlap)  # None: each model's own
    tile_px = opt.tile_side(tile, overlap)  # checked before any work
    self_ensemble = opt.ensemble_choice(ensemble, ensemble_weight)
    memory_limit = _max_memory(max_memory)
    Naming(out_dir=output, suffix=suffix)  # validates --suffix before any work
    target = sizing.target_from_options(
        outscale=outscale, width=width, height=height, long_edge=long_edge
    )
    pcsr_k = routing_k(pcsr_k)
    for given in inputs:
        check_input(given)
    if glob is not None and not glob.strip():
        raise UsageError("--glob '' is no pattern: give one such as '*.jpg', or leave it out")
    worker_devices = _worker_devices(devices)
    use_ray = ray or ray_address is not None or ray_return_bytes
    # os.path: a path too long to look at is no folder (check_output_folder says why)
    if output is not None and is_image_path(output) and not os.path.isdir(output):
        raise UsageError(
            f"-o/--output takes a folder, and {output} looks like an image file name: outputs "
            "keep their input's name there (beside the input without -o: NAME_x4.jpg); "
            "--suffix and --format change the name"
        )
    if output is not None:
        opt.refuse_unexpanded_home(output, "-o/--output", folder=True)
    if report_page is not None:
        opt.refuse_unexpanded_home(report_page, "--report", folder=False)
    if output is not None and (ray_return_bytes or not use_ray):
        # Refused now rather than after every image has been upscaled for nothing; a Ray
        # cluster's actors write on their own file system, which this machine may not see.
        check_output_folder(output)
    if use_ray:
        from pocketsr_cli.ray_backend import import_ray

        if worker_devices:
            raise UsageError("--devices and --ray cannot be combined: choose one")
        import_ray()  # says how to install it, before any download
    opt.use_threads(threads)
    spec = opt.upscaler_spec(
        worker_devices[0] if worker_devices else device,
        precision,
        tile_px,
        overlap,
        compile=compile_model,
        offline=offline,
        allow_unverified=allow_unverified,
        trust_pickle=trust_pickle,
    )
    console = _ui.make_console()
    bar = _ui.DownloadBar(console, f"downloading {model or 'default model'}", quiet=quiet)
    with bar:
        family = spec.family(model, on_progress=bar)
    plan = sizing.plan_run(
        family.name, family.scales, family.default_scale, scale=scale, target=target
    )
    target = plan.target
    naming = Naming(out_dir=output, suffix=suffix, fmt=fmt_key, tag=target.label)
    # What libraries warn about while inputs are planned (headers read) and the model
    # loads becomes warning lines once the run's log starts, never Python's raw text.
    notes: list[str] = []
    if quality is not None and fmt_key in LOSSLESS_FORMATS:
        # Known before any image: said once, not left for the user to find in file sizes.
        notes.append(
            f"--quality {quality} is not used: {format_label(fmt_key)} is lossless "
            "(--quality applies to JPEG and WebP outputs)"
        )
    jobs: list[Job] | JobStream
    warn_to: list[Callable[[str], None]] = [notes.append]  # the reporter, once there is one
    if report_page is not None or plan.scales is None:
        # The review page's paths, and the variants a size target needs, are known only
        # once every input is: those runs list the inputs first.
        with libwarnings.collecting(notes):
            jobs = collect_jobs(
                inputs, naming, recursive=recursive, glob=glob, on_warning=notes.append
            )
    else:  # streamed: the first image starts while a large folder is still being walked
        jobs = iter_jobs(
            inputs,
            naming,
            recursive=recursive,
            glob=glob,
            on_warning=lambda message: warn_to[0](message),
        )
    if report_page is not None:  # refused before the run, not after it
        from pocketsr_cli.report import check_run_destination

        assert isinstance(jobs, list)
        check_run_destination(
            report_page,
            [p for j in jobs for p in (j.input, j.output)],
            to_upscale=sum(j.runs for j in jobs),  # at most as many pictured cards
        )
    with libwarnings.collecting(notes):
        if plan.scales is None:  # every input's size: read once, and kept for the run
            jobs = with_headers(list(jobs))
        scales = plan.scales or scales_for_sizes(
            list(jobs), target, family.scales, family.default_scale
        )
    with bar, libwarnings.collecting(notes):
        descriptors = [family.load(s) for s in scales]
    pcsr = _pcsr_options(
        descriptors,
        target,
        pcsr_k,
        adaptive,
        workers=bool(worker_devices or use_ray),
        ensemble=bool(self_ensemble),
    )
    if pcsr.outscale is not None or pcsr.native_sizes:
        # PCSR draws -s/--outscale/the size itself: no "no ×N variant" note
        plan = dataclasses.replace(plan, note=None)
    notes += [pcsr.note] if pcsr.note else []

    computes = [spec.compute(d) for d in descriptors]
    names = ", ".join(d.name for d in descriptors)
    reporters: list[_ui.Reporter] = [_ui.RichReporter(console, quiet=quiet, json_lines=json_lines)]
    json_reporter = None
    if json_lines:
        json_reporter = _ui.JsonLinesReporter(
            names, ", ".join(dict.fromkeys(map(str, computes))), ensemble=self_ensemble
        )
        reporters.append(json_reporter)
    reporter = _ui.FanOut(reporters)
    for note in [plan.note, *notes]:
        if note is not None:
            reporter.warning(note)
    warn_to[0] = reporter.warning
    upscalers = [
        open_upscaler(
            desc,
            spec,
            ensemble=self_ensemble,
            on_warning=reporter.warning,
            outscale=pcsr.outscale,
            routing=pcsr.routing,
            native_sizes=pcsr.native_sizes,
        )
        for desc in descriptors
    ]
    variants = [
        Variant(upscaler, model=desc.name, sha256=desc.sha256, compute=str(compute))
        for upscaler, desc, compute in zip(upscalers, descriptors, computes, strict=True)
    ]
    # What will draw the images, as each image's line will say (Variant.compute_for):
    # ``cpu uint8`` for a resampler's 8-bit path, where --precision does not apply.
    compute_where = ", ".join(dict.fromkeys(str(v.compute_label) for v in variants))
    where = compute_where

    def header(
        workers: Sequence[str] | None = None,
        actors_on: str | None = None,
        planned: ActorPlan | None = None,
    ) -> None:
        """The run's first line, naming ``workers`` (the devices that get a worker
        process, or in a dry run would; None: no workers) or ``actors_on`` (the device
        Ray actors run on, which this machine need not have: what they draw with is
        told from the model), or in a --ray dry run the actors ``planned`` on this
        machine (None: a cluster's, unknown), and what --json says drew an image when
        none did."""
        nonlocal where
        where = compute_where
        if workers is not None:
            where += _workers_label(workers)
        elif use_ray and dry_run:  # planned here: a cluster's actors are unknown
            where = RAY_DRY_RUN
            if planned is not None:
                where = _planned_label(planned, spec, descriptors, self_ensemble)
        elif actors_on is not None:
            where = _compute_on(actors_on, spec, descriptors, self_ensemble) + " on Ray actors"
        if json_reporter is not None:
            json_reporter.device = where  # a line's and the summary's when no image says
        if not quiet:
            console.print(
                f"[bold]pocketsr[/] {names} on {where} → {target.describe()} — "
                + _inputs_label(jobs)
                + (f", ensemble {self_ensemble.label}" if self_ensemble else "")
                + (" (dry run)" if dry_run else "")
            )

    # --devices: once the first jobs show who gets a worker; --ray: once the cluster
    # has said what the actors run on, or a dry run has planned them
    if not worker_devices and not use_ray:
        header()
    record = None
    if not no_provenance:
        record = RunSettings(
            version=__version__,
            ensemble=self_ensemble,
            quality=DEFAULT_QUALITY if quality is None else quality,
            tile=tile_label(tile_px, [u.overlap for u in upscalers]),
        )
    options = Options(
        fmt=fmt_key,
        quality=quality,
        keep_metadata=not strip_metadata,
        overwrite=overwrite,
        dry_run=dry_run,
        target=target,
        record=record,
        memory_limit=memory_limit,
    )
    if worker_devices or use_ray:
        from pocketsr_cli.parallel import ModelSpec

        worker_model = ModelSpec(
            model,
            tuple(scales),
            spec,
            ensemble=self_ensemble,
            cpu_threads=threads,
            outscale=pcsr.outscale,
            native_sizes=pcsr.native_sizes,
        )
    if worker_devices:  # a dry run too: it starts no worker, and names those a run would
        from pocketsr_cli.parallel import run_parallel

        summary = run_parallel(
            jobs,
            worker_model,
            worker_devices,
            options,
            reporter,
            variants=variants,
            on_workers=header,  # once the first jobs show which devices get a worker
        )
    elif use_ray:  # a dry run too: it contacts no cluster, and plans as the actors would
        from pocketsr_cli.ray_backend import RaySettings, run_ray

        settings = RaySettings(
            address=ray_address,
            cpus_per_worker=ray_cpus_per_worker,
            workers=ray_workers,
            return_bytes=ray_return_bytes,
        )
        summary = run_ray(
            jobs,
            worker_model,
            options,
            reporter,
            settings,
            variants=variants,
            on_actors=lambda device: header(actors_on=device),
            on_plan=lambda plan: header(planned=plan),
        )
    else:
        summary = run(jobs, variants, options, reporter)
    if report_page is not None:
        from pocketsr_cli.cli.report import write
        from pocketsr_cli.report import PageOptions, Run

        review = Run.from_summary(
            summary, model=names, device=where, source=_command_line(inputs, output)
        )
        write(review, report_page, PageOptions(), console, quiet=quiet)
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if summary.failed else EXIT_OK)


LOSSLESS_FORMATS = ("png", "tiff", "bmp")
"""The ``--format`` keys whose outputs are lossless, which ``--quality`` does not touch (an
image with transparency asked as BMP is written as PNG: lossless too)."""


class _Pcsr(NamedTuple):
    """How a run's PCSR model draws (:func:`_pcsr_options`).

    Attributes:
        outscale: the factor it draws natively (a factor target of at least 1).
        native_sizes: a size target: it draws each image at the factor its size needs
            (``inference.Upscaler.upscale_for``).
        routing: its routing; None: the model's own.
        note: a warning line for the log.
    """

    outscale: float | None = None
    native_sizes: bool = False
    routing: Routing | None = None
    note: str | None = None


def _pcsr_options(
    descriptors: Sequence[ModelDescriptor],
    target: Target,
    pcsr_k: float | None,
    adaptive: bool,
    *,
    workers: bool,
    ensemble: bool = False,
) -> _Pcsr:
    """What a PCSR model runs with: the factor it draws natively (a factor target of at
    least 1), or each image's own (a size target; not with an ensemble, which runs the
    model at its own factor and resizes, with a note), and its routing.  Other models:
    nothing native (their result is resized to the target).

    Raises:
        UsageError: --pcsr-k or --adaptive with another model, or with worker processes.
    """
    from pocketsr_cli.factory import routing_for

    routing = routing_for(descriptors, pcsr_k, adaptive)
    if not descriptors or any(d.family != "pcsr" for d in descriptors):
        return _Pcsr()
    if routing is not None and workers:
        raise UsageError("--pcsr-k and --adaptive cannot be combined with --devices or --ray")
    if target.kind == "factor":
        return _Pcsr(outscale=target.value if target.value >= 1 else None, routing=routing)
    if ensemble:
        scales = ", ".join(f"×{d.scale}" for d in descriptors)
        note = (
            f"an ensemble runs {descriptors[0].name} at {scales} and resizes to "
            f"{target.describe()} (without --ensemble it draws each image at that size)"
        )
        return _Pcsr(routing=routing, note=note)
    return _Pcsr(native_sizes=True, routing=routing)


def _worker_devices(text: str | None) -> list[str]:
    """``--devices`` as a list of the devices the workers will run on, each entry checked
    and resolved as a worker resolves it (``choose_device``: ``cuda`` is ``cuda:0`` (the
    current device), ``auto`` this machine's choice), so that the first line, the
    warnings and the sharing of CPU cores name what each image's line will; [] when not
    given."""
    from pocketsr_cli.devices import choose_device

    if text is None:
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UsageError(f"--devices {text!r}: name devices separated by commas (cuda:0,cuda:1)")
    return [str(choose_device(name)) for name in names]


def _compute_on(
    device: str, spec: UpscalerSpec, descriptors: Sequence[ModelDescriptor], ensemble: Ensemble
) -> str:
    """What the run's models draw with on ``device`` (``cuda:0``, ``cpu``), which this
    machine need not have (a Ray cluster's): each one's ``UpscalerSpec.compute_label``
    there, each said once (``cuda:0 fp16``)."""
    import torch

    there = dataclasses.replace(spec, device=torch.device(device))
    return ", ".join(dict.fromkeys(there.compute_label(d, ensemble) for d in descriptors))


def _planned_label(
    plan: ActorPlan, spec: UpscalerSpec, descriptors: Sequence[ModelDescriptor], ensemble: Ensemble
) -> str:
    """What a --ray dry run on a local cluster says would draw its images: the actors a
    run would plan on this machine, what they would draw with (:func:`_compute_on`) and
    that none was started (``cpu fp32 on 2 Ray actors planned on this machine (none
    started: a dry run)``)."""
    actors = f"{plan.count} Ray actor{'' if plan.count == 1 else 's'}"
    return (
        f"{_compute_on(plan.device, spec, descriptors, ensemble)} on {actors} planned on "
        "this machine (none started: a dry run)"
    )


def _workers_label(workers: Sequence[str]) -> str:
    """What the header adds for a --devices run's worker processes:
    `` ×2 workers (cuda:0, cuda:1)``, `` ×0 workers (none needed)``."""
    named = ", ".join(workers) or "none needed"
    return f" ×{len(workers)} worker{'' if len(workers) == 1 else 's'} ({named})"


def _inputs_label(jobs: list[Job] | JobStream) -> str:
    """How the run's first line counts its inputs (files named, and files in the folders
    named, images or not): their number, known once the folders are read, which a streamed
    run (``jobs.iter_jobs``) knows before it starts unless a folder holds more than it
    reads ahead; then the number read so far."""
    if isinstance(jobs, list):
        return f"{len(jobs):,} input(s)"
    if jobs.complete:
        return f"{jobs.planned:,} input(s)"
    return f"{jobs.planned:,} inputs so far (the folders are still being read)"


def _max_memory(text: str | None) -> MemoryLimit:
    """``--max-memory`` (``text``; None: not given), else ``POCKETSR_MAX_MEMORY``, as the
    run's limit: no ``bytes`` when neither is given or the one that is is empty (no limit
    but the memory available).  With ``--max-memory`` given the variable is not read.  Its
    ``source`` is the variable's name when the limit came from it, else None (the flag),
    for the messages of a run to name it by.

    Raises:
        UsageError: not a size; the message names what the user set, the flag or the
            variable (which may have been set long ago, in a shell profile).
    """
    from pocketsr_cli.memory import MAX_MEMORY_ENV, parse_size
    from pocketsr_cli.pipeline import MemoryLimit

    named = "--max-memory"
    if text is None:
        text, named = os.environ.get(MAX_MEMORY_ENV), MAX_MEMORY_ENV
    if text is None or not text.strip():
        return MemoryLimit()
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{named}: {exc}") from None
    return MemoryLimit(size, MAX_MEMORY_ENV if named == MAX_MEMORY_ENV else None)


def _command_line(inputs: list[Path], output: Path | None) -> str:
    """What the review page names the run by: ``upscale shoot/ -o out``."""
    named = " ".join(str(p) for p in inputs[:3])
    if len(inputs) > 3:
        named += f" … ({len(inputs)} inputs)"
    return f"upscale {named}" + (f" -o {output}" if output is not None else "")
