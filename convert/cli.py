"""Arguments and entry point of ``lesionlite convert`` (needs TensorFlow)."""
from __future__ import annotations

import argparse
import shlex
import sys

from lesionlite.convert.tflite import QUANTIZATIONS
from lesionlite.edge.errors import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a finished `lesionlite train` run directory")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="int8")
    p.add_argument("--out", required=True, help="bundle directory to write, e.g. models/my-model")
    p.add_argument("--data", action="append", metavar="DIR",
                   help="HAM10000 image folder(s), if not where the run was trained (repeat for each)")
    p.add_argument("--min-agreement", type=float, default=0.98,
                   help="refuse below this top-1 agreement with the Keras model (default 0.98)")
    p.add_argument("--max-ba-loss", type=float, default=0.015,
                   help="refuse if balanced accuracy drops more than this (default 0.015 = 1.5 points)")
    p.add_argument("--representative", type=int, default=300, help="images for int8 calibration")
    g = p.add_argument_group("scope gate (see lesionlite scope --help); without --negatives the bundle has none")
    g.add_argument("--negatives", metavar="DIR", help="images that are not dermoscopy, to fit the scope gate on")
    g.add_argument("--dermoscopy", action="append", default=[], metavar="DIR",
                   help="more dermoscopy without lesion ids for the gate, e.g. ISIC archive images (repeatable)")


def main(args: argparse.Namespace) -> int:
    from lesionlite.convert.bundle import ConversionRefused, convert_run
    from lesionlite.convert.data import DataError, data_roots

    try:
        meta = convert_run(args.run, args.quantize, args.out, args.data, args.min_agreement,
                           args.max_ba_loss, args.representative,
                           command="lesionlite " + shlex.join(sys.argv[1:]))
    except (ConversionRefused, DataError, FileNotFoundError) as exc:
        raise CommandError(f"{exc}") from None
    if args.negatives:
        from lesionlite.convert.scope import add_gate

        try:
            data = args.data or data_roots(meta["training"]["data"])
            print(add_gate(args.out, data, meta["training"].get("metadata"), args.dermoscopy, args.negatives))
        except (DataError, ValueError) as exc:
            raise CommandError(f"{args.out} was written without a scope gate: {exc}") from None
    else:
        print(f"warning: no --negatives: {args.out} has no scope gate and will label any image, dermoscopic "
              "or not (add one later with lesionlite scope)", file=sys.stderr)
    v, t = meta["metrics"]["verification"], meta["metrics"]["test"]["tflite"]
    print(f"wrote {args.out}: {meta['size_bytes'] / 1e6:.2f} MB {meta['quantization']} "
          f"({meta['output']['dtype']} logits out); agreement with Keras {v['agreement']:.2%}, "
          f"balanced accuracy {v['balanced_accuracy_tflite']:.4f} (Keras {v['balanced_accuracy_float']:.4f}) "
          f"on val+test; test balanced accuracy {t['balanced_accuracy']:.4f}")
    return 0
