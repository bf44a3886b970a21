"""Preview (SPEC §8.4): what hypothetical changes would cost, before they are made.

`preview` bills one account's stored inputs as they stand, and again with the changes applied,
through the same pure `bill` and the same rules, and returns both invoices of each period, line
by line with the difference, and the rules' verdicts on what changed. Pure: frames in, frames
out; nothing is written, no clock is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import polars as pl

from billing.bill import Bill, BillInputs, bill
from pipeline.contracts import CHANGE_SCHEMA, DECISIONS_SCHEMA, LINE_KEY, PLAN_CHANGE_SCHEMA

# The assignment id a hypothetical add-on gets: `preview-1`, `preview-2`, ... in item order.
NEW_ID = "preview-{}"


@dataclass(frozen=True)
class AddAddon:
    """Add an add-on with a fee plan (None: an add-on without subscription), from `start`."""

    addon_id: str
    fee_plan_id: str | None
    start: date
    quantity: int = 1
    end: date | None = None


@dataclass(frozen=True)
class EndAssignment:
    """End an assignment on `on` (its first day without the add-on)."""

    assignment_id: str
    on: date


@dataclass(frozen=True)
class ChangeAssignment:
    """Change an assignment's fee plan and/or quantity from `effective_from` (SPEC §8.1); what
    is not given stays as the version in effect before it."""

    assignment_id: str
    effective_from: date
    fee_plan_id: str | None = None
    quantity: int | None = None


Item = AddAddon | EndAssignment | ChangeAssignment


class PreviewError(ValueError):
    """A hypothetical item that cannot apply to the account's inputs (the message names it)."""


@dataclass(frozen=True)
class PeriodPreview:
    """One period, as it stands and with the changes."""

    period: str
    lines: pl.DataFrame  # LINE_KEY, description, amount_before, amount_after, difference
    total_before: int
    total_after: int


@dataclass(frozen=True)
class Preview:
    """What `preview` found: each period, and the rules' verdicts that the changes made."""

    items: tuple[Item, ...]
    new_ids: dict[int, str]  # item index -> the assignment id of an added add-on
    periods: list[PeriodPreview]
    decisions: pl.DataFrame  # decision rows the changes made (DECISIONS_SCHEMA), in the periods
    plan_changes: pl.DataFrame  # the verdicts of the changes (PLAN_CHANGE_SCHEMA)


def _version_on(inputs: BillInputs, assignment_id: str, day: date) -> tuple[str | None, int]:
    """The (fee plan, quantity) an assignment's rows give it on `day`: its latest change
    effective on or before it, else its base version (what a change that omits one keeps)."""
    base = inputs.assignments.filter(pl.col("assignment_id") == assignment_id).row(0, named=True)
    earlier = inputs.changes.filter(
        (pl.col("assignment_id") == assignment_id) & (pl.col("effective_from") <= day)
    ).sort("effective_from")
    if earlier.height:
        last = earlier.row(-1, named=True)
        return last["fee_plan_id"], last["quantity"]
    return base["fee_plan_id"], base["quantity"] or 1


def apply_items(inputs: BillInputs, items: Sequence[Item]) -> tuple[BillInputs, dict[int, str]]:
    """`inputs` with the items applied, and the assignment ids given to added add-ons.

    An added add-on is assigned after every stored one (one second after the latest
    `assigned_at`), so under the conflict policy it is the later one, as it would be if made now.
    """
    assignments, changes = inputs.assignments, inputs.changes
    known = set(assignments.get_column("assignment_id").to_list())
    latest = assignments.get_column("assigned_at").max()
    new_ids: dict[int, str] = {}
    added = 0
    for n, item in enumerate(items):
        if isinstance(item, AddAddon):
            added += 1
            new_id = NEW_ID.format(added)
            new_ids[n] = new_id
            at = (latest + timedelta(seconds=added)) if isinstance(latest, datetime) else (
                datetime.combine(item.start, datetime.min.time()))
            row = pl.DataFrame([{
                "assignment_id": new_id, "account_id": inputs.accounts["account_id"][0],
                "addon_id": item.addon_id, "fee_plan_id": item.fee_plan_id,
                "start_date": item.start, "end_date": item.end, "assigned_at": at,
                "quantity": item.quantity,
            }], schema=assignments.schema)
            assignments = pl.concat([assignments, row])
            known.add(new_id)
            continue
        if item.assignment_id not in known:
            raise PreviewError(f"unknown assignment {item.assignment_id!r} on this account")
        if isinstance(item, EndAssignment):
            assignments = assignments.with_columns(
                pl.when(pl.col("assignment_id") == item.assignment_id)
                .then(pl.lit(item.on)).otherwise(pl.col("end_date")).alias("end_date")
            )
        else:
            current = _version_on(replace(inputs, assignments=assignments, changes=changes),
                                  item.assignment_id, item.effective_from)
            row = pl.DataFrame([{
                "assignment_id": item.assignment_id, "effective_from": item.effective_from,
                "fee_plan_id": item.fee_plan_id or current[0],
                "quantity": item.quantity or current[1],
            }], schema=CHANGE_SCHEMA)
            changes = pl.concat([
                changes.filter(~((pl.col("assignment_id") == item.assignment_id)
                                 & (pl.col("effective_from") == item.effective_from))),
                row,
            ])
    return replace(inputs, assignments=assignments, changes=changes, settlement=None), new_ids


