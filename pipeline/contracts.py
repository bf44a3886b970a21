"""The contracts between layers: frame schemas, keys, sentinel dates and the line types.

Every frame that crosses a layer boundary (files -> validate -> store -> rules -> charges ->
store) is declared here once, and every module that builds or reads one imports it from here
(docs/CONTRACTS.md describes each). Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

# --- Sentinel dates ---------------------------------------------------------------------------
# An open end (`eff_end`, `end_date` null) compared with a real date: later than any of them.
# Never stored. The first of a month, so period arithmetic on it stays a valid date.
OPEN_END = date(9999, 12, 1)
# Day 0 of the day numbers the rules' facts carry, and the window start of a never-reset
# counter (a never-reset window opens once, before any period).
EPOCH = date(1970, 1, 1)
NEVER_START = EPOCH

# --- Raw inputs (SPEC §2) ---------------------------------------------------------------------
# The columns of each input file, in file order (docs/INPUTS.md).
INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": (
        "account_id", "currency", "main_product_id", "billing_day", "status", "opened_on",
        "closed_on", "effective_from",
    ),
    "assignments": (
        "assignment_id", "account_id", "addon_id", "fee_plan_id", "start_date", "end_date",
        "assigned_at", "quantity", "effective_from",
    ),
    "usage": (
        "event_id", "account_id", "service", "destination_group", "started_at", "quantity",
        "amount",
    ),
}
# A row refused by validation or by the store: where it was, why, and its original text.
REJECTED_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),
}

# --- Frames the charges read ------------------------------------------------------------------
ACCOUNT_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "currency": pl.Utf8(),
    "main_product_id": pl.Utf8(),
    "billing_day": pl.Int64(),
    "effective_from": pl.Date(),
    # the account's closing (`close_date`): from it no entry wins its usage discounts
    "status": pl.Utf8(),
    "closed_on": pl.Date(),
}
USAGE_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "started_at": pl.Datetime("us"),
    "quantity_units": pl.Int64(),
    "amount_units": pl.Int64(),
}

# --- What the rules settle (rules.decide) -----------------------------------------------------
DECISIONS_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "period": pl.Utf8(),
    "rule": pl.Utf8(),
    "outcome": pl.Utf8(),
    "reason": pl.Utf8(),
    "effective_start": pl.Date(),
    "effective_end": pl.Date(),
}
# One settled life cycle per assignment: what the rules hand to the charges.
LIFECYCLE_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "fee_plan_id": pl.Utf8(),
    "quantity": pl.Int64(),
    "assigned_at": pl.Datetime("us"),
    "start_date": pl.Date(),
    "end_date": pl.Date(),
    "eff_start": pl.Date(),
    "eff_end": pl.Date(),
    "billable": pl.Boolean(),
    "end_reason": pl.Utf8(),
}
# The part of a life cycle the charges read (the requested dates and end reason are the rules').
CHARGED_LIFECYCLE_SCHEMA: dict[str, pl.DataType] = {
    name: dtype
    for name, dtype in LIFECYCLE_SCHEMA.items()
    if name not in ("start_date", "end_date", "end_reason")
}
# --- Changes over an assignment's life (SPEC §8.1) ---------------------------------------------
# A change of an assignment's fee plan or quantity from `effective_from`: the latest delivered
# version of each (assignment_id, effective_from). The base versions stay in the assignments
# frame (LIFECYCLE inputs); the changes come beside them.
CHANGE_KEY = ["assignment_id", "effective_from"]
CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "effective_from": pl.Date(),
    "fee_plan_id": pl.Utf8(),
    "quantity": pl.Int64(),
}
# The status of one version of an assignment (SPEC §8.5 `assignment_history`).
VERSION_STATUSES = ("base", "in effect", "superseded", "refused", "not in effect")
# What the rules settled of each change: when it takes effect (null unless in effect), its
# status and why. One row per change; `bill` returns them and the run stores them.
PLAN_CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "effective_from": pl.Date(),
    "takes_effect_on": pl.Date(),
    "fee_plan_id": pl.Utf8(),
    "quantity": pl.Int64(),
    "status": pl.Utf8(),
    "reason": pl.Utf8(),
}
# What the charges price (SPEC §8.1): each assignment's life cut into plan segments (a run of
# days on one fee plan; a change of fee plan ends one and starts the next) and, within each,
# quantity steps. Without changes an assignment is one segment at one quantity. `quantity`: the
# segment's quantity when it is the same on every day (null: its QUANTITY_STEP rows say, and only
# such segments have any, so the common case costs no join); `promotions`: the segment's plan had
# no earlier day on this assignment, so its promotions apply (§8.1); `owes_termination_fee`: the
# rules' early-termination verdict on the segment's end (§8.2).
SEGMENT_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "account_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "seg_no": pl.Int64(),
    "fee_plan_id": pl.Utf8(),
    "eff_start": pl.Date(),
    "eff_end": pl.Date(),
    "quantity": pl.Int64(),
    "promotions": pl.Boolean(),
    "owes_termination_fee": pl.Boolean(),
}
QUANTITY_STEP_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "seg_no": pl.Int64(),
    "q_from": pl.Date(),
    "q_until": pl.Date(),  # null: open (the segment's end)
    "quantity": pl.Int64(),
}
# An activation-date lock (SPEC §3): the start that was active in a billed period.
LOCK_SCHEMA: dict[str, pl.DataType] = {
    "assignment_id": pl.Utf8(),
    "locked_start": pl.Date(),
}

# --- Discount counters ------------------------------------------------------------------------
# What identifies one counter window; never the add-on (SPEC §4).
COUNTER_KEY = [
    "account_id", "service", "destination_group", "threshold_type", "reset", "window_start"
]
COUNTER_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "threshold_type": pl.Utf8(),
    "window_start": pl.Date(),
    "value_units": pl.Int64(),
    "reset": pl.Utf8(),
}
# Stored counters come in without `reset`: only never-reset windows open before a period.
COUNTER_INPUT_SCHEMA: dict[str, pl.DataType] = {
    name: dtype for name, dtype in COUNTER_SCHEMA.items() if name != "reset"
}

# --- A draft period's usage so far (docs/RUNS.md, "Incremental nightly") --------------------
# One usage line's identity before it is priced: the event key, the winner (add-on assignment,
# main product, or none) and the owner named in the description; and its exact sums: quantity
# and amount in 10^-6, the discount in 10^-12, the discounted quantity in 10^-6. Int128: a
# period's sums must not wrap; they are rounded once, into a line, only after the last event.
USAGE_SUM_KEY = [
    "account_id", "service", "destination_group", "assignment_id", "addon_id", "owner"
]
USAGE_SUM_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "assignment_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "owner": pl.Utf8(),
    "quantity_units": pl.Int128(),
    "amount_units": pl.Int128(),
    "discount_pico": pl.Int128(),
    "discounted_units": pl.Int128(),
}


@dataclass(frozen=True)
class UsageSoFar:
    """What the last computation of a draft period counted, for accounts whose new events all
    come after its last one in counter order: its exact line sums (USAGE_SUM_SCHEMA) and every
    counter window it left (COUNTER_SCHEMA, with `reset`). Billed with it, a period's `usage`
    holds only the events after that computation's last one."""

    sums: pl.DataFrame
    counters: pl.DataFrame

    def of_accounts(self, ids: pl.DataFrame) -> UsageSoFar:
        """The same, restricted to the accounts of `ids` (`account_id`)."""
        return UsageSoFar(
            sums=self.sums.join(ids, on="account_id", how="semi"),
            counters=self.counters.join(ids, on="account_id", how="semi"),
        )


