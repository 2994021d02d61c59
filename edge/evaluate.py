"""``lesionlite evaluate``: the edge model on a labelled set of images, with every metric."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lesionlite.edge.args import json_output_path, thread_count
from lesionlite.edge.batch import classify_paths
from lesionlite.edge.bundle import SPLIT_FILE, Bundle, sha256_file, trained_on
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.degrade import DEGRADATIONS, DEGRADE_HELP, Alteration, relight
from lesionlite.edge.errors import CommandError, LesionliteError
from lesionlite.edge.files import images_by_stem
from lesionlite.edge.io import atomic_write_text
from lesionlite.edge.labels import DISCLAIMER
from lesionlite.edge.metrics import evaluate, format_table, interval_note, share, wilson


class LabelsError(LesionliteError, ValueError):
    """The labels file cannot be used."""


def read_labelled(labels_csv: Path, images: Path | None = None, split_file: Path | None = None,
                  split: str | None = None) -> list[tuple[str, str, str]]:
    """``(image path, class code, lesion)`` from a ``path,label`` CSV (paths relative to the CSV;
    each image its own lesion unless a ``lesion_id`` column says otherwise) or a HAM10000-style
    metadata CSV (``image_id,dx,lesion_id``; images searched under ``images``).
    With ``split_file`` and ``split``, only images of that split are kept."""
    rows = _read_csv(labels_csv)
    if not rows:
        raise LabelsError(f"{labels_csv} has no rows")
    cols = rows[0].keys()
    keep = members(split_file, {split}) if split_file else None
    if {"path", "label"} <= cols:
        base = images or labels_csv.parent
        rows = [r for r in rows if keep is None or keep.has(Path(r["path"]).stem, r.get("lesion_id"))]
        pairs = [(str(base / r["path"]), r["label"], r.get("lesion_id") or r["path"]) for r in rows]
    elif {"image_id", "dx"} <= cols:
        base = images or labels_csv.parent
        found = images_by_stem(base)
        rows = [r for r in rows if keep is None or keep.has(r["image_id"], r.get("lesion_id"))]
        missing = sum(r["image_id"] not in found for r in rows)
        if missing:  # e.g. a subset of the download: say so, the figures are over fewer images
            print(f"note: {missing} of {len(rows)} metadata rows{f' of the {split} split' if keep is not None else ''} "
                  f"have no image under {base}; evaluating the {len(rows) - missing} that do", file=sys.stderr)
        pairs = [(str(found[r["image_id"]][0]), r["dx"], r.get("lesion_id") or r["image_id"])
                 for r in rows if r["image_id"] in found]
    else:
        raise LabelsError(f"{labels_csv}: expected columns path,label or image_id,dx")
    if not pairs:
        raise LabelsError(f"no labelled images found from {labels_csv}")
    unlabelled = next((path for path, label, _ in pairs if not label), None)
    if unlabelled:
        raise LabelsError(f"{labels_csv}: the row of {unlabelled} has no label")
    return pairs


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV (with or without the byte-order mark spreadsheets write)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = []
            for row in reader:
                if None in row or None in row.values():
                    raise LabelsError(f"{path}, line {reader.line_num}: expected the header's "
                                      f"{len(reader.fieldnames)} columns")
                rows.append(row)
            return rows
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class Members(NamedTuple):
    """The images a split file puts on some of its sides: those it names, and the other images of
    their lesions (as ``lesionlite train --split`` places them)."""

    ids: set[str]
    lesions: set[str]

    def has(self, image_id: str, lesion: str | None) -> bool:
        return image_id in self.ids or bool(lesion) and lesion in self.lesions


def members(split_file: Path, splits: set[str]) -> Members:
    """The images ``split_file`` (a ``split.csv``) puts in ``splits``."""
    rows = _read_csv(split_file)
    if rows and not {"image_id", "split"} <= rows[0].keys():
        raise LabelsError(f"{split_file}: expected a split.csv with columns image_id and split")
    chosen = [r for r in rows if r["split"] in splits]
    return Members({r["image_id"] for r in chosen}, {r["lesion_id"] for r in chosen if r.get("lesion_id")})


def add_arguments(p) -> None:
    p.add_argument("labels", metavar="LABELS_CSV",
                   help="a path,label CSV or a HAM10000 metadata CSV (image_id,dx)")
    p.add_argument("--images", help="folder holding the images (default: the CSV's folder)")
    p.add_argument("--split-file", help="a split.csv: evaluate only the images of --split")
    p.add_argument("--split", choices=("train", "val", "test"), help="with --split-file (default: test)")
    p.add_argument("--workers", type=thread_count, default=2)
    p.add_argument("--tta", action="store_true", help="average over the 8 rotations and mirror images")
    p.add_argument("--light", type=_gains, metavar="R,G,B",
                   help="simulate another light: multiply each colour channel first (e.g. 1.15,1,0.8 "
                   "warm, 0.85,1,1.2 cool) to see how far the answers move")
    p.add_argument("--degrade", choices=tuple(DEGRADATIONS),
                   help=f"simulate another camera or hand (after --light): {DEGRADE_HELP}")
    p.add_argument("--json", type=json_output_path, help="write the metrics to this JSON file")


def _gains(text: str) -> tuple[float, float, float]:
    try:
        gains = tuple(float(v) for v in text.split(","))
    except ValueError:
        gains = ()
    if len(gains) != 3 or not all(0 < g <= 4 for g in gains):
        raise argparse.ArgumentTypeError(f"expected three gains between 0 and 4 like 1.15,1,0.8, got {text!r}")
    return gains


def _alteration(args: argparse.Namespace) -> Alteration | None:
    """--light, then --degrade, as one change of each decoded image (None: neither)."""
    light = (lambda im: relight(im, args.light)) if args.light else (lambda im: im)
    if args.degrade:
        return DEGRADATIONS[args.degrade].after(light)
    return Alteration(light) if args.light else None


def _held_out(bundle: Bundle, pairs: list[tuple[str, str, str]]) -> bool | None:
    """Whether none of the images scored (``pairs`` as :func:`read_labelled` gives them) is one the
    model trained on or of a lesion it trained on, by the split file that ships beside it (None when
    unknown: a bare model, or a split file its metadata does not name); says so when some are."""
    splits = trained_on(bundle.meta)
    split_file = bundle.model_path.parent / SPLIT_FILE
    if splits is None or not split_file.is_file():
        return None
    if sha256_file(split_file) != bundle.meta["training"].get("split_sha256"):
        print(f"note: {split_file} is not the split {bundle.name} was trained with: whether these images "
              "were held out is unknown", file=sys.stderr)
        return None
    trained = members(split_file, set(splits))
    seen = sum(trained.has(Path(path).stem, lesion) for path, _, lesion in pairs)
    if seen:
        print(f"note: {seen} of these {len(pairs)} images are of lesions {bundle.name} was trained on "
              f"(its {' + '.join(splits)} split): these figures are not held out (for held-out ones: "
              f"--split-file {split_file} --split test)", file=sys.stderr)
    return not seen


def scope_report(admitted: np.ndarray, y: np.ndarray, probs: np.ndarray, lesions: np.ndarray,
                 codes: list[str]) -> dict:
    """How many images the scope gate turned away (per class, with melanomas named), and the
    metrics on the images it let through."""
    n, out = len(admitted), int((~admitted).sum())
    report = {"n": n, "out_of_scope": out, "out_of_scope_ci95": wilson(out, n),
              "out_of_scope_by_class": {c: int((~admitted & (y == i)).sum()) for i, c in enumerate(codes)}}
    if admitted.any():
        report["in_scope"] = evaluate(y[admitted], probs[admitted], codes, lesions[admitted])
    return report


def format_scope(report: dict, threshold: float) -> str:
    """The scope section of ``evaluate``'s printout."""
    by_class = report["out_of_scope_by_class"]
    lines = [f"scope gate (threshold {threshold:.3f}): {share(report['out_of_scope'], report['n'])} images "
             "declined as not dermoscopic; " + ", ".join(f"{c} {k}" for c, k in by_class.items() if k)
             if report["out_of_scope"] else
             f"scope gate (threshold {threshold:.3f}): no image declined of {report['n']}"]
    if "mel" in by_class:
        lines.append(f"melanomas turned away by the gate: {by_class['mel']}")
    inside = report.get("in_scope")
    if inside:
        mel = inside.get("mel_sensitivity_at_80_specificity")
        lines.append(f"on the {inside['n']} images in scope: balanced accuracy {inside['balanced_accuracy']:.3f}"
                     f"{interval_note(inside.get('balanced_accuracy_ci95'))}"
                     + (f", melanoma sensitivity at 80% specificity {mel:.3f}" if mel is not None else ""))
    return "\n".join(lines)


