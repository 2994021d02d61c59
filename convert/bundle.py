"""``lesionlite convert``: convert a training run, verify it on the edge runtime, write the bundle."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from lesionlite.convert.card import model_card
from lesionlite.convert.data import DataError, apply_split, data_roots, index_dataset, load_arrays, read_split
from lesionlite.convert.run import Run
from lesionlite.convert.tflite import convert, representative_indices
from lesionlite.convert.verify import verify
from lesionlite.edge import __version__
from lesionlite.edge.bundle import (LABELS_FILE, METADATA_FILE, MODEL_FILE, READABLE_SCHEMAS, SCHEMA, SPLIT_FILE,
                                    from_metadata, sha256_file)
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.embedded import embed
from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.labels import CLASS_NAMES
from lesionlite.edge.metrics import evaluate, softmax

KEY_METRICS = ("n", "accuracy", "balanced_accuracy", "balanced_accuracy_ci95", "macro_f1", "macro_auc", "ece",
               "mel_sensitivity_at_80_specificity", "mel_sensitivity_at_90_specificity")


class ConversionRefused(LesionliteError, RuntimeError):
    """The converted model is not faithful enough to ship."""


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{__version__}+{rev}" if rev else __version__


def summarize(metrics: dict) -> dict:
    out = {k: metrics.get(k) for k in KEY_METRICS}
    out["recall"] = {c: v["recall"] for c, v in metrics["per_class"].items()}
    return out


def build_metadata(run: Run, name: str, quantize: str, input_detail: dict, output_detail: dict) -> dict:
    """The bundle metadata, except the fields known only once the file is final."""
    cfg, calibration = run.config, run.calibration
    in_q, out_q = input_detail["quantization"], output_detail["quantization"]
    in_dtype, out_dtype = input_detail["dtype"].__name__, output_detail["dtype"].__name__
    return {
        "schema": SCHEMA,
        "name": name,
        "model_file": MODEL_FILE,
        "quantization": quantize,
        "labels": [{"code": c, "name": CLASS_NAMES.get(c, c)} for c in cfg["classes"]],
        "input": {
            "height": cfg["input_size"][0], "width": cfg["input_size"][1], "color_order": "RGB",
            "crop": cfg["crop"], "resize": "bilinear", "color_constancy": run.color_constancy,
            "dtype": in_dtype,
            "scale": float(in_q[0]) if in_dtype != "float32" else 1.0,
            "zero_point": int(in_q[1]) if in_dtype != "float32" else 0,
            "mean": 0.0, "std": 1.0,
            "pixel_range": [0, 255],
            "normalization": "inside the model (feed RGB pixels 0..255; the graph rescales)",
        },
        "output": {"kind": "logits", "dtype": out_dtype,
                   "scale": float(out_q[0]) if out_dtype != "float32" else 0.0,
                   "zero_point": int(out_q[1]) if out_dtype != "float32" else 0},
        "calibration": {"temperature": calibration["temperature"], "fitted_on": "val",
                        **{k: v for k, v in calibration.items() if k == "fitted_by"}},  # a refit's
        "thresholds": calibration["thresholds"],
        "training": {k: cfg.get(k) for k in ("arch", "alpha", "input_size", "data", "metadata", "seed",
                                              "split_sha256", "counts", "trained_on", "epochs", "fine_tune_epochs",
                                              "imbalance", "label_smoothing", "qat_epochs")}
                    | {k: cfg[k] for k in ("interrupted_after_epochs",  # a run stopped by hand
                                           "sources", "extra_train") if k in cfg},  # the images it saw, by source
        "code_version": code_version(),
    }


BUNDLE_FILES = frozenset({MODEL_FILE, METADATA_FILE, LABELS_FILE, SPLIT_FILE, "MODEL_CARD.md", "README.md",
                          "confusion_matrix.png", "reliability.png"})
"""What :func:`_write_bundle` writes: a folder holding anything else is not a bundle to replace."""


def check_out(out: Path) -> None:
    """Refuse, before any work, an ``--out`` under a file, or that is a file or a folder holding
    anything but a lesionlite bundle (a bundle is replaced whole)."""
    above = next(p for p in out.parents if p.exists())
    if not above.is_dir():
        raise DataError(f"--out {out}: {above} is a file, not a folder")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file: name a bundle folder")
    if out.is_dir() and any(out.iterdir()):
        others = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
        try:
            schema = json.loads((out / METADATA_FILE).read_text()).get("schema")
        except (OSError, ValueError, AttributeError):
            schema = None
        if others or schema not in READABLE_SCHEMAS:
            what = f"files of its own ({', '.join(others[:3])})" if others else "no lesionlite bundle"
            raise DataError(f"--out {out} holds {what}: name a new folder")


def _load_split_arrays(run: Run, data: str | list[str] | None, n_representative: int) -> dict:
    cfg = run.config
    roots = data_roots(data or cfg["data"])
    index = index_dataset(roots, None if data else cfg.get("metadata"))
    parts = apply_split(index.records, read_split(run.split_file))
    missing = {k: n - len(parts[k]) for k, n in cfg.get("counts", {}).items() if k != "train" and n > len(parts[k])}
    if missing or not parts["train"]:
        missing = missing or {"train": cfg["counts"]["train"]}
        raise DataError(f"images of the run's split are missing under {', '.join(roots)} ("
                        + ", ".join(f"{n} of {cfg['counts'][k]} {k}" for k, n in missing.items())
                        + "): the bundle's figures would not be the run's; pass --data with all of them")
    look = (tuple(cfg["input_size"]), cfg["crop"], run.color_constancy)
    y_train = np.array([cfg["classes"].index(r.dx) for r in parts["train"]])
    rep = [parts["train"][i] for i in representative_indices(y_train, n_representative)]
    return {"representative": load_arrays(rep, *look, desc="representative")[0],
            "val": load_arrays(parts["val"], *look, desc="val"),
            "test": load_arrays(parts["test"], *look, desc="test"),
            "test_lesions": np.array([r.lesion_id for r in parts["test"]])}


def convert_run(run_dir: str | Path, quantize: str, out: str | Path, data: str | list[str] | None = None,
                min_agreement: float = 0.98, max_ba_loss: float = 0.015, n_representative: int = 300,
                representative: np.ndarray | None = None, threads: int | None = None,
                command: str = "") -> dict:
    """Convert, verify and write the bundle; raises :class:`ConversionRefused` if not faithful.
    ``command`` (the convert command line) goes into the bundle's README after the run's own."""
    out = Path(os.path.abspath(out))  # "." has no name to swap a bundle in under
    check_out(out)
    run = Run.finished(run_dir)
    model = run.load_model()
    if run.interrupted_after is not None:
        print(f"warning: {run_dir} was interrupted after {run.interrupted_after} epochs, "
              "before its schedule ended; the model card says so", file=sys.stderr)
    arrays = _load_split_arrays(run, data, n_representative)
    if representative is None:
        representative = arrays["representative"]
    temperature = run.calibration["temperature"]
    x_check = np.concatenate([arrays["val"][0], arrays["test"][0]])
    y_check = np.concatenate([arrays["val"][1], arrays["test"][1]])
    float_logits = model.predict(x_check.astype(np.float32), batch_size=64, verbose=0)
    float_probs = softmax(float_logits, temperature)

    candidates = [True, False] if quantize == "int8" else [False]  # int8 logits first, then float logits
    passed, refusals = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, int8_output in enumerate(candidates):
            path = Path(tmp) / f"candidate{i}.tflite"
            path.write_bytes(convert(model, quantize, representative, int8_output))
            probe = Classifier(path, threads=threads)  # a bare load, to read the tensors' details
            meta = build_metadata(run, out.name, quantize, probe.input_detail, probe.output_detail)
            check, lite_probs = verify(Classifier(from_metadata(meta, path), threads=threads),
                                       x_check, y_check, float_probs)
            failures = check.failures(min_agreement, max_ba_loss)
            kind = "int8" if int8_output else "float"
            if failures:
                refusals.append(f"{kind} logits: " + "; ".join(failures))
                continue
            passed.append((check.top1_ties, i, path.read_bytes(), meta, check, lite_probs))
            if check.top1_ties == 0:
                break
    if not passed:
        raise ConversionRefused(f"refusing {quantize} conversion: " + " | ".join(refusals))
    _, _, model_bytes, meta, check, lite_probs = min(passed, key=lambda c: c[:2])  # fewest ties, then order
    n_val = len(arrays["val"][1])
    y_test, lesions, classes = arrays["test"][1], arrays["test_lesions"], run.config["classes"]
    lite_test = evaluate(y_test, lite_probs[n_val:], classes, lesions)
    meta["metrics"] = {
        "split": "test: lesion-disjoint split of split.csv",
        "verification": {**check.to_dict(), "on": "val + test"},
        "test": {"float": summarize(evaluate(y_test, float_probs[n_val:], classes, lesions)),
                 "tflite": summarize(lite_test)},
    }
    _write_bundle(out, run, meta, model_bytes, run.commands + ([command] if command else []),
                  (y_test, lite_probs[n_val:], lite_test["confusion_matrix"]))
    return meta


def _write_plots(stage: Path, meta: dict, y: np.ndarray, probs: np.ndarray, confusion: list) -> None:
    """The converted model's confusion matrix and reliability plot on the test split (``probs``:
    its calibrated probabilities, softmax(z / T); softmax(z) is their T-th power, renormalized)."""
    from lesionlite.convert.plots import write_plots

    raw = probs.astype(np.float64) ** meta["calibration"]["temperature"]
    write_plots(stage, y, raw / raw.sum(axis=1, keepdims=True), probs, confusion,
                [lab["code"] for lab in meta["labels"]], f"{meta['name']}, TFLite {meta['quantization']}, test split")


def _write_bundle(out: Path, run: Run, meta: dict, model_bytes: bytes, commands: list[str],
                  test: tuple[np.ndarray, np.ndarray, list]) -> None:
    """Write every bundle file into a temporary folder, then swap it into place (``test``: labels,
    calibrated probabilities and confusion matrix of the converted model on the test split)."""
    meta["created"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with staged(out) as stage:
        write_model(stage, meta, model_bytes)
        (stage / LABELS_FILE).write_text("".join(f"{lab['code']}\t{lab['name']}\n" for lab in meta["labels"]))
        (stage / "README.md").write_text("# How this bundle was made\n\n```sh\n" + "\n".join(commands) + "\n```\n")
        shutil.copyfile(run.split_file, stage / SPLIT_FILE)
        _write_plots(stage, meta, *test)


def write_model(stage: Path, meta: dict, model_bytes: bytes) -> None:
    """Into ``stage``: the model with ``meta`` embedded, then ``metadata.json`` with the final file's
    sha256 and size, and the model card made from it."""
    model_bytes = embed(model_bytes, meta)
    (stage / MODEL_FILE).write_bytes(model_bytes)
    meta["sha256"] = sha256_file(stage / MODEL_FILE)
    meta["size_bytes"] = len(model_bytes)
    (stage / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (stage / "MODEL_CARD.md").write_text(model_card(meta))


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new folder beside ``out`` to write a bundle into: swapped in as ``out`` when the block ends
    (:func:`replace_folder`), removed if it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield stage
        replace_folder(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def replace_folder(stage: Path, out: Path) -> None:
    """Swap the finished folder ``stage`` in as ``out`` (a sibling), replacing any old ``out``
    whole: a reader sees the old bundle or the new one, never a mix."""
    stage.chmod(0o755)
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old)
    else:
        stage.rename(out)

