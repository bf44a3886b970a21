"""Where a billing run's time goes: the coordinator's phases and the units' own seconds, so that
`billrun bench` can show, step by step, what the coordinator does and what the workers do
(docs/RUNS.md, "Where a run's time goes").

The coordinator (the flow's own process) times its phases by wall clock: its start (a night's
load, a cluster's start), the plan, the exports of the units' inputs, the waits on each round of
units, each step of the commit, the publication and the report. Each unit times itself where it
runs, on a Dask worker or a thread (`UnitDone.seconds`, `UnitDone.cpu_seconds`), so a round
shows both the units' total (what more workers share) and its critical path (its longest unit:
what no number of workers shortens).

The coordinator also takes its process's CPU seconds by group (`cpu`): the CPU of its own work
(DuckDB's threads included), steadier than wall times on a shared machine. Its rounds do not
overlap its other phases, so each group's CPU is its own; but during the rounds (`units`) the
process's CPU is its orchestration on a cluster, and that plus the units' own on threads."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from store.clock import timed

# The coordinator's phase groups, in the order a run goes through them.
GROUPS = ("start", "plan", "exports", "units", "commit", "publication", "report")


class TimedUnit(Protocol):
    """What a round needs of a unit's result (flows.units.UnitDone)."""

    seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class RoundTime:
    """One round of units (the settle round, or one period's): the coordinator's wait on it,
    from the first unit submitted to the last result, and each unit's own wall and CPU."""

    label: str  # "settle", the period, or "late <period> ..." for a night's late-usage units
    seconds: float
    units: tuple[tuple[float, float], ...]  # each unit's (wall, CPU) seconds

    @property
    def unit_seconds(self) -> float:
        """The units' wall seconds, summed: the work more workers share."""
        return sum(wall for wall, _ in self.units)

    @property
    def unit_cpu(self) -> float:
        """The units' CPU seconds, summed (their processes' CPU while each ran)."""
        return sum(cpu for _, cpu in self.units)

    @property
    def critical_path(self) -> float:
        """The longest unit: the round takes at least this on any number of workers."""
        return max((wall for wall, _ in self.units), default=0.0)


@dataclass
class RunTimings:
    """A run's profile: `coordinator[group][step]` wall seconds, and its rounds of units."""

    coordinator: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # group -> the process's CPU seconds
    rounds: list[RoundTime] = field(default_factory=list)
    seconds: float = 0.0  # the flow's wall, start to end, once `finish` is called
    label_prefix: str = ""  # put before each round's label (a night's late-usage units)
    _started: float = field(default_factory=time.perf_counter, repr=False)

    @contextmanager
    def phase(self, group: str, step: str) -> Iterator[None]:
        """Add the block's wall time to the coordinator's `group`, `step`, its CPU to `group`."""
        with self.cpu_of(group), timed(self.coordinator.setdefault(group, {}), step):
            yield

    @contextmanager
    def cpu_of(self, group: str) -> Iterator[None]:
        """Add the process's CPU seconds in the block to `group` (its steps' walls are added by
        `add`, e.g. the commit's)."""
        start = time.process_time()
        try:
            yield
        finally:
            self.cpu[group] = self.cpu.get(group, 0.0) + time.process_time() - start

    def add(self, group: str, seconds: dict[str, float]) -> None:
        """Add steps timed elsewhere (the commit's, the publication's) to `group`."""
        steps = self.coordinator.setdefault(group, {})
        for step, s in seconds.items():
            steps[step] = steps.get(step, 0.0) + s

    def add_round(
        self, label: str, seconds: float, done: Sequence[TimedUnit], cpu: float = 0.0
    ) -> None:
        """Record one round of units; the wait (and the process's `cpu` during it) counts in
        the coordinator's `units` group."""
        self.cpu["units"] = self.cpu.get("units", 0.0) + cpu
        self.rounds.append(RoundTime(f"{self.label_prefix}{label}", seconds,
                                     tuple((d.seconds, d.cpu_seconds) for d in done)))
        self.add("units", {"waiting on the rounds": seconds})

    def finish(self) -> RunTimings:
        """Set the flow's wall time (from this profile's creation to now)."""
        self.seconds = time.perf_counter() - self._started
        return self

    def group_seconds(self, group: str) -> float:
        """The wall seconds of one coordinator group."""
        return sum(self.coordinator.get(group, {}).values())

    @property
    def accounted(self) -> float:
        """The wall seconds of every timed coordinator step."""
        return sum(self.group_seconds(g) for g in self.coordinator)

    def _groups(self) -> list[str]:
        """The groups timed, in the order of GROUPS (any other after them)."""
        return sorted(self.coordinator, key=lambda g: (GROUPS.index(g) if g in GROUPS
                                                       else len(GROUPS), g))

    def as_json(self) -> dict[str, Any]:
        """The profile as plain values (`--json`'s `timings`; `billrun bench` reads it)."""
        return {
            "seconds": round(self.seconds, 3),
            "coordinator": {g: {s: round(v, 3) for s, v in self.coordinator[g].items()}
                            for g in self._groups()},
            "cpu": {g: round(self.cpu.get(g, 0.0), 3) for g in self._groups()},
            "other": round(max(0.0, self.seconds - self.accounted), 3),
            "rounds": [
                {"label": r.label, "seconds": round(r.seconds, 3),
                 "units": [{"seconds": round(w, 3), "cpu_seconds": round(c, 3)}
                           for w, c in r.units]}
                for r in self.rounds
            ],
        }
