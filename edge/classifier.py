"""The edge classifier: one interpreter, built once, fed by the shared preprocessing."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from lesionlite.edge.bundle import Bundle, check_interpreter, load_bundle
from lesionlite.edge.preprocess import Source, model_pixels, to_input
from lesionlite.edge.result import Result, make_result, probabilities
from lesionlite.edge.runtime import make_interpreter


class Classifier:
    """Load a bundle (validated against the interpreter) and classify images or frames.

    ``invoke`` is serialized with a lock, so one Classifier may be shared between threads.
    """

    def __init__(self, model: str | Path | Bundle | None = None, threads: int | None = None,
                 runtime: str = "auto", labels_file: str | None = None):
        self.bundle = model if isinstance(model, Bundle) else load_bundle(model, labels_file)
        self.interpreter, self.runtime = make_interpreter(str(self.bundle.model_path), threads, runtime)
        self.threads = threads
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        check_interpreter(self.bundle, self._input, self._output)
        self.spec = self.bundle.input
        self._lock = threading.Lock()

    def preprocess(self, source: Source, color_order: str = "RGB") -> np.ndarray:
        """Any image source to an ``(H, W, 3)`` uint8 array as the model was trained."""
        return model_pixels(source, self.spec, color_order)

    def invoke(self, rgb: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``(H, W, 3)`` image; the raw output row."""
        x = to_input(rgb, self.spec)[None]
        with self._lock:
            self.interpreter.set_tensor(self._input["index"], x)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output["index"])[0].copy()

    def probabilities(self, rgb: np.ndarray, tta: bool = False) -> np.ndarray:
        """Calibrated class probabilities; ``tta`` averages over :func:`tta_views`."""
        views = tta_views(rgb) if tta else [rgb]
        raw = np.stack([self.invoke(np.ascontiguousarray(v)) for v in views])
        return probabilities(raw, self.bundle.output, self.bundle.temperature).mean(axis=0)

    def result(self, probs: np.ndarray, top_k: int = 3) -> Result:
        return make_result(probs, self.bundle.labels, self.bundle.thresholds, top_k)

    def classify(self, source: Source, color_order: str = "RGB", top_k: int = 3, tta: bool = False) -> Result:
        """Decode/preprocess ``source`` and classify it."""
        return self.result(self.probabilities(self.preprocess(source, color_order), tta), top_k)


def tta_views(rgb: np.ndarray) -> list[np.ndarray]:
    """The orientations a dermoscopy image may take: the 8 rotations and mirror images of a
    square input (dermoscopy has no "up"), the 4 flips of a non-square one."""
    if rgb.shape[0] != rgb.shape[1]:
        return [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1]]
    turns = [np.rot90(rgb, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]
