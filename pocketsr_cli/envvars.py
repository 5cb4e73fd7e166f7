"""The yes and no of the ``POCKETSR_*`` variables that switch something on or off, and
their one reader, :func:`switch`.

``POCKETSR_OFFLINE`` (``weights/cache.py``), ``POCKETSR_CPU_BF16`` (``devices.py``) and
``POCKETSR_KEEP_FREED_MEMORY`` (``hostmem.py``) take the same words, in any case and with
blanks around them: yes is ``1``, ``true``, ``yes``, ``on``, ``t`` or ``y``; no is ``0``,
``false``, ``no``, ``off``, ``f`` or ``n`` (pydantic's bool words, which ``--offline`` once
read its variable with).  Unset or empty, a variable leaves the choice to its reader's
default.  Any other value is refused with a usage error naming the variable, rather than
read as a guess: ``POCKETSR_CPU_BF16=yes`` was silently the CPU's own answer.
"""

from __future__ import annotations

import os

from pocketsr_cli.errors import UsageError

YES = frozenset({"1", "true", "yes", "on", "t", "y"})
NO = frozenset({"0", "false", "no", "off", "f", "n"})


def switch(name: str, advice: str) -> bool | None:
    """What the variable ``name`` says: True (a yes word), False (a no word), None when it
    is unset or empty.

    Raises:
        UsageError: it says neither; the message names it, its value and ``advice`` (what
            to set it to: ``"set it to 1 (offline) or 0"``).
    """
    raw = os.environ.get(name, "")
    value = raw.strip().lower()
    if not value:
        return None
    if value in YES:
        return True
    if value in NO:
        return False
    raise UsageError(f"{name}={raw!r} is neither yes nor no: {advice}")
