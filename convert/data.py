"""Read the HAM10000 layout (a metadata CSV plus one or more folders of ``ISIC_*.jpg`` images) and a
run's split file, and decode the images of a split as the edge does."""
from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.files import images_by_stem
from lesionlite.edge.labels import CLASSES
from lesionlite.edge.preprocess import ImageError, pixels

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
SPLITS = ("train", "val", "test")


class DataError(LesionliteError, ValueError):
    """The data folder or metadata cannot be used."""


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    dx: str
    path: Path


@dataclass
class DataIndex:
    """Images matched to metadata rows, plus what did not match."""

    metadata: Path
    records: list[Record]
    rows_without_image: list[str] = field(default_factory=list)
    images_without_row: list[Path] = field(default_factory=list)
    duplicate_images: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        counts = {c: 0 for c in CLASSES}
        for r in self.records:
            counts[r.dx] += 1
        lines = [
            f"{len(self.records)} images matched to {self.metadata.name} "
            f"({len({r.lesion_id for r in self.records})} lesions): "
            + ", ".join(f"{c} {n}" for c, n in counts.items()),
        ]
        if self.rows_without_image:
            lines.append(f"{len(self.rows_without_image)} metadata rows have no image "
                         f"(e.g. {', '.join(self.rows_without_image[:3])})")
        if self.images_without_row:
            lines.append(f"{len(self.images_without_row)} image files have no metadata row "
                         f"(e.g. {', '.join(p.name for p in self.images_without_row[:3])})")
        if self.duplicate_images:
            lines.append(f"{len(self.duplicate_images)} duplicate image files ignored")
        return "\n".join(lines)


def find_metadata(data_dir: Path) -> Path:
    """``HAM10000_metadata.csv`` (or the only CSV with the needed columns) in ``data_dir``."""
    preferred = data_dir / "HAM10000_metadata.csv"
    if preferred.is_file():
        return preferred
    candidates = [p for p in sorted(data_dir.glob("*.csv")) if _has_columns(p)]
    if len(candidates) != 1:
        raise DataError(f"no HAM10000 metadata CSV in {data_dir}: pass --metadata CSV")
    return candidates[0]


def _has_columns(path: Path) -> bool:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    return all(c in header for c in REQUIRED_COLUMNS)


def read_metadata(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"metadata file not found: {path}")
    if not _has_columns(path):
        raise DataError(f"{path} lacks the columns {', '.join(REQUIRED_COLUMNS)}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    unknown = sorted({r["dx"] for r in rows} - set(CLASSES))
    if unknown:
        raise DataError(f"{path}: unknown dx codes {unknown}; expected {list(CLASSES)}")
    return rows


def index_dataset(data_dir: str | Path, metadata: str | Path | None = None) -> DataIndex:
    """Match the metadata rows to the image files found anywhere under ``data_dir``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir}")
    meta_path = Path(metadata) if metadata else find_metadata(data_dir)
    rows = read_metadata(meta_path)
    images = images_by_stem(data_dir)
    records, missing = [], []
    labelled: dict[str, tuple[str, str]] = {}
    for row in rows:
        image_id = row["image_id"].strip()
        label = (row["lesion_id"].strip(), row["dx"].strip())
        if image_id in labelled:
            if labelled[image_id] != label:
                raise DataError(f"{meta_path}: image {image_id} has two rows that disagree "
                                f"({' '.join(labelled[image_id])} and {' '.join(label)})")
            continue  # the same row twice
        labelled[image_id] = label
        paths = images.get(image_id)
        if paths:
            records.append(Record(image_id, row["lesion_id"].strip(), row["dx"].strip(), paths[0]))
        else:
            missing.append(image_id)
    extra = [p for stem, ps in images.items() if stem not in labelled for p in ps]
    duplicates = [p for ps in images.values() for p in ps[1:]]
    if not records:
        raise DataError(f"no image under {data_dir} matches a row of {meta_path.name}")
    return DataIndex(meta_path, records, missing, extra, duplicates)


def read_split(path: Path) -> dict[str, str]:
    """``image_id -> split`` from a split file; refuses one where a lesion crosses splits."""
    return {row["image_id"]: row["split"] for row in _split_rows(path)}


def lesion_splits(path: Path) -> dict[str, str]:
    """``lesion_id -> split`` from a split file: where every image of a lesion belongs, including
    images the file does not name (the other views of its lesions in the full download)."""
    return {row["lesion_id"]: row["split"] for row in _split_rows(path)}


def _split_rows(path: Path) -> list[dict[str, str]]:
    """A split file's rows, refused if a lesion crosses splits."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"cannot read split file {path}: {exc.strerror}") from None
    if not rows or not {"image_id", "lesion_id", "split"} <= set(rows[0]):
        raise DataError(f"{path} is not a split file (columns image_id, lesion_id, dx, split)")
    lesion_split: dict[str, str] = {}
    for row in rows:
        if row["split"] not in SPLITS:
            raise DataError(f"{path}: unknown split {row['split']!r}")
        seen = lesion_split.setdefault(row["lesion_id"], row["split"])
        if seen != row["split"]:
            raise DataError(f"{path}: lesion {row['lesion_id']} is in both {seen} and {row['split']}")
    return rows


def apply_split(records: list[Record], assignment: dict[str, str]) -> dict[str, list[Record]]:
    """Records grouped by split; images absent from the split file are left out."""
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for r in records:
        if r.image_id in assignment:
            out[assignment[r.image_id]].append(r)
    return out


def load_arrays(records: list[Record], size: tuple[int, int], crop: str, color_constancy: str = "none",
                workers: int = 4, desc: str = "decode") -> tuple[np.ndarray, np.ndarray]:
    """Images through :func:`lesionlite.edge.preprocess.pixels` (uint8 NHWC) and integer labels."""
    def one(r: Record) -> np.ndarray:
        try:
            return pixels(r.path, size, crop=crop, color_constancy=color_constancy)
        except (ImageError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise DataError(f"{r.path}: {reason}: replace or remove this image") from None

    with ThreadPoolExecutor(workers) as pool:
        images = list(tqdm(pool.map(one, records), total=len(records), desc=desc, leave=False,
                           disable=None))
    x = np.stack(images) if images else np.zeros((0, *size, 3), np.uint8)
    y = np.array([CLASSES.index(r.dx) for r in records], dtype=np.int32)
    return x, y
