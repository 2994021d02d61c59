"""Frame sources behind one interface: the Raspberry Pi camera (picamera2), an OpenCV camera, or a
replayed video / image folder. picamera2 and OpenCV are imported lazily, only when used."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.files import find_images
from lesionlite.edge.preprocess import IMAGE_SUFFIXES, ImageError, load_image

RawFrame = tuple[np.ndarray, str]
"""A frame and its colour order (``"RGB"`` or ``"BGR"``)."""
LIVE_SIZE = (640, 480)
"""The low-resolution stream classified live; shots use the sensor's full resolution."""
RETRIES = 3
RETRY_DELAY = 0.5
"""A camera that stops delivering is reopened up to ``RETRIES`` times, ``RETRY_DELAY`` s apart."""
PICAMERA2_HINT = ("sudo apt install python3-picamera2 and create the venv with "
                  "--system-site-packages (and numpy<2 on Bookworm)")


class SourceError(LesionliteError, RuntimeError):
    """The source cannot deliver frames; the message is one line for the user."""


class CameraAbsent(SourceError):
    """No such camera (or its library is missing): ``auto`` may try the next kind."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FrameSource:
    """A context manager that delivers frames; ``reopen`` is used to recover from a drop-out."""

    name = "source"

    def _open(self) -> None:
        raise NotImplementedError

    def read(self) -> RawFrame:
        """The next live frame; raises :class:`SourceError` when none comes."""
        raise NotImplementedError

    def capture_still(self) -> RawFrame:
        """The photo for a shot (the best resolution the source has)."""
        return self.read()

    def close(self) -> None:
        """Release the device; safe to call twice."""

    def reopen(self) -> None:
        self.close()
        self._open()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Picamera2Source(FrameSource):
    """The Pi camera: a 640x480 preview stream for live frames, a full-resolution still for shots.

    picamera2's ``"RGB888"`` format is B,G,R in memory, so frames are declared ``"BGR"``. With
    ``preview`` a DRM (console) or Qt-GL (desktop) preview is started so an overlay can be drawn.
    """

    name = "picamera2"

    def __init__(self, preview: bool = False, size: tuple[int, int] = LIVE_SIZE, camera_num: int = 0):
        try:
            import picamera2
        except Exception as exc:  # ImportError, or a numpy ABI mismatch in the system package
            raise CameraAbsent(f"picamera2 is not usable ({first_line(exc)}): {PICAMERA2_HINT}") from None
        self._lib: ModuleType = picamera2
        self.size, self.camera_num, self.want_preview = size, camera_num, preview
        self.cam: Any = None
        self.preview_active = False
        self._still: Any = None
        self._open()

    def _open(self) -> None:
        camera_class = self._lib.Picamera2
        if not camera_class.global_camera_info():
            raise CameraAbsent("no Raspberry Pi camera detected: check the ribbon cable and "
                               "`rpicam-hello --list-cameras`")
        try:
            self.cam = camera_class(self.camera_num)
        except (RuntimeError, IndexError) as exc:
            raise SourceError(f"cannot open the camera ({first_line(exc)}): is another program "
                              "(rpicam-*, another lesionlite) using it?") from None
        try:
            self._still = self.cam.create_still_configuration(main={"format": "RGB888"})
            self.cam.configure(self.cam.create_preview_configuration(main={"size": self.size, "format": "RGB888"}))
            self.preview_active = self.want_preview and self._start_preview()
            self.cam.start()
        except Exception as exc:  # picamera2/libcamera raise many types
            self.close()
            raise SourceError(f"the camera failed to start: {first_line(exc)}") from None

    def _start_preview(self) -> bool:
        preview = self._lib.Preview
        desktop = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        try:
            self.cam.start_preview(preview.QTGL if desktop else preview.DRM)
        except Exception as exc:  # no screen, no Qt, DRM owned by the desktop, ...
            print(f"note: no camera preview ({first_line(exc)})", file=sys.stderr)
            return False
        return True

    def read(self) -> RawFrame:
        if self.cam is None:
            raise SourceError("the camera is closed")
        try:
            return self.cam.capture_array("main"), "BGR"
        except Exception as exc:
            raise SourceError(f"the camera stopped delivering frames ({first_line(exc)})") from None

    def capture_still(self) -> RawFrame:
        if self.cam is None:
            raise SourceError("the camera is closed")
        try:
            return self.cam.switch_mode_and_capture_array(self._still, "main"), "BGR"
        except Exception as exc:
            raise SourceError(f"still capture failed ({first_line(exc)})") from None

    def set_overlay(self, rgba: np.ndarray) -> None:
        """Draw an ``(H, W, 4)`` RGBA image over the preview (scaled to it)."""
        if self.cam is not None:
            self.cam.set_overlay(rgba)

    def close(self) -> None:
        cam, self.cam, self.preview_active = self.cam, None, False
        if cam is None:
            return
        with contextlib.suppress(Exception):
            cam.stop()
        with contextlib.suppress(Exception):
            cam.close()


def _cv2() -> ModuleType:
    try:
        import cv2
    except ImportError:
        raise CameraAbsent("OpenCV is not installed: pip install opencv-python-headless") from None
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our message replaces its warnings
    return cv2


class OpenCVSource(FrameSource):
    """A V4L2/USB camera through ``cv2.VideoCapture`` (BGR frames)."""

    def __init__(self, index: int = 0):
        self.cv2 = _cv2()
        self.index = index
        self.name = f"opencv:{index}"
        self._cap: Any = None
        self._open()

    def _open(self) -> None:
        cap = self.cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise CameraAbsent(f"no camera at OpenCV index {self.index} (absent, or busy in another program)")
        cap.set(self.cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> RawFrame:
        ok, frame = self._cap.read() if self._cap is not None else (False, None)
        if not ok or frame is None:
            raise SourceError(f"{self.name} stopped delivering frames")
        return frame, "BGR"

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def read_retrying(source: FrameSource, stop: threading.Event, retries: int = RETRIES,
                  delay: float = RETRY_DELAY) -> RawFrame | None:
    """The next frame, reopening ``source`` after a drop-out up to ``retries`` times (a warning on
    stderr each time); None if ``stop`` is set while waiting, :class:`SourceError` once retries run out."""
    try:
        return source.read()
    except SourceError as exc:
        error = exc
    for attempt in range(1, retries + 1):
        print(f"warning: {error}; retrying ({attempt}/{retries})", file=sys.stderr)
        if stop.wait(delay):
            return None
        try:
            source.reopen()
            return source.read()
        except SourceError as exc:
            error = exc
    raise SourceError(f"{error}; gave up after {retries} retries")


class ReplaySource(FrameSource):
    """A video file (OpenCV) or the images of a folder, found as `lesionlite classify` finds them
    (Pillow), played in a loop at a steady ``fps`` (above zero: ``--fps`` is checked where it is parsed)."""

    CACHE_BYTES = 256 * 1024 * 1024

    def __init__(self, path: str | Path, fps: float = 10.0):
        self.path = Path(path)
        self.name = f"replay:{path}"
        self.interval = 1.0 / fps
        self._images: list[Path] = []
        self._cache: dict[Path, np.ndarray] = {}
        self._cached_bytes = 0
        self._unreadable: set[Path] = set()
        self._video: Any = None
        self._index = 0
        self._due: float | None = None
        self._last: RawFrame | None = None
        self._open()

    def _open(self) -> None:
        path = self.path
        if path.is_dir():
            self._images = [Path(p) for p in find_images([str(path)]).images]  # as `lesionlite classify` finds them
            if not self._images:
                raise SourceError(f"replay: no images in {path}")
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            self._images = [path]
        elif path.is_file():
            cv2 = _cv2()
            self._video = cv2.VideoCapture(str(path))
            if not self._video.isOpened():
                self.close()
                raise SourceError(f"replay: cannot play {path} (not an image folder or a video OpenCV can decode)")
        else:
            raise SourceError(f"replay: no such file or folder: {path}")
        self._index, self._due = 0, None
        if self._images:  # fail now if no image can be read, not after the drop-out retries
            self._next()
            self._index -= 1

    def _decode(self, path: Path) -> np.ndarray:
        """Decode once while the decoded folder fits in ``CACHE_BYTES``; beyond that, every time."""
        frame = self._cache.get(path)
        if frame is None:
            frame = np.asarray(load_image(path))
            if self._cached_bytes + frame.nbytes <= self.CACHE_BYTES:
                self._cache[path] = frame
                self._cached_bytes += frame.nbytes
        return frame

    def _next(self) -> RawFrame:
        if self._video is None and not self._images:
            raise SourceError("replay is closed")
        if self._video is not None:
            ok, frame = self._video.read()
            if not ok:  # the end: loop from the start
                self._video.set(_cv2().CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._video.read()
            if not ok:
                raise SourceError(f"replay: cannot read frames from {self.path}")
            return frame, "BGR"
        for _ in range(len(self._images)):  # an unreadable file is skipped (once said), not retried
            path = self._images[self._index % len(self._images)]
            self._index += 1
            if path in self._unreadable:
                continue
            try:
                return self._decode(path), "RGB"
            except ImageError as exc:
                self._unreadable.add(path)
                print(f"warning: replay: skipping {path}: {exc}", file=sys.stderr)
        raise SourceError(f"replay: no readable image in {self.path}")

    def _pace(self) -> None:
        """Sleep so frames come at a steady rate; after falling behind, restart the schedule."""
        now = time.monotonic()
        if self._due is None or now > self._due + self.interval:
            self._due = now
        elif now < self._due:
            time.sleep(self._due - now)
        self._due += self.interval

    def read(self) -> RawFrame:
        self._pace()
        self._last = self._next()
        return self._last

    def capture_still(self) -> RawFrame:
        """What the replay 'camera' shows now."""
        return self._last or self._next()

    def close(self) -> None:
        video, self._video, self._images = self._video, None, []
        if video is not None:
            video.release()


def _index(text: str) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise SourceError(f"bad camera index {text!r}: use opencv:0, opencv:1, ...") from None


def open_source(spec: str, fps: float = 10.0, preview: bool = False) -> FrameSource:
    """``auto``, ``picamera2``, ``opencv[:INDEX]`` or ``replay:PATH`` as an open source."""
    kind, _, arg = spec.partition(":")
    if kind == "replay":
        if not arg:
            raise SourceError("replay needs a path: --source replay:PATH")
        return ReplaySource(arg, fps)
    if kind == "opencv":
        return OpenCVSource(_index(arg))
    if spec == "picamera2":
        return Picamera2Source(preview)
    if spec == "auto":
        return _auto(preview)
    raise SourceError(f"unknown source {spec!r}: use auto, picamera2, opencv:INDEX or replay:PATH")


def _auto(preview: bool) -> FrameSource:
    """picamera2 when it imports and sees a camera, else OpenCV camera 0."""
    problems = []
    for make in (lambda: Picamera2Source(preview), lambda: OpenCVSource(0)):
        try:
            source = make()
        except CameraAbsent as exc:
            problems.append(str(exc))
            continue
        print(f"camera source: {source.name}", file=sys.stderr)
        return source
    raise SourceError("no camera found: " + "; ".join(problems))
