"""Guard rails against irreversible typos (issue 12, item 7): an as-of date too far ahead."""

from __future__ import annotations

import os
from datetime import date, timedelta

HORIZON_ENV = "BILLRUN_AS_OF_HORIZON_DAYS"
DEFAULT_HORIZON_DAYS = 1  # tomorrow, UTC


class HorizonError(ValueError):
    """A horizon setting that is not a whole number of days >= 0."""


def horizon_days(flag: int | None, environ: dict[str, str] | None = None) -> int:
    """The horizon in days: `--horizon-days`, else `$BILLRUN_AS_OF_HORIZON_DAYS`, else 1."""
    if flag is not None:
        return flag
    text = (os.environ if environ is None else environ).get(HORIZON_ENV, "").strip()
    if not text:
        return DEFAULT_HORIZON_DAYS
    try:
        value = int(text)
    except ValueError:
        raise HorizonError(f"{HORIZON_ENV}={text!r} is not a whole number of days") from None
    if value < 0:
        raise HorizonError(f"{HORIZON_ENV}={value} must be 0 or more")
    return value


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
