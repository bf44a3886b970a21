"""The visual run report: gather (SQL over the store) -> render (pure: frames -> HTML) -> write.

`gather` is the only part that opens DuckDB; `charts`, `render` and `markdown` are pure and
take the frames `gather` returns; `write` puts the page beside the analyst copy atomically.
"""
