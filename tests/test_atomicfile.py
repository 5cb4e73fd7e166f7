"""The package's atomic-write helper: the target is old or new, never a part, no leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pocketsr_cli.atomicfile import (
    TEMP_SUFFIX,
    NameTaken,
    replacing,
    temp_path_for,
    write_bytes,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{TEMP_SUFFIX}"))


def test_write_bytes_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "memo.json"
    write_bytes(target, b"one")
    write_bytes(target, b"two", fsync=True)
    assert target.read_bytes() == b"two"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_a_failed_block_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), replacing(target) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise error
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_block_that_writes_nothing_raises_and_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError), replacing(target):
        pass
    assert target.read_bytes() == b"old"


def test_temporary_names_are_hidden_unique_and_short(tmp_path: Path) -> None:
    long = tmp_path / ("n" * 250 + ".png")
    names = {temp_path_for(long).name for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith(".") and n.endswith(TEMP_SUFFIX) and len(n) < 255 for n in names)
    assert temp_path_for(long).parent == tmp_path


def test_an_exclusive_block_never_replaces_a_taken_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    with replacing(target, exclusive=True, fsync=True) as tmp:
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(NameTaken), replacing(target, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), replacing(tmp_path / "new.png", exclusive=True) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert not (tmp_path / "new.png").exists() and leftovers(tmp_path) == []

    def no_hard_links(src: object, dst: object) -> None:  # FAT, some network shares
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    with pytest.raises(NameTaken), replacing(target, exclusive=True) as tmp:
        tmp.write_bytes(b"third")
    with replacing(tmp_path / "b.png", exclusive=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"first" and (tmp_path / "b.png").read_bytes() == b"new"
    assert leftovers(tmp_path) == []
