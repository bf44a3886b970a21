"""The billing floor: `bill`, the one pure function that composes the rules (`rules/`) and the
charges (`pipeline/`), and what is built on it (`preview`). Above both, below the store and the
flows: frames in, frames out, no I/O, no clock."""
