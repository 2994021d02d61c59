"""``lesionlite train``: two-phase transfer learning with lesion-grouped splits, then
calibration and the test-split report, all in one run directory."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from lesionlite.convert.data import (DataError, Record, apply_split, index_dataset, index_extra, load_arrays,
                                     read_split)
from lesionlite.convert.run import CALIBRATION, CHECKPOINT, CONFIG, HISTORY, MODEL, SPLIT, Run
from lesionlite.convert.tflite import representative_indices
from lesionlite.edge.bundle import sha256_file
from lesionlite.edge.errors import CommandError
from lesionlite.edge.io import atomic_write_text
from lesionlite.edge.labels import CLASSES
from lesionlite.edge.metrics import balanced_accuracy, softmax
from lesionlite.training import losses, models, pipeline, qat
from lesionlite.training.checkpoint import Checkpointer, load, restore
from lesionlite.training.calibrate import decision_thresholds, fit_temperature
from lesionlite.training.config import TrainConfig, recipe_differences
from lesionlite.training.report import write_report
from lesionlite.training.splits import cover, fold, make_split, write_split


class BestBalancedAccuracy(keras.callbacks.Callback):
    """Scores validation balanced accuracy each epoch and keeps the best model on disk
    (``export``, if given, makes the model to save: the plain twin of a quantization-aware one).
    Without validation data (``x`` None: a refit) every epoch is saved, so the last one is kept."""

    def __init__(self, x: np.ndarray | None, y: np.ndarray | None, path: Path,
                 export: Callable[[], keras.Model] | None = None):
        super().__init__()
        self.x, self.y, self.path, self.export = x, y, path, export
        self.best = -1.0
        self.completed = 0  # epochs of the whole run ended so far (phases continue the count)

    def _save(self) -> None:
        tmp = self.path.with_name(".tmp-" + self.path.name)
        (self.export() if self.export else self.model).save(tmp)
        os.replace(tmp, self.path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.completed = epoch + 1
        if self.x is None:
            self._save()
            print(f"\nepoch {epoch + 1}: saved {self.path.name} (a refit keeps the last epoch)")
            return
        pred = self.model.predict(self.x, batch_size=64, verbose=0).argmax(axis=1)
        ba = balanced_accuracy(self.y, pred, len(CLASSES))
        if logs is not None:
            logs["val_balanced_accuracy"] = ba
        if ba > self.best:
            self.best = ba
            self._save()
            print(f"\nepoch {epoch + 1}: val balanced accuracy {ba:.4f} (best, saved {self.path.name})")
        else:
            print(f"\nepoch {epoch + 1}: val balanced accuracy {ba:.4f} (best {self.best:.4f})")


def _init_runs(cfg: TrainConfig) -> list[Run | None]:
    """The runs of the ``--init`` models (None for one without a ``config.json`` beside it)."""
    return [Run.of_model(init) for init in cfg.init]


def _check_init(cfg: TrainConfig, earlier: list[Run | None], size: tuple[int, int]) -> None:
    """Refuse to continue a run (``earlier``: the ``--init`` models' runs) that saw its images
    at another size or colour correction (a CNN's weights load at any size), or that was trained on
    validation unless this run is a refit too."""
    ours = (list(size), cfg.color_constancy, cfg.arch)
    for init, run in zip(cfg.init, earlier):
        if run is None:
            print(f"note: no {CONFIG} beside {init}: its input size and colour constancy are not checked")
            continue
        if run.interrupted_after is not None:
            print(f"warning: --init {init} comes from a run interrupted after {run.interrupted_after} "
                  "epochs", file=sys.stderr)
        if run.saw_val and not cfg.refit:
            raise DataError(f"--init {init} was trained on val too, so val cannot choose or calibrate what "
                            "follows: continue it with --refit RUN")
        theirs = (run.config.get("input_size", list(size)), run.color_constancy, run.config.get("arch", cfg.arch))
        if ours != theirs:
            def look(v: tuple) -> str:
                return f"{v[0][0]}x{v[0][1]} px, colour constancy {v[1]}, --arch {v[2]}"
            raise DataError(f"--init {init} was trained on {look(theirs)}, this run would see {look(ours)}: "
                            "pass the same --arch, --input-size and --color-constancy")


def _history(cfg: TrainConfig, earlier: list[Run | None]) -> list[str]:
    """The commands that made this run: those of the runs it builds on (``earlier``: a refit's
    source, the ``--init`` models' runs), where known, then this one."""
    made = [c for run in earlier if run for c in run.commands]
    return list(dict.fromkeys(made + ([cfg.command] if cfg.command else [])))


def soup(paths: list[str]) -> list[np.ndarray]:
    """The mean of these models' weights: a uniform model soup (Wortsman et al., 2022). Runs
    fine-tuned from one pretrained model stay in one basin, so their mean is a model too, often
    better than any of them; integer state (random seeds) comes from the first."""
    weights = [keras.models.load_model(p, compile=False).get_weights() for p in paths]
    shapes = [[w.shape for w in ws] for ws in weights]
    if any(s != shapes[0] for s in shapes):
        raise DataError(f"--init models of different shapes cannot be averaged: {', '.join(paths)}")
    return [np.mean(ws, axis=0).astype(ws[0].dtype) if np.issubdtype(ws[0].dtype, np.floating) else ws[0]
            for ws in zip(*weights)]


def _refit_source(cfg: TrainConfig, size: tuple[int, int]) -> tuple[Path, dict, Run]:
    """For ``--refit RUN``: RUN's split file, calibration and run; the refit reuses the first two
    (it has no held-out validation of its own). Refuses a RUN that saw val, used another recipe (see
    :data:`RECIPE`) or another split than ``--split``."""
    try:
        source = Run.finished(cfg.refit)
    except DataError as exc:
        raise DataError(f"--refit {exc}") from None
    theirs = source.config
    if source.saw_val:
        raise DataError(f"--refit {source.path} was trained on val itself: name the run that held val out")
    if source.interrupted_after is not None:
        raise DataError(f"--refit {source.path} was interrupted, so validation never saw its schedule to the end: "
                        "refit a run that finished")
    ours = {**asdict(cfg), "input_size": list(size)}
    differ = [f"{f} {t} (this run {o})" for f, t, o in recipe_differences(theirs, ours)]
    if differ:
        raise DataError(f"--refit {source.path} used another recipe: " + ", ".join(differ))
    if cfg.split and sha256_file(Path(cfg.split)) != sha256_file(source.split_file):
        raise DataError(f"--split {cfg.split} is not the split of --refit {source.path}: leave --split out")
    return source.split_file, {**source.calibration, "fitted_by": source.path.name}, source


def _check_paths(cfg: TrainConfig) -> None:
    """Refuse, before any work, an ``--out`` that already holds files (a rerun would mix its files
    with an earlier run's), and missing weights files (:func:`_check_files`)."""
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out} already {'holds files' if out.is_dir() else 'is a file'}: "
                        "name a new run folder (or delete that one)")
    _check_files(cfg)


def _check_files(cfg: TrainConfig) -> None:
    """Refuse ``--weights`` or ``--init`` files that are not there: nothing is ever downloaded."""
    for flag, path in [("--weights", cfg.weights)] * bool(cfg.weights) + [("--init", i) for i in cfg.init]:
        if not Path(path).is_file():
            raise DataError(f"{flag} {path}: no such file (weights come from a file; nothing is downloaded)")


def run(cfg: TrainConfig) -> Path:
    """Train, keep the best checkpoint, calibrate on validation and report on test. With
    ``cfg.refit``, train on train + validation instead, keep the last epoch and reuse the
    calibration of the run named there."""
    size = cfg.size
    _check_paths(cfg)
    earlier = _init_runs(cfg)
    _check_init(cfg, earlier, size)
    split, calibration, source = (_refit_source(cfg, size) if cfg.refit
                                  else (Path(cfg.split) if cfg.split else None, None, None))
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _train(cfg, out, size, earlier, split, calibration, source)
    except BaseException:
        if not (out / MODEL).exists():  # stopped before anything worth keeping: free the name
            for path in [out] if created else list(out.iterdir()):  # a folder made for the run, or its files
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def resume(run_dir: str | Path, command: str = "") -> Path:
    """Continue the run in ``run_dir`` with its own config from its last checkpoint (from its start
    if it stopped before its first epoch ended: its data, split and config are kept), then calibrate
    and report as :func:`run` does. A run interrupted by Ctrl-C is continued too; one that finished
    its schedule is refused. Nothing in ``run_dir`` is removed if this sitting fails too."""
    out = Path(run_dir)
    record = Run.read(out)
    if (out / CALIBRATION).is_file() and record.interrupted_after is None:
        raise DataError(f"--resume {out}: the run finished its schedule, nothing is left to train (convert it, "
                        "or continue its model in a new run with --init)")
    cfg = TrainConfig.from_record(record.config, str(out))
    size = cfg.size
    checkpoint = load(out / CHECKPOINT) if (out / CHECKPOINT).is_file() else None
    if checkpoint is None:  # starting over: the --init models are needed again
        _check_files(cfg)
    calibration, source = None, None
    if cfg.refit:  # its calibration comes from the run it refits, as when it started
        _, calibration, source = _refit_source(replace(cfg, split=None), size)
    epoch = checkpoint[0].epoch if checkpoint else 0
    config = dict(record.config)
    config.pop("interrupted_after_epochs", None)
    config["resumed"] = config.get("resumed", []) + [{"at_epoch": epoch, "command": command}]
    keras.utils.set_random_seed(cfg.seed + epoch)  # another draw of shuffles and augmentation per sitting
    print(f"resuming {out} after {epoch} epochs" + (" (no checkpoint yet: from the start)" if not checkpoint else ""))
    return _train(cfg, out, size, [], out / SPLIT, calibration, source, (config, checkpoint))


def _start_sitting(out: Path, config: dict, epoch: int, checkpoint: bool) -> None:
    """Once a resumed run's data and model are ready: record the sitting, and undo what the run's
    end would otherwise seem to have done (a Ctrl-C's calibration and report, its mark, history rows
    and a best model of epochs the checkpoint does not hold), so the run is finished again only when
    this sitting finishes it. Until here a failed resume leaves the run as it was."""
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2))
    (out / CALIBRATION).unlink(missing_ok=True)
    shutil.rmtree(out / "report", ignore_errors=True)
    _keep_history(out / HISTORY, epoch)
    if not checkpoint:
        (out / MODEL).unlink(missing_ok=True)


