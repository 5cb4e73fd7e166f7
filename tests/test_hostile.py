"""A hostile corpus, generated in tmp_path: whatever a folder holds and whatever stops the
run, every input ends as exactly one line, no input is modified, no output is half-written,
written twice or written outside the output folder, and nothing hangs (README, Guarantees).

Each class of trouble is checked for the exact status and reason of its line, the exit
code, the good files beside the bad ones (written) and the inputs (byte for byte the same).
Runs go through Typer's CliRunner where that is faithful, and through a real process
(``python -m pocketsr_cli``) for signals, locales, FIFOs and racing runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runs import as_on_windows, default_stop_signals, leftovers, unenterable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli import claims, pipeline
from pocketsr_cli.cli import app
from pocketsr_cli.errors import UsageError
from pocketsr_cli.imageio import extension_for, plan_output, read_provenance_text
from pocketsr_cli.jobs import Job, Naming, collect_jobs
from pocketsr_cli.pipeline import Options, Variant, run
from pocketsr_cli.provenance import RunSettings

runner = CliRunner()
FAST = ("-m", "bicubic", "-s", "2")
PAUSE = "POCKETSR_TEST_PAUSE_BEFORE_RENAME"  # imageio.write_atomic's test hook

# --- building the corpus ------------------------------------------------------------------


def image(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 6), seed: int = 0) -> Path:
    """A small image of ``mode`` (RGB, RGBA, LA, L) at ``path``, format from its name."""
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if mode in ("RGBA", "LA"):
        pixels[..., -1] = np.where(np.arange(size[0]) < size[0] // 2, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


def fingerprint(*roots: Path) -> dict[str, str]:
    """Every entry under ``roots`` without following links: a file's SHA-256, a link's
    target, or what else it is.  Equal before and after a run: nothing was modified."""
    found: dict[str, str] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    found[path] = "-> " + os.readlink(path)
                elif stat.S_ISREG(mode):
                    with open(path, "rb") as handle:
                        found[path] = hashlib.sha256(handle.read()).hexdigest()
                else:
                    found[path] = "dir" if stat.S_ISDIR(mode) else f"mode {stat.S_IFMT(mode)}"
    return found


def lines_of(stdout: str) -> tuple[list[dict], dict]:
    """The ``--json`` image lines and the summary; every stdout line must be JSON."""
    parsed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert parsed and parsed[-1]["type"] == "summary", stdout
    assert all(p["type"] == "image" for p in parsed[:-1]), stdout
    return parsed[:-1], parsed[-1]["summary"]


def cli(*args: object) -> tuple[int, list[dict], dict, str]:
    """``pocketsr upscale ... --json`` in-process: exit code, image lines, summary, stderr."""
    result = runner.invoke(app, ["upscale", *(str(a) for a in args), "--json"])
    images, summary = lines_of(result.stdout)
    return result.exit_code, images, summary, result.stderr


def by_input(images: list[dict], root: Path) -> dict[str, dict]:
    """Image lines keyed by their input relative to ``root``; each input exactly once."""
    keyed = {os.path.relpath(line["input"], root): line for line in images}
    assert len(keyed) == len(images), [line["input"] for line in images]
    return keyed


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "pocketsr_cli", "upscale", *(str(a) for a in args)]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANG", PAUSE)}
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- 1. an output never replaces an input -------------------------------------------------


@pytest.fixture
def alpha_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "alpha"
    image(folder / "logo.png", "RGBA", seed=1)
    image(folder / "mask.png", "LA", seed=2)
    image(folder / "photo.png", "RGB", seed=3)
    return folder


@pytest.mark.parametrize(
    "how",
    [
        ("-o", "{folder}", "--format", "jpg", "--overwrite"),
        ("-o", "{folder}", "--format", "jpg"),
        ("--suffix", "", "--format", "jpg", "--overwrite"),
        ("--suffix", "", "--format", "bmp"),
    ],
)
def test_transparency_asked_as_jpeg_or_bmp_never_replaces_its_input(
    alpha_folder: Path, how: tuple[str, ...]
) -> None:
    """RGBA and gray+alpha go to PNG: planned before the run, refused as an input."""
    before = fingerprint(alpha_folder)
    args = [a.format(folder=alpha_folder) for a in how]
    result = runner.invoke(app, ["upscale", str(alpha_folder), *args, *FAST])
    assert result.exit_code == 2, result.stderr
    message = " ".join(result.stderr.split())
    fmt = "JPEG" if "jpg" in args else "BMP"
    assert f"output {alpha_folder / 'logo.png'} would overwrite input" in message
    assert f"({fmt} cannot store its transparency, so it is written as PNG)" in message
    assert "exists" not in message and "use --overwrite" not in message
    assert fingerprint(alpha_folder) == before  # nothing written, nothing replaced


def test_without_transparency_the_same_command_writes_beside_the_inputs(
    alpha_folder: Path,
) -> None:
    (alpha_folder / "logo.png").unlink()
    (alpha_folder / "mask.png").unlink()
    before = fingerprint(alpha_folder)
    code, images, _, err = cli(alpha_folder, "--suffix", "", "--format", "jpg", *FAST)
    assert code == 0, err
    assert [(line["status"], Path(line["output"]).name) for line in images] == [("ok", "photo.jpg")]
    assert {k: v for k, v in fingerprint(alpha_folder).items() if k in before} == before


def test_an_output_that_is_an_input_under_another_name_is_refused(tmp_path: Path) -> None:
    src = image(tmp_path / "in" / "a.png", seed=1)
    image(tmp_path / "in" / "b.png", seed=2)
    (tmp_path / "out").mkdir()
    os.link(src, tmp_path / "out" / "a.png")  # a hard link (cp -al backups make these)
    os.symlink(tmp_path / "in" / "b.png", tmp_path / "out" / "b.png")
    before = fingerprint(tmp_path)
    for flags in ((), ("--overwrite",)):
        result = runner.invoke(
            app, ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST, *flags]
        )
        assert result.exit_code == 2
        message = " ".join(result.stderr.split())
        assert "would overwrite input" in message and "the same file under another name" in message
        assert fingerprint(tmp_path) == before


def test_a_format_switch_onto_an_input_is_refused_before_the_run(tmp_path: Path) -> None:
    """GIF is written as PNG: logo.gif -> logo_x.png, which is an input here."""
    gif = tmp_path / "logo.gif"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(gif)
    image(tmp_path / "logo_x.png")
    before = fingerprint(tmp_path)
    result = runner.invoke(
        app, ["upscale", str(gif), str(tmp_path / "logo_x.png"), "--suffix", "_x", *FAST]
    )
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "would overwrite input" in message and "its format cannot be written" in message
    assert fingerprint(tmp_path) == before


def test_content_that_belies_its_name_is_written_as_its_name_says(tmp_path: Path) -> None:
    """Planning goes by names; a GIF named .jpg is only found out by decoding it, and is
    written as the JPEG its output's name promises, with a note."""
    fake = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(fake, format="GIF")
    image(tmp_path / "a_x.png", seed=4)
    before = fingerprint(tmp_path)
    code, images, _, _ = cli(fake, tmp_path / "a_x.png", "--suffix", "_x", *FAST)
    assert code == 0
    lines = by_input(images, tmp_path)
    assert (lines["a.jpg"]["status"], lines["a.jpg"]["output"]) == ("ok", str(tmp_path / "a_x.jpg"))
    assert lines["a.jpg"]["warnings"] == [
        "its content is GIF, not JPEG as its name says; written as JPEG"
    ]
    with Image.open(tmp_path / "a_x.jpg") as written:
        assert written.format == "JPEG"
    assert lines["a_x.png"]["status"] == "ok"
    assert (tmp_path / "a_x_x.png").is_file()
    assert {k: v for k, v in fingerprint(tmp_path).items() if k in before} == before


