"""jobs.iter_jobs: the lazy walk that feeds a run while a large folder is still being read.

Same jobs, in the same order, as ``collect_jobs``; the first comes at once; what the walk
holds stays small; outputs are still checked against inputs.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsr_cli import fscase
from pocketsr_cli import jobs as jobs_module
from pocketsr_cli.errors import UsageError
from pocketsr_cli.jobs import Job, Naming, collect_jobs, iter_jobs
from pocketsr_cli.pipeline import NullReporter, Options, run


def tiny(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value % 256, np.uint8)).save(path)
    return path


def many(root: Path, folders: int, per_folder: int) -> Path:
    """``folders`` sub-folders of ``per_folder`` empty ``.png`` files (never decoded here)."""
    for f in range(folders):
        sub = root / f"d{f:03d}"
        sub.mkdir(parents=True)
        for i in range(per_folder):
            (sub / f"p{i:05d}.png").touch()
    return root


class Doubler:
    scale = 2

    def __init__(self, on_upscale: Callable[[], None]) -> None:
        self.on_upscale = on_upscale

    def upscale(self, pixels: np.ndarray, on_tile: object = None) -> np.ndarray:
        self.on_upscale()
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


def test_the_lazy_walk_gives_the_jobs_of_the_full_listing_in_the_same_order(
    tmp_path: Path,
) -> None:
    root = tmp_path / "in"
    for rel in ["b.png", "a.jpg", "a_x4.jpg", "z/c.png", "z/y/d.png", "m/e.png"]:
        tiny(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").touch()
    naming = Naming(None, None, "4")
    for recursive in (False, True):
        lazy = list(iter_jobs([root], naming, recursive=recursive))
        assert lazy == collect_jobs([root], naming, recursive=recursive)
    names = [
        j.input.relative_to(root).as_posix() for j in iter_jobs([root], naming, recursive=True)
    ]
    # each folder's files sorted, then its sub-folders sorted, depth first
    assert names == ["a.jpg", "a_x4.jpg", "b.png", "notes.txt", "m/e.png", "z/c.png", "z/y/d.png"]


def test_the_lazy_walk_refuses_what_the_full_listing_refuses(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="input not found"):
        iter_jobs([tmp_path / "missing"], Naming(None, None))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match="add recursive=True"):
        iter_jobs([tmp_path / "empty"], Naming(None, None))  # at once, before any run
    # Two inputs of one folder onto one output: found before the run starts.
    src = tmp_path / "two"
    tiny(src / "photo.png")
    tiny(src / "photo.webp")
    with pytest.raises(UsageError, match=r"would both be written.*separate runs.*leave out"):
        iter_jobs([src], Naming(None, "_up", fmt="png"))


def test_an_output_that_is_a_later_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    tiny(src / "a.gif")
    tiny(src / "a.png")  # a.gif is written as PNG: a.png, an input planned after it
    with pytest.raises(UsageError, match=r"output .*a\.png would overwrite input"):
        next(iter_jobs([src], Naming(None, "")))


def test_an_output_hard_linked_to_an_input_seen_earlier_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    first = tiny(src / "a" / "one.png")
    tiny(src / "b" / "two.png")
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    os.link(first, out / "b" / "two.png")  # the output of b/two.png is a/one.png
    with pytest.raises(UsageError, match="the same file under another name"):
        iter_jobs([src], Naming(out, None), recursive=True)


def test_the_walk_says_how_many_jobs_it_planned_ahead_and_whether_that_was_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "PLAN_AHEAD", 3)
    tiny(tmp_path / "in" / "a.png"), tiny(tmp_path / "in" / "b.png")
    (tmp_path / "in" / "notes.txt").touch()  # a job too (skipped)
    stream = iter_jobs([tmp_path / "in"], Naming(None, None, "4"))
    assert (stream.planned, stream.complete) == (3, False)  # may hold more: not known
    (tmp_path / "in" / "notes.txt").unlink()
    stream = iter_jobs([tmp_path / "in"], Naming(None, None, "4"))
    assert (stream.planned, stream.complete) == (2, True)
    assert [j.input.name for j in stream] == ["a.png", "b.png"]  # still the jobs, once


def test_a_collision_found_after_the_run_started_fails_that_input_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the jobs planned ahead, a collision cannot be a usage error (earlier outputs
    may be written): the later input fails, the run goes on, nothing is overwritten."""
    monkeypatch.setattr(jobs_module, "PLAN_AHEAD", 2)
    src = tmp_path / "in"
    for name in ("a.png", "b.png", "c.png", "c.webp", "d.png"):
        tiny(src / name)
    out = tmp_path / "out"
    jobs = list(iter_jobs([src], Naming(out, None, fmt="png")))  # c.webp -> out/c.png too
    by_name = {j.input.name: j for j in jobs}
    assert [j.input.name for j in jobs] == ["a.png", "b.png", "c.png", "c.webp", "d.png"]
    failure = by_name["c.webp"].failure or ""
    assert failure.startswith(
        f"{src / 'c.png'} and {src / 'c.webp'} would both be written to {out / 'c.png'}; "
        "upscale them in separate runs"
    )
    assert all(j.runs for name, j in by_name.items() if name != "c.webp")

    # The same through a run: the clash is one failed line, the rest is written (exit 1).
    summary = run(
        iter_jobs([src], Naming(out, None, fmt="png")), Doubler(lambda: None), Options(), _Quiet()
    )
    assert summary.count("ok") == 4 and summary.count("failed") == 1
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "c.png", "d.png"]


