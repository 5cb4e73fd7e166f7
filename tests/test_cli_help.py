"""``--help`` of every command reads as a person would write it, and ``--version``.

The commands are found by walking the app, so a command added later is checked too.
"""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

import pocketsr_cli
from pocketsr_cli.cli import app
from pocketsr_cli.weights.resolve import DEFAULT_MODEL

# What Typer's own rendering lets through: Python types, braces, a default without a name,
# and the placeholder that stands for the default model's name until help is shown.
LEAKS = ("<list[", "<int range>", "<float range>", "{", "Path]", "(the bundled default)")
TYPE_MARKER = re.compile(r"<[A-Za-z][^>]*>")  # <str>, <path>, <dir>, <bicubic|real>
PLACEHOLDER = "@DEFAULT_MODEL@"


def command_paths() -> list[tuple[str, ...]]:
    """``()`` for the root, then every command and sub-command, as argument tuples."""
    paths: list[tuple[str, ...]] = [()]

    def walk(group: object, prefix: tuple[str, ...]) -> None:
        for name, command in getattr(group, "commands", {}).items():
            paths.append((*prefix, name))
            walk(command, (*prefix, name))

    walk(get_command(app), ())
    return paths


PATHS = command_paths()


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_found() -> None:
    names = {" ".join(path) for path in PATHS}
    expected = {"upscale", "bench", "eval", "doctor", "report", "models"}
    expected |= {f"models {c}" for c in ("list", "info", "download", "verify", "remove")}
    expected |= {"models import", "models import-ncnn"}
    assert expected <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "pocketsr")
def test_help_shows_no_python(path: tuple[str, ...]) -> None:
    text = help_of(path)
    for leak in (*LEAKS, PLACEHOLDER):
        assert leak not in text, f"{leak!r} in:\n{text}"
    assert not TYPE_MARKER.search(text), text


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "pocketsr")
def test_help_ends_with_examples_kept_one_per_line(path: tuple[str, ...]) -> None:
    text = help_of(path)
    match = re.search(r"\n  Examples?:\n\n((?:  .*\n?)+)$", text)
    assert match, text
    lines = match.group(1).splitlines()
    assert lines and all(line.startswith("  pocketsr ") for line in lines), lines


def test_usage_lines_use_metavariables() -> None:
    usage = {path: help_of(path).splitlines()[0] for path in PATHS}
    assert usage[("upscale",)] == "Usage: pocketsr upscale [OPTIONS] INPUT..."
    assert usage[("models", "info")] == "Usage: pocketsr models info [OPTIONS] NAME|PATH"
    assert usage[("models", "download")] == "Usage: pocketsr models download [OPTIONS] NAME..."
    assert usage[("models", "verify")] == "Usage: pocketsr models verify [OPTIONS] [NAME]..."
    assert usage[("eval",)] == "Usage: pocketsr eval [OPTIONS] DIR"


def test_options_show_their_metavariables() -> None:
    text = help_of(("upscale",))
    for shown in (
        "-o, --output DIR",
        "-m, --model NAME|PATH",
        "-s, --scale N",
        "--format FORMAT",
        "--device DEVICE",
        "--tile auto|0|N",
    ):
        assert shown in text, shown
    assert "--size WxH" in help_of(("bench",))


@pytest.mark.parametrize("path", [("upscale",), ("bench",), ("eval",)])
def test_model_option_names_the_default(path: tuple[str, ...]) -> None:
    assert f"Default: {DEFAULT_MODEL}" in help_of(path)


@pytest.mark.parametrize("group", [(), ("models",)], ids=["pocketsr", "models"])
def test_command_lists_give_each_first_sentence_whole(group: tuple[str, ...]) -> None:
    """Click cut them to one row ("..., the default...", "(resumable,...")."""
    text = help_of(group)
    listing = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert "..." not in listing, listing
    sentences = " ".join(listing.split())
    if group:
        assert "(resumable, checksum- verified)." in sentences
    else:
        assert "the default model and extras." in sentences


def test_the_root_help_gives_the_exit_codes() -> None:
    text = " ".join(help_of(()).split())
    assert "Exit codes: 0 everything written or skipped, 1 some input failed, 2 usage " in text
    assert "3 model could not be resolved, downloaded or loaded, 130 interrupted" in text


SHARED = ("--tile", "--tile-overlap", "--device", "--threads", "--precision", "--offline")


@pytest.mark.parametrize("flag", SHARED)
def test_a_shared_option_reads_the_same_in_every_command(flag: str) -> None:
    """upscale declared its own --tile (auto "fit free memory" there only)."""
    commands = get_command(app).commands  # type: ignore[attr-defined]
    helps = {
        name: param.help
        for name, command in commands.items()
        for param in command.params
        if flag in getattr(param, "opts", ())
    }
    assert {"upscale", "eval", "bench"} <= set(helps), helps
    assert len(set(helps.values())) == 1, helps


def test_help_says_what_each_command_quiets_and_what_precision_eval_keeps() -> None:
    report = " ".join(help_of(("report",)).split())
    quiet = report.split("--quiet", 1)[1]
    assert quiet.startswith(" Only errors and warnings on stderr: no progress bar or line ")
    assert "per-image" not in quiet.split("-h, --help")[0]
    assert "(eval keeps fp32)" in " ".join(help_of(("upscale",)).split())
    assert "[default: the first -m]" in help_of(("bench",))
    download = " ".join(help_of(("models", "download")).split())
    assert "NAME... Model names (see 'pocketsr models list')." in download


def test_textual_defaults_lose_their_parentheses() -> None:
    text = help_of(("bench",))
    assert "[default: 960x540]" in text and "(960x540)" not in text


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0
    assert result.stdout == f"pocketsr {importlib.metadata.version('pocketsr')}\n"
    assert result.stderr == ""


def test_version_without_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert pocketsr_cli._package_version() == "0+unknown"
