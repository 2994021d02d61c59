"""Saving a shot: the photo (JPEG) and a JSON record of its result, both written atomically and
named by timestamp, so the folder reads back with ``lesionlite classify DIR``."""
from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlite.edge.camera.quality import Quality
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.io import atomic_write_bytes, atomic_write_text
from lesionlite.edge.preprocess import frame_to_image
from lesionlite.edge.result import Result

SCHEMA = "lesionlite.shot/1"
PHOTO_QUALITY = 95


def jpeg_bytes(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


class ShotStore:
    """Writes ``<stamp>.jpg`` then ``<stamp>.json`` into ``directory``."""

    def __init__(self, directory: Path, source: str, classifier: Classifier, tta: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.source, self.classifier, self.tta = source, classifier, tta
        self.count = 0

    def _stem(self, when: datetime) -> str:
        base = when.strftime("%Y%m%d-%H%M%S-") + f"{when.microsecond // 1000:03d}"
        stem, n = base, 1
        while (self.directory / f"{stem}.jpg").exists() or (self.directory / f"{stem}.json").exists():
            n += 1
            stem = f"{base}-{n}"
        return stem

    def save(self, image: np.ndarray, color_order: str, result: Result, quality: Quality,
             when: datetime) -> Path:
        """Save the photo and its record; returns the photo's path."""
        stem = self._stem(when)
        photo = self.directory / f"{stem}.jpg"
        atomic_write_bytes(photo, jpeg_bytes(frame_to_image(image, color_order), PHOTO_QUALITY))
        bundle = self.classifier.bundle
        record = {"schema": SCHEMA, "image": photo.name, "time": when.isoformat(timespec="milliseconds"),
                  "source": self.source, "tta": self.tta,
                  "model": {"name": bundle.name, "sha256": bundle.sha256, "runtime": self.classifier.runtime},
                  "quality": quality.to_dict(), **result.to_dict()}
        atomic_write_text(self.directory / f"{stem}.json", json.dumps(record, indent=2) + "\n")
        self.count += 1
        return photo