def test_a_later_output_onto_a_name_kept_for_an_earlier_alpha_input_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An input with alpha asked as JPEG keeps its JPEG name too (``Job.alt_output``): it
    is written there when its alpha is opaque everywhere.  Within the look-ahead it gives
    the name up to a later input's output; beyond it the later input fails, and its line
    says whose name it is, why it is kept and what to do, not only that two inputs would
    meet on one output."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    pixels = np.full((4, 4, 4), 90, np.uint8)
    pixels[0, 0, 3] = 0
    Image.fromarray(pixels).save(src / "logo.png")
    tiny(src / "logo.webp")  # -> out/logo.jpg: the name logo.png keeps
    naming = Naming(out, None, fmt="jpeg")
    planned = list(iter_jobs([src], naming))
    assert [(j.output.name, j.alt_output, j.failure) for j in planned] == [
        ("logo.png", None, None),  # given up: it is written as PNG whatever its alpha
        ("logo.jpg", None, None),
    ]
    monkeypatch.setattr(jobs_module, "PLAN_AHEAD", 1)
    first, later = iter_jobs([src], naming)
    assert first.alt_output == out / "logo.jpg" and first.failure is None
    assert later.failure == (
        f"{src / 'logo.webp'} would be written to {out / 'logo.jpg'}, the JPEG name kept for "
        f"{src / 'logo.png'} (its alpha channel may be opaque everywhere, and then its output "
        "is written there as JPEG, not as PNG; only within the first 1 files planned is such "
        "a name given up to a later input); upscale them in separate runs, each with its own "
        "output folder, or leave out fmt so that each keeps its own format (and extension)"
    )


def test_an_output_onto_a_later_input_of_another_folder_is_refused_before_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pocketsr upscale d1 d2 -o d2 --overwrite``: d1/a.png's output is d2/a.png, an
    input listed later.  Refused before the run (a usage error); beyond the jobs planned
    ahead, d1/a.png fails and d2/a.png is never overwritten."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    tiny(d1 / "0.png", 1)
    tiny(d1 / "a.png", 2)
    original = tiny(d2 / "a.png", 3).read_bytes()
    naming = Naming(d2, None)
    with pytest.raises(UsageError, match=r"output .*d2/a\.png would overwrite input"):
        iter_jobs([d1, d2], naming)
    monkeypatch.setattr(jobs_module, "PLAN_AHEAD", 1)  # d1/0.png only: the run starts
    summary = run(
        iter_jobs([d1, d2], naming), Doubler(lambda: None), Options(overwrite=True), _Quiet()
    )
    assert (d2 / "a.png").read_bytes() == original
    assert summary.count("failed") >= 1 and (d2 / "0.png").exists()


