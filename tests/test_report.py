"""The review page's core: crop choice, run records (from results and from logs), and the
page builder (cards, failures, escaping, pictures embedded or beside the page, safety)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from _imagegen import make_photo_like
from PIL import Image

from pocketsr_cli.errors import UsageError
from pocketsr_cli.jobs import Job
from pocketsr_cli.pipeline import Result, Summary
from pocketsr_cli.report import (
    Entry,
    PageOptions,
    Run,
    RunInfo,
    assets_dir,
    check_destination,
    check_run_destination,
    load_log,
    write_report,
)
from pocketsr_cli.report.crops import (
    Box,
    after_crop,
    before_crop,
    choose_crops,
    crop_size,
    thumbnail,
    to_display,
    whole_scale,
)
from pocketsr_cli.report.page import MARKER

# -- crops ---------------------------------------------------------------------------------


def flat_with_texture(h: int, w: int, box: Box, seed: int = 0) -> np.ndarray:
    """Mid grey with smooth shading, and fine noise only inside ``box``."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.repeat((100 + 40 * x / w + 20 * y / h)[:, :, None], 3, axis=2)
    rng = np.random.default_rng(seed)
    img[box.y : box.y + box.h, box.x : box.x + box.w] += rng.normal(0, 40, (box.h, box.w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_the_most_detailed_window_is_chosen() -> None:
    textured = Box(900, 420, 300, 300)
    img = flat_with_texture(1080, 1600, textured)
    (box,) = choose_crops(img, 256)
    assert (box.w, box.h) == (256, 256)
    # Inside the textured square, give or take the downscale's rounding.
    assert textured.x - 8 <= box.x and box.x + box.w <= textured.x + textured.w + 8
    assert textured.y - 8 <= box.y and box.y + box.h <= textured.y + textured.h + 8


def test_several_crops_do_not_overlap_and_come_most_detailed_first() -> None:
    img = flat_with_texture(800, 1200, Box(100, 100, 200, 200))
    strong = np.random.default_rng(1).normal(0, 80, (200, 200, 3))
    img[500:700, 800:1000] = np.clip(img[500:700, 800:1000] + strong, 0, 255).astype(np.uint8)
    boxes = choose_crops(img, 160, 3)
    assert len(boxes) == 3
    assert overlaps(boxes[0], Box(800, 500, 200, 200))  # the stronger texture first
    assert overlaps(boxes[1], Box(100, 100, 200, 200))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not overlaps(a, b), (a, b)


@pytest.mark.parametrize(
    ("width", "height", "side", "align"),
    [(669, 1302, 268, 2), (1070, 1778, 342, 1), (850, 1240, 374, 1), (2312, 1097, 282, 2)],
)
def test_crops_never_overlap_where_the_work_copy_rounds(
    width: int, height: int, side: int, align: int
) -> None:
    """On an output larger than the copy detail is measured on, windows a window apart
    there used to land a few pixels closer in the output (rounded, clamped, aligned)."""
    img = np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = choose_crops(img, side, 8, align=(align, align))
    assert len(boxes) >= 4
    for i, a in enumerate(boxes):
        assert a.x >= 0 and a.y >= 0 and a.x + a.w <= width and a.y + a.h <= height
        for b in boxes[i + 1 :]:
            assert not overlaps(a, b), (a, b)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_crops_are_aligned_to_the_scale(scale: int) -> None:
    h, w = 61 * scale, 97 * scale
    img = make_photo_like(h, w, seed=scale)
    for box in choose_crops(img, 100, 3, align=(scale, scale)):
        assert box.x % scale == 0 and box.y % scale == 0
        assert box.w % scale == 0 and box.h % scale == 0
        assert box.x >= 0 and box.y >= 0
        assert box.x + box.w <= w and box.y + box.h <= h


def test_a_small_output_is_shown_whole() -> None:
    img = make_photo_like(40, 60)
    assert choose_crops(img, 320, 3) == [Box(0, 0, 60, 40)]
    assert crop_size(60, 40, 32) == (32, 32)
    assert crop_size(1000, 30, 256, (4, 4)) == (256, 28)


def test_before_is_the_input_enlarged_by_nearest_neighbour_and_aligned() -> None:
    src = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    out_size = (32, 24)  # ×4
    box = Box(8, 4, 12, 16)
    before = before_crop(src, out_size, box)
    assert before.shape == (16, 12, 3)
    expected = np.repeat(np.repeat(src, 4, axis=0), 4, axis=1)[4:20, 8:20]
    np.testing.assert_array_equal(before, expected)
    out = np.zeros((24, 32, 3), np.uint8)
    assert after_crop(out, box).shape == before.shape


def test_before_at_a_fractional_scale_keeps_the_crop_size() -> None:
    src = make_photo_like(20, 30)
    before = before_crop(src, (45, 30), Box(3, 5, 21, 17))  # ×1.5
    assert before.shape == (17, 21, 3)
    assert whole_scale(30, 45) == 1 and whole_scale(30, 120) == 4


def test_display_pixels_are_8_bit_rgb_or_rgba() -> None:
    gray16 = np.full((4, 5, 1), 65535, np.uint16)
    shown = to_display(gray16)
    assert shown.dtype == np.uint8 and shown.shape == (4, 5, 3) and shown.max() == 255
    assert to_display(np.zeros((4, 5, 2), np.uint8)).shape == (4, 5, 4)
    assert thumbnail(make_photo_like(400, 100), 200).shape == (200, 50, 3)
    assert thumbnail(make_photo_like(40, 10), 200).shape == (40, 10, 3)  # never enlarged


# -- records -------------------------------------------------------------------------------


def image_line(**fields: object) -> str:
    return json.dumps({"type": "image", **fields})


def test_a_full_log_loads(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    lines = [
        image_line(
            input="in/a.png",
            output="out/a.png",
            status="ok",
            error=None,
            reason=None,
            reason_code=None,
            width=10,
            height=8,
            out_width=40,
            out_height=32,
            seconds=0.5,
            model="bicubic",
            device="cpu fp32",
            warnings=["w"],
        ),
        image_line(input="in/b.jpg", output=None, status="failed", error="corrupt"),
        json.dumps({"type": "summary", "summary": {"total": 2, "seconds": 1.25, "model": "m"}}),
    ]
    log.write_text("\n".join(lines) + "\n")
    run = load_log(log)
    a, b = run.entries
    assert (a.status, a.width, a.out_height, a.seconds, a.warnings) == ("ok", 10, 32, 0.5, ("w",))
    assert (b.status, b.error, b.name) == ("failed", "corrupt", "b.jpg")
    assert run.info.seconds == 1.25 and run.info.logged_total == 2 and run.info.model == "m"
    assert run.source == "run.jsonl"
    assert run.bases[-1] == tmp_path.resolve()


def test_a_log_with_only_some_fields_loads_and_infers_statuses(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text(
        "\n".join(
            [
                json.dumps({"input": "a.png", "output": "a_x4.png"}),  # no type, no status
                image_line(input="b.png", error="boom"),
                image_line(input="c.txt", reason="not an image"),
                "",
                json.dumps({"type": "progress", "done": 3}),  # a later version's line
            ]
        )
    )
    statuses = [e.status for e in load_log(log).entries]
    assert statuses == ["ok", "failed", "skipped"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json at all\n", "line 1 is not JSON"),
        (image_line(input="a.png") + "\n[1, 2]\n", "line 2 is not a JSON object"),
        (image_line(input="a.png", width="wide"), "'width' should be an integer"),
        (image_line(input="a.png", warnings="one"), "'warnings' should be a list of strings"),
        (image_line(status="ok"), "needs an 'input' or 'output' path"),
        (json.dumps({"type": "summary", "summary": {"total": 0}}), "no image records"),
        ("", "no image records"),
        (
            json.dumps({"type": "error", "kind": "model", "message": "no such model"}),
            "the run failed: no such model",
        ),
    ],
)
def test_a_malformed_log_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    log = tmp_path / "run.jsonl"
    log.write_text(text)
    with pytest.raises(UsageError, match=re.escape(message)):
        load_log(log)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_log_with_a_byte_order_mark_loads(tmp_path: Path, encoding: str) -> None:
    """Windows writes them: PowerShell 5's ``--json > run.jsonl`` UTF-16 with a BOM,
    ``Out-File -Encoding utf8`` UTF-8 with one. Such a log was 'not a text file' or 'line 1
    is not JSON'."""
    log = tmp_path / "run.jsonl"
    lines = [image_line(input="in/\u00e9t\u00e9.png", status="ok"), image_line(input="b.png")]
    log.write_text("\r\n".join(lines) + "\r\n", encoding=encoding)
    assert [e.name for e in load_log(log).entries] == ["\u00e9t\u00e9.png", "b.png"]


def test_a_missing_or_binary_log_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="log not found"):
        load_log(tmp_path / "nope.jsonl")
    with pytest.raises(UsageError, match="is a folder"):
        load_log(tmp_path)
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\xff\xfe")
    with pytest.raises(UsageError, match=r"not a text file|not JSON"):
        load_log(binary)


def test_entries_from_results_match_what_the_json_log_says(tmp_path: Path) -> None:
    job = Job(tmp_path / "a.png", tmp_path / "out" / "a.png", "a.png")
    result = Result(job, "ok", output=job.output, width=3, height=2, seconds=0.123456)
    summary = Summary(results=[result], seconds=2.0)
    run = Run.from_summary(summary, model="bicubic", device="cpu fp32")
    (entry,) = run.entries
    assert entry.input == str(job.input) and entry.output == str(job.output)
    assert (entry.seconds, entry.model, entry.device) == (0.1235, "bicubic", "cpu fp32")
    assert run.info == RunInfo(seconds=2.0, model="bicubic", device="cpu fp32")


# -- page ----------------------------------------------------------------------------------


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "PNG")
    return path


def batch(tmp_path: Path, names: list[str], scale: int = 4) -> list[Entry]:
    """Inputs and nearest-neighbour "outputs" for ``names``; their ok entries."""
    entries = []
    for i, name in enumerate(names):
        small = make_photo_like(30 + i, 40, seed=i)
        big = np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)
        src = save(tmp_path / "in" / name, small)
        dst = save(tmp_path / "out" / name, big)
        entries.append(
            Entry(
                input=str(src),
                output=str(dst),
                width=40,
                height=30 + i,
                out_width=40 * scale,
                out_height=(30 + i) * scale,
                seconds=0.25,
                model="nearest",
                device="cpu fp32",
            )
        )
    return entries


