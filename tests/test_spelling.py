"""Options named in core messages: one symbol, spelled as a flag by the command line and as
a keyword by the Python API (``pocketsr_cli.spelling``, ``cli/_flags.py``)."""

from __future__ import annotations

import pickle
import threading

import pytest

from pocketsr_cli import spelling
from pocketsr_cli.cli._flags import FLAGS, flag_spelling
from pocketsr_cli.errors import UsageError
from pocketsr_cli.sizing import target_from_options
from pocketsr_cli.spelling import (
    DEVICE,
    GLOB,
    MAX_MEMORY,
    OUTPUT,
    OUTSCALE,
    OVERWRITE,
    SCALE,
    TILE,
    Option,
    keyword_spelling,
    spelled,
)


def test_the_api_spells_its_keywords_and_words_for_the_rest() -> None:
    assert spelling.current() is keyword_spelling  # the default: no face set one
    assert f"use {OVERWRITE} to replace it" == "use overwrite=True to replace it"
    assert str(TILE) == "tile" and str(TILE.given(512)) == "tile=512"
    assert str(DEVICE.given("cpu")) == "device='cpu'" and str(SCALE.given(3)) == "scale=3"
    assert str(OUTPUT) == "output" and str(MAX_MEMORY) == "max memory"
    assert str(GLOB.given("'*.png'")) == "glob '*.png'"
    assert str(spelling.FORMAT) == "fmt"  # upscale_folder's keyword


def test_the_command_line_spells_flags() -> None:
    with spelled(flag_spelling):
        assert f"use {OVERWRITE} to replace it" == "use --overwrite to replace it"
        assert str(TILE.given(512)) == "--tile 512" and str(SCALE.given(3)) == "-s 3"
        assert str(DEVICE.given("cpu")) == "--device cpu" and str(MAX_MEMORY) == "--max-memory"
        assert str(GLOB.given("'*.png'")) == "--glob '*.png'"
    assert str(OVERWRITE) == "overwrite=True"  # restored after the block


def test_every_option_has_one_flag() -> None:
    names = [option.name for option in spelling.OPTIONS]
    assert len(names) == len(set(names)) and set(names) == set(FLAGS)
    assert all(flag.startswith("-") for flag in FLAGS.values())


def test_the_spelling_is_restored_after_an_error_and_seen_by_threads() -> None:
    seen: list[str] = []
    positive = r"^--outscale must be a positive factor"
    with pytest.raises(UsageError, match=positive), spelled(flag_spelling):
        thread = threading.Thread(target=lambda: seen.append(str(OUTSCALE)))
        thread.start()
        thread.join()
        target_from_options(outscale=-2)
    assert seen == ["--outscale"] and spelling.current() is keyword_spelling
    with pytest.raises(UsageError, match=r"^outscale must be a positive factor"):
        target_from_options(outscale=-2)


def test_a_core_message_in_both_spellings() -> None:
    def message() -> str:
        with pytest.raises(UsageError) as info:
            target_from_options(outscale=2.0, long_edge=100)
        return str(info.value)

    api = message()
    with spelled(flag_spelling):
        cli = message()
    assert cli == (
        "--outscale and --long-edge cannot be combined: give one of --outscale, --width, "
        "--height, --long-edge"
    )
    assert api == (
        "outscale and long edge cannot be combined: give one of outscale, width, height, long edge"
    )


def test_a_custom_option_without_a_flag_is_a_bug_of_the_table() -> None:
    with spelled(flag_spelling), pytest.raises(KeyError):
        str(Option("no_such_option"))


def test_worker_processes_are_handed_the_drivers_spelling() -> None:
    from pocketsr_cli.parallel import _Driver
    from pocketsr_cli.pipeline import NullReporter, Options

    assert pickle.loads(pickle.dumps(flag_spelling)) is flag_spelling  # spawn pickles it
    with spelled(flag_spelling):
        driver = _Driver([], None, ["cpu"], Options(), NullReporter(), None, 0, None)  # type: ignore[arg-type]
    assert driver.args[-1] is flag_spelling  # _worker_main's last argument: spelling.use


def test_a_command_offers_only_its_own_options() -> None:
    """Each command's spelling offers the options it takes (``spelling.offers``), so that
    a core message advises none it lacks; outside a command every option is offered."""
    import typer

    from pocketsr_cli.cli import app
    from pocketsr_cli.cli._flags import CommandSpelling

    root = typer.main.get_command(app)
    commands = {name: root.commands[name] for name in ("upscale", "eval", "bench")}  # type: ignore[attr-defined]
    offered = {
        name: {o.name for o in spelling.OPTIONS if CommandSpelling.of(command).offers(o)}
        for name, command in commands.items()
    }
    assert {"outscale", "max_memory", "scale", "model"} <= offered["upscale"]
    assert "outscale" not in offered["eval"] and {"scale", "resize", "crop"} <= offered["eval"]
    assert "scale" not in offered["bench"] and {"size", "folder"} <= offered["bench"]
    assert spelling.offers(OUTSCALE)  # the API's spelling: every option
    with spelled(CommandSpelling.of(commands["eval"])):
        assert not spelling.offers(OUTSCALE) and str(OUTSCALE.given(2)) == "--outscale 2"
    eval_spelling = CommandSpelling.of(commands["eval"])
    assert pickle.loads(pickle.dumps(eval_spelling)) == eval_spelling  # for worker processes