# --- Rollover parcels (SPEC §7.3) ----------------------------------------------------------
# One stored parcel (SPEC §7.4 `quota_rollovers`, `remaining` in 10^-6 units), and its key.
PARCEL_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "threshold_type": pl.Utf8(),
    "window_start": pl.Date(),
    "granted_window_start": pl.Date(),
    "expires_after_window_start": pl.Date(),
    "remaining_units": pl.Int64(),
}
PARCEL_KEY = [
    "account_id", "service", "destination_group", "threshold_type", "window_start",
    "granted_window_start",
]

# --- Invoice lines and invoices (SPEC §4 "Lines", "Invoice") ----------------------------------
LINE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "period": pl.Utf8(),
    "line_type": pl.Utf8(),
    "assignment_id": pl.Utf8(),
    "addon_id": pl.Utf8(),
    "service": pl.Utf8(),
    "destination_group": pl.Utf8(),
    "quantity_units": pl.Int64(),
    "amount_minor": pl.Int64(),
    "currency": pl.Utf8(),
    "description": pl.Utf8(),
    "term_start": pl.Date(),
    "line_date": pl.Date(),
}
# A line's key: unique within one computation, so sorting by it is a total order. A fee line is
# one per assignment and term; a usage or discount line is one per service, destination group
# and discounting assignment.
LINE_KEY = [
    "account_id",
    "period",
    "line_type",
    "assignment_id",
    "addon_id",
    "service",
    "destination_group",
    "term_start",
]
INVOICE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.Utf8(),
    "period": pl.Utf8(),
    "currency": pl.Utf8(),
    "total_minor": pl.Int64(),
}

