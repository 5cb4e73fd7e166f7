"""``pocketsr report LOG`` and ``pocketsr upscale … --report PAGE`` through Typer's runner,
with ``-m bicubic`` on small generated images."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import typer.testing
from _imagegen import make_photo_like
from PIL import Image
from typer.testing import CliRunner

from pocketsr_cli.cli import app

FAST = ("-m", "bicubic", "-s", "2", "--offline")


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def shoot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``shoot/`` with two photos, a corrupt JPEG and a text file; the cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(make_photo_like(36, 48, seed=i)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def cards_of(text: str) -> list[str]:
    return re.findall(r'<article class="card[^"]*"[^>]*>.*?</article>', text, re.S)


def test_upscale_report_writes_a_card_per_input(shoot: Path, tmp_path: Path) -> None:
    inputs = {p: p.read_bytes() for p in shoot.iterdir()}
    code, out, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--report", "review.html")
    assert code == 1, err  # the corrupt JPEG fails the run; the page is still written
    assert out == ""  # the page's line is part of the log, on stderr
    assert "review page: review.html (4 card(s), 2 with before/after)" in err
    text = (tmp_path / "review.html").read_text()
    cards = cards_of(text)
    statuses = [re.search(r'data-status="(\w+)"', c).group(1) for c in cards]  # type: ignore[union-attr]
    assert statuses == ["failed", "skipped", "ok", "ok"]  # broken.jpg, notes.txt, p0, p1
    assert "48×36 → 96×72 (×2)" in cards[2] and "bicubic" in cards[2]
    assert text.count("data:image/png;base64,") == 4  # small run: embedded
    assert {p: p.read_bytes() for p in shoot.iterdir()} == inputs  # inputs untouched


def test_a_dry_run_report_lists_what_would_be_written(shoot: Path, tmp_path: Path) -> None:
    code, _, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--dry-run", "--report", "r.html")
    assert code == 1, err  # broken.jpg cannot be read even to plan it
    text = (tmp_path / "r.html").read_text()
    assert text.count('data-status="planned"') == 2 and "dry run: nothing was written" in text
    assert "data:image" not in text and not (tmp_path / "out").exists()


def test_report_from_a_json_log_matches_upscale_report(shoot: Path, tmp_path: Path) -> None:
    code, out, err = invoke(
        "upscale", "shoot", "-o", "out", *FAST, "--json", "--report", "direct.html"
    )
    assert code == 1, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["type"] for line in lines] == ["image"] * 4 + ["summary"]  # JSON unchanged
    (tmp_path / "run.jsonl").write_text(out)
    code, _, err = invoke("report", "run.jsonl", "-q")
    assert code == 0, err
    assert err == ""
    direct = cards_of((tmp_path / "direct.html").read_text())
    from_log = cards_of((tmp_path / "run.html").read_text())
    assert direct == from_log


def test_report_writes_pictures_beside_the_page_on_request(shoot: Path, tmp_path: Path) -> None:
    code, out, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.jsonl").write_text(out)
    code, _, err = invoke(
        "report", "logs/run.jsonl", "-o", "pages/r.html", "--files", "--crop", "32", "--crops", "2"
    )
    assert code == 0, err
    assert "pictures in pages/r_files" in err
    folder = tmp_path / "pages" / "r_files"
    pictures = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert pictures == [
        f"{i:04d}-{name}"
        for i in (3, 4)  # broken.jpg and notes.txt come first and have no pictures
        for name in ("0-after.png", "0-before.png", "1-after.png", "1-before.png", "thumb.jpg")
    ]
    with Image.open(folder / "0003-0-after.png") as im:
        assert im.size == (32, 32)
    text = (tmp_path / "pages" / "r.html").read_text()
    # Links to the photos are relative to the page.
    assert 'href="../shoot/p0.png"' in text and 'href="../out/p0.png"' in text


def test_links_read_as_the_paths_they_open_from_a_log_of_absolute_paths(
    shoot: Path, tmp_path: Path
) -> None:
    """A log of absolute paths gave each link the text '/tmp/.../out/p0.png' and the href
    '../out/p0.png': the text now says what the link opens, relative to the page; a file
    not found is still named as the log names it."""
    code, out, err = invoke("upscale", shoot, "-o", tmp_path / "out", *FAST, "--json")
    assert code == 1, err  # broken.jpg
    assert str(tmp_path / "out" / "p0.png") in out  # the log's paths are absolute
    (tmp_path / "run.jsonl").write_text(out)
    (shoot / "p1.png").unlink()
    code, _, err = invoke("report", "run.jsonl", "-o", "pages/r.html", "-q")
    assert code == 0, err
    text = (tmp_path / "pages" / "r.html").read_text()
    links = re.findall(r'<a href="([^"#][^"]*)">([^<]*)</a>', text)
    assert ("../shoot/p0.png", "../shoot/p0.png") in links
    assert ("../out/p0.png", "../out/p0.png") in links
    assert all(href == shown for href, shown in links), links
    assert f"<dd>{tmp_path / 'shoot' / 'p1.png'}</dd>" in text  # not found: as logged


def test_report_from_another_folder_finds_files_beside_the_log(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = invoke("report", tmp_path / "run.jsonl", "-o", "r.html")
    assert code == 0, err
    assert "2 with before/after" in err and "note" not in err


def test_report_reads_a_log_from_standard_input(shoot: Path, tmp_path: Path) -> None:
    _, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    assert invoke("report", "run.jsonl", "-q")[0] == 0
    result = CliRunner().invoke(app, ["report", "-", "-o", "piped.html"], input=out)
    assert result.exit_code == 0, result.stderr
    assert "review page: piped.html (4 card(s), 2 with before/after)" in result.stderr
    piped = (tmp_path / "piped.html").read_text()
    assert cards_of(piped) == cards_of((tmp_path / "run.html").read_text())
    assert "— standard input</title>" in piped
    (tmp_path / "-").write_text(out)  # a file named '-' is ./-
    assert invoke("report", "./-", "-o", "dash.html", "-q") == (0, "", "")
    assert cards_of((tmp_path / "dash.html").read_text()) == cards_of(piped)
    result = CliRunner().invoke(app, ["report", "-", "-o", "bad.html"], input="oops\n")
    assert result.exit_code == 2 and "standard input line 1 is not JSON" in result.stderr


class _Terminal(io.BytesIO):
    """Standard input as a terminal would be: empty, and a TTY."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("page", [[], ["-o", "piped.html"]])
