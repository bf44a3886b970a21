"""The largest values billrun accepts and computes (issue 12): stated once, checked everywhere.

Inputs beyond these are refused where they enter: a usage or assignment row is rejected at load
with its reason, a catalog money value stops the load (exit 2) naming its key. Inside them one
row's arithmetic cannot overflow; sums over many rows (lines, counters, invoice totals) run in
Int128 and come back to Int64 through a strict cast, so a sum beyond Int64 fails the run loudly
and writes nothing, instead of wrapping. See docs/INPUTS.md, "Bounds".
"""

from __future__ import annotations

from decimal import Decimal

# Usage `quantity` and `amount` of one event: 9 integer digits, 6 decimals (< 10^15 in the
# 10^-6 units they are carried in). Why 9 and not the 12 that DECIMAL(18,6) could hold: a tier
# discount multiplies amount × 100 × Σ(overlap × pct) with overlap up to the quantity and pct up
# to 10^4, so amount × quantity × 10^6 must stay below Int128's 1.7 × 10^38: 10^15 × 10^15 ×
# 10^6 = 10^36 does, 10^18 × 10^18 × 10^6 would not.
MAX_USAGE_UNITS = 10**15 - 1
MAX_USAGE_VALUE = Decimal("999999999.999999")

# Catalog money (`fee`, `activation_fee`), and the assignment `quantity` that multiplies them:
# fee × quantity < 10^14, so a fee line fits Int64 in any currency's minor units (0..4).
MAX_FEE = Decimal("999999999.9999")
MAX_ASSIGNMENT_QUANTITY = 100_000

# Sums over many events (a usage line's quantity, a counter, a line's amount in 10^-6) are
# computed in Int128 and kept as Int64: up to 9 223 372 036 854.775807 units in one usage line
# or counter window (9 223 372 036 854 775 807 minor units for an amount). That is 9 223 events
# at the largest quantity or amount in one window; beyond it the run fails with this error.
INT64_MAX = 2**63 - 1


class MoneyOverflowError(ArithmeticError):
    """A sum beyond Int64: the run fails loudly and writes nothing, instead of wrapping."""
