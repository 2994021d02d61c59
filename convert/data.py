"""Read the HAM10000 layout (a metadata CSV plus one or more folders of ``ISIC_*.jpg`` images, under one
or several roots), dermoscopy without lesion ids for training only (a folder with ``labels.csv``), and a
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
    """Empty for an image without one (extra training data: each image is its own group)."""
    dx: str
    path: Path
    source: str = ""
    """The data root's name (:func:`source_name`): where the image came from, for the model card."""


def source_name(folder: str | Path) -> str:
    """A data set's name: ``isic-archive`` for ``.../isic-archive/images`` (not its image folder's)."""
    folder = Path(folder).resolve()
    return folder.parent.name if folder.name == "images" else folder.name


def data_roots(data: str | Path | list) -> list[str]:
    """The data roots of a ``--data`` value or a run's record (runs before several roots kept one)."""
    return [str(data)] if isinstance(data, (str, Path)) else [str(d) for d in data]


@dataclass
class DataIndex:
    """Images matched to metadata rows, plus what did not match."""

    metadata: Path
    records: list[Record]
    rows_without_image: list[str] = field(default_factory=list)
    images_without_row: list[Path] = field(default_factory=list)
    duplicate_images: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        lesions = {r.lesion_id for r in self.records}
        groups = f"{len(lesions)} lesions" if all(lesions) else "no lesion ids: training only"
        lines = [f"{len(self.records)} images matched to {self.metadata.name} ({groups}): "
                 + _class_counts(self.records)]
        sources = sorted({r.source for r in self.records})
        if len(sources) > 1:
            lines += [f"  {s}: " + _class_counts([r for r in self.records if r.source == s]) for s in sources]
        if self.rows_without_image:
            lines.append(f"{len(self.rows_without_image)} metadata rows have no image "
                         f"(e.g. {', '.join(self.rows_without_image[:3])})")
        if self.images_without_row:
            lines.append(f"{len(self.images_without_row)} image files have no metadata row "
                         f"(e.g. {', '.join(p.name for p in self.images_without_row[:3])})")
        if self.duplicate_images:
            lines.append(f"{len(self.duplicate_images)} duplicate image files ignored")
        return "\n".join(lines)


def _class_counts(records: list[Record]) -> str:
    counts = {c: 0 for c in CLASSES}
    for r in records:
        counts[r.dx] += 1
    return ", ".join(f"{c} {n}" for c, n in counts.items())


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


def index_dataset(data: str | Path | list, metadata: str | Path | None = None) -> DataIndex:
    """Match the metadata rows to the image files found anywhere under the data root(s) ``data``
    (the metadata CSV, unless given, is the first root's). Roots may hold images of any size; an image
    found under two roots is taken from the first."""
    roots = [Path(d) for d in data_roots(data)]
    for root in roots:
        if not root.is_dir():
            raise DataError(f"data folder not found: {root}")
    meta_path = Path(metadata) if metadata else find_metadata(roots[0])
    rows = read_metadata(meta_path)
    images: dict[str, list[tuple[Path, str]]] = {}
    for root, name in zip(roots, _unique_names(roots)):
        for stem, paths in images_by_stem(root).items():
            images.setdefault(stem, []).extend((p, name) for p in paths)
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
        found = images.get(image_id)
        if found:
            path, source = found[0]
            records.append(Record(image_id, label[0], label[1], path, source))
        else:
            missing.append(image_id)
    extra = [p for stem, ps in images.items() if stem not in labelled for p, _ in ps]
    duplicates = [p for ps in images.values() for p, _ in ps[1:]]
    if not records:
        raise DataError(f"no image under {', '.join(map(str, roots))} matches a row of {meta_path.name}")
    return DataIndex(meta_path, records, missing, extra, duplicates)


def _unique_names(roots: list[Path]) -> list[str]:
    """:func:`source_name` of each root, numbered where two share one."""
    names = [source_name(r) for r in roots]
    return [n if names.count(n) == 1 else f"{n}-{names[:i + 1].count(n)}" for i, n in enumerate(names)]


EXTRA_LABELS = "labels.csv"


def index_extra(folder: str | Path, exclude: set[str] = frozenset()) -> DataIndex:
    """Dermoscopy without lesion ids, for training only: ``labels.csv`` (``image_id,dx``, more columns
    allowed) in ``folder`` and the images under it. Each image is its own group (empty lesion id).
    Images whose id is in ``exclude`` (the HAM10000 metadata's) are left out, so that no image can
    reach training by this door that a lesion-grouped split keeps in validation or test."""
    folder = Path(folder)
    labels = folder / EXTRA_LABELS
    if not labels.is_file():
        raise DataError(f"--extra-train {folder}: no {EXTRA_LABELS} (image_id,dx) in it")
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"image_id", "dx"} <= set(rows[0]):
        raise DataError(f"{labels} lacks the columns image_id, dx")
    unknown = sorted({r["dx"].strip() for r in rows} - set(CLASSES))
    if unknown:
        raise DataError(f"{labels}: unknown dx codes {unknown}; expected {list(CLASSES)} (map them first)")
    images = images_by_stem(folder)
    name = source_name(folder)
    records, missing, shared, seen = [], [], [], set()
    for row in rows:
        image_id = row["image_id"].strip()
        if image_id in seen:
            continue
        seen.add(image_id)
        if image_id in exclude:
            shared.append(image_id)
        elif image_id in images:
            records.append(Record(image_id, "", row["dx"].strip(), images[image_id][0], name))
        else:
            missing.append(image_id)
    if shared:
        print(f"{name}: {len(shared)} images share an image id with the HAM10000 metadata "
              f"(e.g. {', '.join(shared[:3])}) and are left out: they may be HAM10000 images of another split")
    if not records:
        raise DataError(f"no image under {folder} matches a row of {labels}")
    extra = [p for stem, ps in images.items() if stem not in seen for p in ps]
    return DataIndex(labels, records, missing, extra, [p for ps in images.values() for p in ps[1:]])


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
