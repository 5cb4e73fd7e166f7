"""Review pages: a self-contained HTML page per run, a card per input.

After a batch a photographer wants to look, not read: each card has a before/after slider
on the output's most detailed crop at 100 % (one image pixel per screen pixel), the
input and output sizes, model, device and seconds; failures and skips get cards too, and
the page opens with the run's totals.  ``upscale --report PAGE`` writes one from the run
it just made, ``pocketsr report LOG`` from a saved ``upscale --json`` log.

* :mod:`~pocketsr_cli.report.records`: the run's records (from a finished run or a log);
* :mod:`~pocketsr_cli.report.crops`: which window to show and its before/after pixels;
* :mod:`~pocketsr_cli.report.pictures`: the crops and thumbnails encoded from the files;
* :mod:`~pocketsr_cli.report.cards`: the HTML (the page's styles and script are in
  ``template.html`` beside it);
* :mod:`~pocketsr_cli.report.page`: where it all goes, safely and atomically.

Nothing here prints; progress goes to an ``on_progress(done, total, name)`` callback.
"""

from __future__ import annotations

from pocketsr_cli.report.page import (
    PageOptions,
    PageResult,
    assets_dir,
    check_destination,
    check_run_destination,
    write_report,
)
from pocketsr_cli.report.records import Entry, Run, RunInfo, is_stream, is_terminal, load_log

__all__ = [
    "Entry",
    "PageOptions",
    "PageResult",
    "Run",
    "RunInfo",
    "assets_dir",
    "check_destination",
    "check_run_destination",
    "is_stream",
    "is_terminal",
    "load_log",
    "write_report",
]
