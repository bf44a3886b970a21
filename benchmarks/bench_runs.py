"""Runs benchmark: see `billrun/bench.py` (also `billrun bench`)."""

from billrun.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
