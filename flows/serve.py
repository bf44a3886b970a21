"""`billrun serve`: the nightly flow as a Prefect deployment on a cron schedule."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from prefect import flow

from flows.nightly import nightly_flow
from store.clock import utc_now

DEPLOYMENT_NAME = "billrun-nightly"


@flow(name="billrun-scheduled-nightly")
def scheduled_nightly(
    db: str = "billrun.duckdb", input_dir: str | None = None, as_of: date | None = None,
    late_usage: str = "report",
) -> Any:
    """The nightly run as of today (UTC) unless told otherwise; the clock is read only here.
    `late_usage`: the setting (docs/RUNS.md, "Late usage")."""
    day = as_of or utc_now().date()
    return nightly_flow(as_of=day, db=db, input_dir=input_dir, late_usage=late_usage)


def nightly_deployment(
    db: str, input_dir: str | None, cron: str, late_usage: str = "report"
) -> Any:
    """The deployment object: scheduled nightly with this database, drop folder and
    `late_usage` setting."""
    return scheduled_nightly.to_deployment(
        name=DEPLOYMENT_NAME,
        cron=cron,
        parameters={"db": db, "input_dir": input_dir, "late_usage": late_usage},
        description="billrun nightly: load the drop folder, draft open periods, finalize ended",
    )


def next_run_at(cron: str, now: datetime) -> datetime:
    """When the schedule `cron` next fires after `now`, in UTC: Prefect reads a deployment's
    cron in UTC (its schedule's default time zone), so `0 2 * * *` is 02:00 UTC."""
    from prefect._vendor.croniter import croniter

    return croniter(cron, now.astimezone(timezone.utc)).get_next(datetime)


def serve_nightly(
    db: str, input_dir: str | None, cron: str = "0 2 * * *", late_usage: str = "report"
) -> None:
    """Serve the nightly deployment until SIGINT (Ctrl-C) or SIGTERM, both stopping it the same
    clean way.

    Prefect's `serve` is its `Runner` started with `asyncio.run`; here the runner's SIGTERM
    handler raises KeyboardInterrupt like Ctrl-C (Prefect's own calls the runner's `stop` from
    inside its event loop, which leaves the coroutine `Runner.astop` never awaited), and SIGINT
    is taken back from a non-interactive shell, which starts background jobs with it ignored."""
    import asyncio
    import signal

    from prefect.runner import Runner

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    runner = _Runner(pause_on_shutdown=True)
    runner.add_deployment(nightly_deployment(db, input_dir, cron, late_usage))
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
