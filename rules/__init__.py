"""The rules layer (SPEC §3): durable_rules rulesets, their adapter and the pure `decide`."""

from rules.decide import RulesResult, decide

__all__ = ["RulesResult", "decide"]
