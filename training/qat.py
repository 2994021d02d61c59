"""Quantization-aware fine-tuning for Keras 3 (``tensorflow-model-optimization`` does not support it).

The model is re-wired, sharing its weights, to compute as the TFLite int8 model does: every
Conv/Dense kernel rounded to int8 per output channel (the dominant error for EfficientNet-Lite0),
and a :class:`FakeQuant` after every tensor the converter stores as int8 (input normalization, each
ReLU6, each linear projection, each residual sum, the pooled features, the logits) over the min/max
the converter would measure on the representative images. Training goes through the rounding
(straight-through gradients); the saved model is :func:`baked_copy`, the plain architecture with
int8-grid kernels, which the converter quantizes to the same int8 model the training scored.
"""
from __future__ import annotations

from typing import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import layers

KERNEL_LAYERS = (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)
QUANTIZED_OUTPUTS = (layers.ReLU, layers.Add, layers.GlobalAveragePooling2D, layers.Dense,
                     layers.Normalization, layers.Rescaling)


def quantized_output(layer: keras.layers.Layer) -> bool:
    """Whether TFLite stores this layer's output as an int8 tensor (BatchNorm and ReLU fuse into
    the conv before them; a BatchNorm ends a linear projection, named ``*project*``)."""
    if isinstance(layer, layers.BatchNormalization):
        return "project" in layer.name.lower()
    return isinstance(layer, QUANTIZED_OUTPUTS)


class FakeQuant(layers.Layer):
    """Round to 8 bits over a fixed range; in calibration mode, widen the range to the data instead."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calibrating = True
        self.lo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="lo")
        self.hi = self.add_weight(shape=(), initializer="zeros", trainable=False, name="hi")

    def call(self, x):
        if self.calibrating:
            self.lo.assign(tf.minimum(self.lo, tf.reduce_min(x)))
            self.hi.assign(tf.maximum(self.hi, tf.reduce_max(x)))
            return x
        return tf.quantization.fake_quant_with_min_max_vars(x, self.lo, self.hi, num_bits=8)


class QuantizedKernel(layers.Layer):
    """Runs a Conv2D, DepthwiseConv2D or Dense layer with its kernel rounded as TFLite stores it:
    symmetric int8 per output channel (which BatchNorm folding, a per-channel scale, leaves intact)."""

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def round(self, kernel: tf.Tensor) -> tf.Tensor:
        """``kernel`` on the int8 grid of each output channel."""
        if isinstance(self.layer, layers.DepthwiseConv2D):  # channels on axis 2: move them last
            return tf.transpose(_per_channel(tf.transpose(kernel, (0, 1, 3, 2))), (0, 1, 3, 2))
        return _per_channel(kernel)

    def call(self, x):
        layer = self.layer
        kernel = self.round(layer.kernel)
        if isinstance(layer, layers.Dense):
            y = tf.matmul(x, kernel)
        elif isinstance(layer, layers.DepthwiseConv2D):
            y = tf.nn.depthwise_conv2d(x, kernel, (1, *layer.strides, 1), layer.padding.upper())
        else:
            y = tf.nn.conv2d(x, kernel, layer.strides, layer.padding.upper())
        if layer.use_bias:
            y = y + layer.bias
        return layer.activation(y)


def _per_channel(kernel: tf.Tensor) -> tf.Tensor:
    m = tf.stop_gradient(tf.reduce_max(tf.abs(tf.reshape(kernel, (-1, kernel.shape[-1]))), axis=0))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -m, m, num_bits=8,
                                                                    narrow_range=True)


def fake_quant_clone(model: keras.Model) -> tuple[keras.Model, list[FakeQuant]]:
    """``model`` re-wired with a :class:`FakeQuant` after each quantized output and int8-rounded
    kernels, sharing its weights."""
    inserted: list[FakeQuant] = []

    def call(layer, *args, **kwargs):
        if isinstance(layer, KERNEL_LAYERS):
            out = QuantizedKernel(layer, name=f"{layer.name}_q")(*args)
        else:
            out = layer(*args, **kwargs)
        if quantized_output(layer):
            inserted.append(FakeQuant(name=f"{layer.name}_fq"))
            out = inserted[-1](out)
        return out

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call,
                                     recursive=True)
    return clone, inserted


def calibrate(clone: keras.Model, points: list[FakeQuant], images: np.ndarray, batch: int = 32) -> None:
    """Set every range to the min/max over ``images`` (eagerly), then switch rounding on."""
    for fq in points:
        fq.calibrating = True
        fq.lo.assign(0.0)
        fq.hi.assign(0.0)
    for i in range(0, len(images), batch):
        clone(images[i:i + batch].astype(np.float32), training=False)
    for fq in points:
        fq.calibrating = False


def baked_copy(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose kernels hold their int8-rounded values, so the float model is the
    one quantization-aware training scored and the converter re-quantizes it without loss."""
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    for layer in _all_layers(copy):
        if isinstance(layer, KERNEL_LAYERS):
            layer.kernel.assign(QuantizedKernel(layer).round(layer.kernel))
    return copy


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
