"""One unit of a billing run: one period of one shard of accounts (docs/RUNS.md, "Units of work").

A unit is a pure function of its staged inputs. The settle round (period None) settles the rules
of its shard's assignments once for the whole run (`billing.bill.settlement`: eligibility, ends,
conflicts, changes, commitments; nothing of it depends on the period) and stages that settlement
in `settled/shard=<s>/`. A period's unit reads its shard's files for its period (and the
settlement, and the counters and parcels the same shard's unit of the previous period staged),
calls the one pure function `billing.bill.bill` once per cutoff group with the settlement of the
group's accounts, so that it only does what depends on the period (each assignment's state in
the period, the stored decision rows, the charges), and writes its results to
`units/<period>/<shard>/*.parquet` in the staging folder. Its argument and result are small
frozen dataclasses of plain values, never frames, so that any task runner (threads here, a Dask
cluster on other hosts later) can run it unchanged in a fresh process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from billing.bill import BillInputs, Settlement, bill, settlement
from pipeline.adjust import check_unique_line_keys, split_reprocess
from pipeline.catalog import Catalog, CatalogFrames, catalog_frames, parse_catalog
from pipeline.contracts import (
    CHANGE_KEY,
    CHANGE_SCHEMA,
    COUNTER_KEY,
    COUNTER_SCHEMA,
    PARCEL_KEY,
    USAGE_SUM_SCHEMA,
    UsageSoFar,
    typed,
)
from pipeline.counters import carry_counters, carry_parcels, counter_shift
from pipeline.schedule import day_limit
from rules.lifecycle import new_locks
from rules.promotions import with_verdicts
from store import staging
from store.faults import die_once
from store.staging import SETTLE, Stage, input_folder


@dataclass(frozen=True)
class UnitSpec:
    """What one unit bills: plain values only (picklable, a few hundred bytes)."""

    root: str  # the staging root (path or URL)
    run_id: str
    shard: int
    period: str | None  # None: the settle round (accounts no period of the run bills)
    previous_period: str | None  # the run's period before `period`: its counters carry in
    policy: str  # the run's conflict policy
    lock_as_of: date | None  # activation dates active by then are locked (None: no lock)
    reprocess: bool = False  # split drafts from finals, adjust the finals
    continues: bool = False  # some drafts of the period continue: their state is staged

    @property
    def stage(self) -> Stage:
        """The run's staging folder."""
        return Stage(self.root, self.run_id)

    @property
    def folder(self) -> str:
        """The unit's output folder name below `units/`."""
        return self.period if self.period is not None else SETTLE


@dataclass(frozen=True)
class UnitDone:
    """What one unit wrote: its folder, row counts per output, the usage events it read and
    the lines it computed (before a reprocess split them); and its own wall and CPU seconds,
    measured where it ran (a worker or a thread: flows/timings.py). On threads the CPU is the
    whole process's while the unit ran, so units running side by side count each other's."""

    period: str | None
    shard: int
    folder: str
    rows: dict[str, int]
    usage_events: int
    lines_computed: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@lru_cache(maxsize=4)
def _catalog(text: str) -> tuple[Catalog, CatalogFrames]:
    # One parse per catalog text and process: a worker runs many units of one run.
    catalog = parse_catalog(text)
    return catalog, with_verdicts(catalog_frames(catalog))


def _read(spec: UnitSpec, name: str, period: str | None = None) -> pl.DataFrame:
    return staging.read_frame(spec.stage, input_folder(name, spec.shard, period))


def _inputs(spec: UnitSpec) -> BillInputs:
    catalog, frames = _catalog(staging.read_text(spec.stage, staging.CATALOG_FILE))
    return BillInputs(
        catalog=catalog,
        policy=spec.policy,
        # The orders of store.raw.read_accounts / read_assignments / read_changes (Parquet
        # keeps no order).
        accounts=_read(spec, "accounts").sort("account_id", "effective_from"),
        assignments=_read(spec, "assignments").sort("assignment_id"),
        locks=_read(spec, "locks"),
        changes=typed(_read(spec, "changes"), CHANGE_SCHEMA).sort(CHANGE_KEY),
        frames=frames,
    )