def _keep_history(path: Path, epochs: int) -> None:
    """Cut ``history.csv`` to its header and first ``epochs`` rows (a kill can fall between the
    logger's row and the checkpoint of its epoch)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if epochs == 0:
        path.unlink()
    elif len(lines) > epochs + 1:
        atomic_write_text(path, "".join(lines[:epochs + 1]))


class EpochSeconds(keras.callbacks.Callback):
    """Puts each epoch's wall time, training and validation scoring, in its history row (``seconds``):
    what a long run's remaining time is estimated from."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.time()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["seconds"] = round(time.time() - self.start, 1)


class Patience(keras.callbacks.EarlyStopping):
    """Early stopping whose count can continue where a resumed phase's stopped (``carry``)."""

    carry: dict | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.carry:
            self.wait, self.best = self.carry["wait"], self.carry["best"]
            self.carry = None


def _read_data(cfg: TrainConfig, split: Path | None) -> tuple[list[Record], dict[str, str], Path]:
    """Every image the run may use (HAM10000 under the ``--data`` roots, then the ``--extra-train``
    folders') and its split: HAM10000 images by the split file (its lesions' other images on their
    side) or a new lesion-grouped split (with ``--fold``, its train and validation dealt into folds),
    extra images in train. Also the metadata file."""
    index = index_dataset(cfg.data, cfg.metadata)
    print(index.summary())
    assignment = (cover(index.records, read_split(split), cfg.unnamed_lesions) if split
                  else make_split(index.records, seed=cfg.seed))
    if cfg.fold:
        assignment = fold(index.records, assignment, cfg.fold)
    ham_ids = {r.image_id for r in index.records} | set(index.rows_without_image)
    records = list(index.records)
    for folder in cfg.extra_train:
        extra = index_extra(folder, ham_ids)
        print(extra.summary())
        fresh = [r for r in extra.records if r.image_id not in assignment]
        if len(fresh) < len(extra.records):
            print(f"{len(extra.records) - len(fresh)} images of {folder} are already in the data: the first taken")
        records += fresh
        assignment |= {r.image_id: "train" for r in fresh}
    return records, assignment, index.metadata


