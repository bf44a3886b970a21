"""The long soak (issue 23): `tests/soak/`'s campaign with bigger parameters.

    nice -n 19 .venv/bin/python benchmarks/soak.py --days 90 --accounts 20000 --out /tmp/soak

Generates the accounts (`billrun generate`, seeded), cuts them into one drop per day, and plays
the days through the real CLI on a database held on a size-limited tmpfs (root only; without it
the disk faults are left out), with SIGKILLs, full disks and corrupt files on random days and
every invariant checked after each day (tests/soak/campaign.py). A fault-free twin follows one
day behind in a thread, through the same CLI; at the end (every day, or `--until HH:MM` UTC
reached) the two databases are compared table by table. Prints what it did as it goes and a
summary (JSON) at the end; exit 1 if anything was found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the campaign lives with the tests (tests/soak/campaign.py)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--accounts", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=Path("/tmp/billrun-soak"))
    parser.add_argument("--start", default="2026-01-15", help="the first as-of date")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--disk-fulls", type=int, default=4)
    parser.add_argument("--corrupt", type=int, default=3)
    parser.add_argument("--counters-every", type=int, default=15,
                        help="recompute the counters (nightly --full on a copy) every N days")
    parser.add_argument("--disk-mb", type=int, default=8192, help="size of the tmpfs")
    parser.add_argument("--until",
                        help="HH:MM UTC (its next occurrence): start no day after it, then compare")
    args = parser.parse_args()
    os.environ.setdefault("BILLRUN_PREFECT_HOME", tempfile.mkdtemp(prefix="soak-prefect-"))
    os.environ.setdefault("COLUMNS", "200")

    from data.generator import generate
    from flows import prefect_server
    from tests.soak.campaign import (
        Campaign,
        SmallDisk,
        equal_to_twin,
        plan_days,
        plan_faults,
        run,
    )

    started = time.monotonic()

    def log(line: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        print(f"{stamp} [{time.monotonic() - started:7.1f} s] {line}", flush=True)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    first = date.fromisoformat(args.start)
    months = (args.days + first.day) // 28 + 1
    log(f"generate {args.accounts} accounts, {months} months (seed {args.seed})")
    generate(args.accounts, out / "gen", seed=args.seed, months=months,
             start=f"{first.year:04d}-01" if first.month == 1 else first.strftime("%Y-%m"))
    days = plan_days(out / "gen", out / "drops", first, args.days, args.seed)
    counts = {"kill": args.kills, "disk": args.disk_fulls, "corrupt": args.corrupt}
    if not SmallDisk.available():
        log("no tmpfs mount here (not root): no disk faults")
        counts.pop("disk")
    faults = plan_faults(days, args.seed, counts)
    log(f"{len(days)} days planned; faults: " + ", ".join(
        f"day {i}: {f.kind} {f.step}" for i, f in sorted(faults.items())))
    until = None
    if args.until:
        hh, mm = (int(x) for x in args.until.split(":"))
        now = datetime.now(timezone.utc)
        until = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if until <= now:  # the next time the clock shows HH:MM: past midnight, tomorrow's
            until += timedelta(days=1)

    server = prefect_server.start(log_path=out / "prefect-server.log")
    env = {**os.environ, "PREFECT_API_URL": server.api_url}
    twin_db = out / "twin" / "billrun.duckdb"
    twin_db.parent.mkdir(parents=True, exist_ok=True)
    todo: queue.Queue = queue.Queue()
    twin_done: list[int] = []
    twin_errors: list[str] = []

    def twin() -> None:  # the fault-free twin: each day the campaign finished, no checks
        while (day := todo.get()) is not None:
            for kind, cmd in day.steps(twin_db):
                outcome, left = run(cmd, env)
                if outcome.code != 0 or left:
                    twin_errors.append(f"twin day {day.index} {kind}: {outcome.stderr} {left}")
            twin_done.append(day.index)

    follower = threading.Thread(target=twin, daemon=True)
    follower.start()
    summary: dict = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, "
                     f"{os.cpu_count()} cores, Python {platform.python_version()}"}
    try:
        with SmallDisk(out / "disk", args.disk_mb) as disk:
            campaign = Campaign(disk.folder / "billrun.duckdb", env, faults, disk,
                                counters_every=args.counters_every, seed=args.seed, log=log,
                                strict=False)
            played = []
            for day in days:
                if until is not None and datetime.now(timezone.utc) >= until:
                    log(f"--until {args.until} reached: stopping after {len(played)} days")
                    break
                campaign.play([day], last=day is days[-1])
                played.append(day)
                todo.put(day)
            todo.put(None)
            follower.join()
            if not played:
                log("no day played: nothing to compare")
                return 1
            log("comparing with the fault-free twin")
            differ = equal_to_twin(campaign.db, twin_db, campaign.corrupt_lines)
            summary.update({
                "days": len(played), "of_days": args.days, "accounts": args.accounts,
                "ledger": dict(sorted(campaign.ledger.items())),
                "found": campaign.found + twin_errors,
                "twin_days": len(twin_done), "tables_differing_from_twin": differ,
                "wall_s": round(time.monotonic() - started, 1),
            })
    finally:
        server.stop()
    log("summary:\n" + json.dumps(summary, indent=2, default=str))
    return 1 if summary.get("found") or summary.get("tables_differing_from_twin") else 0


if __name__ == "__main__":
    sys.exit(main())
