"""edge.resume, the rule ``classify --resume`` (and any other engine writing its rows) keeps rows by,
on real files."""
from __future__ import annotations

import os
import shutil

from lesionlite.edge.resume import file_identity, real_path, resume_plan, row_fields


def row(path: str, error: str = "", **fields) -> dict:
    return {"path": path, "error": error, "label": "" if error else "nv", **fields}


def test_a_row_is_kept_only_for_the_same_file_at_the_same_real_path(tmp_path, lesion_images, monkeypatch):
    a, b, c = (tmp_path / n for n in ("a.jpg", "b.jpg", "c.jpg"))
    for path, src in zip((a, b, c), lesion_images):
        shutil.copy(src, path)
    previous = [row(str(a), **row_fields(str(a), os.stat(a))), row(str(b), **row_fields(str(b), os.stat(b))),
                row("c.jpg", error="truncated"), row(str(tmp_path / "gone.jpg"), error="no such file")]
    shutil.copy(lesion_images[3], b)  # replaced since its row was written
    monkeypatch.chdir(tmp_path)  # "c.jpg", a row written before real paths were recorded, resolves from here
    plan = resume_plan(previous, [str(a), "./b.jpg", str(c), ".//a.jpg"])  # a twice: once in the plan
    assert list(plan.kept) == [str(a), str(tmp_path / "gone.jpg")]  # an unlisted file's row stays, failed or not
    assert plan.todo == ["./b.jpg", str(c)] and plan.failed == 1


def test_the_latest_row_of_a_file_counts_and_a_missing_identity_is_classified_again(tmp_path, lesion_images):
    a = tmp_path / "a.jpg"
    shutil.copy(lesion_images[0], a)
    fields = row_fields(str(a), os.stat(a))
    assert fields == {"real_path": real_path(str(a)), "file_id": file_identity(os.stat(a))}
    assert resume_plan([row(str(a), error="truncated"), row(str(a), **fields)], [str(a)]).todo == []
    assert resume_plan([row(str(a), **fields), row(str(a), error="truncated")], [str(a)]).todo == [str(a)]
    assert resume_plan([row(str(a))], [str(a)]).todo == [str(a)]  # no file_id: cannot tell, so again
    a.unlink()
    assert resume_plan([row(str(a), **fields)], [str(a)]).todo == [str(a)]  # gone: its row will say so
