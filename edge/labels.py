"""The HAM10000 diagnostic classes: codes in the data set's order, human names, malignancy."""
from __future__ import annotations

from lesionlite.edge.scope import OUT_OF_SCOPE

CLASS_NAMES: dict[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}
CLASSES: tuple[str, ...] = tuple(CLASS_NAMES)
MALIGNANT: tuple[str, ...] = ("mel", "bcc", "akiec")
"""Classes whose probability can trigger a ``refer`` decision."""

DECISION_COLOURS: dict[str, str] = {"refer": "#b91c1c", "uncertain": "#b45309", "monitor": "#15803d",
                                    "none": "#6b7280", OUT_OF_SCOPE: "#2563eb"}
"""Each decision's colour (white text reads on each), for the camera overlay and the web page alike."""

DISCLAIMER = "Decision aid only - not a diagnosis. See a dermatologist about any lesion that worries you."


def read_labels_file(path: str) -> list[tuple[str, str]]:
    """``labels.txt``: one class per line, ``code`` or ``code<TAB>human name`` (``""`` when not given)."""
    labels = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            code, _, name = line.partition("\t")
            labels.append((code.strip(), name.strip()))
    return labels
