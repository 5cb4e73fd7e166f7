"""``Upscaler.upscale_folder`` runs the CLI's pipeline: decoding, the model and encoding
overlap, results come in job order as files are written, and the outputs are the bytes
``upscale_file`` writes one image at a time."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import pocketsr_cli
from pocketsr_cli import pipeline
from pocketsr_cli.atomicfile import TEMP_SUFFIX
from pocketsr_cli.errors import UsageError

WAIT = 30.0  # seconds; only a pipeline that never overlaps waits this long (and fails)


def photos(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(4)
    paths = []
    for i in range(count):
        path = folder / f"{i:02}.png"
        Image.fromarray(rng.integers(0, 255, (12 + i, 16, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def up() -> pocketsr_cli.Upscaler:
    return pocketsr_cli.Upscaler("bicubic", scale=2, device="cpu")


def wrap_engine(
    up: pocketsr_cli.Upscaler, monkeypatch: pytest.MonkeyPatch, before: Callable[[int], None]
) -> list[int]:
    """Make the model call ``before(n)`` (n from 1) at the start of its n-th image; the
    list it returns holds the most images the model ever had in hand at once."""
    engine = up._variant.upscaler
    real = engine.upscale
    lock = threading.Lock()
    state = {"calls": 0, "active": 0}
    most = [0]

    def upscale(pixels: np.ndarray, on_tile: Any = None) -> np.ndarray:
        with lock:
            state["calls"] += 1
            state["active"] += 1
            most[0] = max(most[0], state["active"])
            n = state["calls"]
        try:
            before(n)
            return real(pixels, on_tile)
        finally:
            with lock:
                state["active"] -= 1

    monkeypatch.setattr(engine, "upscale", upscale)
    return most


def test_decoding_and_encoding_overlap_the_model(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model holds image 1 until image 2 is being decoded, and the encoder holds image
    1 until the model has image 2: one image at a time, neither wait could end."""
    photos(tmp_path / "in")
    second_read = threading.Event()
    second_upscale = threading.Event()
    overlapped: dict[str, bool] = {}
    real_read, real_encode = pipeline.read_image, pipeline.encode_image

    def read_image(path: Path, **kwargs: Any) -> Any:
        if path.name == "01.png":
            second_read.set()
        return real_read(path, **kwargs)

    encoded: list[int] = []

    def encode_image(pixels: np.ndarray, *args: Any, **kwargs: Any) -> bytes:
        encoded.append(1)
        if len(encoded) == 1:
            overlapped["encode"] = second_upscale.wait(WAIT)
        return real_encode(pixels, *args, **kwargs)

    def before(n: int) -> None:
        if n == 1:
            overlapped["decode"] = second_read.wait(WAIT)
        elif n == 2:
            second_upscale.set()

    monkeypatch.setattr(pipeline, "read_image", read_image)
    monkeypatch.setattr(pipeline, "encode_image", encode_image)
    wrap_engine(up, monkeypatch, before)
    results = list(up.upscale_folder(tmp_path / "in", tmp_path / "out"))
    assert [(r.job.input.name, r.status) for r in results] == [
        ("00.png", "ok"),
        ("01.png", "ok"),
        ("02.png", "ok"),
    ]
    assert overlapped == {"decode": True, "encode": True}


def test_outputs_are_those_of_upscale_file(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    src = tmp_path / "in"
    photos(src)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (10, 14, 4), np.uint8), "RGBA").save(src / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (10, 14), np.uint16)).save(src / "deep.png")
    Image.fromarray(rng.integers(0, 255, (10, 14, 3), np.uint8)).save(src / "photo.jpg")
    results = list(up.upscale_folder(src, tmp_path / "out"))
    assert [r.status for r in results] == ["ok"] * 6
    for result in results:
        assert result.output is not None
        alone = up.upscale_file(result.job.input, tmp_path / "alone" / result.output.name)
        assert result.output.read_bytes() == alone.read_bytes(), result.output.name


