"""lesionlite: an int8 TFLite skin-lesion classifier for the Raspberry Pi. A decision aid, not a diagnosis.

The repository root is this package: ``lesionlite.edge`` (the device runtime: numpy, Pillow, LiteRT),
``lesionlite.convert`` (Keras -> verified TFLite bundle), ``lesionlite.training`` and
``lesionlite.models`` (shipped bundles, data only). Importing it loads no interpreter, and nothing
else until ``Classifier`` or ``Result`` is first used (so the ``lesionlite`` command can take Ctrl-C
from its first moment: see :mod:`lesionlite.cli`).
"""
from lesionlite.edge import __version__
from lesionlite.edge.errors import LesionliteError

__all__ = ["Classifier", "LesionliteError", "Result", "__version__"]


def __getattr__(name: str):
    if name == "Classifier":
        from lesionlite.edge.classifier import Classifier

        return Classifier
    if name == "Result":
        from lesionlite.edge.result import Result

        return Result
    raise AttributeError(f"module 'lesionlite' has no attribute {name!r}")
