"""Display backends for the one overlay renderer: the picamera2 preview overlay, an OpenCV window,
or headless (annotated frames written to disk by a background thread + a terminal status line)."""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from lesionlite.edge.camera.controls import QUIT, key_action
from lesionlite.edge.camera.overlay import View, annotate, overlay_rgba, panel, status_line
from lesionlite.edge.camera.shots import jpeg_bytes
from lesionlite.edge.camera.sources import FrameSource
from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.io import atomic_write_bytes

DISPLAYS = ("auto", "overlay", "window", "headless")
STATUS_INTERVAL = 1.0
WINDOW_INTERVAL = 1 / 30
OVERLAY_INTERVAL = 1 / 10
"""set_overlay allocates a DRM buffer per call, so the preview overlay is refreshed at most 10x a second."""
FRAME_QUALITY = 85
KEEP_FRAMES = 500
"""Headless keeps only this many recent annotated frames on disk (shots are never deleted)."""

ViewFn = Callable[[], View]


class DisplayError(LesionliteError, RuntimeError):
    """The requested display cannot be used; the message is one line."""


class Display:
    """``update`` is called for every classified frame with a lazily built view; the backend
    decides how often to draw. ``poll`` returns key actions the display itself received."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self._last = -float("inf")

    def _due(self, interval: float, force: bool) -> bool:
        """True, restarting the clock, when ``interval`` seconds passed since the last draw or ``force``."""
        now = time.monotonic()
        if not force and now - self._last < interval:
            return False
        self._last = now
        return True

    def update(self, image: np.ndarray, color_order: str, view: ViewFn, force: bool = False) -> None:
        raise NotImplementedError

    def poll(self) -> list[str]:
        return []

    def message(self, text: str, error: bool = False) -> None:
        """A line for the user (on stderr if ``error``)."""
        print(text, file=sys.stderr if error else self.out, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Display":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameWriter:
    """Annotates and writes frames on its own thread; a newer frame replaces one not yet written."""

    def __init__(self, directory: Path, keep: int = KEEP_FRAMES):
        self.directory = Path(directory)
        self._prefix = datetime.now().strftime("%Y%m%d-%H%M%S")
        self._keep = keep
        self._written: deque[Path] = deque()
        self._pending: tuple[int, np.ndarray, str, View] | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="frame-writer", daemon=True)
        self._thread.start()

    def submit(self, n: int, image: np.ndarray, color_order: str, view: View) -> None:
        with self._cond:
            self._pending = (n, image, color_order, view)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                job, self._pending = self._pending, None
            if job is None:
                return
            n, image, order, view = job
            path = self.directory / f"{self._prefix}-{n:06d}.jpg"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, jpeg_bytes(annotate(image, order, view), FRAME_QUALITY))
            except OSError as exc:
                print(f"warning: cannot write {path}: {exc}", file=sys.stderr)
                continue
            self._written.append(path)
            while len(self._written) > self._keep:
                self._written.popleft().unlink(missing_ok=True)

    def close(self) -> None:
        """Write the pending frame, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()


class HeadlessDisplay(Display):
    """Every ``every``-th frame annotated into ``frames_dir`` (none if 0); a status line each second."""

    def __init__(self, frames_dir: Path | None, every: int, out: TextIO | None = None):
        super().__init__(out)
        self.writer = FrameWriter(frames_dir) if frames_dir is not None and every > 0 else None
        self._every, self._count = every, 0
        self._last_status = -float("inf")
        self._tty = self.out.isatty()
        self._status_shown = False

    def update(self, image: np.ndarray, color_order: str, view: ViewFn, force: bool = False) -> None:
        self._count += 1
        now = time.monotonic()
        write = self.writer is not None and (force or self._count % self._every == 0)
        status = force or now - self._last_status >= STATUS_INTERVAL
        if not (write or status):
            return
        v = view()
        if write:
            self.writer.submit(self._count, image, color_order, v)
        if status:
            self._last_status = now
            self._status(status_line(panel(v)))

    def _status(self, line: str) -> None:
        if self._tty:
            width = os.get_terminal_size(self.out.fileno()).columns - 1
            print(f"\r{line[:width]}\x1b[K", end="", file=self.out, flush=True)
            self._status_shown = True
        else:
            print(line, file=self.out, flush=True)

    def message(self, text: str, error: bool = False) -> None:
        if self._status_shown:  # end the status line being rewritten in place
            print(file=self.out, flush=True)
            self._status_shown = False
        super().message(text, error)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._status_shown:
            print(file=self.out, flush=True)


class WindowDisplay(Display):
    """An OpenCV window (needs a desktop and an OpenCV built with GUI support)."""

    TITLE = "lesionlite camera"

    def __init__(self, out: TextIO | None = None):
        super().__init__(out)
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DisplayError("no desktop display (DISPLAY is not set)")
        try:
            import cv2
        except ImportError:
            raise DisplayError("OpenCV is not installed") from None
        self.cv2: Any = cv2
        try:
            cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise DisplayError("this OpenCV has no GUI support (opencv-python-headless); "
                               "pip install opencv-python for a window") from None
        self._actions: list[str] = []

    def update(self, image: np.ndarray, color_order: str, view: ViewFn, force: bool = False) -> None:
        if not self._due(WINDOW_INTERVAL, force):
            return
        bgr = self.cv2.cvtColor(np.asarray(annotate(image, color_order, view())), self.cv2.COLOR_RGB2BGR)
        self.cv2.imshow(self.TITLE, bgr)
        key = self.cv2.waitKey(1) & 0xFF
        if key != 0xFF and (action := key_action(chr(key))):
            self._actions.append(action)
        if self.cv2.getWindowProperty(self.TITLE, self.cv2.WND_PROP_VISIBLE) < 1:
            self._actions.append(QUIT)

    def poll(self) -> list[str]:
        actions, self._actions = self._actions, []
        return actions

    def close(self) -> None:
        self.cv2.destroyWindow(self.TITLE)


class OverlayDisplay(Display):
    """The overlay drawn over picamera2's own preview (it is sent only when it changes)."""

    def __init__(self, source: Any, out: TextIO | None = None):
        super().__init__(out)
        self.source = source
        self._shown: object = None

    def update(self, image: np.ndarray, color_order: str, view: ViewFn, force: bool = False) -> None:
        if not self._due(OVERLAY_INTERVAL, force):
            return
        h, w = image.shape[:2]
        layer = overlay_rgba((w, h), view())
        if layer is not self._shown:
            self.source.set_overlay(np.asarray(layer))
            self._shown = layer


def make_display(kind: str, source: FrameSource, frames_dir: Path | None, frame_every: int) -> Display:
    """The display asked for; ``auto`` prefers the camera preview, then a window, then headless."""
    if kind not in DISPLAYS:
        raise DisplayError(f"unknown display {kind!r}: choose from {', '.join(DISPLAYS)}")
    if kind in ("auto", "overlay"):
        if getattr(source, "preview_active", False):
            return OverlayDisplay(source)
        if kind == "overlay":
            raise DisplayError("--display overlay needs --source picamera2 with a working camera preview")
    if kind in ("auto", "window"):
        try:
            return WindowDisplay()
        except DisplayError as exc:
            if kind == "window":
                print(f"note: no window ({exc}); falling back to --display headless", file=sys.stderr)
    where = f"annotated frames in {frames_dir}" if frames_dir is not None and frame_every > 0 else "no frames saved"
    print(f"display: headless ({where})", file=sys.stderr)
    return HeadlessDisplay(frames_dir, frame_every)