def cards_of(text: str) -> list[str]:
    return re.findall(r'<article class="card[^"]*"[^>]*>.*?</article>', text, re.S)


def test_every_input_gets_a_card_and_failures_are_listed(tmp_path: Path) -> None:
    entries = batch(tmp_path, ["a.png", "b.png"])
    entries.append(Entry(input=str(tmp_path / "in" / "bad.jpg"), status="failed", error="corrupt"))
    entries.append(
        Entry(input="notes.txt", status="skipped", reason="not an image", reason_code="not-image")
    )
    page = tmp_path / "report.html"
    result = write_report(Run(tuple(entries), RunInfo(seconds=3.5)), page)
    text = page.read_text()
    cards = cards_of(text)
    assert len(cards) == result.cards == 4 and result.pictured == 2
    assert ['data-status="ok"' in c for c in cards] == [True, True, False, False]
    assert 'data-status="failed"' in cards[2] and "corrupt" in cards[2]
    assert 'data-status="skipped"' in cards[3] and "not an image" in cards[3]
    for card in cards[:2]:
        assert card.count('class="after"') == 1 and card.count('class="before"') == 1
        assert "40×30" in card or "40×31" in card
        assert "(×4)" in card and "nearest" in card and "0.25 s" in card
    summary = text.split("<main>")[0]
    assert '<a href="#img-3">bad.jpg</a>: corrupt' in summary
    assert "3.5 s" in summary and "failed" in summary
    assert "http://" not in text and "https://" not in text  # nothing to fetch


