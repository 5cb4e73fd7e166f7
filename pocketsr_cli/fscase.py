"""How a file system compares names: whether a folder's ignores their case.

macOS and Windows ignore case by default, Linux keeps it, and a disk mounted anywhere
may do either (a FAT stick or a network share on Linux, a case-sensitive volume on a
Mac): :func:`case_blind` asks the disk itself.  Job planning (``jobs.py``: two outputs
``Photo.png`` and ``photo.png`` are one file there) and the user model folder
(``weights/store.py``: ``Foo.toml`` there is the manifest ``foo.toml`` names) both
compare names through it, folded by :func:`folded`.

The answers are kept until :func:`forget_answers`, which each run's planning calls as it
starts (``jobs.collect_jobs``, ``jobs.iter_jobs``), so that a long-lived process (the
API's ``Upscaler.upscale_folder``, called again and again) asks a disk mounted anew under
the same path again.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys

__all__ = ["case_blind", "folded", "forget_answers"]


_ASCII_SWAP = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
)


def folded(text: str) -> str:
    """``text`` as a file system that ignores case compares it: each character case-folded
    alone, one for one (Unicode's simple case folding: ``É`` is ``é``, ``Σ`` and ``ς``
    are ``σ``; ``ß`` stays ``ß``, never ``ss``, and ``İ``, which folds to two characters,
    stays as it is), so that it is of the same length and a prefix of it is the folded
    prefix of ``text``.  Job planning (``jobs.py``) and the user model folder
    (``weights/store.py``) both fold names with it.

    Beyond ASCII, though :func:`case_blind` asks by ASCII letters alone: the disks that
    ignore case (APFS and HFS+ on a Mac, NTFS, exFAT and FAT on Windows) fold the case of
    every letter they know, so two outputs ``Été.png`` and ``été.png`` are one file there;
    and on one that folded ASCII alone, such names taken for one file are reported as a
    clash, where names taken for two files that are one would have one output written
    over another."""
    if text.isascii():
        return text.lower()
    return "".join(_folded_char(c) for c in text)


@functools.lru_cache(maxsize=4096)
def _folded_char(c: str) -> str:
    """One character case-folded alone, to one character (itself when it has no such
    fold): its uppercase's lowercase (``ς`` → ``Σ`` → ``σ``), else its lowercase."""
    upper = c.upper()
    if len(upper) == 1 and len(lower := upper.lower()) == 1:
        return lower
    lower = c.lower()
    return lower if len(lower) == 1 else c


def case_blind(folder: str) -> bool:
    """Whether the file system of real path ``folder`` ignores the case of names, asked of
    the nearest existing folder on its path: an entry in it with a letter in its name is
    the same file under that name with its case swapped; a folder with none asks its own
    name so, in its parent.  The entries come first because they are on the folder's own
    file system where it is a mount point (a FAT stick or a network share on Linux, a
    case-sensitive volume on a Mac), and its name is not: ``-o /media/stick/out`` on a FAT
    stick, ``out`` not made yet, was taken as keeping case.  Where nothing tells, the
    platform's default (macOS and Windows ignore case, Linux does not).  Only ASCII letters
    are swapped: every file system that ignores case folds those, while ``str.swapcase``
    turns ``ß`` into ``SS``, which none of them takes for it (a folder ``Großeltern`` read
    as keeping case).

    Answers are kept until :func:`forget_answers`."""
    return _probed(folder)


@functools.lru_cache(maxsize=4096)
def _probed(folder: str) -> bool:
    """:func:`case_blind`'s answer, kept."""
    probe = folder
    while True:
        told = _told_by_an_entry(probe)
        if told is not None:
            return told
        head, tail = os.path.split(probe)
        told = _same_with_case_swapped(head, tail, follow_symlinks=True)
        if told is not None:  # else no letter in it, or not made yet: ask its parent
            return told
        if head == probe:
            return sys.platform in ("darwin", "win32")
        probe = head


def _told_by_an_entry(folder: str, looked_at: int = 64) -> bool | None:
    """Whether the folder ``folder`` finds one of its entries (among the first
    ``looked_at``) with a letter in its name under that name with its case swapped; None
    when it is not a folder that can be read, or has no such entry."""
    try:
        with os.scandir(folder) as entries:
            for entry in itertools.islice(entries, looked_at):
                told = _same_with_case_swapped(folder, entry.name, follow_symlinks=False)
                if told is not None:  # else no letter in its name, or gone meanwhile
                    return told
    except (OSError, ValueError):  # not made yet, not a folder, not readable
        return None
    return None


def _same_with_case_swapped(folder: str, name: str, *, follow_symlinks: bool) -> bool | None:
    """Whether ``name`` in ``folder`` is the same file as the name with the case of its
    ASCII letters swapped (False: nothing, or another file, has that name); None when the
    name has no such letter, or nothing has it."""
    swapped = name.translate(_ASCII_SWAP)
    if swapped == name:
        return None
    try:
        here = os.stat(os.path.join(folder, name), follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return None
    try:
        there = os.stat(os.path.join(folder, swapped), follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return False
    return os.path.samestat(here, there)


def forget_answers() -> None:
    """Ask every folder afresh from now on (a disk may have been mounted anew)."""
    _probed.cache_clear()
