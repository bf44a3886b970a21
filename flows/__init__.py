"""Prefect orchestration, thin: each flow wires store reads, pure functions and store writes."""

from flows import prefect_env

# Prefect reads its settings at import: every flow module imports prefect after this line.
prefect_env.configure()
