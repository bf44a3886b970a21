"""Between argparse and billrun.config: the flags a command was given become the top layer of
the settings, and the effective settings go back onto the namespace the handlers read."""

from __future__ import annotations

import argparse

from billrun import config

# argparse attribute -> (setting key, the flag as the user types it). Only attributes a command
# defines count; an attribute left at None means "not given on the command line".
FLAGS: dict[str, tuple[str, str]] = {
    "db": ("db", "--db"),
    "input": ("input", "--input"),
    "cron": ("cron", "--cron"),
    "conflict_policy": ("conflict_policy", "--conflict-policy"),
    "memory_gb": ("memory_gb", "--memory-gb"),
    "cluster": ("cluster", "--cluster"),
    "staging": ("staging", "--staging"),
    "horizon_days": ("as_of_horizon_days", "--horizon-days"),
    "grace_days": ("grace_days", "--grace-days"),
    # `nightly --adjust-late` stores "adjust" here (argparse store_const); absent, it is None.
    "late_usage": ("late_usage", "--adjust-late"),
}


def apply_settings(args: argparse.Namespace) -> config.Resolved:
    """Resolve the settings for this command line and set every one of them on `args`
    (`args.db`, `args.input`, ... and `args.settings`); raises config.ConfigError."""
    given = {key: getattr(args, attr) for attr, (key, _) in FLAGS.items() if hasattr(args, attr)}
    names = {key: name for key, name in FLAGS.values()}
    resolved = config.load_settings(given, getattr(args, "config", None), flag_names=names)
    for key in config.KEYS:
        setattr(args, key, getattr(resolved.settings, key))
    for attr, (key, _) in FLAGS.items():  # e.g. a command's own --horizon-days gets its value
        if hasattr(args, attr):
            setattr(args, attr, getattr(resolved.settings, key))
    args.settings = resolved
    return resolved
