"""Which rows of an earlier run ``classify --resume`` keeps, and which files it classifies again:
the one rule every classify engine shares (the local thread pool, and any other engine that writes
the same rows).

A row answers for one file, named two ways in it: ``path`` as the user spelled it, and ``real_path``
(:func:`real_path`), the key rows are matched by, so ``photos/a.jpg``, ``./photos//a.jpg`` and the
same file named from another working folder are one file. ``file_id`` (:func:`file_identity`) is the
file's size, modification time and status-change time when it was opened to be classified. A row is
kept for a file only while the file at that path still has that identity: a photo copied over
another of the same name (cameras start again at IMG_0001) has another, and is classified again
rather than reported with the old photo's answer.

Size and times, not a hash of the content: checking them costs one ``stat`` a file, where hashing
would read every photo of a resumed batch again. The status-change time (``st_ctime``) cannot be set
back by a copy that keeps times (``cp -p``, ``rsync -t``), and any write changes it, so a replaced
file is caught even when its size and modification time are the same. Anything that changes it
without changing the content (``chmod``, a restored backup) only costs classifying that file again.

Usage, for an engine that writes rows::

    plan = resume_plan(previous_rows, paths)   # previous_rows: the output's rows, oldest first
    write(plan.kept.values()); classify(plan.todo)  # each new row with real_path and file_id
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

COLUMNS = ("real_path", "file_id")
"""The row fields this module reads, written by every engine with each row (:func:`row_fields`)."""


def real_path(path: str) -> str:
    """The key rows are matched by: the absolute path with every link resolved."""
    return os.path.realpath(path)


def file_identity(st: os.stat_result) -> str:
    """``size:mtime_ns:ctime_ns`` of a file's status, as :func:`os.stat` or :func:`os.fstat` gives it."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def current_identity(path: str) -> str | None:
    """The identity of the file at ``path`` now (links followed, as reading does); None if it cannot be read."""
    try:
        return file_identity(os.stat(path))
    except (OSError, ValueError):
        return None


def row_fields(path: str, st: os.stat_result | None) -> dict[str, str]:
    """The fields a new row carries for :func:`resume_plan`: ``real_path``, and ``file_id`` from the
    status taken when the file was opened to be read (empty when it could not be opened: such a row
    failed, and is tried again anyway)."""
    return {"real_path": real_path(path), "file_id": file_identity(st) if st is not None else ""}


def row_key(row: dict) -> str:
    """The real path a row answers for. A row written before ``real_path`` was recorded has its
    ``path`` resolved from the current folder, as those versions did."""
    return row.get("real_path") or real_path(row["path"])


@dataclass
class ResumePlan:
    """``kept``: the rows to write again, by real path, in the order first seen; ``todo``: the
    listed paths still to classify, in their order (each file once, however often it is listed)."""

    kept: dict[str, dict]
    todo: list[str]

    @property
    def failed(self) -> int:
        """Kept rows that record a failure (of files this run does not list)."""
        return sum(1 for r in self.kept.values() if r.get("error"))


def resume_plan(previous: Iterable[dict], paths: Iterable[str]) -> ResumePlan:
    """Decide, from the rows of an earlier run (``previous``, oldest first: the output, then its
    partial file) and this run's ``paths``:

    - the latest row of a file counts, so a file in both the output and its partial file counts once;
    - a row of a file this run does not list is kept as it is (failed or not): the run is not asked
      about that file;
    - a row of a listed file is kept only if it succeeded and the file still has the identity the
      row records; otherwise the file is classified again (a failure may have been a photo still
      being copied; a changed identity means another photo).
    """
    paths = list(paths)
    keys = [real_path(p) for p in paths]
    listed = set(keys)
    latest: dict[str, dict] = {}
    for row in previous:
        latest[row_key(row)] = row  # a later row replaces an earlier one, in the earlier one's place
    kept = {}
    for key, row in latest.items():
        if key not in listed:
            kept[key] = row
        elif not row.get("error") and row.get("file_id") and row["file_id"] == current_identity(key):
            kept[key] = row
    todo, seen = [], set()
    for path, key in zip(paths, keys):
        if key not in kept and key not in seen:
            todo.append(path)
            seen.add(key)
    return ResumePlan(kept, todo)
