"""The edge classifier: one interpreter, built once, fed by the shared preprocessing."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lesionlite.edge.bundle import Bundle, OutputSpec, check_interpreter, load_bundle
from lesionlite.edge.preprocess import Source, model_pixels, to_input
from lesionlite.edge.result import Prediction, Result, dequantize, make_result, probabilities
from lesionlite.edge.runtime import make_interpreter


class Classifier:
    """Load a bundle (validated against the interpreter) and classify images or frames.

    The model's first output holds the class logits; a bundle with a scope gate also reads its
    second output, the pooled features. ``invoke`` is serialized with a lock, so one Classifier may
    be shared between threads.
    """

    def __init__(self, model: str | Path | Bundle | None = None, threads: int | None = None,
                 runtime: str = "auto", labels_file: str | None = None):
        self.bundle = model if isinstance(model, Bundle) else load_bundle(model, labels_file)
        self.interpreter, self.runtime = make_interpreter(str(self.bundle.model_path), threads, runtime)
        self.threads = threads
        self.input_detail = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self.output_detail = outputs[0]
        self.features_detail = outputs[1] if len(outputs) > 1 else None  # the pooled features, if exposed
        check_interpreter(self.bundle, self.input_detail, self.output_detail, self.features_detail)
        self.spec = self.bundle.input
        self._features_spec = None
        if self.features_detail is not None:
            scale, zero_point = self.features_detail["quantization"]
            self._features_spec = OutputSpec("features", self.features_detail["dtype"].__name__, float(scale),
                                             int(zero_point))
        self._lock = threading.Lock()

    def preprocess(self, source: Source, color_order: str = "RGB") -> np.ndarray:
        """Any image source to an ``(H, W, 3)`` uint8 array as the model was trained."""
        return model_pixels(source, self.spec, color_order)

    def invoke(self, rgb: np.ndarray) -> np.ndarray:
        """Run the model on one preprocessed ``(H, W, 3)`` image; the raw logits row."""
        return self._run(rgb)[0]

    def _run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw logits row and the dequantized features (None for a model without them)."""
        x = to_input(rgb, self.spec)[None]
        with self._lock:
            self.interpreter.set_tensor(self.input_detail["index"], x)
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self.output_detail["index"])[0].copy()
            if self.features_detail is None:
                return raw, None
            features = self.interpreter.get_tensor(self.features_detail["index"])[0]
            return raw, dequantize(features, self._features_spec)

    def features(self, rgb: np.ndarray) -> np.ndarray:
        """The dequantized pooled features of one preprocessed image (what a scope gate reads)."""
        features = self._run(rgb)[1]
        if features is None:
            raise ValueError(f"{self.bundle.model_path.name} has no features output (see lesionlite scope)")
        return features

    def predict(self, rgb: np.ndarray, tta: bool = False) -> Prediction:
        """Calibrated class probabilities and the in-scope score; ``tta`` averages both over
        :func:`tta_views` (the score of the views' mean features)."""
        runs = [self._run(np.ascontiguousarray(v)) for v in (tta_views(rgb) if tta else [rgb])]
        probs = probabilities(np.stack([raw for raw, _ in runs]), self.bundle.output, self.bundle.temperature)
        gate = self.bundle.scope
        scope = None if gate is None or runs[0][1] is None else gate.score(np.mean([f for _, f in runs], axis=0))
        return Prediction(probs.mean(axis=0), scope)

    def probabilities(self, rgb: np.ndarray, tta: bool = False) -> np.ndarray:
        """Calibrated class probabilities; ``tta`` averages over :func:`tta_views`."""
        return self.predict(rgb, tta).probs

    def result(self, pred: Prediction, top_k: int = 3) -> Result:
        """The answer for a prediction: the decision, or ``out-of-scope`` below the scope gate."""
        return make_result(pred, self.bundle.labels, self.bundle.thresholds, top_k, self.bundle.scope)

    def classify(self, source: Source, color_order: str = "RGB", top_k: int = 3, tta: bool = False) -> Result:
        """Classify one image: a path, bytes, a file object, a Pillow image or an ``(H, W, 3)`` uint8
        array (``color_order`` says whether its channels are RGB or BGR). Raises
        :class:`~lesionlite.edge.preprocess.ImageError` for what cannot be read as an image."""
        return self.result(self.predict(self.preprocess(source, color_order), tta), top_k)

    def classify_many(self, paths: Iterable[str | Path], workers: int = 2, top_k: int = 3,
                      tta: bool = False) -> Iterator[tuple[str, Result | None, str]]:
        """Classify files in order, decoding ahead on ``workers`` threads: ``(path, result, "")`` for
        each, or ``(path, None, reason)`` for one that cannot be read; the others go on."""
        from lesionlite.edge.batch import classify_paths

        for row in classify_paths(self, [str(p) for p in paths], workers, tta):
            yield row.path, None if row.error else self.result(row.prediction, top_k), row.error


def tta_views(rgb: np.ndarray) -> list[np.ndarray]:
    """The orientations a dermoscopy image may take: the 8 rotations and mirror images of a
    square input (dermoscopy has no "up"), the 4 flips of a non-square one."""
    if rgb.shape[0] != rgb.shape[1]:
        return [rgb, rgb[:, ::-1], rgb[::-1], rgb[::-1, ::-1]]
    turns = [np.rot90(rgb, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]