def _lines(before: Bill, after: Bill) -> pl.DataFrame:
    """Both invoices' lines side by side on the line key, with the difference."""
    key = [k for k in LINE_KEY if k != "period"]

    def side(b: Bill, name: str) -> pl.DataFrame:
        return b.charges.select(*key, pl.col("description").alias(f"description_{name}"),
                                pl.col("amount_minor").alias(f"amount_{name}"))

    both = side(before, "before").join(side(after, "after"), on=key, how="full",
                                       coalesce=True, nulls_equal=True)
    return both.select(
        *key,
        pl.coalesce("description_after", "description_before").alias("description"),
        "amount_before", "amount_after",
        (pl.col("amount_after").fill_null(0) - pl.col("amount_before").fill_null(0))
        .alias("difference"),
    ).sort(key, nulls_last=True)


def preview(
    inputs: BillInputs,
    items: Sequence[Item],
    periods: Sequence[str],
    *,
    cutoffs: Mapping[str, date | None] | None = None,
    counters_before: Mapping[str, pl.DataFrame],
    parcels_before: Mapping[str, pl.DataFrame | None] | None = None,
) -> Preview:
    """Bill `inputs` (one account) for each of `periods` as they stand and with `items`.

    `cutoffs`: a period billed only up to a day (as its stored draft is); absent, the whole
    period. `counters_before` and `parcels_before`: what a run would carry into each period.
    """
    changed, new_ids = apply_items(inputs, items)
    now, then = inputs.with_settlement(), changed.with_settlement()
    shown, decided_before, decided_after = [], [], []
    for period in periods:
        cutoff = (cutoffs or {}).get(period)
        args = dict(parcels_before=(parcels_before or {}).get(period))
        before = bill(now, period, cutoff, counters_before[period], **args)
        after = bill(then, period, cutoff, counters_before[period], **args)
        shown.append(PeriodPreview(
            period=period, lines=_lines(before, after),
            total_before=int(before.charges["amount_minor"].sum()),
            total_after=int(after.charges["amount_minor"].sum()),
        ))
        decided_before.append(before.decisions)
        decided_after.append(after.decisions)
    verdict_key = ["assignment_id", "rule", "outcome", "reason"]
    decisions = pl.concat(decided_after or [pl.DataFrame(schema=DECISIONS_SCHEMA)]).join(
        pl.concat(decided_before or [pl.DataFrame(schema=DECISIONS_SCHEMA)]).select(verdict_key),
        on=verdict_key, how="anti", nulls_equal=True,
    ).unique(subset=verdict_key, keep="first", maintain_order=True)
    plan_changes = then.settlement.versions.changes if then.settlement else pl.DataFrame(
        schema=PLAN_CHANGE_SCHEMA)
    stood = now.settlement.versions.changes if now.settlement else plan_changes.clear()
    plan_changes = plan_changes.join(stood, on=list(PLAN_CHANGE_SCHEMA), how="anti",
                                     nulls_equal=True)
    return Preview(items=tuple(items), new_ids=new_ids, periods=shown, decisions=decisions,
                   plan_changes=plan_changes)
