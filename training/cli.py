"""Arguments and entry point of ``lesionlite train`` (needs TensorFlow)."""
from __future__ import annotations

import argparse
import shlex
import sys

from lesionlite.edge.args import positive
from lesionlite.edge.preprocess import COLOR_CONSTANCY
from lesionlite.training.archs import ARCHS, AUGMENTATIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder holding HAM10000 images (searched recursively)")
    p.add_argument("--metadata", help="HAM10000_metadata.csv (default: the one in --data)")
    p.add_argument("--arch", choices=ARCHS, default="mobilenetv2")
    p.add_argument("--input-size", type=positive(int), nargs="+", metavar="PX",
                   help="square side, or HEIGHT WIDTH (default: the architecture's)")
    p.add_argument("--alpha", type=float, default=0.5, choices=(0.35, 0.5), help="MobileNetV2 width")
    p.add_argument("--weights", help="ImageNet weights file for the backbone (no download happens)")
    p.add_argument("--split", help="reuse this split.csv instead of making a new one")
    p.add_argument("--epochs", type=int, default=8, help="epochs with the backbone frozen (or all, seed-cnn)")
    p.add_argument("--fine-tune-epochs", type=int, default=20)
    p.add_argument("--fine-tune-fraction", type=float, default=0.4, help="top share of backbone layers to unfreeze")
    p.add_argument("--batch", type=positive(int), default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fine-tune-lr", type=float, default=1e-4)
    p.add_argument("--imbalance", choices=("class-weight", "logit-adjust", "none"), default="class-weight",
                   help="class-weight: rare classes weigh more; logit-adjust: the loss offsets logits "
                   "by the log class frequencies instead")
    p.add_argument("--class-weight-power", type=float, default=1.0,
                   help="1 weighs every class equally, 0.5 softens the weights")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="0 by default: 0.1 lowered validation balanced accuracy (models/README.md)")
    p.add_argument("--init", metavar="MODEL.keras", nargs="+", default=[],
                   help="start from this trained model (same --arch and --input-size) instead of --weights; "
                   "from several, start from the mean of their weights (a model soup: runs of one recipe)")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="final epochs of quantization-aware training (int8 rounding simulated)")
    p.add_argument("--qat-lr", type=float, default=1e-5)
    p.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="score and keep the moving average of the weights (e.g. 0.995; 0 = off)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="blend training examples in pairs, Beta(ALPHA, ALPHA) (e.g. 0.2; 0 = off)")
    p.add_argument("--augment", choices=AUGMENTATIONS, default="mild", dest="augmentation",
                   help="mild: flips, quarter turns, slight zoom and colour jitter; robust adds any angle, "
                   "zoom out, exposure, defocus and JPEG compression (another camera or dermatoscope)")
    p.add_argument("--color-constancy", choices=tuple(COLOR_CONSTANCY), default="none",
                   help="colour correction of every input, here and on the device (shades_of_gray: "
                   "divide out the light's colour)")
    p.add_argument("--train-batchnorm", action="store_true",
                   help="let BatchNorm statistics and scales adapt while fine-tuning")
    p.add_argument("--patience", type=int, default=6, help="early stopping patience (epochs)")
    p.add_argument("--refit", metavar="RUN",
                   help="train this recipe on train + validation of RUN's split, every phase to its end, "
                   "keeping the last epoch and RUN's calibration (RUN: the run of the same recipe, float or "
                   "quantization-aware, trained on train alone, whose validation chose it)")
    p.add_argument("--refer-sensitivity", type=float, default=0.85,
                   help="validation sensitivity the referral thresholds are set for")
    p.add_argument("--confidence-floor", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True, help="run directory")


DEFAULT_OUT = "weights/efficientnet_lite0_imagenet.npz"
DEFAULT_IMAGE = "samples/non-lesion/parrot.jpg"


def add_port_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lesionlite weights port-efficientnet-lite0``."""
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    p.add_argument("--image", action="append", dest="images",
                   help=f"photo to classify with both models (repeatable; default: {DEFAULT_IMAGE} "
                   "if present)")


def main(args: argparse.Namespace) -> int:
    from lesionlite.convert.data import DataError
    from lesionlite.convert.run import Run
    from lesionlite.training.train import TrainConfig, run

    size = None
    if args.input_size:
        if len(args.input_size) > 2:
            raise SystemExit("error: --input-size takes one or two numbers")
        size = (args.input_size[0], args.input_size[-1])
    if args.arch != "seed-cnn" and not (args.weights or args.init):
        print("warning: no --weights: the backbone starts from random weights (expect far lower accuracy)")
    cfg = TrainConfig(
        data=args.data, out=args.out, arch=args.arch, input_size=size, alpha=args.alpha,
        weights=args.weights, metadata=args.metadata, split=args.split, epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_fraction=args.fine_tune_fraction,
        batch=args.batch, lr=args.lr, fine_tune_lr=args.fine_tune_lr, imbalance=args.imbalance,
        class_weight_power=args.class_weight_power, label_smoothing=args.label_smoothing,
        patience=args.patience, seed=args.seed, refer_sensitivity=args.refer_sensitivity,
        confidence_floor=args.confidence_floor, init=args.init, qat_epochs=args.qat_epochs,
        qat_lr=args.qat_lr, ema=args.ema, mixup=args.mixup, augmentation=args.augmentation,
        color_constancy=args.color_constancy, train_batchnorm=args.train_batchnorm, refit=args.refit,
        command="lesionlite " + shlex.join(sys.argv[1:]))
    try:
        out = run(cfg)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    return 130 if Run.read(out).interrupted_after is not None else 0
