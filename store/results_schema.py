"""DDL of the results tables (SPEC §6): grain and keys are documented on each table."""

from __future__ import annotations

# Amounts are DECIMAL(38,4) so that any ISO currency (0..4 minor units) is held exactly; each
# amount is already rounded to its currency's minor unit. Quantities and counters are
# DECIMAL(38,6). 38 digits hold any Int64 the charges compute, so the only limit is theirs
# (pipeline/bounds.py); DECIMAL(18,·) failed on a counter of 3 × 10^12 (issue 12).
RESULTS_DDL: list[str] = [
    # Grain: one row per assignment, period and deciding rule.
    """CREATE TABLE IF NOT EXISTS decisions (
        assignment_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL, period VARCHAR NOT NULL,
        rule VARCHAR NOT NULL, outcome VARCHAR NOT NULL, reason VARCHAR,
        effective_start DATE, effective_end DATE, run_id VARCHAR NOT NULL)""",
    # Grain: one row per invoice line (account, period, line key); see docs/TABLES.md.
    """CREATE TABLE IF NOT EXISTS charges (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, line_type VARCHAR NOT NULL,
        assignment_id VARCHAR, addon_id VARCHAR, service VARCHAR, destination_group VARCHAR,
        quantity DECIMAL(38,6), amount DECIMAL(38,4) NOT NULL, currency VARCHAR NOT NULL,
        description VARCHAR, run_id VARCHAR NOT NULL, term_start DATE, line_date DATE)""",
    # Grain: one row per account and period.
    """CREATE TABLE IF NOT EXISTS invoices (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, currency VARCHAR NOT NULL,
        total DECIMAL(38,4) NOT NULL, status VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
        invoice_number VARCHAR, issued_on DATE, due_on DATE)""",
    # Grain: one row per adjustment line made to a finalized period.
    """CREATE TABLE IF NOT EXISTS adjustments (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, line_type VARCHAR NOT NULL,
        assignment_id VARCHAR, addon_id VARCHAR, service VARCHAR, destination_group VARCHAR,
        quantity DECIMAL(38,6), amount DECIMAL(38,4) NOT NULL, currency VARCHAR NOT NULL,
        description VARCHAR, run_id VARCHAR NOT NULL, term_start DATE, line_date DATE,
        reason VARCHAR NOT NULL, document_number VARCHAR)""",
    # Grain: one row per document number issued (SPEC §9): a final invoice, or a credit or debit
    # note for the adjustment lines one run wrote to one final (account, period). `sequence` is
    # the number without its prefix; each kind has its own gapless sequence from 1.
    """CREATE TABLE IF NOT EXISTS documents (
        document_number VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, account_id VARCHAR NOT NULL,
        period VARCHAR NOT NULL, currency VARCHAR NOT NULL, total DECIMAL(38,4) NOT NULL,
        issued_on DATE NOT NULL, due_on DATE NOT NULL, corrects VARCHAR, run_id VARCHAR NOT NULL,
        sequence BIGINT NOT NULL, UNIQUE (kind, sequence))""",
    # Grain: one row per counter window; `value` at the window's end, or at the as-of date.
    # `reset` is part of the key: a daily window and a billing-period window may both open on
    # the period's first day for the same (service, destination group, threshold type).
    """CREATE TABLE IF NOT EXISTS discount_counters (
        account_id VARCHAR NOT NULL, service VARCHAR NOT NULL, destination_group VARCHAR NOT NULL,
        threshold_type VARCHAR NOT NULL, window_start DATE NOT NULL, value DECIMAL(38,6) NOT NULL,
        reset VARCHAR NOT NULL, period VARCHAR, run_id VARCHAR)""",
    # Grain: one row per counter window and period that touched it: the value at the end of that
    # period (or at the as-of date). `never` windows read their starting value from here.
    """CREATE TABLE IF NOT EXISTS counter_periods (
        account_id VARCHAR NOT NULL, service VARCHAR NOT NULL, destination_group VARCHAR NOT NULL,
        threshold_type VARCHAR NOT NULL, reset VARCHAR NOT NULL, window_start DATE NOT NULL,
        period VARCHAR NOT NULL, value DECIMAL(38,6) NOT NULL, run_id VARCHAR)""",
    # Grain: one row per rollover parcel left at the end of the billing period starting
    # `window_start` that a later period may still use (SPEC §7.3, §7.4; docs/TABLES.md).
    """CREATE TABLE IF NOT EXISTS quota_rollovers (
        account_id VARCHAR NOT NULL, service VARCHAR NOT NULL, destination_group VARCHAR NOT NULL,
        threshold_type VARCHAR NOT NULL, window_start DATE NOT NULL,
        granted_window_start DATE NOT NULL, expires_after_window_start DATE NOT NULL,
        remaining DECIMAL(18,6) NOT NULL, run_id VARCHAR)""",
    # Grain: one row per assignment: its settled life cycle, as the latest run decided it.
    """CREATE TABLE IF NOT EXISTS assignment_lifecycles (
        assignment_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL, addon_id VARCHAR,
        fee_plan_id VARCHAR, start_date DATE, end_date DATE, eff_start DATE, eff_end DATE,
        billable BOOLEAN NOT NULL, end_reason VARCHAR, run_id VARCHAR)""",
    # Grain: one row per change of an assignment (`assignment_id, effective_from`, SPEC §8.1):
    # what the rules settled of it (when it takes effect, its status and why), as the latest run
    # that billed its account decided it. Written like `assignment_lifecycles`.
    """CREATE TABLE IF NOT EXISTS plan_change_verdicts (
        assignment_id VARCHAR NOT NULL, account_id VARCHAR NOT NULL, effective_from DATE NOT NULL,
        takes_effect_on DATE, fee_plan_id VARCHAR, quantity INTEGER, status VARCHAR NOT NULL,
        reason VARCHAR, run_id VARCHAR NOT NULL)""",
    # Grain: one row per finalized (account, period), including those that had no line at all.
    """CREATE TABLE IF NOT EXISTS finalized_periods (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL)""",
    # Grain: one row per assignment whose activation date was active in a billed period.
    """CREATE TABLE IF NOT EXISTS activation_locks (
        assignment_id VARCHAR NOT NULL, locked_start DATE NOT NULL, run_id VARCHAR NOT NULL)""",
]

