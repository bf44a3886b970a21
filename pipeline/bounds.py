"""The largest values billrun accepts and computes (issue 12): stated once, checked everywhere.

Inputs beyond these are refused where they enter: a usage or assignment row is rejected at load
with its reason, a catalog money value stops the load (exit 2) naming its key. Inside those
bounds every charge computes in Int128 and is stored as DECIMAL(38, ·), so no sum an account
can reach in practice comes near the results bound; a value that still passes it fails the run
loudly (`MoneyOverflowError`) and nothing is written. See docs/INPUTS.md, "Bounds".
"""

from __future__ import annotations

from decimal import Decimal

# Usage `quantity` and `amount`: DECIMAL(18,6) in the raw tables, 12 integer digits.
USAGE_INT_DIGITS = 12
MAX_USAGE_VALUE = Decimal("999999999999.999999")

# Catalog money (`fee`, `activation_fee` of every fee plan): 12 integer digits as well.
MAX_FEE = Decimal("999999999999.9999")

# Assignment `quantity` (how many of the add-on: it multiplies the fees).
MAX_ASSIGNMENT_QUANTITY = 1_000_000

# Results: amounts DECIMAL(38,4), quantities and counters DECIMAL(38,6). A value is checked in
# its own integer unit against the smaller of the two ranges, 10^32 (38 - 6 digits), so the
# check holds for any currency (0..4 minor units) and for 10^-6 quantity units alike.
RESULT_LIMIT = 10**32


class MoneyOverflowError(ArithmeticError):
    """A computed line, total or counter beyond `RESULT_LIMIT`: the run fails, writing nothing."""