def source_counts(parts: dict[str, list[Record]]) -> dict[str, dict[str, dict[str, int]]]:
    """Images per source, split and class: what the model card says the model saw."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for split, records in parts.items():
        for r in records:
            per_class = out.setdefault(r.source, {}).setdefault(split, dict.fromkeys(CLASSES, 0))
            per_class[r.dx] += 1
    return out


def _train(cfg: TrainConfig, out: Path, size: tuple[int, int], earlier: list[Run | None], split: Path | None,
           calibration: dict | None, source: Run | None,
           resumed: tuple[dict, tuple | None] | None = None) -> Path:
    """The body of :func:`run`, in the empty folder ``out``, or of :func:`resume` (``resumed``: the
    run's config and its checkpoint, if any), in the run's folder."""
    state, saved_weights, saved_optimizer = (resumed[1] if resumed and resumed[1] else (None, None, None))
    started = time.time() - (state.seconds if state else 0.0)
    records, assignment, metadata = _read_data(cfg, split)
    if resumed:
        config = resumed[0]
        split_sha = sha256_file(out / SPLIT)
    else:
        split_sha = write_split(out / SPLIT, records, assignment)
    parts = apply_split(records, assignment)
    print("split: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items())
          + (f" (train: {sum(not r.lesion_id for r in parts['train'])} of them without lesion ids)"
             if cfg.extra_train else ""))
    counts = {k: len(v) for k, v in parts.items()}
    if resumed and (counts != config["counts"] or split_sha != config["split_sha256"]):
        raise DataError(f"the data under {', '.join(cfg.data + cfg.extra_train)} no longer gives the run's split "
                        f"({config['counts']}, now {counts}): the run cannot continue on other images")
    sources = source_counts(parts)
    trained_on = ["train", "val"] if cfg.refit else ["train"]
    if cfg.refit:  # nothing is held out to select epochs on: every phase runs to its end
        parts = {"train": parts["train"] + parts["val"], "val": [], "test": parts["test"]}
        print(f"refit: training on train + val ({len(parts['train'])} images)")

    try:  # a checkpoint holds every weight: the ImageNet or --init ones are only needed to start
        built = models.build(cfg.arch, size, len(CLASSES), None if cfg.init or state else cfg.weights, cfg.alpha)
    except (ValueError, OSError) as exc:  # too small an input, or weights of another architecture or format
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        weights = f" with --weights {cfg.weights}" if cfg.weights and not cfg.init else ""
        raise DataError(f"cannot build --arch {cfg.arch} at {size[0]}x{size[1]} px{weights}: {reason}") from None
    if cfg.init and not state:  # continue from trained models of the same architecture (their mean if several)
        try:
            built.model.set_weights(soup(cfg.init))
        except DataError:
            raise
        except ValueError as exc:
            raise DataError(f"--init does not fit --arch {cfg.arch} at {size[0]}x{size[1]} px: {exc}") from None
    if not resumed:
        config = {**asdict(cfg), "commands": _history(cfg, ([source] if source else []) + earlier),
                  "input_size": list(size), "crop": built.crop, "classes": list(CLASSES),
                  "data": [str(Path(d).resolve()) for d in cfg.data],
                  "extra_train": [str(Path(d).resolve()) for d in cfg.extra_train],
                  "metadata": str(metadata.resolve()), "split_sha256": split_sha,
                  "counts": counts, "sources": sources, "trained_on": trained_on}
        atomic_write_text(out / CONFIG, json.dumps(config, indent=2))

    arrays = {k: load_arrays(v, size, built.crop, cfg.color_constancy, cfg.workers, desc=k)
              for k, v in parts.items()}
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = arrays["train"], arrays["val"], arrays["test"]
    weights = (pipeline.balanced_sample_weights(y_tr, len(CLASSES), cfg.class_weight_power)
               if cfg.imbalance == "class-weight" else None)
    seed = cfg.seed + (state.epoch if state else 0)
    train_ds = pipeline.dataset(x_tr, y_tr, cfg.batch, len(CLASSES), True, cfg.label_smoothing,
                                weights, seed, cfg.mixup, cfg.augmentation, cfg.aspect_jitter)
    loss = (losses.LogitAdjustedCrossEntropy.for_labels(y_tr, len(CLASSES))
            if cfg.imbalance == "logit-adjust" else keras.losses.CategoricalCrossentropy(from_logits=True))

    best_path = out / MODEL
    held_out = (None, None) if cfg.refit else (x_va, y_va)
    scorer = BestBalancedAccuracy(*held_out, best_path)
    logger = keras.callbacks.CSVLogger(str(out / HISTORY), append=True)  # the phases append to one history
    patience = None if cfg.refit else Patience("val_balanced_accuracy", mode="max", patience=cfg.patience)
    checkpointer = Checkpointer(out / CHECKPOINT, time.time() - started, seed, time.time())
    steps = pipeline.steps(len(x_tr), cfg.batch)
    phases = [("head" if built.backbone else "all", cfg.epochs, cfg.lr, None)]
    if built.backbone is not None:
        phases.append(("fine-tune", cfg.fine_tune_epochs, cfg.fine_tune_lr, cfg.fine_tune_fraction))
    phases.append(("quantization-aware", cfg.qat_epochs, cfg.qat_lr, 1.0))
    epoch = state.epoch if state else 0
    if resumed:
        _start_sitting(out, config, epoch, state is not None)
    try:
        for i, (name, epochs, lr, fraction) in enumerate(phases):
            if epochs <= 0 or (state and i < state.phase):
                continue
            if built.backbone is not None:
                if fraction is None:
                    built.backbone.trainable = False
                else:
                    batchnorm = cfg.train_batchnorm and name == "fine-tune"  # QAT keeps BN folded
                    n = models.unfreeze_top(built.backbone, fraction, batchnorm)
                    print(f"training the top {n} backbone layers at lr {lr}"
                          + (" (BatchNorm too)" if batchnorm else ""))
            model = built.model
            if name == "quantization-aware":  # from here on, checkpoints are scored with int8 rounding
                model, points = qat.fake_quant_clone(built.model)
                qat.calibrate(model, points, x_tr[representative_indices(y_tr)])
                scorer = BestBalancedAccuracy(*held_out, best_path, lambda: qat.baked_copy(built.model))
                print(f"simulating int8 rounding at {len(points)} tensors")
            # one epoch of linear warm-up, so Adam's first steps do not jolt pretrained weights
            warmup = steps if epochs > 1 else 0
            schedule = keras.optimizers.schedules.CosineDecay(
                lr / 10 if warmup else lr, epochs * steps - warmup, alpha=0.05,
                warmup_target=lr if warmup else None, warmup_steps=warmup)
            model.compile(keras.optimizers.Adam(schedule, use_ema=cfg.ema > 0, ema_momentum=cfg.ema),
                          loss, weighted_metrics=["accuracy"])
            first = epoch
            if state and i == state.phase:  # the phase the checkpoint was written in
                restore(model, saved_weights, saved_optimizer, out / CHECKPOINT)
                scorer.best, scorer.completed, first = state.best, epoch, epoch - state.phase_epochs
                if state.phase_over:  # it ended before the run stopped: end it as fit does (the average in)
                    model.optimizer.finalize_variable_values(model.trainable_weights)
                    continue
                if patience:
                    patience.carry = state.patience
                print(f"phase {name}: continuing at its epoch {state.phase_epochs + 1} of {epochs} "
                      f"(optimizer step {int(model.optimizer.iterations.numpy())})")
            else:
                print(f"phase {name}: {epochs} epochs, lr {lr}")
            # with --ema, epochs are scored and saved with the weights' moving average
            swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema else []
            capture, write = checkpointer.callbacks(i, name, first, epochs, scorer, patience)
            hist = model.fit(train_ds, epochs=first + epochs, initial_epoch=epoch,
                             callbacks=[capture, *swap, scorer, EpochSeconds(), logger,
                                        *([patience] if patience else []), write],
                             verbose=1 if sys.stdout.isatty() else 2)
            epoch += len(hist.epoch)
    except KeyboardInterrupt:
        if not best_path.exists():
            raise  # nothing to keep: lesionlite says "interrupted" and exits 130
        kept = "the last epoch so far: the schedule did not finish" if cfg.refit else "the best checkpoint so far"
        epoch = max(epoch, scorer.completed)
        print(f"\ninterrupted after {epoch} epochs: keeping {kept} ({best_path}); it is calibrated and "
              "reported, and the run is marked interrupted (lesionlite train --resume "
              f"{out} continues it from its last checkpoint)")
        config["interrupted_after_epochs"] = epoch
        atomic_write_text(out / CONFIG, json.dumps(config, indent=2))
    if not best_path.exists():
        raise CommandError("no checkpoint was saved: training stopped before the first epoch ended")
    train_seconds = time.time() - started
    best_model = keras.models.load_model(best_path, compile=False)
    finish(out, cfg, best_model, (x_va, y_va), (x_te, y_te), train_seconds,
           [r.lesion_id for r in parts["test"]], calibration)
    if "interrupted_after_epochs" not in config:  # finished: nothing left to resume
        (out / CHECKPOINT).unlink(missing_ok=True)
    return out


def finish(out: Path, cfg: TrainConfig, model: keras.Model, val: tuple, test: tuple,
           train_seconds: float, test_lesions: list[str], calibration: dict | None = None) -> Path:
    """Calibrate on validation (unless ``calibration`` is given), write ``calibration.json``
    and the test report."""
    if calibration is None:
        val_logits = model.predict(val[0], batch_size=64, verbose=0)
        temperature = fit_temperature(val_logits, val[1])
        thresholds = decision_thresholds(softmax(val_logits, temperature), val[1], list(CLASSES),
                                         cfg.refer_sensitivity, cfg.confidence_floor)
        calibration = {"temperature": temperature, "thresholds": thresholds}
    temperature = calibration["temperature"]
    atomic_write_text(out / CALIBRATION, json.dumps(calibration, indent=2))
    test_logits = model.predict(test[0], batch_size=64, verbose=0)
    extra = {"run": str(out), "arch": cfg.arch, "split": "test (lesion-disjoint, split.csv)",
             "train_wall_time_s": round(train_seconds, 1), "temperature": round(temperature, 4),
             "float_model": "Keras"}
    metrics = write_report(out / "report", test[1], softmax(test_logits), softmax(test_logits, temperature),
                           list(CLASSES), f"{cfg.arch} on the test split", extra, test_lesions)
    print(f"test balanced accuracy {metrics['balanced_accuracy']:.4f}, accuracy {metrics['accuracy']:.4f}, "
          f"temperature {temperature:.3f}; report in {out / 'report'}")
    return out
