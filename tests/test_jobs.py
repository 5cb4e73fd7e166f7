"""Input discovery and output naming (pocketsr_cli.jobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketsr_cli.errors import UsageError
from pocketsr_cli.jobs import Naming, collect_jobs, iter_jobs, scale_label


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    touch(root / "b.jpg")
    touch(root / "a.PNG")
    touch(root / "notes.txt")
    touch(root / ".hidden.jpg")
    touch(root / "sub" / "c.webp")
    touch(root / "sub" / "deeper" / "d.tif")
    touch(root / ".git" / "e.jpg")
    return root


def test_flat_scan_beside_inputs(tree: Path) -> None:
    jobs = collect_jobs([tree], Naming(None, None, "4"))
    assert [j.input.name for j in jobs] == ["a.PNG", "b.jpg", "notes.txt"]
    assert jobs[0].output == tree / "a_x4.PNG"
    assert jobs[1].output == tree / "b_x4.jpg"
    assert jobs[2].skip_reason is not None and "not an image" in jobs[2].skip_reason


def test_recursive_mirror(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = collect_jobs([tree], Naming(out, None, "4"), recursive=True)
    outputs = {j.input.relative_to(tree).as_posix(): j.output for j in jobs}
    assert outputs["sub/c.webp"] == out / "sub" / "c.webp"
    assert outputs["sub/deeper/d.tif"] == out / "sub" / "deeper" / "d.tif"
    assert ".git/e.jpg" not in outputs and ".hidden.jpg" not in outputs


def test_glob_matches_name_and_relative_path(tree: Path) -> None:
    jobs = collect_jobs([tree], Naming(None, None, "4"), recursive=True, glob="*.webp")
    assert [j.input.name for j in jobs] == ["c.webp"]
    jobs = collect_jobs([tree], Naming(None, None, "4"), recursive=True, glob="sub/deeper/*")
    assert [j.input.name for j in jobs] == ["d.tif"]


def test_glob_ignores_case_on_every_platform(tmp_path: Path) -> None:
    touch(tmp_path / "IMG_0001.JPG")
    touch(tmp_path / "img_0002.jpg")
    touch(tmp_path / "Sub" / "IMG_0003.Jpg")
    touch(tmp_path / "c.png")
    jobs = collect_jobs([tmp_path], Naming(None, None, "4"), recursive=True, glob="*.jpg")
    assert [j.input.name for j in jobs] == ["IMG_0001.JPG", "img_0002.jpg", "IMG_0003.Jpg"]
    jobs = collect_jobs([tmp_path], Naming(None, None, "4"), recursive=True, glob="sub/*")
    assert [j.input.name for j in jobs] == ["IMG_0003.Jpg"]


def test_finding_no_file_is_a_usage_error_that_says_why(tmp_path: Path) -> None:
    touch(tmp_path / "only" / "a" / "x.jpg")
    touch(tmp_path / "only" / "b" / "y.jpg")
    touch(tmp_path / "only" / ".hidden" / "z.jpg")
    with pytest.raises(UsageError, match=r"it has 2 sub-folder\(s\): add recursive=True"):
        collect_jobs([tmp_path / "only"], Naming(None, None, "4"))
    assert len(collect_jobs([tmp_path / "only"], Naming(None, None, "4"), recursive=True)) == 2
    with pytest.raises(UsageError, match=r"no image files matching glob '\*.png' in"):
        collect_jobs([tmp_path / "only"], Naming(None, None, "4"), recursive=True, glob="*.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no image files in .*empty$"):
        collect_jobs([tmp_path / "empty"], Naming(None, None, "4"))
    # A folder holding only non-images is not "nothing": those are reported as skipped.
    touch(tmp_path / "notes" / "readme.txt")
    (job,) = collect_jobs([tmp_path / "notes"], Naming(None, None, "4"))
    assert job.skip_reason is not None


def test_format_and_suffix(tree: Path, tmp_path: Path) -> None:
    jobs = collect_jobs([tree / "b.jpg"], Naming(tmp_path / "o", "-big", "2", fmt="png"))
    assert jobs[0].output == tmp_path / "o" / "b-big.png"


def test_previous_outputs_are_not_upscaled_again(tree: Path) -> None:
    touch(tree / "b_x4.jpg")
    jobs = {j.input.name: j for j in collect_jobs([tree], Naming(None, None, "4"))}
    assert jobs["b_x4.jpg"].skip_reason is not None
    assert "pocketsr output" in jobs["b_x4.jpg"].skip_reason
    assert jobs["b.jpg"].skip_reason is None
    # Named explicitly, it is upscaled.
    (job,) = collect_jobs([tree / "b_x4.jpg"], Naming(None, None, "4"))
    assert job.skip_reason is None and job.output.name == "b_x4_x4.jpg"


def test_output_folder_inside_input_is_not_rescanned(tree: Path) -> None:
    touch(tree / "up" / "b.jpg")
    jobs = collect_jobs([tree], Naming(tree / "up", None, "4"), recursive=True)
    (folder,) = [j for j in jobs if "up" in j.input.relative_to(tree).parts]
    # Its files get no job; the folder gets one line saying it was left out.
    assert folder.input == tree / "up" and folder.skip_code == "own-output"
    assert folder.skip_reason is not None and "not scanned" in folder.skip_reason


def test_output_equal_to_input_is_refused(tree: Path) -> None:
    with pytest.raises(UsageError, match="would overwrite input"):
        collect_jobs([tree], Naming(tree, None, "4"))


def test_two_inputs_one_output_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "x" / "p.jpg")
    touch(tmp_path / "y" / "p.jpg")
    with pytest.raises(UsageError, match="both be written"):
        collect_jobs([tmp_path / "x", tmp_path / "y"], Naming(tmp_path / "o", None, "4"))


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        collect_jobs([tmp_path / "nope.jpg"], Naming(None, None, "4"))


def test_unicode_and_spaces(tmp_path: Path) -> None:
    p = touch(tmp_path / "Фото отпуск" / "çé 1.jpg")
    (job,) = collect_jobs([p.parent], Naming(None, None, "4"))
    assert job.output == p.parent / "çé 1_x4.jpg"


def test_scale_label() -> None:
    assert scale_label(4.0) == "4"
    assert scale_label(1.5) == "1.5"


def test_size_targets_name_outputs_with_their_tag(tree: Path) -> None:
    (job,) = collect_jobs([tree / "b.jpg"], Naming(None, None, tag="w3840"))
    assert job.output.name == "b_w3840.jpg"
    (job,) = collect_jobs([tree / "b.jpg"], Naming(None, "_big", tag="l4096"))
    assert job.output.name == "b_big.jpg"  # --suffix wins
    (job,) = collect_jobs([tree / "b.jpg"], Naming(tree / "out", None, tag="h2160"))
    assert job.output.name == "b.jpg"  # no suffix under -o


def test_earlier_outputs_of_any_factor_or_size_are_recognised_by_name(tmp_path: Path) -> None:
    for name in ("coffee.jpg", "coffee_x4.jpg", "coffee_x4_x2.jpg", "coffee_x1.5.png"):
        touch(tmp_path / name)
    for name in ("coffee_w3840.jpg", "coffee_h2160.webp", "coffee_l4096.tif"):
        touch(tmp_path / name)
    touch(tmp_path / "tree_w2.jpg")  # no tree.* beside it: a photo, not an output
    touch(tmp_path / "run_big.jpg")  # this run's --suffix
    touch(tmp_path / "coffee_x2.bmp.pocketsr.json")  # a BMP output's record: not reported
    jobs = {j.input.name: j for j in collect_jobs([tmp_path], Naming(None, "_big"))}
    own = {name for name, j in jobs.items() if j.skip_code == "own-output"}
    assert own == {
        "coffee_x4.jpg",
        "coffee_x4_x2.jpg",
        "coffee_x1.5.png",
        "coffee_w3840.jpg",
        "coffee_h2160.webp",
        "coffee_l4096.tif",
        "run_big.jpg",
    }
    assert "of 'coffee'" in (jobs["coffee_w3840.jpg"].skip_reason or "")
    # The rest are upscaled, and the reader still checks their headers for a record.
    assert jobs["tree_w2.jpg"].skip_reason is None and jobs["tree_w2.jpg"].from_folder
    assert jobs["coffee.jpg"].from_folder
    assert "coffee_x2.bmp.pocketsr.json" not in jobs
    (named,) = collect_jobs([tmp_path / "coffee_x4.jpg"], Naming(None, None, "2"))
    assert named.skip_reason is None and not named.from_folder


def test_the_planned_output_is_the_final_one_when_transparency_switches_the_format(
    tmp_path: Path,
) -> None:
    from PIL import Image

    Image.new("RGBA", (2, 2)).save(tmp_path / "logo.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "photo.png")
    jobs = collect_jobs([tmp_path], Naming(tmp_path / "out", None, fmt="jpeg"))
    assert [j.output.name for j in jobs] == ["logo.png", "photo.jpg"]
    with pytest.raises(UsageError, match=r"JPEG cannot store its transparency"):
        collect_jobs([tmp_path], Naming(tmp_path, None, fmt="jpeg"))


def test_an_input_with_alpha_asked_as_jpeg_reserves_both_names(tmp_path: Path) -> None:
    """Whether its alpha channel is opaque everywhere is known only once it is decoded:
    planning reserves the PNG and the JPEG name, so neither can be an input or another
    input's output (the same checks, as the jobs are collected or streamed)."""
    from PIL import Image

    Image.new("RGBA", (3, 2), (9, 9, 9, 255)).save(tmp_path / "shot.png")
    Image.new("RGB", (3, 2)).save(tmp_path / "photo.png")
    naming = Naming(tmp_path / "out", None, fmt="jpeg")
    for plan in (collect_jobs, iter_jobs):
        jobs = {j.input.name: j for j in plan([tmp_path], naming)}
        assert jobs["shot.png"].outputs == (tmp_path / "out/shot.png", tmp_path / "out/shot.jpg")
        assert jobs["photo.png"].outputs == (tmp_path / "out/photo.jpg",)
    # A JPEG beside it takes the JPEG name: shot.png keeps its PNG alone, as before the
    # JPEG name was planned, rather than the run being refused (either order).
    Image.new("RGB", (3, 2)).save(tmp_path / "shot.jpg")
    inputs = [tmp_path, [tmp_path / "shot.png", tmp_path / "shot.jpg"]]
    for plan in (collect_jobs, iter_jobs):
        for given in inputs:
            paths = given if isinstance(given, list) else [given]
            jobs = {j.input.name: j for j in plan(paths, naming)}
            assert jobs["shot.png"].outputs == (tmp_path / "out/shot.png",)
            assert jobs["shot.jpg"].outputs == (tmp_path / "out/shot.jpg",)
    # Beside the inputs with no suffix, the JPEG name is an input: never planned.
    (tmp_path / "shot.jpg").unlink()
    (tmp_path / "photo.png").unlink()
    Image.new("RGB", (3, 2)).save(tmp_path / "shot_x4.jpg")
    for plan in (collect_jobs, iter_jobs):
        jobs = {
            j.input.name: j
            for j in plan(
                [tmp_path / "shot.png", tmp_path / "shot_x4.jpg"],
                Naming(None, None, "4", fmt="jpeg"),
            )
        }
        assert jobs["shot.png"].outputs == (tmp_path / "shot_x4.png",)


def test_unusable_entries_fail_without_being_opened(tmp_path: Path) -> None:
    touch(tmp_path / "a.jpg")
    (tmp_path / "gone.jpg").symlink_to("nowhere.jpg")
    (tmp_path / "gone.txt").symlink_to("nowhere.txt")
    jobs = {j.input.name: j for j in collect_jobs([tmp_path], Naming(None, None, "4"))}
    assert jobs["a.jpg"].runs
    assert jobs["gone.jpg"].failure == "broken symbolic link: nowhere.jpg does not exist"
    assert not jobs["gone.jpg"].runs and jobs["gone.jpg"].skip_reason is None
    assert jobs["gone.txt"].skip_code == "not-image"


@pytest.mark.parametrize("suffix", ["/x", "a\\b", "..", "\0"])
def test_a_suffix_must_stay_in_the_file_name(suffix: str) -> None:
    with pytest.raises(UsageError, match=r"^suffix '.*' contains .* cannot move outputs"):
        Naming(None, suffix)  # spelled as the API's keyword unless a command runs