def test_content_found_out_after_planning_never_overwrites_an_input(tmp_path: Path) -> None:
    """Jobs planned while ``a.jpg`` was an opaque photo; by the time it is read it holds a
    transparent PNG, which cannot be a JPEG: its PNG output would be the input a_x.png."""
    fake = image(tmp_path / "a.png", "RGBA", seed=1).rename(tmp_path / "a.jpg")
    other = image(tmp_path / "a_x.png", seed=4)
    jobs = [
        Job(fake, tmp_path / "a_x.jpg", "a.jpg"),
        Job(other, tmp_path / "a_x_x.png", "a_x.png"),
    ]
    before = fingerprint(tmp_path)
    summary = run(jobs, Doubler(), Options(), pipeline.NullReporter())
    first, second = summary.results
    assert first.status == "failed"
    assert first.error == (  # called from Python: the keyword (the command line: --format)
        f"its content is PNG, so its output would be {tmp_path / 'a_x.png'}, which is an "
        "input; rename it to its format's extension or choose fmt"
    )
    assert second.status == "ok"
    after = fingerprint(tmp_path)
    assert after.pop(str(tmp_path / "a_x_x.png"))
    assert after == before


# --- 3. symbolic links ----------------------------------------------------------------------


@pytest.fixture
def linked_tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    image(root / "good.png", seed=1)
    image(root / "sub" / "deep.png", seed=2)
    image(tmp_path / "outside" / "far.png", seed=3)
    os.symlink("..", root / "sub" / "loop")  # back to in/: a loop
    os.symlink(".", root / "me")  # itself: a loop
    os.symlink("self.png", root / "self.png")  # a file link to itself
    os.symlink("nowhere.png", root / "dangling.png")
    os.symlink("nowhere.txt", root / "dangling.txt")
    os.symlink("sub", root / "alias")  # a second path into the tree
    os.symlink("../outside", root / "ext1")  # a folder elsewhere: followed
    os.symlink("../outside", root / "ext2")  # ... once
    return root


def test_symbolic_link_loops_and_broken_links_each_get_one_line(
    linked_tree: Path, tmp_path: Path
) -> None:
    before = fingerprint(tmp_path / "in", tmp_path / "outside")
    code, images, summary, err = cli(linked_tree, "-r", "-o", tmp_path / "out", *FAST)
    assert code == 1, err
    got = {
        name: (line["status"], line["reason_code"], line["reason"] or line["error"])
        for name, line in by_input(images, linked_tree).items()
    }
    root = linked_tree
    assert got == {
        "dangling.png": ("failed", None, "broken symbolic link: nowhere.png does not exist"),
        "dangling.txt": ("skipped", "not-image", "not an image file (.txt)"),
        "good.png": ("ok", None, None),
        "self.png": ("failed", None, "broken symbolic link: it leads back to itself (a loop)"),
        "alias": (
            "skipped",
            "link-duplicate",
            f"symbolic link to {os.path.realpath(root / 'sub')}, inside the folder being "
            "scanned: not followed (its files are upscaled at their own path)",
        ),
        "ext1/far.png": ("ok", None, None),
        "ext2": (
            "skipped",
            "link-duplicate",
            f"the same folder as {root / 'ext1'}, scanned already; not followed",
        ),
        "me": (
            "skipped",
            "link-loop",
            f"symbolic link loop: it leads back to {root}; not followed",
        ),
        "sub/deep.png": ("ok", None, None),
        "sub/loop": (
            "skipped",
            "link-loop",
            f"symbolic link loop: it leads back to {root}; not followed",
        ),
    }
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (3, 2, 5)
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert written == ["ext1/far.png", "good.png", "sub/deep.png"]
    assert fingerprint(tmp_path / "in", tmp_path / "outside") == before
    assert "Traceback" not in err and "this is a bug" not in err


def test_without_recursion_broken_links_still_get_their_line(linked_tree: Path) -> None:
    code, images, _, _ = cli(linked_tree, *FAST)
    assert code == 1
    assert {k: v["status"] for k, v in by_input(images, linked_tree).items()} == {
        "dangling.png": "failed",
        "dangling.txt": "skipped",
        "good.png": "ok",
        "self.png": "failed",
    }
    assert (linked_tree / "good_x2.png").is_file()


