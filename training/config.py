"""The training recipe in one place: :class:`TrainConfig`'s fields carry their defaults, help texts
and flags, ``lesionlite train``'s options are generated from them (:func:`add_options`), and a refit
compares the fields marked ``recipe`` (:data:`RECIPE`), falling back on these same defaults for fields
an older run did not record. Imports no TensorFlow, so the CLI can list the options without it."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

from lesionlite.edge.args import positive
from lesionlite.edge.preprocess import COLOR_CONSTANCY
from lesionlite.training.archs import ARCHS, AUGMENTATIONS, DEFAULT_SIZE


def option(default: Any = MISSING, *, help: str | None = None, recipe: bool = False, flag: str | None = None,
           **argparse_keywords: Any) -> Any:
    """A field that is also a command-line option. ``help`` and ``argparse_keywords`` (``choices``,
    ``type``, ``nargs``, ``metavar``, ``action``) go to ``add_argument``; ``flag`` replaces the
    ``--field-name`` spelling; a ``recipe`` field must match the run that a refit takes its calibration
    from. A field without a default is a required option; a list default is copied for each config."""
    meta = {"help": help, "recipe": recipe, "flag": flag, "argparse": argparse_keywords}
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata=meta)
    return field(default=default, metadata=meta)


def fold_spec(text: str) -> str:
    """``--fold I/K``: fold I (counted from 1) of K, at least 2."""
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        i = k = 0
    if not (k >= 2 and 1 <= i <= k):
        raise argparse.ArgumentTypeError(f"expected I/K with K >= 2 and I from 1 to K, like 2/5, got {text!r}")
    return f"{i}/{k}"


class _Size(argparse.Action):
    """``--input-size``: one number (a square's side) or two (height, width), kept as (height, width)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: list[int],
                 option_string: str | None = None) -> None:
        if len(values) > 2:
            raise argparse.ArgumentError(self, f"takes one or two numbers, got {len(values)}")
        setattr(namespace, self.dest, (values[0], values[-1]))


