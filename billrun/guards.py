"""Guard rails against irreversible typos (issue 12, item 7): an as-of date too far ahead."""

from __future__ import annotations

from datetime import date, timedelta

# The horizon itself is the setting `as_of_horizon_days` (billrun.config: flag, env, file).
HORIZON_ENV = "BILLRUN_AS_OF_HORIZON_DAYS"


def as_of_refusal(as_of: date, today: date, days: int, allow_future: bool) -> str | None:
    """Why `nightly --as-of` is refused, or None. `today` is the UTC date read at the edge."""
    latest = today + timedelta(days=days)
    if allow_future or as_of <= latest:
        return None
    return (
        f"--as-of {as_of} is beyond the horizon {latest} (today {today} UTC + {days} day(s)): "
        "it would finalize periods that have not ended; pass --allow-future if you mean it, "
        f"or widen the horizon with --horizon-days or {HORIZON_ENV}"
    )