def test_small_runs_are_embedded_and_large_ones_written_beside_the_page(tmp_path: Path) -> None:
    entries = tuple(batch(tmp_path, ["a.png", "b.png"]))
    page = tmp_path / "small.html"
    result = write_report(Run(entries), page)
    assert result.assets is None and not assets_dir(page).exists()
    assert page.read_text().count("data:image/png;base64,") == 4

    page = tmp_path / "big.html"
    result = write_report(Run(entries), page, PageOptions(embed=False, crops=2, crop=48))
    folder = tmp_path / "big_files"
    assert result.assets == folder and (folder / MARKER).is_file()
    text = page.read_text()
    assert "data:image" not in text
    for src in re.findall(r'src="([^"]+)"', text):
        assert src.startswith("big_files/") and (tmp_path / src).is_file(), src
    names = sorted(p.name for p in folder.iterdir() if p.name != MARKER)
    assert names[:5] == [
        "0001-0-after.png",
        "0001-0-before.png",
        "0001-1-after.png",
        "0001-1-before.png",
        "0001-thumb.jpg",
    ]


def test_large_runs_write_pictures_beside_the_page_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketsr_cli.report import page as page_module

    monkeypatch.setattr(page_module, "EMBED_UP_TO", 1)
    entries = tuple(batch(tmp_path, ["a.png", "b.png"]))
    result = write_report(Run(entries), tmp_path / "r.html", PageOptions(workers=1))
    assert result.assets == tmp_path / "r_files"
    assert len(list(result.assets.glob("*-thumb.jpg"))) == 2
    for thumb in result.assets.glob("*-thumb.jpg"):
        with Image.open(thumb) as im:
            assert max(im.size) <= PageOptions().thumb


