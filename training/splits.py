"""Make train / validation / test splits grouped by lesion and stratified by diagnosis (scikit-learn);
:mod:`lesionlite.convert.data` reads them."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from lesionlite.convert.data import DataError, Record
from lesionlite.edge.bundle import sha256_file
from lesionlite.edge.io import atomic_write_text


def make_split(records: list[Record], val: float = 0.15, test: float = 0.15,
               seed: int = 42) -> dict[str, str]:
    """Assign every image to a split; all images of a lesion land in the same split."""
    ids = np.array([r.image_id for r in records])
    y = np.array([r.dx for r in records])
    groups = np.array([r.lesion_id for r in records])
    assignment = {}
    rest = np.arange(len(records))
    for name, fraction in (("test", test), ("val", val / (1.0 - test))):
        n_splits = max(2, round(1.0 / fraction))
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, held = next(folds.split(rest, y[rest], groups[rest]))
        for i in rest[held]:
            assignment[ids[i]] = name
        rest = rest[keep]
    for i in rest:
        assignment[ids[i]] = "train"
    return assignment


FOLD_SEED = 0
"""The folds of ``--fold`` depend on the split and K alone, so recipes and seeds are compared on the same ones."""


def fold(records: list[Record], assignment: dict[str, str], spec: str) -> dict[str, str]:
    """``assignment`` with its train and validation images (those with lesion ids) dealt into K folds
    by lesion, stratified by diagnosis, fold I (``spec`` "I/K") validating and the others training."""
    i, k = (int(v) for v in spec.split("/"))
    pool = [r for r in records if assignment.get(r.image_id) in ("train", "val") and r.lesion_id]
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=FOLD_SEED)
    held = list(folds.split(np.zeros(len(pool)), [r.dx for r in pool], [r.lesion_id for r in pool]))[i - 1][1]
    val = {pool[j].image_id for j in held}
    print(f"fold {spec}: {len(val)} of the {len(pool)} train + validation images "
          f"({len({pool[j].lesion_id for j in held})} lesions) validate")
    return {**assignment, **{r.image_id: "val" if r.image_id in val else "train" for r in pool}}


def write_split(path: Path, records: list[Record], assignment: dict[str, str]) -> str:
    """Write ``image_id,lesion_id,dx,split`` of the assigned images atomically; return the file's sha256."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image_id", "lesion_id", "dx", "split"])
    for r in sorted(records, key=lambda r: r.image_id):
        if r.image_id in assignment:
            w.writerow([r.image_id, r.lesion_id, r.dx, assignment[r.image_id]])
    atomic_write_text(path, buf.getvalue())
    return sha256_file(path)


def cover(records: list[Record], assignment: dict[str, str], unnamed: str = "leave-out") -> dict[str, str]:
    """A split file's assignment for these images: those it names, and the other images of its lesions
    in their lesion's split (the full download holds several images of many lesions); images of
    lesions it does not name are left out, or with ``unnamed`` "train" put in train (they are in no
    other split); the counts are said."""
    named = {r.image_id: assignment[r.image_id] for r in records if r.image_id in assignment}
    if not named:
        raise DataError("no image of the data is named in the split file: is it another data set's?")
    lesions = {r.lesion_id: named[r.image_id] for r in records if r.image_id in named}
    others = [r for r in records if r.image_id not in named]
    added = {r.image_id: lesions[r.lesion_id] for r in others if r.lesion_id in lesions}
    if added:
        print(f"split: {len(added)} more images of the split file's lesions join their lesion's split")
    rest = [r for r in others if r.lesion_id not in lesions]
    if rest and unnamed == "train":
        print(f"split: {len(rest)} images of {len({r.lesion_id for r in rest})} lesions the split file does not "
              "name go to train")
        added |= {r.image_id: "train" for r in rest}
    elif rest:
        print(f"split: {len(rest)} images of lesions the split file does not name are left out")
    return {**named, **added}