def test_what_this_run_wrote_into_a_folder_it_scans_later_is_its_own_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``upscale d1 d2 -o d2`` past the look-ahead: d2 is listed after d1's results were
    written there; they are this run's outputs (skipped), not inputs that fail."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for name in ("a.png", "b.png", "c.png"):
        tiny(d1 / name, 1)
    d2.mkdir()
    monkeypatch.setattr(jobs_module, "PLAN_AHEAD", 1)
    seen = []
    for job in iter_jobs([d1, d2], Naming(d2, None)):
        seen.append((job.input.relative_to(tmp_path).as_posix(), job.skip_code, job.failure))
        if job.runs:  # written as the run would, before the walk reaches d2
            job.output.write_bytes(job.input.read_bytes())
    assert seen == [
        ("d1/a.png", None, None),
        ("d1/b.png", None, None),
        ("d1/c.png", None, None),
        ("d2/a.png", "own-output", None),
        ("d2/b.png", "own-output", None),
        ("d2/c.png", "own-output", None),
    ]


def test_a_file_named_twice_is_upscaled_once(tmp_path: Path) -> None:
    src = tmp_path / "in"
    a = tiny(src / "a.png")
    tiny(src / "b.png")
    for make in (iter_jobs, collect_jobs):
        jobs = list(make([a, src, a], Naming(tmp_path / "out", None)))
        assert [(j.input.name, j.skip_code) for j in jobs] == [
            ("a.png", None),
            ("a.png", "duplicate"),
            ("b.png", None),
            ("a.png", "duplicate"),
        ], make
        assert jobs[1].skip_reason == f"named twice: the same file as {a}, upscaled once"


@pytest.mark.slow
def test_a_folder_of_20000_files_starts_at_once_and_the_walk_holds_little(
    tmp_path: Path,
) -> None:
    root = many(tmp_path / "in", folders=40, per_folder=500)
    tiny(root / "d000" / "p00000.png", 7)  # the only real image: the rest fail to decode
    naming = Naming(tmp_path / "out", None)

    taken = 0
    upscaled_at: list[int] = []

    def counted(jobs: Iterator[Job]) -> Iterator[Job]:
        nonlocal taken
        for job in jobs:
            taken += 1
            yield job

    model = Doubler(lambda: upscaled_at.append(taken))
    summary = run(counted(iter_jobs([root], naming, recursive=True)), model, Options(), _Quiet())
    assert summary.total == 20_000 and summary.count("ok") == 1
    assert upscaled_at and upscaled_at[0] <= 10  # the first image ran long before the end
    assert (tmp_path / "out" / "d000" / "p00000.png").exists()

    # What walking holds: the listing of a folder and fingerprints, not 20,000 jobs.
    def peak(make: Callable[[], object]) -> int:
        tracemalloc.start()
        try:
            make()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    lazy = peak(lambda: sum(1 for _ in iter_jobs([root], naming, recursive=True)))
    full = peak(lambda: collect_jobs([root], naming, recursive=True))
    assert lazy < 500 * 20_000, (lazy, full)  # two fingerprints a file, about 300 bytes
    assert lazy * 2 < full, (lazy, full)


class _Quiet(NullReporter):
    pass


def test_a_suffix_windows_forbids_in_names_is_refused_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--suffix _a:b`` on Windows would make ``photo_a`` holding a hidden stream ``b.png``;
    ``?`` or ``*`` fail every write.  Refused before anything is done; elsewhere allowed."""
    assert Naming(None, "_a:b?").output_for(tmp_path / "p.png", None).name == "p_a:b?.png"
    monkeypatch.setattr(jobs_module.sys, "platform", "win32")
    with pytest.raises(UsageError, match=r"contains ':', '\?', which Windows does not allow"):
        Naming(None, "_a:b?")
    with pytest.raises(UsageError, match=r"'\\t'"):
        Naming(tmp_path / "o", "_\t")
    assert Naming(None, "_x4 (big)").effective_suffix == "_x4 (big)"


def test_outputs_that_differ_only_in_case_are_one_file_where_names_ignore_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS and Windows ignore the case of names: ``a/Photo.png b/photo.png -o out``
    would write one file twice there (the second replacing the first with ``--overwrite``),
    and ``--format png`` meets ``x.PNG`` with ``X.jpg``.  Refused as any two inputs meeting
    on one output are; where names keep their case, both are written."""
    one = tiny(tmp_path / "a" / "Photo.png")
    two = tiny(tmp_path / "b" / "photo.png", 1)
    tiny(tmp_path / "c" / "x.PNG")
    tiny(tmp_path / "c" / "X.jpg", 2)
    out = Naming(tmp_path / "out", None)
    as_png = Naming(None, "_2", fmt="png")
    # Where names keep their case (Linux, a case-sensitive volume), whatever this one does:
    # the probe's first answer (each run asks afresh).
    monkeypatch.setattr(fscase, "_told_by_an_entry", lambda folder: False)
    try:
        assert len(collect_jobs([one, two], out)) == 2
        assert len(list(iter_jobs([tmp_path / "c"], as_png))) == 2
        monkeypatch.setattr(fscase, "_told_by_an_entry", lambda folder: True)
        message = r"would both be written to .*\(names that differ only in case are one file"
        with pytest.raises(UsageError, match=message):
            collect_jobs([one, two], out)
        with pytest.raises(UsageError, match=message):
            list(iter_jobs([one, two], out))
        for plan in (collect_jobs, iter_jobs):
            with pytest.raises(UsageError, match=message):
                list(plan([tmp_path / "c"], as_png))
    finally:
        fscase.forget_answers()


