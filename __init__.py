"""lesionlite: an int8 TFLite skin-lesion classifier for the Raspberry Pi. A decision aid, not a diagnosis.

The repository root is this package: ``lesionlite.edge`` (the device runtime: numpy, Pillow, LiteRT),
``lesionlite.convert`` (Keras -> verified TFLite bundle), ``lesionlite.training`` and
``lesionlite.models`` (shipped bundles, data only). Importing it loads no interpreter.
"""
from lesionlite.edge import __version__
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.result import Result

__all__ = ["Classifier", "LesionliteError", "Result", "__version__"]
