"""Classify an archive with Ray Data: ``lesionlite classify PATH... --engine ray``, above the edge
layer (the Pi never imports Ray). Importing this package imports no Ray: :mod:`lesionlite.edge.scale.engine`
does, and only ``--engine ray`` imports it. Install with ``pip install 'lesionlite[scale]'``."""
