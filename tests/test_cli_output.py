"""Where the command line's output goes (``cli/_ui.py``'s rule) and how it ends.

Reports on stdout, the run's log on stderr; a reader that closes the pipe early ends
nothing but the lines (real subprocesses: a closed pipe cannot be faked through
CliRunner); ``--json`` failures as one JSON object; tables that survive a pipe; progress
that never shows "0/?".
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import typer
from _imagegen import make_photo_like
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from pocketsr_cli import __version__
from pocketsr_cli.cli import _ui, app
from pocketsr_cli.jobs import Job
from pocketsr_cli.pipeline import Result, Summary

REPO = Path(__file__).resolve().parents[1]
CLEAN_EXIT_MARKERS = ("Traceback", "internal", "Exception ignored", "BrokenPipe")


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment: private model folder, offline, one thread."""
    return {
        **os.environ,
        "POCKETSR_HOME": str(tmp_path / "home"),
        "POCKETSR_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def photos(folder: Path, n: int, h: int = 120, w: int = 160) -> list[str]:
    """``n`` small PNGs in ``folder``; their names."""
    folder.mkdir(parents=True)
    names = [f"{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        Image.fromarray(make_photo_like(h, w, seed=i)).save(folder / name)
    return names


def assert_complete(out: Path, names: list[str], size: tuple[int, int]) -> None:
    """Exactly ``names`` in ``out`` (no temporary files), each a whole image of ``size``."""
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        with Image.open(out / name) as im:
            im.load()
            assert im.size == size


# --- which stream ------------------------------------------------------------------------------


def test_reports_go_to_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    code, out, err = invoke("doctor")
    assert code == 0 and err == ""
    assert out.splitlines()[0].split() == ["pocketsr", __version__] and "auto device" in out
    code, out, err = invoke("models", "list")
    assert code == 0 and err == ""
    assert [line for line in out.splitlines() if "lanczos" in line]  # `| grep` finds rows
    code, out, err = invoke("models", "info", "bicubic")
    assert code == 0 and err == "" and "family" in out


def test_a_log_goes_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    code, out, err = invoke("models", "download", "lanczos")
    assert code == 0 and out == "" and "nothing to download" in err
    photos(tmp_path / "in", 1, 12, 16)
    code, out, err = invoke("upscale", tmp_path / "in", "-o", tmp_path / "o", "-m", "bicubic")
    assert code == 0 and out == "" and "00.png" in err and "written" in err


@pytest.mark.parametrize("command", ["upscale", "eval", "bench"])
def test_quiet_keeps_every_warning_in_every_command_and_says_so(
    tmp_path: Path, command: str
) -> None:
    """``-q`` leaves errors and warnings on stderr, and nothing else, in each command that
    takes it; its help said "errors only" while each of these warned under it.  The
    warnings here tell of what no exit code says: an RGBA image written as PNG, not JPEG
    (exit 0), a photo too small to score, a time that is no estimate of 4K."""
    folder = tmp_path / "in"
    folder.mkdir()
    if command == "upscale":
        Image.new("RGBA", (16, 12), (10, 200, 30, 100)).save(folder / "clear.png")
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
        args: tuple[str | Path, ...] = (folder, "-o", tmp_path / "o", "--format", "jpg")
        said = ("JPEG cannot store transparency", "failed  ")
    elif command == "eval":
        Image.fromarray(make_photo_like(64, 64, seed=0)).save(folder / "photo.png")
        Image.fromarray(make_photo_like(16, 16, seed=1)).save(folder / "tiny.png")
        args, said = (folder,), (f"skipped {folder / 'tiny.png'}: too small to score",)
    else:
        args, said = ("--size", "120x68", "--repeat", "1"), ("no estimate of 4K",)
    code, _, err = invoke(command, *args, "-m", "bicubic", "-q")
    assert code == (1 if command == "upscale" else 0), err
    assert all(part in err for part in said), err
    lines = err.splitlines()
    assert lines and all(line.startswith(("warning: ", "failed  ", "error ")) for line in lines)
    code, out, _ = invoke(command, "--help")
    assert code == 0
    assert "-q, --quiet Only errors and warnings on stderr" in " ".join(out.split())


# --- a reader that goes away ---------------------------------------------------------------------


def test_a_reader_that_reads_one_line_ends_nothing_but_the_lines(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``pocketsr upscale DIR -o OUT --json | head -1``: every image is still written."""
    names = photos(tmp_path / "in", 9)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pocketsr_cli", "upscale", str(tmp_path / "in")]
    proc = subprocess.Popen(
        [*command, "-o", str(out), "-m", "bicubic", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()  # the reader leaves while eight images are still to come
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first["type"] == "image" and first["status"] == "ok"
    assert code == 0, err
    assert not any(marker in err for marker in CLEAN_EXIT_MARKERS), err
    assert_complete(out, names, (640, 480))


@pytest.mark.parametrize(
    "args",
    [
        ("upscale", "{in}", "-o", "{out}", "-m", "bicubic", "--json"),
        ("upscale", "{in}", "-o", "{out}", "-m", "bicubic"),  # stderr closed too: 2>&1
        ("models", "list"),
        ("models", "list", "--json"),
        ("doctor",),
    ],
    ids=["upscale-json", "upscale-log", "models-list", "models-list-json", "doctor"],
)
def test_a_reader_gone_before_the_first_line(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...]
) -> None:
    """The read end is closed before the command starts, so its first write breaks."""
    names = photos(tmp_path / "in", 3, 12, 16)
    argv = [
        a.replace("{in}", str(tmp_path / "in")).replace("{out}", str(tmp_path / "o")) for a in args
    ]
    read_end, write_end = os.pipe()
    os.close(read_end)
    both = args[-1] != "--json" and args[0] == "upscale"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pocketsr_cli", *argv],
            stdout=write_end,
            stderr=write_end if both else subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    err = "" if both else result.stderr.decode()
    assert result.returncode == 0, err
    assert not any(marker in err for marker in CLEAN_EXIT_MARKERS), err
    if args[0] == "upscale":
        assert_complete(tmp_path / "o", names, (64, 48))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("where", "said"), [("stdout", "could not write to stdout (No space left"), ("stderr", "")]
)
def test_a_full_disk_under_a_stream_loses_its_lines_not_the_images(
    tmp_path: Path, env: dict[str, str], where: str, said: str
) -> None:
    """``--json > log`` on a full disk stopped the run after the first image with an
    "internal error" traceback; ``2>/dev/full`` stopped it before the first.  Every image
    is written; the exit code (1) and stderr, where it can, say the lines are cut."""
    names = photos(tmp_path / "in", 3, 12, 16)
    argv = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m", "lanczos"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "pocketsr_cli", *argv, "--json"],
            stdout=full if where == "stdout" else subprocess.PIPE,
            stderr=full if where == "stderr" else subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    err = result.stderr.decode() if where == "stdout" else ""
    assert result.returncode == 1, err
    assert said in err and "Traceback" not in err
    assert_complete(tmp_path / "o", names, (64, 48))


# A stream closed in the child before it starts: subprocess.run(preexec_fn=) is POSIX only.
NEEDS_PREEXEC = pytest.mark.skipif(sys.platform == "win32", reason="preexec_fn is POSIX only")


@NEEDS_PREEXEC
@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_stream_closed_before_the_start_is_silence_asked_for(
    tmp_path: Path, env: dict[str, str], closed: str
) -> None:
    """``2>&-`` or ``>&-``: Python sees no stream at all (None), and the first write
    raised AttributeError, stopping the run."""
    names = photos(tmp_path / "in", 3, 12, 16)
    argv = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m", "lanczos", "--json"]
    fd = 1 if closed == "stdout" else 2
    result = subprocess.run(
        [sys.executable, "-m", "pocketsr_cli", *argv],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(fd),  # the child's stream, before it starts
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert_complete(tmp_path / "o", names, (64, 48))


@NEEDS_PREEXEC
@pytest.mark.parametrize("args", [("models", "list"), ("doctor",)], ids=["models-list", "doctor"])
def test_a_report_whose_stdout_was_closed_is_not_moved_to_stderr(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    """``pocketsr models list >&-``: with no stdout (None), the report's console fell back
    to stderr and printed the whole table there."""
    result = subprocess.run(
        [sys.executable, "-m", "pocketsr_cli", *args],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(1),  # the child's stdout, before it starts
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_closed_stderr_gets_dev_null_not_the_next_file_opened(env: dict[str, str]) -> None:
    """With fd 2 closed, the first file the run opened (an output's claim) took fd 2, and
    anything a library wrote to stderr would have gone into it."""
    code = (
        "import os; from pocketsr_cli._entry import fill_closed_standard_fds; "
        "fill_closed_standard_fds(); f = open(os.devnull + '', 'rb'); "
        "print(os.readlink('/proc/self/fd/2'), f.fileno() != 2)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(2),  # the child's stderr, before it starts
    )
    assert result.stdout.decode().split() == [os.devnull, "True"], result.stdout


def test_a_stream_in_a_code_page_escapes_what_it_cannot_encode(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Windows writes a pipe or a file in its ANSI code page (cp1252): the help's "→" and
    "≤" ended ``pocketsr upscale --help > help.txt`` in a UnicodeEncodeError; a
    ``--json`` run's lines stay ASCII JSON there."""
    encoding = "cp1252"
    shown = {}
    for command in ("upscale --help", "bench --help", "models list"):
        result = subprocess.run(
            [sys.executable, "-m", "pocketsr_cli", *command.split()],
            capture_output=True,
            env={**env, "PYTHONIOENCODING": encoding},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert b"Traceback" not in result.stderr
        shown[command] = result.stdout.decode(encoding)
    assert "photo.jpg \\u2192 photo_x4.jpg" in shown["upscale --help"]
    assert "\\u2264" in shown["bench --help"]
    photos(tmp_path / "in", 1, 12, 16)
    argv = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o√"), "-m", "lanczos", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "pocketsr_cli", *argv],
        capture_output=True,
        env={**env, "PYTHONIOENCODING": encoding},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    image, summary = (json.loads(line) for line in result.stdout.decode("ascii").splitlines())
    assert image["output"] == str(tmp_path / "o√" / "00.png") and summary["summary"]["ok"] == 1


def test_log_lines_made_by_the_core_keep_a_name_on_one_line() -> None:
    """Warnings, errors and plain lines (the report's "review page: PAGE") printed a name
    holding a newline over two lines; an input's own lines escaped it (_ui.shown)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False, soft_wrap=True)
    _ui.warn(console, "skipped a\nb/tiny.png: too small")
    _ui.error(console, "usage", "not a folder: a\tb")
    _ui.say(console, "review page: a\nb.html (1 card(s))")
    assert buffer.getvalue().splitlines() == [
        "warning: skipped a\\nb/tiny.png: too small",
        "error (usage): not a folder: a\\tb",
        "review page: a\\nb.html (1 card(s))",
    ]


def test_json_lines_outlive_a_stream_that_breaks() -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    reporter = _ui.JsonLinesReporter("bicubic", "cpu", Gone())
    job = Job(Path("a.png"), Path("b.png"), "a.png")
    reporter.image_finished(Result(job, "ok"))
    reporter.image_finished(Result(job, "ok"))
    reporter.finished(Summary())
    assert reporter.stream.reader_gone  # type: ignore[attr-defined]


# --- --json failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (("models", "info", "nope"), 3, "model"),
        (("models", "list", "--bogus"), 2, "usage"),
        (("eval", "{tmp}/missing", "-m", "lanczos"), 2, "usage"),
        (("bench", "-m", "bicubic", "--size", "960"), 2, "usage"),
        (("upscale", "{tmp}", "-m", "bicubic", "--glob", "*.gif"), 2, "usage"),
    ],
)
def test_json_failures_put_one_error_object_on_stdout(
    tmp_path: Path, args: tuple[str, ...], code: int, kind: str
) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    got, out, err = invoke(*argv, "--json")
    assert got == code, err
    (obj,) = [json.loads(line) for line in out.splitlines()]
    assert obj["type"] == "error" and obj["kind"] == kind and obj["exit_code"] == code
    assert obj["message"] and obj["message"].split(";")[0] in " ".join(err.split())
    got, out, _ = invoke(*argv)
    assert got == code and out == ""


@pytest.mark.parametrize(
    "args",
    [
        ("report", "run.jsonl", "--json"),  # report has no --json
        ("models", "--json"),  # nor has the group
    ],
)
def test_a_command_without_json_says_a_usage_error_in_words_only(args: tuple[str, ...]) -> None:
    """'pocketsr report x.jsonl --json' put {"type": "error", ... "No such option:
    --json"} on stdout: a usage error is JSON only for a command that takes --json."""
    got, out, err = invoke(*args)
    assert got == 2, err
    assert out == ""
    assert "Error:" in err


@pytest.mark.parametrize(
    "args",
    [
        ("--bogus", "--glob", "--json"),  # Typer's parse error
        ("-m", "", "--glob", "--json"),  # our own option parser's refusal
        ("--bogus", "--", "--json"),  # an input named --json
        ("-m", "--json", "--bogus"),
    ],
)
def test_json_given_as_a_value_does_not_turn_usage_errors_into_json(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """'pocketsr upscale a.png --glob --json --bogus' answered in JSON: any "--json" on the
    command line was taken for the flag, here the pattern of --glob."""
    got, out, err = invoke("upscale", str(tmp_path / "a.png"), *args)
    assert got == 2, err
    assert out == ""
    assert "--bogus" in err or "empty model name" in err


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (["a.png", "--json"], True),
        (["--json", "a.png", "--glob", "*.png"], True),
        (["a.png", "--glob", "--json"], False),
        (["a.png", "--glob=--json"], False),
        (["a.png", "--glob=x", "--json"], True),
        (["a.png", "-m", "--json"], False),
        (["a.png", "-mx", "--json"], True),
        (["a.png", "-rm", "--json"], False),
        (["a.png", "-rmx", "--json"], True),
        (["a.png", "-rq", "--json"], True),
        (["a.png", "--", "--json"], False),
        (["a.png", "--suffix", "--", "--json"], True),
        (["a.png", "--bogus", "--json"], True),
    ],
)
def test_flag_given_reads_the_line_as_click_parses_it(args: list[str], given: bool) -> None:
    from pocketsr_cli.cli._flags import flag_given

    command = typer.main.get_command(app).get_command(None, "upscale")  # type: ignore[attr-defined]
    assert flag_given(command, args, "--json") is given


def test_every_json_line_of_every_command_says_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only upscale's lines (and error lines) carried "type": eval, bench, models
    list/info/verify and doctor records had none, so a reader of mixed logs could not
    tell them apart."""
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(make_photo_like(64, 64, seed=1)).save(photos / "a.png")
    commands = {
        ("eval", str(photos), "-m", "lanczos", "-q"): "scores",
        ("bench", "-m", "bicubic", "--size", "32x24", "--repeat", "1", "-q"): "timing",
        ("bench", "--folder", str(photos), "-m", "bicubic", "-q"): "timing",
        ("models", "list"): "model",
        ("models", "info", "bicubic"): "model",
        ("models", "verify", "pocketsr-compact-x2"): "verification",
        ("doctor",): "doctor",
    }
    for args, kind in commands.items():
        code, out, err = invoke(*args, "--json")
        assert code == 0, (args, err)
        records = [json.loads(line) for line in out.splitlines()]
        assert records and {r["type"] for r in records} == {kind}, args
        assert all(next(iter(r)) == "type" for r in records)  # first, as upscale has it


# --- tables off a terminal -----------------------------------------------------------------------


def test_a_table_in_a_pipe_keeps_every_row_on_one_line() -> None:
    buffer = io.StringIO()
    console = _ui.make_console(buffer, width=80)  # what a pipe or a log file gets
    assert not console.is_terminal
    name = "a-rather-long-model-name-imported-from-somewhere.safetensors (x4→x2)"
    columns = ["model", "PSNR-Y", "SSIM-Y", "detail", "hf", "bandcorr", "lattice", "s/image"]
    title = "pocketsr eval: 3 photo(s), real ×4, cpu, with a title longer than the table"
    _ui.print_table(console, columns, [[name, *["12.345"] * 7]], right=columns[1:], title=title)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == title  # on a line of its own, not wrapped over the table
    assert "…" not in buffer.getvalue()
    (row,) = [line for line in lines if name in line]
    assert row.count("12.345") == 7
    assert any(all(c in line for c in columns) for line in lines)  # the header: one line


# --- progress ------------------------------------------------------------------------------------


def terminal_console(buffer: io.StringIO) -> Console:
    return Console(file=buffer, width=120, force_terminal=True, force_interactive=True)


def test_progress_shows_no_unknown_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    buffer = io.StringIO()
    reporter = _ui.RichReporter(terminal_console(buffer))
    reporter.start(2)
    assert reporter.progress is not None
    reporter.image_started(Job(Path("first.png"), Path("o.png"), "first.png"), 1)
    reporter.progress.live.refresh()  # what its refresh thread does 10 times a second
    assert "first.png" in buffer.getvalue()
    assert "/?" not in buffer.getvalue() and "-:--:--" not in buffer.getvalue().split("first")[-1]
    reporter.tile(1, 6)
    reporter.progress.live.refresh()
    assert "1/6" in buffer.getvalue()
    reporter.tile(6, 6)
    reporter.image_started(Job(Path("second.png"), Path("p.png"), "second.png"), 2)
    # The next image starts indeterminate again, not at "0/6" of the last one's tiles.
    assert [(t.description, t.total) for t in reporter.progress.tasks] == [
        ("images", 2),
        ("  second.png", None),
    ]
    reporter.finished(Summary())
    assert reporter.progress is None

    buffer = io.StringIO()
    with _ui.StepBar(terminal_console(buffer), "eval") as bar:
        assert bar.progress is not None
        bar.progress.refresh()
        assert "eval" in buffer.getvalue() and "/?" not in buffer.getvalue()


def test_progress_is_not_redrawn_by_the_upscaling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An image's start (a new task: rich's ``add_task`` redraws the display where it is
    called) draws nothing in the upscaling thread, which calls it: 2-3 ms of CPU per
    image, more than ``bicubic`` takes on a small frame.  The display's own thread shows
    the image at its next redraw."""
    from rich.live import Live

    monkeypatch.setenv("TERM", "xterm-256color")
    here: list[str] = []
    redraw = Live.refresh

    def counted(self: Live) -> None:
        here.append(threading.current_thread().name)
        redraw(self)

    monkeypatch.setattr(Live, "refresh", counted)
    buffer = io.StringIO()
    reporter = _ui.RichReporter(terminal_console(buffer))
    reporter.start(3)
    assert reporter.progress is not None
    caller = threading.current_thread().name
    drawn = here.count(caller)  # the first drawing, as it starts
    for index, name in enumerate(("a.png", "b.png", "c.png"), start=1):
        reporter.image_started(Job(Path(name), Path("o") / name, name), index)
        reporter.tile(1, 1)
    assert here.count(caller) == drawn
    reporter.progress.live.refresh()  # as its refresh thread does
    assert "c.png" in buffer.getvalue()
    reporter.finished(Summary())


def test_lines_printed_while_progress_shows_share_its_redraws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer's per-image lines do not redraw the display one by one (a line printed
    on a live display clears and redraws it: 2-3 ms each, dozens a second on small
    images): they go out with the display's next redraw, every line held meanwhile in
    that one, in the order given, failures and warnings among them; those still held at
    the end come before the summary."""
    from rich.live_render import LiveRender

    monkeypatch.setenv("TERM", "xterm-256color")
    redraws: list[str] = []  # the thread of each redraw of the display
    position = LiveRender.position_cursor

    def counted(self: LiveRender) -> object:
        redraws.append(threading.current_thread().name)
        return position(self)

    monkeypatch.setattr(LiveRender, "position_cursor", counted)
    buffer = io.StringIO()
    reporter = _ui.RichReporter(terminal_console(buffer))
    names = [f"img{i:02d}.png" for i in range(20)]
    reporter.start(len(names))
    assert reporter.progress is not None

    def write(batch: list[str]) -> None:
        for name in batch:
            job = Job(Path(name), Path("out") / name.replace(".", "_x4."), name)
            if name == "img05.png":
                result = Result(job, "failed", error="file is truncated")
            else:
                warnings = ["a note"] if name == "img07.png" else []
                result = Result(
                    job, "ok", output=job.output, width=4, height=4, out_width=16,
                    out_height=16, seconds=0.01, warnings=warnings,
                )  # fmt: skip
            reporter.image_finished(result)

    writer = threading.Thread(target=write, args=(names[:15],), name="pocketsr-writer")
    writer.start()
    writer.join()
    assert "pocketsr-writer" not in redraws
    reporter.progress.live.refresh()  # as its refresh thread does, 10 times a second
    write(names[15:])
    reporter.finished(Summary())
    out = buffer.getvalue()
    once = [name for name in names if out.count(name) == 1 + (name == "img07.png")]
    assert once == names  # each line once (img07's warning names it too)
    assert sorted(names, key=out.index) == names  # in order
    assert out.index("img04.png") < out.index("failed") < out.index("img05.png: file is")
    assert out.index("img06.png") < out.index("img07.png: a note") < out.index("→ out/img07_x4.png")
    assert out.index("img19.png") < out.index("pocketsr upscale")  # the summary's title


def test_no_download_bar_without_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bicubic`` has no weights and the default model is bundled: nothing to download."""
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws as on a terminal
    buffer = io.StringIO()
    with _ui.DownloadBar(terminal_console(buffer), "downloading the default model"):
        pass
    assert buffer.getvalue() == ""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    for model in ("bicubic", "pocketsr-compact-x4"):
        code, _, err = invoke("upscale", tmp_path / "a.png", "-m", model, "--suffix", f"_{model}")
        assert code == 0, err
        assert "downloading" not in err and "bytes" not in err and "/?" not in err