def run_unit(spec: UnitSpec) -> UnitDone:
    """Bill one unit from its staged inputs and stage its outputs (see module doc)."""
    wall, cpu = time.perf_counter(), time.process_time()
    inputs = _inputs(spec)
    if spec.period is None:
        outputs, events, computed = _settle(spec, inputs), 0, 0
    else:
        settled = Settlement.of_frames(staging.read_settlement(spec.stage, spec.shard))
        outputs, events, computed = _bill_period(spec, inputs, spec.period, settled)
    die_once("mid-unit")  # a test's worker kill (store/faults.py); inert otherwise
    rows = staging.write_outputs(spec.stage, spec.folder, spec.shard, outputs)
    return UnitDone(spec.period, spec.shard, spec.folder, rows, events, computed,
                    seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)


@task(name="bill-unit", cache_policy=NO_CACHE)
def bill_unit(spec: UnitSpec) -> UnitDone:
    """The Prefect task of one unit: `run_unit`, on whatever task runner the flow has."""
    return run_unit(spec)


def _settle(spec: UnitSpec, inputs: BillInputs) -> dict[str, pl.DataFrame]:
    """Settle the shard's assignments once for the run and stage the settlement, for every
    period's unit of the shard. Returns the life cycles (and locks) of the shard's accounts
    that no period of the run bills (their activity starts later), and the verdicts on their
    changes (SPEC §8.1 judges a change on the catalog and the assignment's life, not on a
    billed period): the run records them all the same, with no period (docs/RULES.md)."""
    settled = settlement(inputs)
    staging.write_settlement(spec.stage, spec.shard, settled.as_frames())
    ids = _read(spec, "unplanned")
    if ids.height == 0:
        return {}
    unbilled = settled.of_accounts(ids)
    no_period = pl.lit(None, pl.Utf8).alias("period")
    lifecycles = unbilled.lifecycles.with_columns(no_period)
    return {"lifecycles": lifecycles, "locks": _locks(spec, lifecycles),
            "plan_changes": unbilled.versions.changes.with_columns(no_period)}


def _locks(spec: UnitSpec, lifecycles: pl.DataFrame) -> pl.DataFrame:
    if spec.lock_as_of is None or lifecycles.height == 0:
        return pl.DataFrame()
    return new_locks(lifecycles, spec.lock_as_of).join(
        lifecycles.select("assignment_id", "period"), on="assignment_id", how="left"
    )