def test_crops_are_pixel_exact(tmp_path: Path) -> None:
    (entry,) = batch(tmp_path, ["a.png"])
    page = tmp_path / "r.html"
    write_report(Run((entry,)), page, PageOptions(embed=False, crop=64))
    folder = assets_dir(page)
    after = np.asarray(Image.open(folder / "0001-0-after.png"))
    before = np.asarray(Image.open(folder / "0001-0-before.png"))
    output = np.asarray(Image.open(entry.output or ""))
    assert after.shape == before.shape == (64, 64, 3)
    # Nearest-neighbour "model": the before crop is exactly the output's pixels.
    np.testing.assert_array_equal(before, after)
    hits = [
        (y, x)
        for y in range(0, output.shape[0] - 63, 4)
        for x in range(0, output.shape[1] - 63, 4)
        if np.array_equal(output[y : y + 64, x : x + 64], after)
    ]
    assert hits, "the after crop is not a window of the output"
    assert 'width="64" height="64"' in page.read_text()
    assert "image-rendering: pixelated" in page.read_text()


def test_a_rerun_replaces_its_own_picture_folder(tmp_path: Path) -> None:
    entries = tuple(batch(tmp_path, ["a.png", "b.png", "c.png"]))
    page = tmp_path / "r.html"
    write_report(Run(entries), page, PageOptions(embed=False))
    write_report(Run(entries[:1]), page, PageOptions(embed=False))
    names = {p.name for p in assets_dir(page).iterdir()}
    assert not any(n.startswith("0002") for n in names)  # old pictures gone
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary file or folder left behind
    write_report(Run(entries[:1]), page, PageOptions(embed=True))
    assert not assets_dir(page).exists()


def test_odd_file_names_are_escaped(tmp_path: Path) -> None:
    odd = 'a <b>&"quote"\' #1 %20 ü.png'
    (entry,) = batch(tmp_path, [odd])
    failed = Entry(input="<script>alert(1)</script>.jpg", status="failed", error="<img src=x>")
    page = tmp_path / "odd <&> #.html"
    write_report(Run((entry, failed)), page, PageOptions(embed=False))
    text = page.read_text()
    for raw in ("<script>alert", "<img src=x>", "<b>&", "<&>"):
        assert raw not in text, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in text
    assert "a &lt;b&gt;&amp;&quot;quote&quot;&#x27; #1 %20 ü.png" in text
    # Links and picture URLs are percent-encoded and resolve to the real files.
    from urllib.parse import unquote

    hrefs = [unquote(h) for h in re.findall(r'href="([^"#][^"]*)"', text)]
    assert any(h.endswith(f"in/{odd}") for h in hrefs), hrefs
    for src in re.findall(r'src="([^"]+)"', text):
        assert (tmp_path / unquote(src)).is_file(), src
    assert len(cards_of(text)) == 2


