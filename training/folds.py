"""``lesionlite folds RUN...``: the validation figures of one recipe's runs on the folds of
``train --fold I/K``, their mean and their spread, so recipes are chosen on a figure whose noise is
known rather than on one validation split. Reads the runs' files only (no TensorFlow). It never shows
a test figure: the choice is made before the test split is looked at."""
from __future__ import annotations

import argparse
import csv
import math

from lesionlite.convert.data import DataError
from lesionlite.convert.run import HISTORY, Run
from lesionlite.training.config import recipe_differences


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="runs of one recipe, each trained with --fold I/K")


def kept_score(run: Run) -> tuple[float, int]:
    """The validation balanced accuracy of the model the run kept, and its epoch (from 1): the best
    epoch of its last scored phase (quantization-aware epochs are scored afresh with int8 rounding)."""
    path = run.path / HISTORY
    if not path.is_file():
        raise DataError(f"{run.path}: no {HISTORY}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    scores = [(float(r["val_balanced_accuracy"]), int(r["epoch"]) + 1) for r in rows if r.get("val_balanced_accuracy")]
    qat = run.config.get("qat_epochs", 0)
    if qat and len(scores) > qat:
        scores = scores[-qat:]
    if not scores:
        raise DataError(f"{run.path}: no validation score in its history (a refit has no validation)")
    return max(scores, key=lambda s: s[0])  # the first of equal bests, as the run keeps it


def report(paths: list[str]) -> str:
    """The table of the runs' folds and validation scores, and their mean and spread."""
    runs = [Run.read(p) for p in paths]
    for run in runs:
        if not run.config.get("fold"):
            raise DataError(f"{run.path} was not trained on a fold (train --fold I/K)")
        if run.interrupted_after is not None or not (run.path / "calibration.json").is_file():
            raise DataError(f"{run.path} did not finish its schedule: resume it first (train --resume)")
    first = runs[0].config
    for run in runs[1:]:
        differ = [f"{f} {a} ({run.path}: {b})" for f, a, b in recipe_differences(first, run.config)]
        if differ:
            raise DataError(f"{runs[0].path} and {run.path} are runs of other recipes: " + ", ".join(differ))
    ks = {run.config["fold"].split("/")[1] for run in runs}
    if len(ks) > 1:
        raise DataError(f"the runs are folds of different K ({', '.join(sorted(ks))}): compare folds of one K")
    lines = [f"{'fold':>5}  {'val images':>10}  {'val lesions':>11}  {'val balanced accuracy':>21}  run"]
    scores = []
    for run in sorted(runs, key=lambda r: int(r.config["fold"].split("/")[0])):
        with open(run.split_file, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "val"]
        score, epoch = kept_score(run)
        scores.append(score)
        lines.append(f"{run.config['fold']:>5}  {len(rows):>10}  {len({r['lesion_id'] for r in rows}):>11}  "
                     f"{score:>14.4f} (ep {epoch:>2})  {run.path}")
    n, k = len(scores), int(ks.pop())
    mean = sum(scores) / n
    folds = sorted(run.config["fold"] for run in runs)
    if n < 2:
        return "\n".join(lines + [f"one fold of {k}: no spread yet"])
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    note = "" if len(set(folds)) == n == k else f" ({n} runs on {len(set(folds))} of the {k} folds)"
    lines.append(f"mean {mean:.4f}, standard deviation {sd:.4f}, range {min(scores):.4f}-{max(scores):.4f}, "
                 f"standard error of the mean {sd / math.sqrt(n):.4f}{note}")
    lines.append("(each score is of the epoch the run kept, chosen on that same fold: a little optimistic, "
                 "alike for every recipe)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    print(report(args.runs))
    return 0
