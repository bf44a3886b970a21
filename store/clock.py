"""The one clock: UTC, read at the edge (a flow or a command) and passed down as a value.

Nothing below the edge reads the time: `pipeline/` and `rules/` get dates as arguments, the
store gets timestamps (`started_at`, `finished_at`) from the run that writes them. TIMESTAMP
columns hold naive UTC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, as a naive UTC timestamp (the TIMESTAMP columns hold UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[step]` (a run's own profile, for its log)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - start
