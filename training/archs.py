"""Names the CLI lists without importing TensorFlow: architectures, their default input sizes,
and augmentation policies."""
ARCHS = ("seed-cnn", "mobilenetv2", "efficientnet-lite0")
DEFAULT_SIZE = {"seed-cnn": (75, 100), "mobilenetv2": (224, 224), "efficientnet-lite0": (224, 224)}
AUGMENTATIONS = ("mild", "robust")
"""``mild``: flips, quarter turns, up to 1.18x zoom in, light colour jitter (the shipped model's).
``robust`` adds what another camera, dermatoscope or hand brings: any angle, zoom out as well as in
(reflected or black borders, as a dermatoscope's vignette), exposure, defocus and JPEG compression."""