# Columns added to results tables after databases with them existed: `store.schema.connect` adds
# each one that is missing (at the end of the table, where the DDL above declares it too).
ADDED_COLUMNS: list[tuple[str, str, str]] = [
    ("invoices", "invoice_number", "VARCHAR"),  # SPEC §9
    ("invoices", "issued_on", "DATE"),
    ("invoices", "due_on", "DATE"),
    ("adjustments", "document_number", "VARCHAR"),
    ("finalized_periods", "run_id", "VARCHAR"),  # the run that finalized it (late usage)
]

# The run state of the incremental nightly (docs/RUNS.md, "Incremental nightly"): what the last
# computation of each draft (account, period) counted, so that a later night continues from it.
# Not results: its own schema, left out of the analyst copy and the Parquet set.
STATE_SCHEMA = "run_state"
STATE_DDL: list[str] = [
    f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}",
    # Grain: one row per draft (account, period) last computed by a nightly run: the inputs it
    # was computed from (`basis`: catalog and policy; `inputs_print`: the account's rows,
    # assignments, locks and never-reset counters before the period), its day limit, and the
    # events it counted: how many, and the last one in counter order (started_at, event_id).
    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.usage_marks (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, basis VARCHAR NOT NULL,
        inputs_print UBIGINT NOT NULL, day_limit DATE NOT NULL, events BIGINT NOT NULL,
        last_started_at TIMESTAMP, last_event_id VARCHAR, run_id VARCHAR NOT NULL)""",
    # Grain: one row per usage line identity of a marked (account, period): its exact sums
    # (quantity and amount in 10^-6, discount in 10^-12), before the line is rounded.
    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.usage_sums (
        account_id VARCHAR NOT NULL, period VARCHAR NOT NULL, service VARCHAR NOT NULL,
        destination_group VARCHAR NOT NULL, assignment_id VARCHAR, addon_id VARCHAR,
        owner VARCHAR, quantity_units DECIMAL(38,0) NOT NULL, amount_units DECIMAL(38,0) NOT NULL,
        discount_pico DECIMAL(38,0) NOT NULL, discounted_units DECIMAL(38,0) NOT NULL)""",
    # Grain: one row per counter window a marked (account, period) left, in 10^-6.
    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.usage_windows (
        account_id VARCHAR NOT NULL, service VARCHAR NOT NULL, destination_group VARCHAR NOT NULL,
        threshold_type VARCHAR NOT NULL, reset VARCHAR NOT NULL, window_start DATE NOT NULL,
        period VARCHAR NOT NULL, value_units BIGINT NOT NULL)""",
    # Grain: one row per account with usage: the day of its earliest event, as of the mark
    # below (store/first_usage.py), so that a night's plan does not read every event.
    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.first_usage (
        account_id VARCHAR NOT NULL, first_day DATE NOT NULL)""",
    # Grain: one row at most: the latest `loaded_at` folded into `first_usage`.
    f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.first_usage_mark (
        loaded_at TIMESTAMP NOT NULL)""",
]
