"""``lesionlite camera``: point-and-shoot live classification. The model options (``--model``,
``--threads``, ``--runtime``, ``--labels``) come from the shared parent parser in :mod:`lesionlite.cli`."""
from __future__ import annotations

import argparse
import functools
import sys

from lesionlite.edge.args import folder_path, in_range, positive
from lesionlite.edge.camera.controls import ControlError, Controls
from lesionlite.edge.camera.display import DISPLAYS, DisplayError, make_display
from lesionlite.edge.camera.loop import Grabber, LiveLoop, prepare
from lesionlite.edge.camera.shots import ShotStore
from lesionlite.edge.camera.sources import SourceError, open_source
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.labels import DISCLAIMER


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="auto", metavar="SOURCE",
                   help="auto (picamera2, else OpenCV camera 0), picamera2, opencv:INDEX, "
                        "or replay:PATH (a video file or a folder of images, looped) [auto]")
    p.add_argument("--display", choices=DISPLAYS, default="auto",
                   help="overlay on the Pi camera preview, an OpenCV window, or headless "
                        "(annotated frames to disk + status line) [auto]")
    p.add_argument("--save-dir", type=folder_path, default="captures",
                   help="where shots (JPEG + JSON) are saved [captures]")
    p.add_argument("--frames-dir", type=folder_path, default=None,
                   help="headless: where annotated frames go [SAVE_DIR/.frames, hidden so that "
                        "`lesionlite classify SAVE_DIR` sees only the shots]")
    p.add_argument("--frame-every", type=in_range(int, 0, 1_000_000), default=10, metavar="N",
                   help="headless: write every Nth annotated frame; 0 writes none [10]")
    p.add_argument("--frames", type=positive(int), default=None, metavar="N", help="stop after N frames")
    p.add_argument("--auto-shoot", type=in_range(float, 0.01, 86400, " seconds"), default=None, metavar="SECONDS",
                   help="take a shot every SECONDS (0.01 to 86400)")
    p.add_argument("--tta", action="store_true",
                   help="shots average the 8 rotations and mirror images (8x slower)")
    p.add_argument("--fps", type=in_range(float, 0.1, 1000, " frames per second"), default=10.0,
                   help="replay: frames per second, 0.1 to 1000 [10]")
    p.add_argument("--gpio-pin", type=int, default=None, metavar="PIN",
                   help="a shutter button between this GPIO pin (BCM) and ground (needs gpiozero)")


def main(args: argparse.Namespace) -> int:
    """Run the camera; returns 0, 1 when the camera gave up mid-run, or 2 with a one-line message
    when something it needs is unavailable (a refused model is reported by ``lesionlite`` itself)."""
    classifier = Classifier(args.model, args.threads, args.runtime, args.labels_file)
    frames_dir = args.frames_dir or args.save_dir / ".frames"
    try:
        with open_source(args.source, args.fps, preview=args.display in ("auto", "overlay")) as source, \
                make_display(args.display, source, frames_dir, args.frame_every) as display, \
                Controls(args.gpio_pin, args.auto_shoot) as controls:
            store = ShotStore(args.save_dir, source.name, classifier, args.tta)
            print(DISCLAIMER, file=sys.stderr)
            with Grabber(source, functools.partial(prepare, classifier)) as grabber:
                return LiveLoop(classifier, grabber, display, controls, store, args.frames, args.tta).run()
    except (SourceError, DisplayError, ControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