def test_report_refuses_standard_input_that_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: list[str]
) -> None:
    """A mistyped ``report -`` waited for typing, showing nothing; with or without a
    page named, it is a usage error saying what to do."""
    monkeypatch.chdir(tmp_path)
    # the runner's standard input is made from what make_input_stream returns
    monkeypatch.setattr(typer.testing, "make_input_stream", lambda *_: _Terminal())
    result = CliRunner().invoke(app, ["report", "-", *page])
    assert result.exit_code == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    message = " ".join(result.stderr.split())
    assert "standard input is a terminal" in message and "or name a log file" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("page", [[], ["-o", "page.html"]])
def test_report_refuses_a_log_path_that_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: list[str]
) -> None:
    """``report /dev/stdin`` at a terminal (or ``/dev/tty``, ``/dev/pts/N``) waited for
    typing as a mistyped ``report -`` did; it is refused the same way, before -o is asked
    for.  (A pending ^D ends the read, so without the check this fails, not hangs.)"""
    monkeypatch.chdir(tmp_path)
    master, slave = os.openpty()
    try:
        os.write(master, b"\x04")  # end of input at the start of a line, should it be read
        terminal = os.ttyname(slave)
        code, out, err = invoke("report", terminal, *page)
    finally:
        os.close(slave)
        os.close(master)
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    message = " ".join(err.split())
    assert f"{terminal} is a terminal, not a log" in message and "or name a log file" in message
    assert list(tmp_path.iterdir()) == []


def test_a_character_device_that_is_no_terminal_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/null is a character device but no terminal: it is read (and is empty)."""
    monkeypatch.chdir(tmp_path)
    null = Path(os.devnull)
    if not null.exists() or os.name == "nt":
        pytest.skip("no /dev/null here")
    code, _, err = invoke("report", null, "-o", "page.html")
    assert code == 2 and "is a terminal" not in err and "has no image records" in err


def _fifo(folder: Path, text: str) -> Path:
    """A named pipe in ``folder`` that a thread writes ``text`` into once it is opened."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    fifo = folder / "run.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(OSError):
            fifo.write_text(text)

    threading.Thread(target=feed, daemon=True).start()  # blocks until a reader opens it
    return fifo