@dataclass(kw_only=True)
class TrainConfig:
    """What ``lesionlite train`` does, in the order ``--help`` lists it."""

    data: list[str] = option(
        [], action="append", metavar="DIR",
        help="folder holding HAM10000 images of any size (searched recursively); repeat for more folders, e.g. "
        "the download and ham10000-more; required unless --resume")
    metadata: str | None = option(None, help="HAM10000_metadata.csv (default: the one in the first --data)")
    arch: str = option("mobilenetv2", recipe=True, choices=ARCHS)
    input_size: tuple[int, int] | None = option(
        None, recipe=True, type=positive(int), nargs="+", metavar="PX", action=_Size,
        help="square side, or HEIGHT WIDTH (default: the architecture's)")
    alpha: float = option(0.5, recipe=True, choices=(0.35, 0.5), help="MobileNetV2 width")
    weights: str | None = option(None, help="ImageNet weights file for the backbone (no download happens)")
    split: str | None = option(None, help="reuse this split.csv instead of making a new one")
    unnamed_lesions: str = option(
        "leave-out", choices=("leave-out", "train"),
        help="with --split: where the images of lesions the split file does not name go (train: to training, "
        "as they are in no validation or test split)")
    fold: str | None = option(
        None, metavar="I/K", type=fold_spec,
        help="validate on fold I of K: the split's train and validation lesions are dealt into K folds, stratified "
        "by diagnosis (the same folds for every recipe and seed), fold I validates and the others train; test is "
        "untouched. One run per fold, then lesionlite folds RUN... gives the mean and the spread")
    extra_train: list[str] = option(
        [], action="append", metavar="DIR",
        help="dermoscopy without lesion ids, for training only (never validation or test): a folder with "
        "labels.csv (image_id,dx) and the images, e.g. the ISIC archive; repeatable")
    epochs: int = option(8, recipe=True, help="epochs with the backbone frozen (or all, seed-cnn)")
    fine_tune_epochs: int = option(20, recipe=True)
    fine_tune_fraction: float = option(0.4, recipe=True, help="top share of backbone layers to unfreeze")
    batch: int = option(32, recipe=True, type=positive(int))
    lr: float = option(1e-3, recipe=True)
    fine_tune_lr: float = option(1e-4, recipe=True)
    imbalance: str = option(
        "class-weight", recipe=True, choices=("class-weight", "logit-adjust", "none"),
        help="class-weight: rare classes weigh more; logit-adjust: the loss offsets logits by the log class "
        "frequencies instead")
    class_weight_power: float = option(1.0, recipe=True,
                                       help="1 weighs every class equally, 0.5 softens the weights")
    label_smoothing: float = option(0.0, recipe=True,
                                    help="0 by default: 0.1 lowered validation balanced accuracy (models/README.md)")
    init: list[str] = option(
        [], metavar="MODEL.keras", nargs="+",
        help="start from this trained model (same --arch and --input-size) instead of --weights; from several, "
        "start from the mean of their weights (a model soup: runs of one recipe)")
    qat_epochs: int = option(0, recipe=True,
                             help="final epochs of quantization-aware training (int8 rounding simulated)")
    qat_lr: float = option(1e-5, recipe=True)
    ema: float = option(0.0, recipe=True, metavar="MOMENTUM",
                        help="score and keep the moving average of the weights (e.g. 0.995; 0 = off)")
    mixup: float = option(0.0, recipe=True, metavar="ALPHA",
                          help="blend training examples in pairs, Beta(ALPHA, ALPHA) (e.g. 0.2; 0 = off)")
    augmentation: str = option(
        "mild", recipe=True, flag="--augment", choices=AUGMENTATIONS,
        help="mild: flips, quarter turns, slight zoom and colour jitter; robust adds any angle, zoom out, "
        "exposure, defocus and JPEG compression (another camera or dermatoscope)")
    aspect_jitter: float = option(
        0.0, recipe=True, metavar="FRACTION",
        help="stretch each training image along one axis by up to 1 + FRACTION, either way (e.g. 0.34 spans "
        "4:3 squashed to 1:1), so images resized without keeping their aspect ratio teach what true-aspect "
        "ones do (0 = off)")
    color_constancy: str = option(
        "none", recipe=True, choices=tuple(COLOR_CONSTANCY),
        help="colour correction of every input, here and on the device (shades_of_gray: divide out the "
        "light's colour)")
    train_batchnorm: bool = option(False, recipe=True,
                                   help="let BatchNorm statistics and scales adapt while fine-tuning")
    patience: int = option(6, help="early stopping patience (epochs)")
    refit: str | None = option(
        None, metavar="RUN",
        help="train this recipe on train + validation of RUN's split, every phase to its end, keeping the last "
        "epoch and RUN's calibration (RUN: the run of the same recipe, float or quantization-aware, trained on "
        "train alone, whose validation chose it)")
    refer_sensitivity: float = option(0.85, recipe=True,
                                      help="validation sensitivity the referral thresholds are set for")
    confidence_floor: float = option(0.5, recipe=True)
    seed: int = option(42)
    out: str | None = option(None, help="run directory (a new or empty folder); required unless --resume")
    resume: str | None = option(
        None, metavar="RUN",
        help="continue RUN, stopped by Ctrl-C, a kill or a session that ended, from its last checkpoint (the end of "
        "its last whole epoch: weights, optimizer state, phase, history) with RUN's own options; give no other")
    workers: int = 4  # image-decoding threads; not an option
    command: str = ""  # the command line that made this config, for the run's record

    @property
    def size(self) -> tuple[int, int]:
        """The input size, ``--input-size`` or the architecture's default."""
        return tuple(self.input_size or DEFAULT_SIZE[self.arch])

    def effective(self) -> dict:
        """The config as ``--print-config`` shows it: every field, the input size resolved, no command."""
        return {**{k: v for k, v in asdict(self).items() if k != "command"}, "input_size": list(self.size)}

    @classmethod
    def from_record(cls, record: dict, out: str) -> "TrainConfig":
        """The config a run's ``config.json`` recorded, to continue it in ``out`` (fields the record
        lacks keep their defaults; the input size is the resolved one it trained at)."""
        values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
        values["input_size"] = tuple(record["input_size"]) if record.get("input_size") else None
        if isinstance(values.get("data"), str):  # runs from before several roots
            values["data"] = [values["data"]]
        return cls(**{**values, "out": out, "resume": None})

    def given(self) -> list[str]:
        """The flags of the options this config sets to other than their defaults."""
        return [flag(f.name) for f in _options() if getattr(self, f.name) != default(f)]

    @classmethod
    def from_args(cls, args: argparse.Namespace, command: str = "") -> "TrainConfig":
        """The config of parsed options (:func:`add_options`); fields that are not options keep their defaults."""
        return cls(**{f.name: getattr(args, f.name) for f in _options()}, command=command)


def _options() -> list[Field]:
    return [f for f in fields(TrainConfig) if "argparse" in f.metadata]


def default(f: Field) -> Any:
    """A field's default (MISSING for a required one)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def flag(name: str) -> str:
    """The command-line spelling of field ``name``."""
    meta = next(f.metadata for f in fields(TrainConfig) if f.name == name)
    return meta.get("flag") or "--" + name.replace("_", "-")


RECIPE = tuple(f.name for f in fields(TrainConfig) if f.metadata.get("recipe"))
"""What a refit shares with the run whose calibration it reuses."""

RECIPE_DEFAULTS = {f.name: default(f) for f in fields(TrainConfig) if f.name in RECIPE}
"""What a run that predates a recipe field did, for comparing it with a refit."""


def recipe_differences(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """``(flag, a's value, b's value)`` for each recipe field two run configs disagree on; a field an
    older run's config lacks counts as its default (:data:`RECIPE_DEFAULTS`)."""
    return [(flag(k), a.get(k, RECIPE_DEFAULTS[k]), b.get(k, RECIPE_DEFAULTS[k])) for k in RECIPE
            if a.get(k, RECIPE_DEFAULTS[k]) != b.get(k, RECIPE_DEFAULTS[k])]


def add_options(p: argparse.ArgumentParser) -> None:
    """One option per field: the field's default, its metadata, and a type taken from the default
    (a bool is a switch) unless the metadata names one."""
    for f in _options():
        keywords = {"help": f.metadata["help"], **f.metadata["argparse"]}
        value = default(f)
        if value is MISSING:
            keywords["required"] = True
        elif isinstance(value, bool):
            keywords.setdefault("action", "store_true")
        else:
            keywords["default"] = value
            if isinstance(value, (int, float)):
                keywords.setdefault("type", type(value))
        p.add_argument(flag(f.name), dest=f.name, **keywords)