def main(args) -> int:
    if args.split and not args.split_file:
        raise CommandError("--split needs --split-file (a split.csv naming each image's split)")
    split = args.split or "test"
    try:
        pairs = read_labelled(Path(args.labels), Path(args.images) if args.images else None,
                              Path(args.split_file) if args.split_file else None, split)
    except LabelsError as exc:
        raise CommandError(f"{exc}") from None
    clf = Classifier(args.model, args.threads, args.runtime, args.labels_file)
    codes = clf.bundle.codes
    unknown = sorted({lab for _, lab, _ in pairs} - set(codes))
    if unknown:
        raise CommandError(f"labels {unknown} are not classes of this model ({codes})")
    held_out = _held_out(clf.bundle, pairs)
    probs, scopes, y, lesions, failed = [], [], [], [], []
    rows = classify_paths(clf, [p for p, _, _ in pairs], args.workers, args.tta, _alteration(args))  # in order
    for row, (_, label, lesion) in zip(rows, pairs):
        if row.error:
            failed.append(f"{row.path}: {row.error}")
            continue
        probs.append(row.prediction.probs)
        scopes.append(row.prediction.scope)
        y.append(codes.index(label))
        lesions.append(lesion)
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    if not probs:
        raise CommandError("no image could be classified")
    y_all, probs_all, lesions_all = np.array(y), np.stack(probs), np.array(lesions)
    metrics = evaluate(y_all, probs_all, codes, lesions_all)
    metrics.update({"model": clf.bundle.name, "model_sha256": clf.bundle.sha256, "failed": len(failed),
                    "labels_csv": str(args.labels), "split": split if args.split_file else None,
                    "held_out": held_out,
                    "light": args.light, "degrade": args.degrade})
    if args.light:
        print("simulated light: channel gains R,G,B = " + ",".join(f"{g:g}" for g in args.light))
    if args.degrade:
        print(f"simulated degradation: {args.degrade}")
    print(format_table(metrics))
    gate = clf.bundle.scope
    if gate is not None:
        admitted = np.array([gate.admits(s) for s in scopes])
        metrics["scope"] = scope_report(admitted, y_all, probs_all, lesions_all, codes)
        print(format_scope(metrics["scope"], gate.threshold))
    else:
        print("scope gate: none in this bundle (every image gets a label)")
    print(DISCLAIMER)
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=2))
    return 1 if failed else 0
