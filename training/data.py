"""Read the HAM10000 layout: a metadata CSV plus one or more folders of ``ISIC_*.jpg`` images."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from lesionlite.edge.files import images_by_stem
from lesionlite.edge.labels import CLASSES

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")


class DataError(ValueError):
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
