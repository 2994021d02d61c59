"""``lesionlite scope``: fit a bundle's scope gate and write it into the bundle.

The rule, chosen on held-out validation groups before the gate saw a test image: logistic
regression (C = :data:`C`; dermoscopy and the rest weigh the same in total, and so does each
diagnosis within HAM10000, so a rare dermatofibroma is not taken for "not dermoscopy") on the
standardized pooled features of the bundle's own network; the standardization is folded into the
weights, so the edge computes one dot product. The threshold is the :data:`THRESHOLD_QUANTILE`
quantile of the scores of held-out dermoscopy (camera-degraded copies aside). The figures printed
are all on held-out groups (:mod:`lesionlite.convert.scope_data`).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lesionlite.convert.data import DataError, lesion_splits, source_name
from lesionlite.convert.scope_data import Item, degraded_items, folder_items, ham_items, negative_items
from lesionlite.convert.tflite import expose_features
from lesionlite.edge.bundle import MODEL_FILE, SCHEMA, SPLIT_FILE, from_metadata, load_bundle
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.errors import CommandError
from lesionlite.edge.metrics import share
from lesionlite.edge.preprocess import ImageError
from lesionlite.edge.scope import ScopeGate

C = 0.01
CHUNK = 64
MIN_HELD_OUT = 10
GATE_STEP = "## Scope gate"
"""The heading of the step that ``lesionlite scope`` adds to a bundle's README.md."""
THRESHOLD_QUANTILE = 0.0025
METHOD = "logistic regression on the network's pooled features, each diagnosis weighted equally"


def features(clf: Classifier, items: list[Item], workers: int = 2) -> tuple[np.ndarray, list[Item]]:
    """The pooled features of every item that decodes (decoded ahead by ``workers`` threads), and
    those items; one that does not decode is reported and left out."""
    def one(item: Item) -> np.ndarray | None:
        try:
            return clf.preprocess(item.load())
        except (ImageError, OSError) as exc:
            print(f"note: skipped an image of {item.source} ({item.group}): {exc}", file=sys.stderr)
            return None

    rows, kept = [], []
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(items), desc="features", unit="img",
                                                    file=sys.stderr, mininterval=10) as bar:
        for start in range(0, len(items), CHUNK):  # decoded a chunk at a time: memory stays bounded
            chunk = items[start:start + CHUNK]
            for item, rgb in zip(chunk, pool.map(one, chunk)):
                if rgb is not None:
                    rows.append(clf.features(rgb))
                    kept.append(item)
            bar.update(len(chunk))
    return np.stack(rows), kept


def diagnosis_weights(labels: list[str]) -> np.ndarray:
    """Sample weights giving each diagnosis among the labelled items the same total weight (their
    mean stays 1); unlabelled items weigh 1."""
    labels_arr = np.array(labels)
    weights = np.ones(len(labels_arr))
    named = labels_arr != ""
    kinds, counts = np.unique(labels_arr[named], return_counts=True)
    for kind, count in zip(kinds, counts):
        weights[labels_arr == kind] = named.sum() / (len(kinds) * count)
    return weights