def test_the_loop_body_may_use_the_upscaler(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model runs only while the loop asks for the next result, never beside it."""
    photos(tmp_path / "in", count=4)
    most = wrap_engine(up, monkeypatch, lambda n: None)
    seen = []
    for result in up.upscale_folder(tmp_path / "in", tmp_path / "out"):
        seen.append(result.job.input.name)
        assert up.upscale(np.zeros((4, 4, 3), np.uint8)).shape == (8, 8, 3)
    assert seen == ["00.png", "01.png", "02.png", "03.png"]
    assert most == [1]


def _pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pocketsr-")]


def test_leaving_the_loop_early_stops_the_run_cleanly(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    photos(tmp_path / "in", count=5)
    out = tmp_path / "out"
    results = up.upscale_folder(tmp_path / "in", out)
    first = next(results)
    assert first.status == "ok" and first.output is not None and first.output.exists()
    results.close()
    assert _pipeline_threads() == []
    # Whatever was in hand is written whole or not at all; nothing half-written is left.
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "00.png" and len(names) < 5
    assert all(p.suffix == ".png" for p in out.iterdir())
    for path in out.iterdir():
        with Image.open(path) as im:
            im.load()


def test_a_run_closed_early_holds_the_totals_of_what_it_did(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """``summary`` stayed None for good once the loop was left and the generator closed:
    what was written (the first result, and what was in hand as it wound down) went
    uncounted."""
    photos(tmp_path / "in", count=5)
    out = tmp_path / "out"
    results = up.upscale_folder(tmp_path / "in", out)
    assert next(results).status == "ok"
    results.close()
    summary = results.summary
    assert summary is not None and summary.closed and not summary.interrupted
    written = len(list(out.iterdir()))
    assert summary.count("ok") == summary.total == written < 5
    assert "closed=True" in repr(summary)
    untouched = up.upscale_folder(tmp_path / "in", tmp_path / "out2")
    untouched.close()  # before its first result: nothing ran
    assert untouched.summary is None


def test_a_generator_kept_in_a_variable_runs_on_until_it_is_closed(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """As the docstring says: leaving a loop over a generator the caller keeps closes
    nothing; its outputs stay claimed until ``close()``, which lets them all go."""
    photos(tmp_path / "in", count=5)
    out = tmp_path / "out"
    results = up.upscale_folder(tmp_path / "in", out)
    for _ in results:
        break
    assert _pipeline_threads() != []
    results.close()
    assert _pipeline_threads() == []
    assert not [p.name for p in out.iterdir() if p.name.endswith(".pocketsr-claim")]


def test_ctrl_c_while_close_winds_down_is_raised_from_close(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that came while ``close()`` wound the run down was noted in the summary
    (``interrupted``) and then dropped: ``close()`` returned as if nothing had happened,
    so a script went on past the user's Ctrl-C.  It is raised from ``close()`` once the
    run has wound down and its summary is set, as a Ctrl-C in the loop is raised."""
    photos(tmp_path / "in", count=5)
    out = tmp_path / "out"
    results = up.upscale_folder(tmp_path / "in", out)
    assert next(results).status == "ok"
    real = pipeline._Run.let_go_all
    pressed: list[bool] = []

    def let_go_all(run: Any) -> None:  # the last step of the wind-down; Ctrl-C lands once
        if not pressed:
            pressed.append(True)
            raise KeyboardInterrupt
        real(run)

    monkeypatch.setattr(pipeline._Run, "let_go_all", let_go_all)
    with pytest.raises(KeyboardInterrupt):
        results.close()
    assert pressed
    summary = results.summary
    assert summary is not None and summary.closed and summary.interrupted
    assert summary.count("ok") == len(list(out.iterdir()))
    assert _pipeline_threads() == []
    assert not [p.name for p in out.iterdir() if p.name.endswith(".pocketsr-claim")]
    results.close()  # closed already: nothing more is raised


def test_ctrl_c_finishes_what_is_written_and_reports_the_rest(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos(tmp_path / "in", count=4)

    def before(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    wrap_engine(up, monkeypatch, before)
    got: list[pipeline.Result] = []
    with pytest.raises(KeyboardInterrupt):
        for result in up.upscale_folder(tmp_path / "in", tmp_path / "out"):
            got.append(result)
    assert [(r.job.input.name, r.status, r.reason_code) for r in got] == [
        ("00.png", "ok", None),
        ("01.png", "skipped", "interrupted"),
        ("02.png", "skipped", "interrupted"),
        ("03.png", "skipped", "interrupted"),
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00.png"]
    assert _pipeline_threads() == []


def test_encode_threads_change_nothing_but_the_time(
    up: pocketsr_cli.Upscaler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos(tmp_path / "in", count=5)
    seen: list[int | None] = []
    real_stream = pipeline.stream

    def stream(jobs: Any, variants: Any, options: pipeline.Options, reporter: Any) -> Any:
        seen.append(options.encode_threads)
        return real_stream(jobs, variants, options, reporter)

    monkeypatch.setattr(pipeline, "stream", stream)
    outputs = {}
    for threads in (1, 3):
        out = tmp_path / f"out{threads}"
        results = list(up.upscale_folder(tmp_path / "in", out, encode_threads=threads))
        assert [(r.job.input.name, r.status) for r in results] == [
            (f"{i:02}.png", "ok") for i in range(5)
        ]
        outputs[threads] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert seen == [1, 3]
    assert outputs[1] == outputs[3] and len(outputs[1]) == 5
    with pytest.raises(UsageError, match="encode_threads"):
        next(up.upscale_folder(tmp_path / "in", tmp_path / "out0", encode_threads=0))


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("fmt", 1), ("fmt", b"jpg"), ("encode_threads", "2"), ("encode_threads", 2.5)],
)
def test_a_bad_argument_type_is_a_usage_error(
    up: pocketsr_cli.Upscaler, tmp_path: Path, keyword: str, value: object
) -> None:
    """As the README says of the API: a bad argument is a UsageError, said before any work
    (fmt=1 raised AttributeError from .lower(), encode_threads='2' TypeError from '<', and
    encode_threads=2.5 ran)."""
    photos(tmp_path / "in")
    with pytest.raises(UsageError, match=keyword):
        next(up.upscale_folder(tmp_path / "in", tmp_path / "out", **{keyword: value}))
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_is_refused_with_the_command_lines_choices_under_its_keyword(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """The API takes what --format takes (same, jpg, tif...), and says so in its words."""
    photos(tmp_path / "in")
    with pytest.raises(UsageError) as caught:
        next(up.upscale_folder(tmp_path / "in", tmp_path / "out", fmt="gif"))
    assert str(caught.value) == (
        "unknown fmt 'gif'; choose one of: same, png, jpg, jpeg, webp, tiff, tif, bmp"
    )
    results = list(up.upscale_folder(tmp_path / "in", tmp_path / "out", fmt="TIF"))
    assert results and all(r.output is not None and r.output.suffix == ".tif" for r in results)


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: nothing is swept")
def test_the_run_says_how_many_leftovers_it_removed_as_the_json_summary_does(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """The command line's ``--json`` summary says how many temporary files of killed runs
    a run removed (``leftovers_removed``); the generator ``upscale_folder`` returns holds
    the same summary once its loop has run to its end."""
    photos(tmp_path / "in", count=2)
    out = tmp_path / "out"
    out.mkdir()
    left = out / f".00.png.0123456789ab{TEMP_SUFFIX}"  # a run killed mid-write left it
    left.write_bytes(b"half a PNG")
    os.utime(left, (0, 0))
    results = up.upscale_folder(tmp_path / "in", out)
    assert results.summary is None  # not run yet
    assert [r.status for r in results] == ["ok", "ok"]
    summary = results.summary
    assert summary is not None and summary.leftovers_removed == 1 and not left.exists()
    assert summary.count("ok") == 2 and not summary.interrupted
    again = up.upscale_folder(tmp_path / "in", out)
    assert [r.reason_code for r in again] == ["exists", "exists"]
    assert again.summary is not None and again.summary.leftovers_removed == 0


def test_a_file_as_src_dir_is_refused_with_upscale_file_named(
    up: pocketsr_cli.Upscaler, tmp_path: Path
) -> None:
    """``upscale_folder("photo.jpg", "out")`` upscaled that one file into ``out``, where its
    name and docstring speak of folders: a mix-up of the two methods said nothing."""
    (src,) = photos(tmp_path / "in", count=1)
    with pytest.raises(UsageError, match=r" is a file, not a folder: .*upscale_file\(src, dst\)"):
        up.upscale_folder(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_summary_prints_its_totals(up: pocketsr_cli.Upscaler, tmp_path: Path) -> None:
    """``run.summary`` printed as ``<pocketsr_cli.pipeline.Summary object at 0x...>``."""
    photos(tmp_path / "in", count=2)
    run = up.upscale_folder(tmp_path / "in", tmp_path / "out")
    assert [r.status for r in run] == ["ok", "ok"]
    assert re.fullmatch(
        r"Summary\(ok=2, skipped=0, failed=0, seconds=\d+\.\d\d, interrupted=False, "
        r"stopped=None, leftovers_removed=0\)",
        repr(run.summary),
    )
    dry = pipeline.Summary(dry_run=True)
    assert repr(dry).startswith("Summary(planned=0, skipped=0, failed=0, seconds=0.00, ")
    assert repr(dry).endswith(", dry_run=True)")