@pytest.mark.parametrize("log", ["-", "/dev/stdin", "fifo"])
def test_a_log_that_is_no_file_needs_a_page_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: str
) -> None:
    """``-``, /dev/stdin, a pipe or ``<(...)``: nothing to name the page after (as root,
    ``report /dev/stdin`` wrote /dev/stdin.html); refused before the log is read."""
    monkeypatch.chdir(tmp_path)
    if log == "fifo":
        log = str(_fifo(tmp_path, '{"input": "a.png"}\n'))
    code, out, err = invoke("report", log)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "to name the page after; give -o PAGE.html" in " ".join(err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == (["run.fifo"] if "fifo" in log else [])
    assert not Path(log + ".html").exists()


def test_paths_in_a_piped_log_are_looked_up_from_the_current_folder_only(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipe's folder is no folder of the run's (``/dev/fd``): unlike a log file's
    (``test_report_from_another_folder_finds_files_beside_the_log``), it is not searched."""
    _, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    fifo = _fifo(tmp_path, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = invoke("report", fifo, "-o", "r.html")
    assert code == 0, err
    assert "2 with before/after; 2 with a note about a missing" in err  # p0, p1 not found


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "log not found"),
        ("pocketsr bicubic on cpu fp32\n", "line 1 is not JSON"),
        ('{"type": "summary", "summary": {}}\n', "has no image records"),
        ('{"type": "image", "input": "a.png", "seconds": "fast"}\n', "'seconds' should be"),
    ],
)
def test_a_missing_or_malformed_log_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "run.jsonl").write_text(content)
    code, out, err = invoke("report", "run.jsonl")
    assert code == 2
    assert message in err and "Traceback" not in err and out == ""
    assert not (tmp_path / "run.html").exists()


def test_a_partial_log_still_gives_a_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    small = make_photo_like(20, 30)
    Image.fromarray(small).save("a.png")
    Image.fromarray(np.repeat(np.repeat(small, 3, 0), 3, 1)).save("a_x3.png")
    (tmp_path / "run.jsonl").write_text(
        '{"input": "a.png", "output": "a_x3.png"}\n{"input": "gone.png", "error": "lost"}\n'
    )
    code, _, err = invoke("report", "run.jsonl")
    assert code == 0, err
    cards = cards_of((tmp_path / "run.html").read_text())
    assert len(cards) == 2
    assert "30×20 → 90×60 (×3)" in cards[0] and 'class="before"' in cards[0]
    assert 'data-status="failed"' in cards[1] and "lost" in cards[1]


@pytest.mark.parametrize("page", ["review.txt", "shoot/p0.png", "run.jsonl"])
def test_upscale_refuses_a_bad_page_before_the_run(shoot: Path, tmp_path: Path, page: str) -> None:
    (tmp_path / "run.jsonl").write_text("")
    before = (shoot / "p0.png").read_bytes()
    code, _, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--report", page)
    assert code == 2, err
    assert "must end in .html" in err
    assert not (tmp_path / "out").exists()  # nothing was run
    assert (shoot / "p0.png").read_bytes() == before


def test_a_page_whose_folder_cannot_be_made_is_refused_before_the_run(
    shoot: Path, tmp_path: Path
) -> None:
    """A file where the page's folder would be: refused at once (exit 2), as an -o folder
    is, not found out after every image was upscaled (exit 1)."""
    (tmp_path / "blocker").write_text("a file")
    page = Path("blocker") / "review.html"
    code, _, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--report", page)
    assert code == 2 and "Traceback" not in err
    assert "blocker is a file, not a folder" in " ".join(err.split())
    assert not (tmp_path / "out").exists()  # nothing was run
    code, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    code, _, err = invoke("report", "run.jsonl", "-o", page)
    assert code == 2 and "blocker is a file, not a folder" in " ".join(err.split())


def test_a_foreign_picture_folder_refuses_only_a_run_that_may_need_it(
    shoot: Path, tmp_path: Path
) -> None:
    """A run of at most 12 images embeds their pictures and never touches review_files/,
    yet upscale refused one that pocketsr did not make before the run (as a page of more
    would need it): now only a run with more than 12 images to upscale is refused, and
    its message says why."""
    foreign = tmp_path / "review_files"
    foreign.mkdir()
    (foreign / "holiday.txt").write_text("mine")
    code, _, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--report", "review.html")
    assert code == 1, err  # broken.jpg fails; p0, p1 are written and pictured
    assert "review page: review.html (4 card(s), 2 with before/after)" in err
    assert [p.name for p in foreign.iterdir()] == ["holiday.txt"]
    for i in range(2, 12):  # 13 images to upscale with broken.jpg: more than 12
        Image.fromarray(make_photo_like(8, 8, seed=i)).save(shoot / f"p{i}.png")
    code, _, err = invoke("upscale", "shoot", "-o", "out3", *FAST, "--report", "review.html")
    message = " ".join(err.split())
    assert code == 2, err
    assert "review_files exists and was not made by pocketsr" in message
    assert "this run has 13 images to upscale, and a page of more than 12 puts" in message
    assert not (tmp_path / "out3").exists() and [p.name for p in foreign.iterdir()] == [
        "holiday.txt"
    ]


def test_report_never_replaces_an_input_or_the_log(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trap = shoot / "index.html"  # not an image: a skipped input, still never replaced
    trap.write_text("<p>mine</p>")
    code, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    code, _, err = invoke("report", "run.jsonl", "-o", trap)
    assert code == 2 and "would replace" in err
    assert trap.read_text() == "<p>mine</p>"
    (tmp_path / "log.html").write_text(out)
    code, _, err = invoke("report", "log.html")
    assert code == 2 and "would replace the log" in err
    code, _, err = invoke("upscale", "shoot", "-o", "out2", *FAST, "--report", trap)
    assert code == 2 and "would replace" in err and not (tmp_path / "out2").exists()


def test_report_help_has_examples() -> None:
    code, out, _ = invoke("report", "--help")
    assert code == 0
    assert "Usage: pocketsr report [OPTIONS] LOG" in out
    assert "--embed / --files" in out and "pocketsr report run.jsonl" in out
    code, out, _ = invoke("upscale", "--help")
    assert "--report PAGE" in out


@pytest.mark.parametrize("command", ["report", "upscale"])
def test_help_names_the_picture_folder_a_page_gets(command: str) -> None:
    """--embed/--files and --report say where pictures go as the page writes them: a page
    review.html gets review_files/, not the PAGE_files/ (review.html_files) help said."""
    from pocketsr_cli.report.page import assets_dir

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert f"review.html: {assets_dir(Path('review.html')).name}/" in text
    assert "PAGE_files" not in text


def test_a_page_kept_in_the_folder_it_reviews_is_replaced_when_the_run_is_repeated(
    shoot: Path, tmp_path: Path
) -> None:
    """``upscale shoot -r -o shoot/up --report shoot/review.html`` run again (after adding
    photos): the first page is now a skipped input of the run, and being pocketsr's own
    page it is replaced, not a reason to refuse the run."""
    args = ("upscale", "shoot", "-r", "-o", "shoot/up", *FAST, "--report", "shoot/review.html")
    code, _, err = invoke(*args)
    assert code == 1, err  # broken.jpg
    Image.fromarray(make_photo_like(36, 48, seed=7)).save(shoot / "new.png")
    code, _, err = invoke(*args)
    assert code == 1 and "would replace" not in err, err
    assert "new.png" in (shoot / "review.html").read_text()
    assert (shoot / "up" / "new.png").is_file()


def test_links_follow_folders_as_named_not_where_symbolic_links_lead(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Photos in a linked folder (``proj/photos`` -> another disk): the page in ``proj``
    links ``photos/p0.png``, which works when ``proj`` is moved or copied with its link,
    not ``../shoot/p0.png``, a path that only this machine's layout gives."""
    project = tmp_path / "proj"
    project.mkdir()
    try:
        (project / "photos").symlink_to(shoot, target_is_directory=True)
    except OSError as exc:  # Windows without the privilege
        pytest.skip(f"no symbolic links here: {exc}")
    monkeypatch.chdir(project)
    code, out, err = invoke(
        "upscale", "photos", "-o", "out", *FAST, "--json", "--report", "review.html"
    )
    assert code == 1, err  # broken.jpg
    (project / "run.jsonl").write_text(out)
    text = (project / "review.html").read_text()
    assert 'href="photos/p0.png"' in text and 'href="out/p0.png"' in text
    assert "../shoot/" not in text
    # A page inside a linked folder: links made from where the page really is.
    pages = tmp_path / "pages"
    pages.mkdir()
    (project / "linked").symlink_to(pages, target_is_directory=True)
    code, _, err = invoke("report", "run.jsonl", "-o", "linked/r.html", "-q")
    assert code == 0, err
    assert 'href="../proj/out/p0.png"' in (pages / "r.html").read_text()


def test_the_summary_names_the_device_the_images_ran_on_once(shoot: Path, tmp_path: Path) -> None:
    """A failed or skipped input's record gives the run's device in general ('cpu uint8
    (16-bit: fp32)'): the summary names the device the written images ran on, not both
    as if the run had used two."""
    code, out, err = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    assert code == 1, err  # broken.jpg
    devices = {line["status"]: line["device"] for line in map(json.loads, out.splitlines()[:-1])}
    (tmp_path / "run.jsonl").write_text(out)
    assert invoke("report", "run.jsonl", "-q")[0] == 0
    facts = re.search(r'<p class="facts">([^<]*)</p>', (tmp_path / "run.html").read_text())
    assert facts is not None
    assert f"on {devices['ok']} · made" in facts.group(1), (facts.group(1), devices)


@pytest.mark.parametrize(
    ("where", "step"), [("files", "report.page.page_html"), ("embed", "imageio.atomic.replacing")]
)
def test_a_stopped_report_leaves_no_folder_it_made(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, step: str
) -> None:
    """Ctrl-C on 'report run.jsonl -o new/deeper/review.html' left new/deeper/ behind,
    empty (stopped as the pictures are made, --files, or as the page is written); a
    folder that was there before the run stays."""
    _, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)

    def stopped(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(f"pocketsr_cli.{step}", stopped)
    code, _, err = invoke("report", "run.jsonl", "-o", "new/deeper/review.html", f"--{where}")
    assert code == 130, err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    code, _, err = invoke("report", "run.jsonl", "-o", "kept/deeper/review.html", f"--{where}")
    assert code == 130, err
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("again", ["--embed", "--files"])
def test_a_page_stopped_as_it_replaces_another_leaves_that_one_its_pictures(
    shoot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, again: str
) -> None:
    """An embedded page replacing a --files one deleted review_files/ before the new page
    was written (and a --files one swapped its own in): a stop in between left the old
    page pointing at pictures that were gone or not its own."""
    from pocketsr_cli.imageio import atomic

    _, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    code, _, err = invoke("report", "run.jsonl", "-o", "review.html", "--files")
    assert code == 0, err
    page, folder = tmp_path / "review.html", tmp_path / "review_files"
    before = page.read_bytes()
    (folder / "mine").write_text("the earlier page's")
    pictures = sorted(p.name for p in folder.iterdir())

    def stopped(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(atomic, "replacing", stopped)  # as the new page is written
        code, _, err = invoke("report", "run.jsonl", "-o", "review.html", again)
    assert code == 130, err
    assert page.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == pictures
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".review")] == []
    code, _, err = invoke("report", "run.jsonl", "-o", "review.html", "--embed")
    assert code == 0, err
    assert not folder.exists()  # the page written, the folder it no longer uses goes


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("~/run.jsonl",),
            "error (usage): log not found: ~/run.jsonl (the shell did not expand ~: write it "
            "unquoted, or give $HOME/run.jsonl)",
        ),
        (
            ("run.jsonl", "-o", "~/x.html"),
            "error (usage): -o/--output ~/x.html would make a folder named ~ here: the shell "
            "did not expand ~: write it unquoted, or give $HOME/x.html (or, for a folder named "
            "~ here, $PWD/~/x.html)",
        ),
        (
            ("run.jsonl", "-o", "~"),
            "error (usage): -o/--output ~ would make a file named ~ here: the shell did not "
            "expand ~: write it unquoted, or give $HOME (or, for a file named ~ here, $PWD/~)",
        ),
    ],
)
def test_a_quoted_tilde_left_by_the_shell_is_said_not_expanded(
    shoot: Path, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    """As upscale says it of its inputs and -o: the log was only "not found", and -o
    '~/x.html' made a folder called ~ here (which 'rm -rf ~' would clear with the home)."""
    code, out, _ = invoke("upscale", "shoot", "-o", "out", *FAST, "--json")
    (tmp_path / "run.jsonl").write_text(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = invoke("report", *args)
    assert (code, err) == (2, said + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no ~ made

    (tmp_path / "~").mkdir()  # one that is there was made on purpose: written into
    code, _, err = invoke("report", "run.jsonl", "-o", "~/x.html", "-q")
    assert code == 0, err
    assert (tmp_path / "~" / "x.html").is_file()
