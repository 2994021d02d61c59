"""Pick a LiteRT interpreter: ai-edge-litert, else tflite-runtime, else TensorFlow's tf.lite."""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from typing import Any, Iterator

from lesionlite.edge.errors import LesionliteError

RUNTIMES: dict[str, tuple[str, str]] = {
    # name: (module holding Interpreter, pip package)
    "ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow"),
}


class RuntimeUnavailable(LesionliteError, RuntimeError):
    """No usable interpreter (or not the one asked for)."""


def interpreter_class(runtime: str = "auto") -> tuple[type, str]:
    """The ``Interpreter`` class of the first importable runtime (or of ``runtime``) and its name."""
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    if runtime != "auto" and runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    for name in names:
        module, _ = RUNTIMES[name]
        try:
            return importlib.import_module(module).Interpreter, name
        except ImportError:
            continue
    wanted = RUNTIMES[names[0]][1]
    raise RuntimeUnavailable(f"no LiteRT interpreter found ({'/'.join(names)}): pip install {wanted}")


@contextlib.contextmanager
def _native_log_filtered() -> Iterator[None]:
    """Hold back the native runtime's ``INFO:`` lines (e.g. "Created TensorFlow Lite XNNPACK
    delegate") written to file descriptor 2; anything else is passed on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            kept = [line for line in log.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("INFO:")]
            sys.stderr.write("".join(kept))


def make_interpreter(model_path: str, threads: int | None = None, runtime: str = "auto") -> tuple[Any, str]:
    """Build and allocate an interpreter for ``model_path``; returns it and the runtime's name."""
    cls, name = interpreter_class(runtime)
    try:
        with _native_log_filtered():
            interp = cls(model_path=str(model_path), num_threads=threads)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeUnavailable(f"{name} cannot load {model_path}: {first}") from None
    return interp, name
