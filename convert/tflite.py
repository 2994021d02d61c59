"""TFLite conversion of a trained Keras model: float32, float16 or full-integer int8."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

QUANTIZATIONS = ("int8", "float16", "float32")


def representative_indices(y: np.ndarray, n: int = 300, seed: int = 0) -> np.ndarray:
    """About ``n`` training indices covering every class (rare classes fully up to ``n/k`` each)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = max(1, n // len(classes))
    chosen = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]
    picked = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(y)), picked)
    extra = rng.permutation(rest)[:max(0, n - len(picked))]
    return np.sort(np.concatenate([picked, extra]))


def convert(model, quantize: str, representative: np.ndarray | None = None,
            int8_output: bool = False) -> bytes:
    """Convert ``model`` (float pixels in, logits out); the edge feeds a batch of one.

    int8: uint8 input (pixels map one-to-one when the representative set spans 0..255),
    int8 internals, and int8 logits out if ``int8_output`` else float32 logits.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 conversion needs a representative dataset")

        def samples() -> Iterator[list[np.ndarray]]:
            for img in representative:
                yield [img[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8 if int8_output else tf.float32
    elif quantize != "float32":
        raise ValueError(f"unknown quantization {quantize!r}; choose from {QUANTIZATIONS}")
    return converter.convert()


FEATURES_OUTPUT = "features"
"""The signature name of the second output that :func:`expose_features` adds."""


def expose_features(model_bytes: bytes) -> bytes:
    """``model_bytes`` with the input of its final fully connected layer (the pooled features) as a
    second output, which the scope gate reads; the logits output stays first and unchanged. A model
    that already has it is returned as it is."""
    from lesionlite.edge.embedded import schema_module, pack, unpack

    schema = schema_module()
    model = unpack(model_bytes)
    graph = model.subgraphs[0]
    if len(graph.outputs) > 1:
        return model_bytes
    head = next((op for op in graph.operators if graph.outputs[0] in op.outputs), None)
    code = model.operatorCodes[head.opcodeIndex] if head is not None else None
    if code is None or max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
        raise ValueError("the model's output is not made by a fully connected layer: no pooled features to expose")
    features = int(head.inputs[0])
    if len(graph.tensors[features].shape) != 2:
        raise ValueError(f"the final layer's input has shape {list(graph.tensors[features].shape)}, not [1, N]")
    graph.outputs = list(graph.outputs) + [features]
    for signature in model.signatureDefs or []:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = FEATURES_OUTPUT, features
        signature.outputs = list(signature.outputs) + [entry]
    return pack(model, len(model_bytes) + 1024)