@pytest.mark.skipif(os.name == "nt", reason="file names are UTF-16 on Windows")
def test_names_that_are_not_utf8_are_shown_escaped(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9 \xff.png")  # Latin-1 bytes: not UTF-8
    (entry,) = batch(tmp_path, [name])
    page = tmp_path / "r.html"
    write_report(Run((entry,)), page, PageOptions(embed=False))
    text = page.read_text(encoding="utf-8")  # the page itself is valid UTF-8
    assert "caf\\xe9 \\xff.png" in text
    assert 'href="in/caf%E9%20%FF.png"' in text
    assert len(cards_of(text)) == 1 and 'class="before"' in text


def test_missing_files_become_notes_not_errors(tmp_path: Path) -> None:
    entries = batch(tmp_path, ["a.png", "b.png", "c.png"])
    Path(entries[0].output or "").unlink()
    Path(entries[1].input or "").unlink()
    Path(entries[2].output or "").write_bytes(b"not a png")
    page = tmp_path / "r.html"
    result = write_report(Run(tuple(entries)), page)
    cards = cards_of(page.read_text())
    assert result.notes == 3 and len(cards) == 3
    assert "output not found" in cards[0] and 'class="after"' not in cards[0]
    assert "input not found" in cards[1] and 'class="after"' in cards[1]
    assert 'class="before"' not in cards[1]
    assert "cannot read the output" in cards[2]
    assert all('data-problem="1"' in c for c in cards)


def test_files_replaced_by_another_size_since_the_run_are_noted(tmp_path: Path) -> None:
    """An output or input that is not the size the log gives is another picture than the
    run's: its card says so (and a changed input gives no before), never silently showing
    it under the run's sizes."""
    entries = batch(tmp_path, ["a.png", "b.png", "c.png"])
    save(Path(entries[0].output or ""), make_photo_like(17, 33, seed=9))
    save(Path(entries[1].input or ""), make_photo_like(31, 41, seed=9))
    page = tmp_path / "r.html"
    result = write_report(Run(tuple(entries)), page)
    cards = cards_of(page.read_text())
    assert result.notes == 2
    assert "the output is 33×17 now, not the 160×120 the run wrote" in cards[0]
    assert 'class="before"' in cards[0] and 'data-problem="1"' in cards[0]
    assert "the input is 41×31 now, not the 40×31 the run read (no before)" in cards[1]
    assert 'class="after"' in cards[1] and 'class="before"' not in cards[1]
    assert 'data-problem="0"' in cards[2] and 'class="notes"' not in cards[2]


def test_relative_paths_are_found_beside_the_log(tmp_path: Path, monkeypatch) -> None:
    (entry,) = batch(tmp_path, ["a.png"])
    log = tmp_path / "run.jsonl"
    log.write_text(image_line(input="in/a.png", output="out/a.png", status="ok") + "\n")
    monkeypatch.chdir(tmp_path / "in")  # not where the run was
    run = load_log(log)
    assert run.resolve("out/a.png") == tmp_path / "out" / "a.png"
    result = write_report(run, tmp_path / "r.html")
    assert result.pictured == 1 and result.notes == 0
    assert entry.output is not None


@pytest.mark.parametrize("name", ["report.txt", "report", "photo.jpg"])
def test_the_page_must_be_html(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match=r"must end in \.html"):
        check_destination(tmp_path / name)


def test_a_folder_given_as_the_page_is_named_as_a_folder(tmp_path: Path) -> None:
    """``-o out`` where out/ is a folder: say to name a page in it, not that 'out' lacks
    .html."""
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match=r"out is a folder; name the page file \(e\.g\. "):
        check_destination(tmp_path / "out")


def test_before_a_run_a_foreign_picture_folder_is_refused_only_when_it_may_be_needed(
    tmp_path: Path,
) -> None:
    """Up to 12 images to upscale: all embedded, the folder is left alone; more, or a
    number not known before the run: refused, saying why; --files/--embed as asked."""
    (tmp_path / "review_files").mkdir()
    page = tmp_path / "review.html"
    check_run_destination(page, [], 12)
    check_run_destination(page, [], 40, PageOptions(embed=True))
    with pytest.raises(UsageError, match="this run has 13 images to upscale, and a page of"):
        check_run_destination(page, [], 13)
    with pytest.raises(UsageError, match="not known before the run"):
        check_run_destination(page, [], None)
    with pytest.raises(UsageError, match=r"\(its pictures go in <name>_files beside it\)"):
        check_run_destination(page, [], 1, PageOptions(embed=False))


def test_the_page_never_replaces_a_file_of_the_run(tmp_path: Path) -> None:
    (entry,) = batch(tmp_path, ["a.png"])
    trap = save(tmp_path / "in" / "photo.html", make_photo_like(8, 8))  # an odd input name
    run = Run((entry, Entry(input=str(trap), output=str(tmp_path / "out" / "x.png"))))
    before = trap.read_bytes()
    with pytest.raises(UsageError, match="would replace"):
        write_report(run, trap)
    assert trap.read_bytes() == before


def test_a_foreign_picture_folder_is_never_replaced(tmp_path: Path) -> None:
    (entry,) = batch(tmp_path, ["a.png"])
    folder = tmp_path / "review_files"
    keep = save(folder / "holiday.png", make_photo_like(8, 8))
    with pytest.raises(UsageError, match="was not made by pocketsr"):
        write_report(Run((entry,)), tmp_path / "review.html", PageOptions(embed=False))
    assert keep.is_file() and not (tmp_path / "review.html").exists()
    # an embedded page needs no folder: it is written, and the folder left as it was
    for embed in (True, None):  # None: a one-image run embeds
        result = write_report(Run((entry,)), tmp_path / "review.html", PageOptions(embed=embed))
        assert result.assets is None and (tmp_path / "review.html").is_file()
        assert sorted(p.name for p in folder.iterdir()) == ["holiday.png"]
