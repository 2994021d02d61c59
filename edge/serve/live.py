"""Live camera view for the web page: a thread classifies the newest camera frame a few times a
second and keeps the latest annotated JPEG and answer (periodic stills, not a video stream)."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

from lesionlite.edge.camera.overlay import View, annotate
from lesionlite.edge.camera.quality import assess
from lesionlite.edge.camera.shots import jpeg_bytes
from lesionlite.edge.camera.sources import FrameSource, first_line, read_retrying
from lesionlite.edge.classifier import Classifier


class LiveView:
    """Owns ``source`` once started; :meth:`stop` ends the thread and releases the camera. A camera
    that drops out is reopened as in the live loop; the status says why if that fails."""

    def __init__(self, source: FrameSource, classifier: Classifier, interval: float = 0.25):
        self.source, self.clf, self.interval = source, classifier, interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jpeg: bytes | None = None
        self._status: dict = {"state": "starting"}
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)

    def start(self) -> "LiveView":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.source.close()

    def latest(self) -> tuple[bytes | None, dict]:
        """The newest annotated JPEG (None before the first frame) and its status."""
        with self._lock:
            return self._jpeg, dict(self._status)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                raw = read_retrying(self.source, self._stop)  # a drop-out reopens the camera
                if raw is None:
                    break
                frame, order = raw
                quality = assess(frame, order)
                result = self.clf.classify(frame, order) if quality.ok else None
                jpeg = jpeg_bytes(annotate(frame, order, View(result, quality.problem, "LIVE")), 80)
                status = {"state": "live", "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "problem": quality.problem, "result": result.to_dict() if result else None}
                with self._lock:
                    self._jpeg, self._status = jpeg, status
                self._stop.wait(self.interval)
        except Exception as exc:  # the page must show why the view stopped, whatever stopped it
            with self._lock:
                self._jpeg = None
                self._status = {"state": "stopped", "error": f"camera stopped: {first_line(exc)}"}
