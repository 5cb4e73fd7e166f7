"""ARCHITECTURE.md's rules that a change could break without any test noticing: which
modules the core imports and that it never prints.  Read from the source (``ast``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pocketsr_cli"
# The faces: they parse what a person typed and show results (cli/_options is shared by the
# command line and the API, ARCHITECTURE's "opening an upscaler" seam).
FACES = ("cli/", "api.py", "_entry.py", "__main__.py")
# What runs as a console program of its own: the commands, and training (python -m ...).
CONSOLE = ("cli/", "train/", "_entry.py", "__main__.py")


def sources() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_callers_import_imageio_through_the_package() -> None:
    """imageio/__init__: 'callers import from the package, never from its modules'."""
    wrong = [
        f"{name}:{line} {module}"
        for name, tree in sources()
        if not name.startswith("imageio/")
        for line, module in imported(tree)
        if module.startswith("pocketsr_cli.imageio.")
    ]
    assert not wrong


def test_the_core_does_not_import_the_command_line() -> None:
    """'Imports go one way: cli → pipeline → ...'."""
    wrong = [
        f"{name}:{line} {module}"
        for name, tree in sources()
        if not name.startswith(FACES)
        for line, module in imported(tree)
        if module == "pocketsr_cli.cli" or module.startswith("pocketsr_cli.cli.")
    ]
    assert not wrong


def test_the_core_never_prints() -> None:
    """'nothing in the core prints': it raises, or reports through callbacks."""
    writers = {"print", "sys.stdout.write", "sys.stderr.write"}
    wrong = [
        f"{name}:{node.lineno} {ast.unparse(node.func)}"
        for name, tree in sources()
        if not name.startswith(CONSOLE)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) in writers
    ]
    assert not wrong