def ignoring_case_in(root: str) -> Callable[..., os.stat_result]:
    """``os.stat`` as if the folder ``root`` ignored the case of the names in it (its
    entries only: the rest of the tree keeps case, as a Linux disk does)."""
    real_stat = os.stat

    def stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        text = os.fspath(path)  # type: ignore[call-overload]
        parent, name = os.path.split(text)
        if parent == root:
            text = next(
                (os.path.join(root, n) for n in os.listdir(root) if n.lower() == name.lower()), text
            )
        return real_stat(text, *args, **kwargs)  # type: ignore[arg-type]

    return stat


def test_a_case_blind_file_system_is_told_by_a_name_with_its_case_swapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nearest existing folder answers, by an entry in it or, holding none, by its own
    name; where nothing tells, the platform (macOS and Windows ignore case by default)."""
    blind = str(tmp_path / "Blind")
    kept = tmp_path / "Kept"
    os.mkdir(blind)
    tiny(kept / "Photo.png")
    monkeypatch.setattr(fscase.os, "stat", ignoring_case_in(str(tmp_path)))
    fscase.forget_answers()
    try:
        assert fscase.case_blind(os.path.join(blind, "not-made", "yet"))
        assert not fscase.case_blind(str(kept / "out"))
        monkeypatch.setattr(fscase, "_told_by_an_entry", lambda folder: None)
        monkeypatch.setattr(fscase.sys, "platform", "darwin")
        assert fscase.case_blind("/1/2")  # nothing with a letter exists
        monkeypatch.setattr(fscase.sys, "platform", "linux")
        fscase.forget_answers()
        assert not fscase.case_blind("/1/2")
    finally:
        fscase.forget_answers()


def test_each_run_asks_again_whether_names_ignore_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived process (the API's ``upscale_folder``, called again and again) plans
    one run after another: a disk mounted anew under the same path, now keeping case, is
    asked again, not taken as the one before (the answers were kept for the process)."""
    one = tiny(tmp_path / "a" / "Photo.png")
    two = tiny(tmp_path / "b" / "photo.png", 1)
    out = Naming(tmp_path / "out", None)
    real_stat = os.stat
    fscase.forget_answers()
    try:
        for plan in (collect_jobs, iter_jobs):
            monkeypatch.setattr(fscase.os, "stat", ignoring_case_in(str(tmp_path)))
            with pytest.raises(UsageError, match="differ only in case"):
                list(plan([one, two], out))
            monkeypatch.setattr(fscase.os, "stat", real_stat)  # mounted anew: keeps case
            assert len(list(plan([one, two], out))) == 2
    finally:
        fscase.forget_answers()


