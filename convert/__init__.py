"""Keras model -> verified TFLite model bundle (needs TensorFlow)."""
