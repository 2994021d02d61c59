"""Names the CLI lists without importing TensorFlow: architectures, their default input sizes,
and augmentation policies."""
ARCHS = ("seed-cnn", "mobilenetv2", "efficientnet-lite0")
DEFAULT_SIZE = {"seed-cnn": (75, 100), "mobilenetv2": (224, 224), "efficientnet-lite0": (224, 224)}
AUGMENTATIONS = ("mild", "robust")
"""``mild`` (the default): flips, quarter turns, up to 1.18x zoom in, light colour jitter.
``robust`` (the shipped model's) adds what another camera, dermatoscope or hand brings: any angle, zoom
out as well as in (mirrored or black borders, as some dermatoscopes' images have), exposure, defocus
and JPEG compression."""
