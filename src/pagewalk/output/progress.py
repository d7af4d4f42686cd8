"""Progress bars for long work, on stderr and only on a terminal (rich's, imported only
when a bar is shown)."""

from __future__ import annotations

import os
import sys

__all__ = ["Progress"]


class Progress:
    """A progress bar on stderr (rich's), only when stderr is a terminal; for a
    command that ``streams`` its output, only when stdout is not a terminal too
    (they would interleave: ``dump > file``).  Nothing is imported otherwise."""

    def __init__(self, what: str, total: int, unit: str = "pages", streams: bool = False) -> None:
        self.what, self.total, self.unit = what, max(total, 1), unit
        self.bar = None  # total 0: nothing worth a bar
        if total and sys.stderr.isatty() and not (streams and sys.stdout.isatty()) and not os.environ.get("PAGEWALK_NO_PROGRESS"):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"pagewalk {what}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn(unit), TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True,  # gone once done: the output follows
                                redirect_stdout=False, redirect_stderr=False)  # leave the streams alone
            self.bar.start()
            self.task = self.bar.add_task(what, total=self.total)

    def advance(self, n: int) -> None:
        """Move the bar on by ``n`` units (``unit``: pages unless given)."""
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def restart(self) -> None:
        """Start the bar again from 0 (the work begins anew another way)."""
        if self.bar is not None:
            self.bar.reset(self.task, total=self.total)

    def close(self) -> None:
        """Remove the bar (nothing when there is none); closing twice does nothing."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
