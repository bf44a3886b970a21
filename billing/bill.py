"""THE one pure billing function (SPEC §3-§4): the rules, then the charges, of one period.

`bill(inputs, period, cutoff, counters_before)` is
`(catalog, accounts, assignments, usage, counters before, period) -> (decisions, charges,
counters after)` for a set of accounts: it settles the assignments with `rules.decide`, then
prices the settled life cycles and the usage with `compute_charges`. The flows call it once per
(period, cutoff, shard of accounts), with the shard's settlement computed once for the run
(`settlement`, `BillInputs.settlement`), `billrun explain` once for its one account, the benchmarks
at scale. Plain frames and dataclasses in and out: no I/O, no clock, so it runs unchanged on
threads or on a Dask worker. This is the only module of `pipeline/` that imports `rules/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import polars as pl

from pipeline.catalog import Catalog, CatalogFrames, catalog_frames
from pipeline.charges import compute_charges
from pipeline.contracts import CHANGE_SCHEMA, LOCK_SCHEMA, PLAN_CHANGE_SCHEMA, UsageSoFar
from rules import decide
from rules.decide import Settlement, state_periods
from rules.decide import settle as settle_assignments
from rules.promotions import with_verdicts


@dataclass(frozen=True)
class BillInputs:
    """What one bill reads: the catalog, the run's conflict policy, and the frames of a set of
    accounts (accounts, assignments, the period's usage, the activation-date locks)."""

    catalog: Catalog
    policy: str
    accounts: pl.DataFrame
    assignments: pl.DataFrame
    usage: pl.DataFrame = field(default_factory=pl.DataFrame)
    locks: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LOCK_SCHEMA))
    # SPEC §8.1: the changes of these assignments' fee plans and quantities (CHANGE_SCHEMA).
    changes: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CHANGE_SCHEMA))
    frames: CatalogFrames | None = None  # the catalog as frames; built from `catalog` if None
    # The assignments settled once (`with_settlement`), for billing several periods of these
    # same inputs; settled by each `bill` if None. Not carried to a subset (`of_accounts`).
    settlement: Settlement | None = None

    def catalog_frames(self) -> CatalogFrames:
        """The catalog as frames (those given, else built)."""
        return self.frames if self.frames is not None else with_verdicts(
            catalog_frames(self.catalog)
        )

    def with_settlement(self) -> BillInputs:
        """The same inputs with their assignments settled once: each `bill` of a period then
        only states the period (settling is most of the rules' work, and period-free)."""
        return replace(self, settlement=settlement(self))

    def of_accounts(self, ids: pl.DataFrame) -> BillInputs:
        """The same inputs restricted to the accounts of `ids` (`account_id`)."""
        assignments = self.assignments.join(ids, on="account_id", how="semi")
        locks, usage, changes = self.locks, self.usage, self.changes
        if changes.height:
            changes = changes.join(assignments.select("assignment_id"), on="assignment_id",
                                   how="semi")
        if locks.height:
            locks = locks.join(assignments.select("assignment_id"), on="assignment_id", how="semi")
        if usage.width:  # usage is read period by period: until then it has no columns
            usage = usage.join(ids, on="account_id", how="semi")
        return replace(
            self,
            accounts=self.accounts.join(ids, on="account_id", how="semi"),
            assignments=assignments,
            usage=usage,
            locks=locks,
            changes=changes,
            settlement=None,
        )


@dataclass(frozen=True)
class Bill:
    """What one bill settles and computes (docs/CONTRACTS.md)."""

    decisions: pl.DataFrame  # DECISIONS_SCHEMA, of `period`: the rows a run stores
    lifecycles: pl.DataFrame  # LIFECYCLE_SCHEMA, one per assignment
    charges: pl.DataFrame  # LINE_SCHEMA
    invoices: pl.DataFrame  # INVOICE_SCHEMA
    counters_after: pl.DataFrame  # COUNTER_SCHEMA
    usage_detail: pl.DataFrame  # per-event tier parts (empty unless `detail`)
    parcels: pl.DataFrame  # rollover parcels left at the period's end (SPEC §7.3)
    parcel_use: pl.DataFrame  # parcels available, used and left, for explain
    usage_sums: pl.DataFrame  # each usage line's exact sums (USAGE_SUM_SCHEMA)
    # SPEC §8.1: each change's verdict (PLAN_CHANGE_SCHEMA), for assignment_history
    plan_changes: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=PLAN_CHANGE_SCHEMA)
    )


def bill(
    inputs: BillInputs,
    period: str,
    cutoff: date | None,
    counters_before: pl.DataFrame,
    *,
    parcels_before: pl.DataFrame | None = None,
    so_far: UsageSoFar | None = None,
    detail: bool = False,
    _full: bool = False,
) -> Bill:
    """Decisions, lines, invoices and counters of `period` for the accounts of `inputs`.

    `cutoff`: a draft as of that day (None: the whole period). `counters_before`: never-reset
    counters as they stood before the period. `parcels_before`: the rollover parcels the
    previous period left (SPEC §7.3), the quota counterpart of `counters_before`. `so_far`:
    what a draft of this same period counted (docs/RUNS.md, "Incremental nightly"); the usage
    of `inputs` then holds only the events after it, and the result is the one a whole
    recompute gives. `detail` adds the per-event parts `explain` shows (of the events given).
    `_full` forces the usage path that builds the rating state even without events (the
    tests compare it with the usage-free one, docs/CHARGES.md).
    """
    settled = inputs.settlement or settlement(inputs)
    lifecycles = settled.lifecycles
    versions = settled.versions
    charged = compute_charges(
        inputs.catalog_frames(), inputs.accounts, lifecycles, inputs.usage,
        counters_before, period, cutoff, detail=detail, parcels_before=parcels_before,
        so_far=so_far, segments=versions.segments, quantity_steps=versions.quantity_steps,
        _full=_full,
    )
    return Bill(
        # Only the decision rows a run stores: not those an earlier period holds word for word
        # (rules.decide.still_told, docs/RULES.md "Stored rows").
        decisions=state_periods(inputs.catalog, settled, [period], stored_only=True),
        lifecycles=lifecycles,
        charges=charged.charges,
        invoices=charged.invoices,
        counters_after=charged.counters_after,
        usage_detail=charged.usage_detail,
        parcels=charged.parcels,
        parcel_use=charged.parcel_use,
        usage_sums=charged.usage_sums,
        plan_changes=versions.changes,
    )


def settlement(inputs: BillInputs) -> Settlement:
    """The assignments of `inputs` settled (SPEC §3, §8.1-§8.2): eligibility, ends, conflicts,
    changes of plan and quantity, commitments. Nothing of it depends on the period, the usage
    or the counters: a run settles each shard once (flows/units.py) and restricts it to a
    group of accounts with `Settlement.of_accounts`, which gives what settling only them gives
    (every rule judges one account's assignments together)."""
    return settle_assignments(
        inputs.catalog, inputs.accounts, inputs.assignments,
        inputs.policy,  # type: ignore[arg-type]
        inputs.locks, inputs.changes,
    )


def settle(inputs: BillInputs) -> pl.DataFrame:
    """The settled life cycles of the accounts of `inputs` when no period of theirs is billed
    (their activity starts later): the run still records them, as `bill` would."""
    return decide(
        inputs.catalog, inputs.accounts, inputs.assignments, [],
        inputs.policy,  # type: ignore[arg-type]
        inputs.locks, changes=inputs.changes,
    ).lifecycles