def fit(x: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and bias of the logistic score on raw features (standardization folded in)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(
        scaler.transform(x), positive, sample_weight=weights)
    weights = model.coef_[0] / scaler.scale_
    return weights, float(model.intercept_[0] - np.dot(weights, scaler.mean_))


def report(items: list[Item], admitted: np.ndarray) -> list[dict]:
    """Per source, over held-out items only: how many, and how many were declined."""
    rows = []
    kinds = {i.source: i.positive for i in items}
    for source in sorted(kinds, key=lambda s: (not kinds[s], s)):  # dermoscopy first
        mask = np.array([i.source == source and i.held_out for i in items])
        if mask.any():
            positive = kinds[source]
            rows.append({"source": source, "dermoscopy": positive, "n": int(mask.sum()),
                         "declined": int((~admitted[mask]).sum())})
    return rows


def format_report(rows: list[dict], threshold: float) -> str:
    lines = [f"scope gate, threshold {threshold:.3f}; held-out images only (never fitted on)",
             f"{'images':<26} {'kind':<16} {'declined as out-of-scope'}"]
    for r in rows:
        kind = "dermoscopy" if r["dermoscopy"] else "not dermoscopy"
        lines.append(f"{r['source']:<26} {kind:<16} {share(r['declined'], r['n'])}")
    return "\n".join(lines)


def fit_gate(clf: Classifier, items: list[Item]) -> dict:
    """Fit on the items not held out; the ``scope`` metadata section, its held-out report included."""
    x, items = features(clf, items)
    positive = np.array([i.positive for i in items])
    held = np.array([i.held_out for i in items])
    weights, bias = fit(x[~held], positive[~held], diagnosis_weights([i.label for i in items if not i.held_out]))
    gate = ScopeGate(weights, bias, 0.5)
    scores = np.array([gate.score(f) for f in x])
    plain = held & positive & np.array([not i.source.startswith("degraded/") for i in items])
    if plain.sum() < MIN_HELD_OUT or (held & ~positive).sum() < MIN_HELD_OUT:
        raise DataError(f"too few held-out images to set and check a threshold ({plain.sum()} dermoscopy, "
                        f"{(held & ~positive).sum()} others; need {MIN_HELD_OUT} of each): give more images")
    threshold = float(np.quantile(scores[plain], THRESHOLD_QUANTILE))
    count = Counter(i.source for i in items if not i.held_out)
    return {"method": METHOD, "weights": [float(f"{w:.6g}") for w in weights], "bias": float(f"{bias:.6g}"),
               "threshold": round(threshold, 6), "regularization_C": C,
               "threshold_rule": f"{THRESHOLD_QUANTILE:.2%} quantile of held-out dermoscopy scores",
               "fitted_on": dict(count), "held_out": report(items, scores >= threshold)}


def regate(bundle_dir: Path, out: Path, items: list[Item], command: str) -> dict:
    """Add (or refit) the scope gate of the bundle in ``bundle_dir`` and write the result to ``out``
    (the same folder: replaced atomically); returns the metadata's ``scope`` section."""
    from lesionlite.convert.bundle import check_out, staged, write_model

    if out != bundle_dir.resolve():
        check_out(out)
    bundle = load_bundle(bundle_dir)
    if bundle.bare:
        raise DataError(f"{bundle_dir} is not a lesionlite bundle: a gate needs its metadata")
    model_bytes = expose_features(bundle.model_path.read_bytes())
    meta = {k: v for k, v in bundle.meta.items() if k not in ("sha256", "size_bytes", "scope")}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / MODEL_FILE
        probe.write_bytes(model_bytes)
        section = fit_gate(Classifier(from_metadata(meta, probe)), items)
    meta.update(schema=SCHEMA, scope=section)
    with staged(out) as stage:
        for f in bundle_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, stage / f.name)
        write_model(stage, meta, model_bytes)
        readme = stage / "README.md"
        if readme.is_file():  # the gate's own step, replacing an earlier fit's
            text = readme.read_text().split(GATE_STEP)[0].rstrip()
            readme.write_text(f"{text}\n\n{GATE_STEP}\n```sh\n{command}\n```\n")
    return section


def scope_items(bundle_dir: Path, data: list[str], metadata: str | None, dermoscopy: list[str],
                negatives: str) -> list[Item]:
    """Everything the gate learns from, for the bundle in ``bundle_dir`` (its split.csv keeps the
    test lesions out)."""
    split = lesion_splits(bundle_dir / SPLIT_FILE)
    ham = ham_items([Path(d) for d in data], Path(metadata) if metadata else None, split)
    others = [i for d in map(Path, dermoscopy) for i in folder_items(d, source_name(d), True)]
    return ham + others + degraded_items(ham) + negative_items(Path(negatives))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="the bundle to give a scope gate (refits an existing one)")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="HAM10000 image folder(s) of the download's layout (repeat for each)")
    p.add_argument("--metadata", help="HAM10000_metadata.csv, if not in the first --data folder")
    p.add_argument("--dermoscopy", action="append", default=[], metavar="DIR",
                   help="more dermoscopic images without lesion ids, e.g. ISIC archive images (repeatable)")
    p.add_argument("--negatives", required=True, metavar="DIR",
                   help="images that are not dermoscopy: photos/, cutouts/ (pasted on backgrounds), and "
                   "clinical photos (a labels.csv with patient_id groups them)")
    p.add_argument("--out", help="where to write the gated bundle (default: replace BUNDLE_DIR)")


def main(args: argparse.Namespace) -> int:
    bundle_dir = Path(args.bundle)
    out = Path(args.out).resolve() if args.out else None
    for folder in [*args.data, *args.dermoscopy, args.negatives]:
        if not Path(folder).is_dir():
            raise CommandError(f"folder not found: {folder}")
    try:
        print(add_gate(bundle_dir, args.data, args.metadata, args.dermoscopy, args.negatives, out))
    except (DataError, ValueError) as exc:
        raise CommandError(f"{exc}") from None
    return 0


def add_gate(bundle_dir: str | Path, data: list[str], metadata: str | None, dermoscopy: list[str], negatives: str,
             out: str | Path | None = None) -> str:
    """Fit the gate of the bundle in ``bundle_dir``, write it to ``out`` (default: in place) and
    return the held-out report to print."""
    bundle_dir = Path(bundle_dir)
    out = Path(out or bundle_dir).resolve()
    items = scope_items(bundle_dir, data, metadata, dermoscopy, negatives)
    section = regate(bundle_dir, out, items, "lesionlite " + shlex.join(sys.argv[1:]))
    return (format_report(section["held_out"], section["threshold"]) + f"\nwrote {out} with its scope gate; the HAM10000 test split was not "
            f"used: score it with lesionlite evaluate HAM10000_metadata.csv --images DIR --split-file "
            f"{out / SPLIT_FILE} --split test --model {out}")