# --- The keys of the results tables (docs/TABLES.md) ------------------------------------------
# What identifies one row of each results table whose key is not declared to DuckDB: the commit
# keeps them unique (it deletes a key's stored row before inserting it) and checks them over the
# keys it wrote (store/key_checks.py). No key index: DuckDB would maintain it on every insert
# and write it again at every checkpoint, the bulk of a night's `COMMIT` (issue 24).
RESULT_KEYS: dict[str, list[str]] = {
    "invoices": ["account_id", "period"],
    "counter_periods": [*COUNTER_KEY, "period"],
    "discount_counters": COUNTER_KEY,
    "quota_rollovers": PARCEL_KEY,
    "assignment_lifecycles": ["assignment_id"],
    "plan_change_verdicts": CHANGE_KEY,
    "finalized_periods": ["account_id", "period"],
    "activation_locks": ["assignment_id"],
}


# --- The line-type registry -------------------------------------------------------------------
@dataclass(frozen=True)
class LineType:
    """What the rest of the house needs to know about one kind of invoice line."""

    name: str
    drop_when_zero: bool  # a zero line of this type says nothing and is not billed
    revenue_bucket: str  # the `revenue_by_addon` column it adds to: fees, usage or discounts
    adjustment_cause: str  # the business cause an analyst reads first on its adjustments


# Adding a line type is one row here (docs/ARCHITECTURE.md, "Add a line type").
LINE_TYPES: dict[str, LineType] = {
    t.name: t
    for t in (
        LineType("recurring", False, "fees", "corrected assignment"),
        LineType("activation", True, "fees", "corrected assignment"),
        LineType("credit", True, "fees", "backdated removal or changed end date"),
        LineType("usage", False, "usage", "late or corrected usage"),
        LineType("discount", True, "discounts", "late or corrected usage"),
        # SPEC §7.2: a credit for the days an account was suspended; its own revenue bucket so
        # that `revenue_by_addon` shows it apart from removal credits.
        LineType("suspension_credit", True, "suspension_credits", "changed account status"),
        # SPEC §8.2: the fee for ending a commitment early.
        LineType("termination_fee", True, "fees", "ended before its commitment"),
    )
}
REVENUE_BUCKETS = ("fees", "usage", "discounts", "suspension_credits")


def line_types_where(**wanted: object) -> list[str]:
    """Names of the registered line types whose attributes equal `wanted`, in registry order."""
    return [
        t.name for t in LINE_TYPES.values()
        if all(getattr(t, key) == value for key, value in wanted.items())
    ]


# --- What a run changed (RunSummary.changes) --------------------------------------------------
# Each counter a billing run reports, in the business's words: the CLI summary and the run
# report's "The run" section print these (the keys stay in `--json`).
RUN_CHANGE_LABELS = {
    "charge_groups_rewritten": "invoices whose lines changed",
    "invoices_rewritten": "invoices whose total or status changed",
    "decision_groups_rewritten": "invoices whose decisions changed",
    "counters_written": "discount counters updated",
    "parcels_rewritten": "rollover allowances updated",
    "lifecycles_rewritten": "add-on life cycles updated",
    "plan_changes_rewritten": "plan and quantity changes decided",
    "drafts_marked": "drafts the next night can continue",
    "drafts_continued": "drafts continued from the last night",
}


# --- Accounts ---------------------------------------------------------------------------------
def first_billing_day() -> pl.Expr:
    """Aggregation: the billing day of the account's earliest row (billing-day changes are
    rejected at load, so it is the account's billing day)."""
    return pl.col("billing_day").sort_by("effective_from").first()


def close_date() -> pl.Expr:
    """Aggregation: the day an account closes (SPEC §3), null while it stays open: its earliest
    `closed_on`; a row with status closed and no `closed_on` closes it from that row's
    `effective_from`. From that day the account has no add-on and no main product."""
    return (
        pl.when(pl.col("closed_on").is_not_null()).then(pl.col("closed_on"))
        .when(pl.col("status") == "closed").then(pl.col("effective_from"))
        .min()
    )


def first_billing_days(accounts: pl.DataFrame) -> pl.DataFrame:
    """One row per account: `account_id, billing_day` (of its earliest row), by account_id."""
    return accounts.group_by("account_id").agg(first_billing_day()).sort("account_id")


def typed(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The schema's columns of `frame`, cast; an empty frame without columns becomes typed."""
    if frame.width == 0:
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