def test_a_broken_link_named_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    # ls lists a broken link, so a bare "not found" puzzled: the line says what it is,
    # as a folder scan's line for it does.
    os.symlink("nowhere.png", tmp_path / "gone.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    for name, why in [
        ("gone.png", "(broken symbolic link: nowhere.png does not exist)"),
        ("loop.png", "(broken symbolic link: it leads back to itself (a loop))"),
    ]:
        result = runner.invoke(app, ["upscale", str(tmp_path / name), *FAST])
        assert result.exit_code == 2, result.output
        assert f"input not found: {tmp_path / name} {why}" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    result = runner.invoke(app, ["upscale", str(tmp_path / "absent.png"), *FAST])
    assert result.exit_code == 2 and "input not found: " in result.stderr
    assert result.stderr.rstrip().endswith("absent.png")  # no link: nothing added


def test_an_input_that_cannot_even_be_looked_at_is_a_usage_error_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name past NAME_MAX, a path past PATH_MAX, a folder on the way that may not be
    entered: ``stat`` raises there, which ended the command in a traceback ("this is a
    bug", exit 1), and the Python API's ``iter_jobs`` in a bare OSError."""

    from pocketsr_cli.jobs import iter_jobs

    too_long = tmp_path / ("n" * 300 + ".png")
    deep = tmp_path.joinpath(*["d" * 200] * 25, "a.png")  # each name fits, the path not
    for path, why in [
        (too_long, "the name 'nnnnnnnnnn…nnnnnn.png' in it has 304 bytes, more than its file"),
        (deep, f"it is longer than this system allows ({len(os.fsencode(deep))} bytes in all)"),
    ]:
        result = runner.invoke(app, ["upscale", str(path), *FAST])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error (usage): cannot read the input {path}: {why}")
        assert result.stderr.count("\n") == 1  # one line, no traceback
        with pytest.raises(UsageError, match="cannot read the input"):
            iter_jobs([path], Naming(None, None))

    locked = tmp_path / "locked"  # as a folder without search permission answers, even root
    locked.mkdir()
    unenterable(locked, monkeypatch)
    result = runner.invoke(app, ["upscale", str(locked / "a.png"), *FAST, "--json"])
    assert result.exit_code == 2
    message = json.loads(result.stdout)["message"]
    assert message == f"cannot read the input {locked / 'a.png'}: {locked} may not be entered " + (
        "(permission denied)"
    )


# --- 9. one bad folder never stops the run -----------------------------------------------


def test_an_unreadable_sub_folder_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "in"
    image(root / "a.png", seed=1)
    image(root / "locked" / "secret.png", seed=2)
    image(root / "z" / "b.png", seed=3)
    image(tmp_path / "shut" / "c.png", seed=4)  # a folder named on the command line
    real_scandir = os.scandir
    locked = {str(root / "locked"), str(tmp_path / "shut")}

    def scandir(path: object = ".") -> object:  # what chmod 000 does to anyone but root
        if os.fspath(path) in locked:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    code, images, _, err = cli(root, tmp_path / "shut", "-r", "-o", tmp_path / "out", *FAST)
    assert code == 1, err
    lines = by_input(images, root)
    for name in ("locked", "../shut"):
        assert lines[name]["status"] == "failed"
        assert lines[name]["error"] == (
            "cannot read folder (Permission denied); the files in it were not seen"
        )
    assert lines["a.png"]["status"] == lines["z/b.png"]["status"] == "ok"
    assert (tmp_path / "out" / "z" / "b.png").is_file()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_sub_folder_fails_alone_for_real(tmp_path: Path) -> None:
    root = tmp_path / "in"
    image(root / "a.png")
    image(root / "locked" / "secret.png")
    (root / "locked").chmod(0)
    try:
        code, images, _, _ = cli(root, "-r", "-o", tmp_path / "out", *FAST)
    finally:
        (root / "locked").chmod(0o755)
    assert code == 1
    assert by_input(images, root)["locked"]["status"] == "failed"
    assert (tmp_path / "out" / "a.png").is_file()


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_a_directory_at_an_output_name_fails_and_is_left_alone(
    tmp_path: Path, overwrite: tuple[str, ...]
) -> None:
    image(tmp_path / "in" / "a.png", seed=1)
    image(tmp_path / "in" / "b.png", seed=2)
    image(tmp_path / "in" / "c.png", seed=3)
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    (tmp_path / "out" / "a.png" / "keep.txt").write_text("mine")
    os.symlink("nowhere", tmp_path / "out" / "c.png")
    before = fingerprint(tmp_path)
    code, images, _, _ = cli(tmp_path / "in", "-o", tmp_path / "out", *FAST, *overwrite)
    assert code == 1
    lines = by_input(images, tmp_path / "in")
    assert lines["a.png"]["status"] == "failed"
    assert lines["a.png"]["error"] == (
        f"a directory is in the way at {tmp_path / 'out' / 'a.png'}; move it, or choose "
        "another --output folder"
    )
    assert lines["c.png"]["status"] == "failed"
    assert lines["c.png"]["error"].startswith("a broken symbolic link is in the way at")
    assert lines["b.png"]["status"] == "ok"
    after = fingerprint(tmp_path)
    assert after.pop(str(tmp_path / "out" / "b.png"))
    assert after == before


# --- 8. odd names, odd files, odd suffixes ---------------------------------------------------


@pytest.mark.parametrize("suffix", ["/../../x", "/x", "..", "a/b", "a\\b", "x..y", "x\0y"])
def test_a_suffix_that_is_not_part_of_a_name_is_a_usage_error(tmp_path: Path, suffix: str) -> None:
    image(tmp_path / "in" / "a.png")
    before = fingerprint(tmp_path)
    result = runner.invoke(app, ["upscale", str(tmp_path / "in"), "--suffix", suffix, *FAST])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"--suffix {suffix!r} contains" in message
    assert "cannot move outputs elsewhere" in message and "Traceback" not in result.stderr
    assert fingerprint(tmp_path) == before


def test_names_that_are_not_utf8_or_hold_control_characters(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    odd = [
        Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png")),  # Latin-1 bytes
        folder / "two\nlines.png",
        folder / "bell\x1b[31m.png",
    ]
    for i, path in enumerate(odd):
        image(path, seed=i)
    image(folder / "plain.png", seed=9)
    before = fingerprint(folder)
    code, images, summary, _ = cli(folder, *FAST)  # CliRunner's stdout is strict UTF-8
    assert code == 0 and summary["ok"] == 4
    inputs = {line["input"] for line in images}
    assert inputs == {str(p) for p in [*odd, folder / "plain.png"]}  # round-trips
    latin = next(line for line in images if "caf" in line["input"])
    assert os.fsencode(latin["output"]).endswith(b"/caf\xe9_x2.png")
    assert os.path.isfile(os.fsencode(latin["output"]))
    # The log: one line per input, the bytes shown as \xe9, control characters escaped.
    result = runner.invoke(app, ["upscale", str(folder), *FAST, "--overwrite"])
    ok_lines = [line for line in result.stderr.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == 4
    assert any("caf\\xe9.png" in line for line in ok_lines)
    assert any("two\\nlines.png" in line for line in ok_lines)
    assert any("bell\\x1b[31m.png" in line for line in ok_lines)
    assert {k: v for k, v in fingerprint(folder).items() if k in before} == before


def test_an_output_name_too_long_for_the_file_system_fails_alone(tmp_path: Path) -> None:
    long = image(tmp_path / ("a" * 250 + ".png"), seed=1)  # + "_x2": past NAME_MAX (255)
    image(tmp_path / "short.png", seed=2)
    code, images, _, err = cli(long, tmp_path / "short.png", *FAST)
    assert code == 1, err
    first, second = images
    assert first["status"] == "failed" and "File name too long" in first["error"]
    assert second["status"] == "ok" and (tmp_path / "short_x2.png").is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"PYTHONIOENCODING": "utf-8:strict"}, id="strict-streams"),
        pytest.param({"LC_ALL": "C.UTF-8"}, id="c-utf8", marks=pytest.mark.slow),
        pytest.param({"PYTHONUTF8": "1"}, id="utf8-mode", marks=pytest.mark.slow),
    ],
)
def test_a_name_that_is_not_utf8_under_any_locale(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "in"
    image(Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png")), seed=1)
    image(folder / "plain.png", seed=2)
    done = subprocess.run(
        command(folder, *FAST, "--json"),
        capture_output=True,
        env=environment(**env),
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    images, summary = lines_of(done.stdout.decode("utf-8"))  # strict: valid UTF-8 JSON
    assert summary["ok"] == 2
    assert {os.fsencode(line["input"]) for line in images} == {
        os.fsencode(folder) + b"/caf\xe9.png",
        os.fsencode(folder / "plain.png"),
    }
    assert b"Traceback" not in done.stderr
    assert os.path.isfile(os.fsencode(folder) + b"/caf\xe9_x2.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_devices_and_sockets_are_never_opened(tmp_path: Path) -> None:
    """A real process with a time limit: opening a FIFO would hang it, /dev/zero would fill
    its memory."""
    folder = tmp_path / "in"
    image(folder / "good.png", seed=1)
    image(folder / "other.png", seed=2)
    os.mkfifo(folder / "fifo.png")
    os.symlink("/dev/zero", folder / "zero.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock.png"))
    os.mkfifo(tmp_path / "lone.png")  # named on the command line
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "other.png")  # sitting at an output's name
    before = fingerprint(tmp_path)
    done = subprocess.run(
        command(folder, tmp_path / "lone.png", "-o", tmp_path / "out", *FAST, "--json"),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=180,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    images, summary = lines_of(done.stdout)
    got = {k: (v["status"], v["error"]) for k, v in by_input(images, tmp_path).items()}
    fifo = "not a regular file but a named pipe (FIFO); not opened"
    assert got == {
        "in/fifo.png": ("failed", fifo),
        "in/good.png": ("ok", None),
        "in/other.png": (
            "failed",
            f"a named pipe (FIFO) is in the way at {tmp_path / 'out' / 'other.png'}; move it, "
            "or choose another --output folder",
        ),
        "in/sock.png": ("failed", "not a regular file but a socket; not opened"),
        "in/zero.png": ("failed", "not a regular file but a character device; not opened"),
        "lone.png": ("failed", fifo),
    }
    assert summary["failed"] == 5 and summary["ok"] == 1
    after = fingerprint(tmp_path)
    assert after.pop(str(tmp_path / "out" / "good.png"))
    assert after == before


# --- 7. racing runs -----------------------------------------------------------------------


def test_a_claim_is_held_once_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "a.png"
    first = claims.acquire(out)
    assert first is not None and claims.claim_path(out).exists()
    assert claims.acquire(out) is None  # held: another run is writing it
    first.release()
    first.release()  # idempotent
    assert not claims.claim_path(out).exists()
    # A claim file whose run was killed (no lock on it) does not block the next run.
    claims.claim_path(out).write_text("")
    second = claims.acquire(out)
    assert second is not None
    second.release()
    assert leftovers(tmp_path) == []
    long = tmp_path / ("é" * 120 + ".png")
    assert len(os.fsencode(claims.claim_path(long).name)) < 255
    if hasattr(os, "mkfifo"):  # planted at a claim's name: refused, never waited on
        os.mkfifo(claims.claim_path(tmp_path / "b.png"))
        with pytest.raises(OSError):
            claims.acquire(tmp_path / "b.png")


def test_an_exclusive_write_never_replaces_what_appeared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli import imageio

    target = tmp_path / "a.png"
    assert imageio.write_atomic(target, b"first", exclusive=True) is True
    assert imageio.write_atomic(target, b"second", exclusive=True) is False
    assert target.read_bytes() == b"first"

    def no_hard_links(src: object, dst: object) -> None:  # FAT, some network shares
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(imageio.atomic.os, "link", no_hard_links)
    assert imageio.write_atomic(target, b"third", exclusive=True) is False
    assert imageio.write_atomic(tmp_path / "b.png", b"new", exclusive=True) is True
    assert target.read_bytes() == b"first" and (tmp_path / "b.png").read_bytes() == b"new"
    assert leftovers(tmp_path) == []


class Doubler:
    """Nearest-neighbour ×2; ``during`` runs while an image is being upscaled."""

    scale = 2

    def __init__(self, during: Callable[[], None] = lambda: None) -> None:
        self.during = during

    def upscale(
        self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        self.during()
        return pixels.repeat(2, axis=0).repeat(2, axis=1)


def folder_of(root: Path, n: int) -> Path:
    for i in range(n):
        image(root / f"{i}.png", seed=i)
    return root


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_written_meanwhile_by_another_run_is_kept(
    tmp_path: Path, overwrite: bool
) -> None:
    src = folder_of(tmp_path / "in", 1)
    target = tmp_path / "out" / "0.png"
    if overwrite:
        image(target, seed=7)  # an earlier output this run means to replace...

    def other_run_writes() -> None:  # ...which another run replaces first
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.write_bytes(b"the other run's output")

    jobs = collect_jobs([src], Naming(tmp_path / "out", None))
    summary = run(
        jobs, Doubler(other_run_writes), Options(overwrite=overwrite), pipeline.NullReporter()
    )
    (result,) = summary.results
    assert (result.status, result.reason_code) == ("skipped", "concurrent")
    assert result.reason == (
        "another run wrote this output while this one was working on it; it was kept"
    )
    assert target.read_bytes() == b"the other run's output"
    assert leftovers(tmp_path) == []


def test_on_windows_a_claim_that_cannot_be_made_does_not_blame_an_open_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim file that Windows refuses to create (a folder the user may not write) beside
    an earlier output (--overwrite) said "Windows replaces no file that another program
    has open: close it there", which no program holding the output would cause."""
    from pocketsr_cli import errors

    src = folder_of(tmp_path / "in", 1)
    target = tmp_path / "out" / "0.png"
    image(target, seed=7)

    def refused(output: Path) -> None:
        raise PermissionError(13, "Access is denied", str(claims.claim_path(output)))

    monkeypatch.setattr(claims, "acquire", refused)
    monkeypatch.setattr(errors.sys, "platform", "win32")
    jobs = collect_jobs([src], Naming(tmp_path / "out", None))
    (result,) = run(jobs, Doubler(), Options(overwrite=True), pipeline.NullReporter()).results
    assert result.status == "failed"
    assert result.error == f"cannot write {target}: Access is denied"


def test_an_output_claimed_by_another_run_is_skipped(tmp_path: Path) -> None:
    src = folder_of(tmp_path / "in", 2)
    held = claims.acquire(tmp_path / "out" / "0.png")  # another run is renaming it now
    assert held is not None
    try:
        jobs = collect_jobs([src], Naming(tmp_path / "out", None))
        summary = run(jobs, Doubler(), Options(), pipeline.NullReporter())
    finally:
        held.release()
    first, second = summary.results
    assert (first.status, first.reason_code) == ("skipped", "concurrent")
    assert first.reason == "another pocketsr run is writing this output right now"
    assert second.status == "ok"
    assert not (tmp_path / "out" / "0.png").exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="needs flock")
def windows_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims as on Windows (``_runs.as_on_windows``: no flock), and Windows' refusal to
    remove a file that a process holds open, emulated with this process's open files."""
    real_unlink = os.unlink

    def windows_unlink(path: object, *args: object, **kwargs: object) -> None:
        target = os.stat(path)  # type: ignore[arg-type]
        held = False
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                held = held or os.path.samestat(os.fstat(int(fd)), target)
        if held:
            raise PermissionError(13, "The process cannot access the file", path)
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    as_on_windows(monkeypatch)
    monkeypatch.setattr(os, "unlink", windows_unlink)


@pytest.mark.parametrize("system", ["flock", "windows"])
def test_a_claim_left_beside_a_written_output_is_swept_and_a_held_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str
) -> None:
    """A run killed outright after its rename but before its claim's removal (or one whose
    folder had become read-only) left ``.NAME.pocketsr-claim``: every later run skipped the
    written output and the claim stayed for ever, as the sweep looked at temporary files
    only.  A claim no process holds goes with the folder's sweep; a live run's (locked),
    or one made just now (its creator may be about to lock it), is kept.  Without flock
    (Windows) a claim's run holds it open from its creation to its removal, and Windows
    removes no open file: the sweep removes what it can, so a live run's is kept there too
    (it removed none before)."""
    if system == "windows":
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc")
        windows_claims(monkeypatch)
    src = folder_of(tmp_path / "in", 3)
    jobs = collect_jobs([src], Naming(tmp_path / "out", None))
    assert run(jobs, Doubler(), Options(), pipeline.NullReporter()).count("ok") == 3
    out = tmp_path / "out"
    old = time.time() - claims.STALE_AFTER - 60
    left = claims.claim_path(out / "0.png")
    left.write_text("")  # its run was killed after the rename
    os.utime(left, (old, old))
    orphan = out / ".gone.png.pocketsr-claim"  # an output no longer made
    orphan.write_text("")
    os.utime(orphan, (old, old))
    held = claims.acquire(out / "1.png")  # another run, at its rename now
    assert held is not None
    os.utime(held.path, (old, old))
    fresh = claims.claim_path(out / "2.png")
    fresh.write_text("")  # made a moment ago: its run may not have locked it yet
    try:
        summary = run(jobs, Doubler(), Options(), pipeline.NullReporter())
        assert [r.reason_code for r in summary.results] == ["exists"] * 3
        assert not left.exists() and not orphan.exists()
        assert held.path.exists() and fresh.exists()
    finally:
        held.release()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_on_windows_a_claim_left_by_a_killed_run_is_taken_and_a_held_one_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no flock, and a run killed there (or a --devices worker, which the
    driver ends with TerminateProcess) leaves its claim file: every later run skipped
    that output as "being written" until the file was deleted by hand.  Windows removes
    no file a process holds open, as emulated here: a claim file that can be removed has
    no holder left, and is taken."""
    windows_claims(monkeypatch)
    out = tmp_path / "a.png"
    held = claims.acquire(out)
    assert held is not None
    assert claims.acquire(out) is None
    assert claims.remove_leftovers(out) == 0 and held.path.exists()  # a live run's
    assert claims.describe_busy(out) == "another pocketsr run is writing this output right now"
    held.release()
    assert not claims.claim_path(out).exists()
    claims.claim_path(out).write_text("")  # left by a run killed outright
    taken = claims.acquire(out)
    assert taken is not None
    taken.release()
    claims.claim_path(out).write_text("")
    claims.remove_leftovers(out)
    assert not claims.claim_path(out).exists()
    src = folder_of(tmp_path / "in", 1)
    claims.claim_path(tmp_path / "out" / "0.png").parent.mkdir()
    claims.claim_path(tmp_path / "out" / "0.png").write_text("")
    jobs = collect_jobs([src], Naming(tmp_path / "out", None))
    (result,) = run(jobs, Doubler(), Options(), pipeline.NullReporter()).results
    assert result.status == "ok" and leftovers(tmp_path) == []


def test_two_runs_in_one_process_write_each_output_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs with different models race on every output (each rename is held back so
    that they meet); each output is written by one, and its record names that one."""
    monkeypatch.setenv(PAUSE, "0.02")
    src = folder_of(tmp_path / "in", 6)
    jobs = collect_jobs([src], Naming(tmp_path / "out", None))
    summaries: dict[str, pipeline.Summary] = {}
    record = RunSettings(version="test")
    start = threading.Barrier(2)

    def race(model: str) -> None:
        start.wait()
        variant = Variant(Doubler(), model)
        summaries[model] = run(jobs, [variant], Options(record=record), pipeline.NullReporter())

    threads = [threading.Thread(target=race, args=(m,)) for m in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for job in jobs:
        wrote = [
            m for m, s in summaries.items() for r in s.results if r.job == job and r.status == "ok"
        ]
        assert len(wrote) == 1, job.input
        written = json.loads(read_provenance_text(job.output) or "{}")
        assert written["model"] == wrote[0]  # the file is what the log says
        other = next(
            r for m, s in summaries.items() for r in s.results if r.job == job and m != wrote[0]
        )
        assert other.status == "skipped"
        assert other.reason_code in ("concurrent", "different-settings")
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_processes_into_one_folder_write_each_output_once(tmp_path: Path) -> None:
    src = folder_of(tmp_path / "in", 8)
    before = fingerprint(src)
    env = environment(**{PAUSE: "0.2"})
    runs = {
        model: subprocess.Popen(
            command(src, "-o", tmp_path / "out", "-m", model, "-s", "2", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for model in ("bicubic", "lanczos")
    }
    logs = {}
    for model, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        logs[model] = by_input(lines_of(stdout)[0], src)
    for name in sorted(os.listdir(src)):
        wrote = [m for m, lines in logs.items() if lines[name]["status"] == "ok"]
        assert len(wrote) == 1, (name, logs)
        (other,) = set(logs) - set(wrote)
        assert logs[other][name]["status"] == "skipped"
        assert logs[other][name]["reason_code"] in ("concurrent", "different-settings")
        record = json.loads(read_provenance_text(tmp_path / "out" / name) or "{}")
        assert record["model"] == wrote[0]
    assert leftovers(tmp_path) == [] and fingerprint(src) == before


# --- 6. signals -----------------------------------------------------------------------------


def _stop_mid_write(
    tmp_path: Path, signals: list[int], pause: str = "1.5", ignored: int | None = None
) -> tuple[int, str, str]:
    """Start a run of four images whose renames are held back (with the signal ``ignored``
    ignored from its start, as ``nohup`` does), send ``signals`` while the first temporary
    file exists, and return (exit code, stdout, stderr)."""
    src = folder_of(tmp_path / "in", 4)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        command(src, "-o", out, *FAST, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(**{PAUSE: pause}),
        preexec_fn=lambda: default_stop_signals(ignored),
    )
    try:
        wait_for(lambda: out.is_dir() and any(n.endswith(".pocketsr-tmp") for n in os.listdir(out)))
        for number in signals:
            proc.send_signal(number)
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr


def _check_stopped_run(tmp_path: Path, stdout: str, stderr: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    images, summary = lines_of(stdout)
    lines = by_input(images, src)
    assert sorted(lines) == ["0.png", "1.png", "2.png", "3.png"]  # every input, once
    assert summary["interrupted"] is True
    statuses = [(line["status"], line["reason_code"]) for line in lines.values()]
    assert ("ok", None) in statuses  # the file in hand was finished...
    assert ("skipped", "interrupted") in statuses  # ...and nothing new was started
    assert set(statuses) <= {("ok", None), ("skipped", "interrupted")}
    for name, line in lines.items():
        if line["status"] == "ok":
            with Image.open(out / name) as im:
                im.load()  # complete
        else:
            assert line["reason"] == "the run was stopped before this input was finished"
            assert not (out / name).exists()
    assert leftovers(tmp_path) == []
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert "interrupted: " in stderr  # the summary's note


@pytest.mark.slow
@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_finish_the_file_in_hand_and_print_the_summary(
    tmp_path: Path, number: int, code: int
) -> None:
    returncode, stdout, stderr = _stop_mid_write(tmp_path, [number])
    assert returncode == code, stderr
    _check_stopped_run(tmp_path, stdout, stderr)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("number", [signal.SIGHUP, signal.SIGINT])
def test_a_signal_ignored_at_start_stays_ignored(tmp_path: Path, number: int) -> None:
    """``nohup pocketsr …`` ignores SIGHUP, and a shell ignores SIGINT in a job it starts
    in the background: the run must go on through them, as any other program does."""
    returncode, stdout, stderr = _stop_mid_write(tmp_path, [number], "0.5", ignored=number)
    assert returncode == 0, stderr
    images, summary = lines_of(stdout)
    assert sorted(line["status"] for line in images) == ["ok"] * 4
    assert summary["interrupted"] is False
    assert sorted(os.listdir(tmp_path / "out")) == ["0.png", "1.png", "2.png", "3.png"]


@pytest.mark.slow
def test_a_burst_of_ctrl_c_never_ends_in_a_traceback(tmp_path: Path) -> None:
    returncode, stdout, stderr = _stop_mid_write(tmp_path, [signal.SIGINT] * 12)
    assert returncode == 130, stderr
    _check_stopped_run(tmp_path, stdout, stderr)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_ctrl_c_typed_on_a_real_terminal_never_ends_in_a_traceback(tmp_path: Path) -> None:
    """A burst of Ctrl-C typed at a terminal: the run is the terminal's foreground process
    group (its own session, the pty as controlling terminal, progress drawn on it), and the
    terminal driver, not ``send_signal``, turns each ^C into SIGINT for the whole group."""
    import contextlib
    import fcntl
    import termios
    import threading

    src = folder_of(tmp_path / "in", 4)
    out = tmp_path / "out"
    master, slave = os.openpty()

    def own_terminal() -> None:  # runs in the child: a new session whose terminal is the pty
        default_stop_signals()
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        command(src, "-o", out, *FAST, "--json"),
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env=environment(**{PAUSE: "1.5", "TERM": "xterm-256color"}),
        preexec_fn=own_terminal,
    )
    os.close(slave)
    seen: list[bytes] = []

    def drain() -> None:  # the terminal's screen: everything written to stderr
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 65536):
                seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: out.is_dir() and any(n.endswith(".pocketsr-tmp") for n in os.listdir(out)))
        for _ in range(12):
            os.write(master, b"\x03")
            time.sleep(0.02)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        os.close(master)
    screen = b"".join(seen).decode("utf-8", "replace")
    assert proc.returncode == 130, screen[-2000:]
    _check_stopped_run(tmp_path, stdout, screen)


# --- 10. temporary files left by a killed run ---------------------------------------------


def _aged(path: Path, seconds: float = 3600.0) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_run_removes_the_temporary_files_killed_runs_left_in_its_output_folder(
    tmp_path: Path,
) -> None:
    src = image(tmp_path / "in" / "x.png", size=(16, 12))
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".x.png.0123456789ab.pocketsr-tmp"
    left.write_bytes(b"\x89PNG half of it")
    _aged(left)
    recent = out / ".y.png.0123456789ab.pocketsr-tmp"  # maybe an older version writing now
    recent.write_bytes(b"\x89PNG being written")
    result = runner.invoke(app, ["upscale", str(src), "-o", str(out), *FAST, "-q", "--dry-run"])
    assert result.exit_code == 0 and left.exists()  # a dry run changes nothing
    result = runner.invoke(app, ["upscale", str(src), "-o", str(out), *FAST, "-q"])
    assert result.exit_code == 0, result.output
    assert not left.exists() and recent.exists()
    assert sorted(os.listdir(out)) == [recent.name, "x.png"]
    with Image.open(out / "x.png") as im:
        im.load()
        assert im.size == (32, 24)


def test_kill_9_mid_write_leaves_a_temporary_file_that_a_later_run_removes(
    tmp_path: Path,
) -> None:
    """The real thing: a run killed with SIGKILL while its temporary output exists."""
    src = image(tmp_path / "in" / "big.png", size=(640, 480))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        command(src, "-o", out, *FAST, "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(**{PAUSE: "60"}),
    )
    try:
        wait_for(lambda: out.is_dir() and any(n.endswith(".pocketsr-tmp") for n in os.listdir(out)))
        (temp,) = (out / n for n in os.listdir(out) if n.endswith(".pocketsr-tmp"))
        wait_for(lambda: temp.stat().st_size > 0)  # written, held back before its rename
        from pocketsr_cli.atomicfile import sweep_stale_temps

        assert sweep_stale_temps(out, stale_after=0) == 0  # its writer is alive: kept
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert temp.exists() and not (out / "big.png").exists()  # what kill -9 leaves
    args = ["upscale", str(src), "-o", str(out), *FAST, "-q"]
    result = runner.invoke(app, args)  # at once: for a minute it could be an older version's
    assert result.exit_code == 0 and temp.exists() and (out / "big.png").exists()
    _aged(temp, 61)
    result = runner.invoke(app, args)  # the output is there (skipped); the folder is swept
    assert result.exit_code == 0 and not temp.exists()
    assert sorted(os.listdir(out)) == ["big.png"]
    with Image.open(out / "big.png") as im:
        im.load()
        assert im.size == (1280, 960)


# --- naming and output planning, for any suffix, format and alpha -------------------------


def _png(mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (2, 2)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = {mode: _png(mode) for mode in ("RGB", "RGBA")}

_EXTENSIONS = [".png", ".PNG", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif"]
_FORMATS = [None, "png", "jpeg", "webp", "tiff", "bmp"]
_SUFFIXES = st.one_of(
    st.none(),
    st.text(alphabet="_x4.-/\\a\0 é", max_size=6),
    st.sampled_from(["", "_x4", "..", "/..", "_x2.png", ".jpg"]),
)
_FILES = st.lists(
    st.tuples(
        st.text(alphabet="ab_x4.-", min_size=1, max_size=5).filter(lambda s: s[0] != "."),
        st.sampled_from(_EXTENSIONS),
        st.booleans(),  # transparency
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda f: f[0] + f[1],
)


def _unusable(suffix: str | None) -> bool:
    return suffix is not None and any(bad in suffix for bad in ("/", "\\", "..", "\0"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    suffix=_SUFFIXES,
    fmt=st.sampled_from(_FORMATS),
    files=_FILES,
    where=st.sampled_from(["beside", "apart", "same"]),
)
def test_no_planned_output_is_an_input_or_outside_the_output_folder(
    suffix: str | None, fmt: str | None, files: list[tuple[str, str, bool]], where: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        root.mkdir()
        alpha = {}
        for stem, ext, transparent in files:
            (root / (stem + ext)).write_bytes(_PNG["RGBA" if transparent else "RGB"])
            alpha[os.path.realpath(root / (stem + ext))] = transparent
        out_dir = {"beside": None, "apart": Path(tmp) / "out", "same": root}[where]
        try:
            naming = Naming(out_dir, suffix, fmt=fmt, tag="x4")
        except UsageError as exc:
            assert _unusable(suffix) and str(exc).startswith(f"suffix {suffix!r}")
            return
        assert not _unusable(suffix)
        try:
            jobs = collect_jobs([root], naming)
        except UsageError as exc:
            assert "would both be written" in str(exc) or (
                where != "apart" and "would overwrite input" in str(exc)
            )
            return
        fence = os.path.realpath(out_dir if out_dir is not None else root)
        for job in jobs:
            if not job.runs:
                continue
            out = os.path.realpath(job.output)
            assert out not in alpha  # never an input
            assert os.path.dirname(out) == fence  # in the output folder (or beside)
            # The plan is what the writer will write: its own format switch changes nothing.
            plan = plan_output(
                "png", fmt, has_alpha=alpha[os.path.realpath(job.input)], bit_depth=8
            )
            switched = plan.format != (fmt or "png")
            final = job.output.with_suffix(extension_for(plan.format)) if switched else job.output
            assert final == job.output


@settings(max_examples=300, deadline=None)
@given(
    suffix=st.text(max_size=8),
    stem=st.text(min_size=1, max_size=8).filter(lambda s: "/" not in s and "\0" not in s),
    folders=st.lists(st.text(alphabet="ab.", min_size=1, max_size=3), max_size=3),
    fmt=st.sampled_from(_FORMATS),
    transparent=st.booleans(),
)
def test_naming_never_leaves_the_output_folder(
    suffix: str, stem: str, folders: list[str], fmt: str | None, transparent: bool
) -> None:
    folders = [f for f in folders if f not in (".", "..")]
    try:
        naming = Naming(Path("/out"), suffix, fmt=fmt)
    except UsageError:
        assert _unusable(suffix)
        return
    rel = Path(*folders) if folders else None
    output = naming.output_for(Path("/in", *folders, stem + ".png"), rel, has_alpha=transparent)
    assert output.parent == Path("/out", *folders)
    assert output.name.startswith(stem + suffix) and os.path.normpath(output) == str(output)


class _ImportInterrupted(type(sys)):  # type: ignore[misc]
    """A module whose every attribute read is a Ctrl-C: as if it came mid-import."""

    def __getattr__(self, name: str) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("when", ["import", "parsing"])
def test_ctrl_c_before_the_command_starts_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    """A Ctrl-C while the command line is imported (a few tenths of a second) or while
    Typer reads the command's signature ended in a traceback from the line it hit."""
    from pocketsr_cli import _entry

    if when == "import":
        monkeypatch.setitem(sys.modules, "pocketsr_cli.cli", _ImportInterrupted("cli"))
    else:
        import pocketsr_cli.cli

        def interrupted(argv: list[str] | None = None) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(pocketsr_cli.cli, "main", interrupted)
    with pytest.raises(SystemExit) as stopped:
        _entry.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "interrupted (SIGINT)\n"


_CTRL_C_IN_STRING_CODE = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:  # as a Ctrl-C landing in a dataclass's made methods
            exec("raise KeyboardInterrupt")
        return None

sys.meta_path.insert(0, CtrlC())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "module",
    [
        "pocketsr_cli.cli",  # imported by the entry point
        "pocketsr_cli.cli._ui",  # imported by the command's wrapper, once Typer has parsed
    ],
)
def test_python_m_stopped_in_code_made_from_a_string_while_importing_exits_130(
    tmp_path: Path, module: str
) -> None:
    """``python -m pocketsr_cli``: a Ctrl-C that lands in code run from a string (``exec``:
    dataclasses make their methods so while the command line is imported) marked the
    interpreter's "interrupt unhandled" flag, and though pocketsr caught it and said so,
    the interpreter then killed the process with SIGINT (returncode -2) instead of exiting
    130: about one Ctrl-C in twenty in the first half-second of a run."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CTRL_C_IN_STRING_CODE.format(module=module))
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run(
        command(tmp_path / "nothing.png"),
        capture_output=True,
        text=True,
        env=environment(PYTHONPATH=path),
        timeout=120,
    )
    assert (proc.returncode, proc.stderr) == (130, "interrupted (SIGINT)\n")


def test_ctrl_c_while_typer_parses_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer turns a Ctrl-C while it parses a command's options into exit 130 without a
    word; pocketsr says what it says for any other Ctrl-C."""
    from pocketsr_cli.cli._help import Command

    def interrupted(self: Command, ctx: object, args: list[str]) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(Command, "parse_args", interrupted)
    result = runner.invoke(app, ["upscale", "nothing.jpg"])
    assert result.exit_code == 130
    assert result.stderr == "interrupted (SIGINT)\n"


def test_ctrl_c_before_the_command_with_stderr_closed_still_exits_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``2>&-`` (sys.stderr None) the message's write raised, and exited 1."""
    from pocketsr_cli import _entry

    monkeypatch.setitem(sys.modules, "pocketsr_cli.cli", _ImportInterrupted("cli"))
    monkeypatch.setattr(sys, "stderr", None)
    with pytest.raises(SystemExit) as stopped:
        _entry.main()
    assert stopped.value.code == 130


def test_a_claim_whose_empty_folder_another_run_removes_meanwhile_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run removes at its end the empty output folders it made (``MadeFolders``); one
    that another run made too and is about to claim an output in is made again, not a
    failed image."""
    output = tmp_path / "out" / "a.png"
    real_open = os.open
    removed: list[Path] = []

    def open_after_removal(path: Any, flags: int, *args: Any) -> int:
        if flags & os.O_CREAT and not removed:
            removed.append(output.parent)
            os.rmdir(output.parent)  # the other run's end, between mkdir and open
        return real_open(path, flags, *args)

    monkeypatch.setattr(claims.os, "open", open_after_removal)
    claim = claims.acquire(output)
    assert removed and claim is not None and claim.path.exists()
    claim.release()
