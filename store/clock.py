"""The one clock: UTC, read at the edge (a flow or a command) and passed down as a value.

Nothing below the edge reads the time: `pipeline/` and `rules/` get dates as arguments, the
store gets timestamps (`started_at`, `finished_at`) from the run that writes them. TIMESTAMP
columns hold naive UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, as a naive UTC timestamp (the TIMESTAMP columns hold UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)
