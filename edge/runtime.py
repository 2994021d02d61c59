"""Pick a LiteRT interpreter: ai-edge-litert, else tflite-runtime, else TensorFlow's tf.lite."""
from __future__ import annotations

import importlib
from typing import Any

RUNTIMES: dict[str, tuple[str, str]] = {
    # name: (module holding Interpreter, pip package)
    "ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow"),
}


class RuntimeUnavailable(RuntimeError):
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


def make_interpreter(model_path: str, threads: int | None = None, runtime: str = "auto") -> tuple[Any, str]:
    """Build and allocate an interpreter for ``model_path``; returns it and the runtime's name."""
    cls, name = interpreter_class(runtime)
    try:
        interp = cls(model_path=str(model_path), num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeUnavailable(f"{name} cannot load {model_path}: {first}") from None
    return interp, name
