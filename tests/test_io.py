"""Atomic writes: a whole file or none, and errors that name the file the user asked for."""
from __future__ import annotations

import pytest

from lesionlite.edge.io import atomic_write_text


def test_a_file_is_replaced_whole_and_no_temporary_file_is_left(tmp_path):
    out = tmp_path / "m.json"
    out.write_text("old")
    atomic_write_text(out, "new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_failed_write_names_the_users_path_and_cleans_up(tmp_path):
    taken = tmp_path / "results"
    taken.mkdir()
    with pytest.raises(OSError) as err:
        atomic_write_text(taken, "x")  # a folder: the rename fails
    assert err.value.filename == str(taken) and err.value.strerror
    with pytest.raises(OSError) as err:
        atomic_write_text(tmp_path / "missing" / "m.json", "x")
    assert err.value.filename == str(tmp_path / "missing" / "m.json")
    assert [p.name for p in tmp_path.iterdir()] == ["results"] and not list(taken.iterdir())
