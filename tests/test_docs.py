"""The command lines the documentation shows use options that exist.

A reader copies `pocketsr ...` lines from the README, the docs, the model cards and each
command's help examples; an option renamed or removed since would fail on them with a
usage error.  Each such line (in a fenced block or a `backtick span`) is parsed as far as
its command and every option it names is checked against that command's options, found
by walking the app.  The training and measuring lines (`python -m pocketsr_cli.train.run
...`, `python scripts/x.py ...`, the exact commands of the model cards) are checked against
their scripts' argument parsers the same way.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import runpy
import shlex
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from typer.main import get_command

from pocketsr_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    {
        REPO / "README.md",
        REPO / "ARCHITECTURE.md",
        REPO / "completions" / "README.md",
        REPO / "examples" / "README.md",
        *REPO.glob("docs/*.md"),
        *REPO.glob("models/*.md"),
    }
)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"`([^`]+)`")
# "pocketsr" as the command, not pocketsr_cli, pocketsr-compact-x4 or a path ending in it
COMMAND = re.compile(r"(?<![\w/.-])pocketsr(?= |$)")
# a training module or a script of this repository, run by Python
SCRIPT = re.compile(
    r"(?<![\w/.-])python3? (?:-m (?P<module>pocketsr_cli(?:\.\w+)+)|(?P<path>scripts/\w+\.py))"
    r"(?= |$)"
)
OPTION = re.compile(r"--?[A-Za-z][\w-]*(=.*)?")
# where a shell command line ends and something else (a pipe, a redirection) begins
END = re.compile(r"\s(?:\||>|2>|&&|;|#)")


def command_lines(text: str, start: re.Pattern[str] = COMMAND) -> list[str]:
    """Every command line ``start`` begins in a Markdown text (`pocketsr ...` by default),
    lines continued with a backslash joined, shell tail cut off."""
    blocks = [block.replace("\\\n", " ") for block in FENCE.findall(text)]
    pieces = [line for block in blocks for line in block.splitlines()]
    prose = FENCE.sub("", text)
    pieces += [" ".join(span.split()) for span in SPAN.findall(prose)]
    lines = []
    for piece in pieces:
        for match in start.finditer(piece):
            rest = piece[match.start() :]
            cut = END.search(rest)
            lines.append((rest[: cut.start()] if cut else rest).strip())
    return lines


def epilog_lines() -> list[str]:
    """Every `pocketsr ...` line in the examples that end each command's help."""
    lines = []

    def walk(command: Any) -> None:
        for line in (command.epilog or "").splitlines():
            lines.extend(command_lines(f"`{line.strip()}`"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(get_command(app))
    return lines


def unknown_options(line: str) -> list[str]:
    """The options of ``line`` that its command does not have (empty: all known)."""
    try:
        words = shlex.split(line)
    except ValueError:  # an unbalanced quote in a shortened example
        words = line.split()
    command: Any = get_command(app)
    words = words[1:]
    while words and words[0] in getattr(command, "commands", {}):
        command = command.commands[words.pop(0)]
    known = {"-h", "--help"}
    for param in command.params:
        known.update(param.opts, param.secondary_opts)
    unknown = []
    for word in words:
        word = word.strip("[]")
        if OPTION.fullmatch(word) and word.split("=")[0] not in known:
            unknown.append(word)
    return unknown


def test_the_lines_are_found() -> None:
    """The extraction sees the README's examples (else the checks below check nothing)."""
    lines = command_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert "pocketsr upscale shoot/ -o out/ --json" in lines
    assert any(line.startswith("pocketsr bench -m pocketsr-compact-x4 ") for line in lines)
    assert any(line.startswith("pocketsr models import-ncnn ") for line in lines)
    assert len(epilog_lines()) > 20


def test_a_renamed_option_is_caught() -> None:
    assert unknown_options("pocketsr upscale a.jpg --scale 2 --tile-size 512") == ["--tile-size"]
    assert unknown_options("pocketsr models import f.pth --nam x") == ["--nam"]
    assert unknown_options("pocketsr --version") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_command_lines_use_existing_options(doc: Path) -> None:
    wrong = {
        line: bad
        for line in command_lines(doc.read_text(encoding="utf-8"))
        if (bad := unknown_options(line))
    }
    assert not wrong, wrong


def test_help_examples_use_existing_options() -> None:
    wrong = {line: bad for line in epilog_lines() if (bad := unknown_options(line))}
    assert not wrong, wrong


def test_the_readme_copies_the_validation_split() -> None:
    """The README's command that makes data/val copies exactly the validation photos."""
    from pocketsr_cli.train.split import VALIDATION

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    copied = re.search(r"cp data/photos/\{([^}]*)\} data/val/", readme)
    assert copied is not None
    assert set(copied.group(1).split(",")) == set(VALIDATION)


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@functools.cache
def script_parser(target: str) -> argparse.ArgumentParser:
    """The argument parser of a module (``pocketsr_cli.train.run``) or a script
    (``scripts/x.py``), caught as its ``main()`` starts parsing: nothing of it runs."""

    def caught(parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(parser)

    if target.startswith("scripts/"):
        script = REPO / target
        with mock.patch.object(sys, "path", [str(script.parent), *sys.path]):  # as python runs it
            main = runpy.run_path(str(script), run_name="_documented")["main"]
    else:
        main = importlib.import_module(target).main
    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", caught):
        try:
            main()
        except _Parsed as parsed:
            return parsed.parser
    raise AssertionError(f"{target}'s main() parsed no arguments")


def unknown_script_options(line: str) -> list[str]:
    """The options of a documented ``python -m MODULE ...`` or ``python scripts/X.py ...``
    line that its parser (or the sub-command's, when the line names one) does not have."""
    match = SCRIPT.match(line)
    assert match is not None, line
    parser = script_parser(match["module"] or match["path"])
    try:
        words = shlex.split(line[match.end() :])
    except ValueError:
        words = line[match.end() :].split()
    known = {option for action in parser._actions for option in action.option_strings}
    subcommands = {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }
    positional = [word for word in words if not word.startswith("-")]
    if positional and positional[0] in subcommands:
        sub = subcommands[positional[0]]
        known |= {option for action in sub._actions for option in action.option_strings}
    return [
        word
        for word in (word.strip("[]") for word in words)
        if OPTION.fullmatch(word) and word.split("=")[0] not in known
    ]


def test_a_renamed_script_option_is_caught() -> None:
    line = "python -m pocketsr_cli.train.compact pre a b --size 5 --unsharpen 0.7 0.5"
    assert unknown_script_options(line) == ["--unsharpen"]
    assert unknown_script_options("python scripts/opencv_floor.py time d --format png") == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_documented_script_lines_use_existing_options(doc: Path) -> None:
    """The training and measuring commands of the README and the model cards (the exact
    commands that made each figure) name only options their scripts have."""
    wrong = {
        line: bad
        for line in command_lines(doc.read_text(encoding="utf-8"), SCRIPT)
        if (bad := unknown_script_options(line))
    }
    assert not wrong, wrong


# inference.py ignores torch's warning about read-only arrays (a PIL image's pixels), a
# filter that pytest's own, per test, can mask
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable:UserWarning")
def test_the_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Python API example, as written, on a small photo and a folder of one."""
    import numpy as np
    from PIL import Image

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = re.search(r"^## Python API\n\n```python\n(.*?)^```", readme, re.DOTALL | re.M)
    assert example is not None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POCKETSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POCKETSR_OFFLINE", "1")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save("photo.jpg")
    (tmp_path / "shoot").mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 20, 3), np.uint8)).save("shoot/a.png")
    exec(compile(example.group(1), "README.md", "exec"), {})
    assert Image.open("photo_x4.jpg").size == (128, 96)
    assert Image.open("upscaled/a.png").size == (80, 64)
    assert capsys.readouterr().out.split() == ["shoot/a.png", "ok"]