def _previous(spec: UnitSpec, name: str) -> pl.DataFrame:
    """What this shard's unit of the previous period left (never-reset counters, parcels)."""
    if spec.previous_period is None:
        return pl.DataFrame()
    return staging.read_output(spec.stage, spec.previous_period, spec.shard, name)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def _bill_period(
    spec: UnitSpec, inputs: BillInputs, period: str, settled: Settlement
) -> tuple[dict[str, pl.DataFrame], int, int]:
    plan = _read(spec, "plan", period).sort("account_id")
    usage = staging.usage_units(_read(spec, "usage", period)).sort(
        "started_at", "event_id")  # read_usage's order
    before = _read(spec, "counters_before", period)
    carried = _previous(spec, "counters")
    if carried.height:
        before = carry_counters(before, carried.drop("period"))
    parcels_before = carry_parcels(
        _read(spec, "parcels_before", period).sort(PARCEL_KEY), _previous(spec, "parcels")
    )
    with_usage = BillInputs(
        catalog=inputs.catalog, policy=inputs.policy, accounts=inputs.accounts,
        assignments=inputs.assignments, usage=usage, locks=inputs.locks,
        changes=inputs.changes, frames=inputs.frames,
    )
    continued, so_far = _so_far(spec, period)
    bills, drafts = [], []
    for (cutoff,), scope in plan.group_by(["cutoff"], maintain_order=True):
        ids = scope.select("account_id")
        # The groups a draft of this period counted continue from it (their usage is only the
        # later events); the others are billed whole.
        parts = [(ids.join(continued, on="account_id", how="anti"), None),
                 (ids.join(continued, on="account_id", how="semi"), so_far)]
        for part, state in parts:
            if part.height == 0:
                continue
            # The shard's settlement, of these accounts: `bill` states it for the period.
            billed = bill(
                replace(with_usage.of_accounts(part), settlement=settled.of_accounts(part)),
                period, cutoff,
                before.join(part, on="account_id", how="semi"),
                parcels_before=parcels_before.join(part, on="account_id", how="semi"),
                so_far=None if state is None else state.of_accounts(part),
            )
            bills.append(billed)
            if cutoff is not None:
                drafts.append(billed)
    charges = _concat([b.charges for b in bills])
    if charges.width:
        check_unique_line_keys(charges)
    invoices = _concat([b.invoices for b in bills])
    decisions = _concat([b.decisions for b in bills])
    counters = _concat([b.counters_after for b in bills])
    if counters.width:
        counters = counters.sort(COUNTER_KEY).with_columns(pl.lit(period).alias("period"))
    lifecycles = _concat([b.lifecycles for b in bills])
    if lifecycles.width:
        lifecycles = lifecycles.with_columns(pl.lit(period).alias("period"))
    plan_changes = _concat([b.plan_changes for b in bills])
    if plan_changes.width:
        plan_changes = plan_changes.with_columns(pl.lit(period).alias("period"))
    outputs = {
        "scope": plan.select("account_id", "period", "status"),
        "charges": charges,
        "invoices": invoices,
        "decisions": decisions,
        "counters": counters,
        "parcels": _concat([b.parcels for b in bills]),
        "parcel_scope": plan.select("account_id", pl.col("period_start").alias("window_start")),
        "lifecycles": lifecycles,
        "locks": _locks(spec, lifecycles),
        "plan_changes": plan_changes,
    }
    if spec.reprocess:
        outputs.update(_split(spec, period, plan, outputs, inputs.catalog.currencies))
    else:  # what the next night may continue these drafts from (store/usage_state.py)
        outputs["usage_marks"] = _marks(plan)
        sums = _concat([b.usage_sums for b in drafts])
        if sums.width:
            outputs["usage_sums"] = sums.with_columns(pl.lit(period).alias("period"))
    return outputs, usage.height, charges.height


def _so_far(spec: UnitSpec, period: str) -> tuple[pl.DataFrame, UsageSoFar]:
    """The accounts of this shard that continue a draft of `period`, and what it counted
    (none, and nothing staged, when no draft of the period continues)."""
    if not spec.continues:
        return pl.DataFrame(schema={"account_id": pl.Utf8()}), UsageSoFar(
            sums=pl.DataFrame(schema=USAGE_SUM_SCHEMA),
            counters=pl.DataFrame(schema=COUNTER_SCHEMA),
        )
    return _read(spec, "continued", period).select("account_id"), UsageSoFar(
        sums=typed(_read(spec, "sums_so_far", period), USAGE_SUM_SCHEMA),
        counters=typed(_read(spec, "windows_so_far", period), COUNTER_SCHEMA),
    )


def _marks(plan: pl.DataFrame) -> pl.DataFrame:
    """The draft groups of the plan, with the first day their usage did not count."""
    drafts = plan.filter(pl.col("cutoff").is_not_null())
    return drafts.select("account_id", "period", "period_start",
                         day_limit(pl.col("period_end"), pl.col("cutoff")).alias("day_limit"))


def _split(
    spec: UnitSpec, period: str, plan: pl.DataFrame, outputs: dict[str, pl.DataFrame],
    minor_units: dict[str, int],
) -> dict[str, pl.DataFrame]:
    """A reprocess keeps the drafts' results and turns the finals' into adjustments against
    what was billed (this shard's final lines plus earlier adjustments)."""
    split = split_reprocess(
        plan, *(staging_typed(outputs[n], n) for n in ("charges", "invoices", "decisions")),
        _read(spec, "billed"), minor_units,
    )
    counters = staging_typed(outputs["counters"], "counters")
    return {
        "scope": split.scope,
        "charges": split.charges,
        "invoices": split.invoices,
        "decisions": split.decisions,
        "adjustments": split.adjustments,
        "counter_shift": counter_shift(_read(spec, "counter_values", period), counters, period),
    }


def staging_typed(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """`frame` with the columns of the unit output `name` (typed, even when empty)."""
    schema = staging.UNIT_OUTPUTS[name]
    if frame.width == 0:
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])
