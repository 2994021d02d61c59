"""Architecture names and default input sizes (no TensorFlow import, so the CLI can list them)."""
ARCHS = ("seed-cnn", "mobilenetv2", "efficientnet-lite0")
DEFAULT_SIZE = {"seed-cnn": (75, 100), "mobilenetv2": (224, 224), "efficientnet-lite0": (224, 224)}