def test_names_are_folded_beyond_ascii_as_case_blind_disks_fold_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Mac's or Windows' disk takes ``Été`` for ``été`` (and ``ς`` for ``σ``): job
    planning and the user model folder fold names alike, one character for one, and never
    ``ß`` into ``ss``.  ``-o ~/été/UP`` lies in the input folder ``~/Été``: it was taken
    for a folder elsewhere (ASCII letters alone were folded there), and its earlier
    results were planned as inputs."""
    from pocketsr_cli.weights.store import _Manifests

    assert fscase.folded("Été/ΟΔΟΣ") == fscase.folded("éTÉ/οδος") == "été/οδοσ"
    assert fscase.folded("Straße") == "straße" and fscase.folded("İ") == "İ"
    monkeypatch.setattr(fscase, "case_blind", lambda folder: True)
    keys = _Manifests(tmp_path / "none")
    for one, other in [("Été.png", "été.png"), ("ΟΔΟΣ.png", "οδος.png")]:
        assert jobs_module._name_key(f"/o/{one}") == jobs_module._name_key(f"/o/{other}")
        assert keys.key(tmp_path / one) == keys.key(tmp_path / other)
    assert jobs_module._name_key("/o/ß.png") != jobs_module._name_key("/o/ss.png")
    root = tmp_path / "Été"
    tiny(root / "a.png")
    tiny(root / "up" / "a_x2.png", 1)  # an earlier run's result
    inside = Naming(tmp_path / "été" / "UP", None)
    for plan in (collect_jobs, iter_jobs):
        jobs = list(plan([root], inside, recursive=True))
        assert [(j.input.name, j.skip_code) for j in jobs] == [
            ("a.png", None),
            ("UP", "own-output"),
        ]


def test_an_output_folder_spelt_in_another_case_is_known_inside_the_input_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Mac ``pocketsr upscale ~/Photos -r -o ~/photos/UP`` writes into ``~/Photos/up``:
    that folder is left out of the scan (its files were planned as inputs, skipped only
    by their records), and ``-o ~/PHOTOS`` is the input folder itself, not a folder in it
    (this disk keeps case: told it does not, as a Mac's)."""
    root = tmp_path / "Photos"
    tiny(root / "a.png")
    tiny(root / "up" / "a_x2.png", 1)  # an earlier run's result
    monkeypatch.setattr(fscase, "case_blind", lambda folder: True)
    inside = Naming(tmp_path / "photos" / "UP", None)
    for plan in (collect_jobs, iter_jobs):
        jobs = list(plan([root], inside, recursive=True))
        assert [(j.input.name, j.skip_code) for j in jobs] == [
            ("a.png", None),
            ("UP", "own-output"),
        ]
        same = list(plan([root], Naming(tmp_path / "PHOTOS", "_b"), recursive=True))
        assert [(j.input.relative_to(root).as_posix(), j.skip_code) for j in same] == [
            ("a.png", None),
            ("up/a_x2.png", None),
        ]


def test_a_mount_point_is_asked_through_its_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-o /media/stick/out`` on Linux, a FAT stick mounted at ``stick``, ``out`` not made
    yet: the stick's own name is looked up on the disk it is mounted on, which keeps case,
    and two outputs differing only in case were both written to it (one file)."""
    mount = tmp_path / "Stick"
    (mount / "DCIM").mkdir(parents=True)
    monkeypatch.setattr(fscase.os, "stat", ignoring_case_in(str(mount)))
    fscase.forget_answers()
    try:
        assert fscase.case_blind(str(mount / "out"))
        assert fscase.case_blind(str(mount))
        assert not fscase.case_blind(str(tmp_path))
    finally:
        fscase.forget_answers()


def test_a_folder_named_with_a_sharp_s_is_probed_by_its_ascii_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``str.swapcase`` makes ``Großeltern`` ``gROSSELTERN``, a name no file system that
    ignores case takes for it (they fold ``ß`` to itself): every output under such a folder
    was compared with its case kept, on macOS and Windows too."""
    real_stat = os.stat
    folder = str(tmp_path / "Großeltern")
    os.mkdir(folder)

    def ignoring_case(path: object, *args: object, **kwargs: object) -> os.stat_result:
        text = os.fspath(path)  # type: ignore[call-overload]
        if text.lower() == folder.lower():  # str.lower keeps ß, as these file systems do
            text = folder
        return real_stat(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fscase.os, "stat", ignoring_case)
    fscase.forget_answers()
    try:
        assert fscase.case_blind(folder)
    finally:
        fscase.forget_answers()


def test_on_windows_a_glob_may_separate_folders_with_a_backslash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--glob 'raw\\*.jpg'`` is how a Windows user names the files of a sub-folder; it
    matched nothing there (the relative paths are matched with ``/``)."""
    root = tmp_path / "in"
    tiny(root / "raw" / "a.png")
    tiny(root / "b.png")
    monkeypatch.setattr(jobs_module.sys, "platform", "win32")
    for plan in (collect_jobs, iter_jobs):
        found = list(plan([root], Naming(tmp_path / "o", None), recursive=True, glob="RAW\\*.png"))
        assert [job.input for job in found] == [root / "raw" / "a.png"]
