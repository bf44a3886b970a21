"""The Parquet set's swap (store/parquet_set.py): one atomic link, two sets kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.parquet_set import parquet_pointer, publish_parquet, sets_folder


def _set(pointer: Path, name: str) -> Path:
    folder = sets_folder(pointer) / name
    folder.mkdir(parents=True)
    (folder / "invoices.parquet").write_text(name)
    return folder


def test_the_link_moves_to_each_new_set_keeping_the_one_it_replaced(tmp_path: Path) -> None:
    pointer = parquet_pointer(tmp_path / "billrun.duckdb")
    assert pointer.name == "billrun.analyst"
    first = _set(pointer, "run-1")
    publish_parquet(pointer, first)
    assert pointer.is_symlink() and (pointer / "invoices.parquet").read_text() == "run-1"
    assert not Path(str(pointer.readlink())).is_absolute()  # the folder can be moved whole

    _set(pointer, "run-2-killed")  # written by a run killed before its swap
    third = _set(pointer, "run-3")
    publish_parquet(pointer, third)
    assert (pointer / "invoices.parquet").read_text() == "run-3"
    assert sorted(p.name for p in sets_folder(pointer).iterdir()) == ["run-1", "run-3"]

    publish_parquet(pointer, _set(pointer, "run-4"))
    assert sorted(p.name for p in sets_folder(pointer).iterdir()) == ["run-3", "run-4"]
    assert not list(tmp_path.glob(".billrun.analyst.link-*"))  # no temporary link left


def test_a_real_folder_in_the_way_is_refused_not_deleted(tmp_path: Path) -> None:
    pointer = parquet_pointer(tmp_path / "billrun.duckdb")
    pointer.mkdir()
    (pointer / "mine.csv").write_text("an analyst's file")
    with pytest.raises(RuntimeError, match="not billrun's link"):
        publish_parquet(pointer, _set(pointer, "run-1"))
    assert (pointer / "mine.csv").exists()
