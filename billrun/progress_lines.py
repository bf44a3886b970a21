"""Progress for logs: when output is not a terminal (cron, CI, `| tee`), progress is printed as
periodic plain lines, `nightly: 2/3 periods (67%)`, instead of a bar's control codes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# A line at every 10 % step, at the end, and (for fine-grained work) at most every 10 s between.
STEP = 0.10
EVERY_SECONDS = 10.0


class ProgressLines:
    """A progress reporter `(what, done, total)` that prints a plain line when worth it."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        every_seconds: float = EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.stream = label, stream
        self.every_seconds, self.clock = every_seconds, clock
        self._last: dict[str, tuple[int, float, float]] = {}  # what -> (step, time, done)

    def __call__(self, what: str, done: float, total: float) -> None:
        fraction = min(done / total, 1.0) if total else 1.0
        step, now = int(fraction / STEP + 1e-9), self.clock()
        last = self._last.get(what)
        due = (
            last is None
            or (done != last[2] and (step > last[0] or now - last[1] >= self.every_seconds))
            or (fraction >= 1.0 and done != last[2])
        )
        if not due:
            return
        self._last[what] = (step, now, done)
        unit = f" {what}" if what else ""
        stream = self.stream or sys.stderr
        stream.write(f"{self.label}: {int(done):,}/{int(total):,}{unit} ({fraction:.0%})\n")
        stream.flush()
