"""Arguments and entry point of ``lesionlite train`` (training needs TensorFlow; ``--print-config`` does not)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from lesionlite.edge.errors import CommandError
from lesionlite.training.config import TrainConfig, add_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``lesionlite train``'s options: one per :class:`TrainConfig` field (see :mod:`lesionlite.training.config`)."""
    add_options(p)
    p.add_argument("--print-config", action="store_true",
                   help="print the config this command would train with (JSON) and exit")


DEFAULT_OUT = "weights/efficientnet_lite0_imagenet.npz"
DEFAULT_IMAGE = "samples/non-lesion/parrot.jpg"


def add_port_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lesionlite weights port-efficientnet-lite0``."""
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    p.add_argument("--image", action="append", dest="images",
                   help=f"photo to classify with both models (repeatable; default: {DEFAULT_IMAGE} "
                   "if present)")


def main(args: argparse.Namespace) -> int:
    """Train (0; 130 when stopped by hand), or with ``--print-config`` only print the config (0)."""
    cfg = TrainConfig.from_args(args, command="lesionlite " + shlex.join(sys.argv[1:]))
    if cfg.resume:
        others = [f for f in cfg.given() if f != "--resume"]
        if others:
            args.command_parser.error(f"--resume continues {cfg.resume} with its own options: leave out "
                                      + ", ".join(others))
    else:
        missing = [f for f, v in (("--data", cfg.data), ("--out", cfg.out)) if not v]
        if missing:
            args.command_parser.error(f"the following arguments are required: {', '.join(missing)} "
                                      "(or --resume RUN)")
    if args.print_config:
        if cfg.resume:  # the config the run recorded
            from lesionlite.convert.run import Run

            cfg = TrainConfig.from_record(Run.read(cfg.resume).config, cfg.resume)
        print(json.dumps(cfg.effective(), indent=2))
        return 0

    from lesionlite.convert.data import DataError
    from lesionlite.convert.run import Run
    from lesionlite.training.train import resume, run

    if cfg.arch != "seed-cnn" and not (cfg.weights or cfg.init):
        print("warning: no --weights: the backbone starts from random weights (expect far lower accuracy)")
    try:
        out = resume(cfg.resume, cfg.command) if cfg.resume else run(cfg)
    except DataError as exc:
        raise CommandError(f"{exc}") from None
    return 130 if Run.read(out).interrupted_after is not None else 0
