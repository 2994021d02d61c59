"""The live loop. A capture thread reads the source and, once the main thread is ready, gates and
preprocesses the newest frame; the main thread classifies it, smooths the label, measures FPS,
updates the display and takes shots when asked."""
from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from lesionlite.edge.camera.controls import QUIT, SHOOT, Controls
from lesionlite.edge.camera.display import Display
from lesionlite.edge.camera.overlay import View, panel
from lesionlite.edge.camera.quality import Quality, assess
from lesionlite.edge.camera.shots import ShotStore
from lesionlite.edge.camera.sources import RETRIES, RETRY_DELAY, FrameSource, RawFrame, SourceError, read_retrying
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.result import Prediction, Result
from lesionlite.edge.scope import NOT_DERMOSCOPY, OUT_OF_SCOPE

POLL_INTERVAL = 0.05
"""How long the main thread waits for a frame before polling the controls again."""
STILL_TIMEOUT = 30.0
JOIN_TIMEOUT = 5.0
SMOOTHING = 0.3
"""Weight of the newest frame in the moving average of probabilities (about the last 6 frames)."""


@dataclass(frozen=True)
class Frame:
    """A captured frame, gated and (if it passed) preprocessed for the model."""

    seq: int
    image: np.ndarray
    color_order: str
    quality: Quality
    model_input: np.ndarray | None


def prepare(classifier: Classifier, seq: int, image: np.ndarray, color_order: str) -> Frame:
    quality = assess(image, color_order)
    rgb = classifier.preprocess(image, color_order) if quality.ok else None
    return Frame(seq, image, color_order, quality, rgb)


class Grabber:
    """The capture thread: newest frame wins (one slot, no queue). A frame is gated and
    preprocessed only once the main thread has taken the previous one, so no work is spent on
    frames that would be dropped, and the next frame is prepared while the model runs. A drop-out
    is retried ``retries`` times (reopening the source), then the thread ends with ``failure`` set.
    Stills are taken on this thread too, so only one thread ever touches the source."""

    def __init__(self, source: FrameSource, prepare_fn: Callable[[int, np.ndarray, str], Frame],
                 retries: int = RETRIES, retry_delay: float = RETRY_DELAY):
        self.source, self._prepare = source, prepare_fn
        self.retries, self.retry_delay = retries, retry_delay
        self.failure: BaseException | None = None
        self._latest: Frame | None = None
        self._taken = True
        self._done = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._stills: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="camera-capture", daemon=True)

    def __enter__(self) -> "Grabber":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(JOIN_TIMEOUT)  # a hung camera read must not hang the exit; close() follows

    def _run(self) -> None:
        seq = 0
        try:
            while not self._stop.is_set():
                self._serve_stills()
                frame = read_retrying(self.source, self._stop, self.retries, self.retry_delay)
                if frame is None:
                    break
                seq += 1
                if not self._taken:  # the main thread is still busy with the last one: drop this
                    continue
                prepared = self._prepare(seq, *frame)
                with self._cond:
                    self._latest, self._taken = prepared, False
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the main thread, which reports or re-raises it
            self.failure = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()
            self._fail_stills()

    def _serve_stills(self) -> None:
        while True:
            try:
                future = self._stills.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(self.source.capture_still())
            except SourceError as exc:
                future.set_exception(exc)

    def _fail_stills(self) -> None:
        while True:
            try:
                self._stills.get_nowait().set_exception(SourceError("the camera is not running"))
            except queue.Empty:
                return

    @property
    def done(self) -> bool:
        return self._done

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The newest frame if newer than ``after`` (waiting up to ``timeout``), else None."""
        with self._cond:
            self._cond.wait_for(lambda: self._done or (self._latest is not None and self._latest.seq > after),
                                timeout)
            latest = self._latest
            if latest is None or latest.seq <= after:
                return None
            self._taken = True
            return latest

    def still(self, timeout: float = STILL_TIMEOUT) -> RawFrame:
        """A still from the source, taken between two live frames."""
        future: Future = Future()
        self._stills.put(future)
        if self._done:
            self._fail_stills()
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise SourceError("still capture timed out") from None


class Smoother:
    """Exponential moving average of the class probabilities, and of the in-scope score, over
    recent frames."""

    def __init__(self, alpha: float = SMOOTHING):
        self.alpha = alpha
        self.value: Prediction | None = None

    def update(self, pred: Prediction) -> None:
        old = self.value
        if old is None:
            self.value = pred
            return
        scope = None if pred.scope is None or old.scope is None else old.scope + self.alpha * (pred.scope - old.scope)
        self.value = Prediction(old.probs + self.alpha * (pred.probs - old.probs), scope)

    def reset(self) -> None:
        self.value = None


class FpsMeter:
    """Frames per second over half-second windows (for display) and over the whole run."""

    def __init__(self, window: float = 0.5):
        self.window = window
        self.rate: float | None = None
        self.count = 0
        self.first: float | None = None
        self.last = 0.0
        self._start, self._n = 0.0, 0

    def tick(self, now: float) -> None:
        if self.first is None:
            self.first = self._start = now
        else:
            self._n += 1  # frame intervals since the window started
        self.count += 1
        self.last = now
        if now - self._start >= self.window:
            self.rate = self._n / (now - self._start)
            self._start, self._n = now, 0

    @property
    def average(self) -> float:
        span = self.last - self.first if self.first is not None else 0.0
        return (self.count - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class Shot:
    """The last shot, shown until the next one."""

    time: str
    result: Result | None
    problem: str | None
    photo: Path | None


class LiveLoop:
    """The main thread: classify the newest frame, smooth, show, and take shots when asked."""

    def __init__(self, classifier: Classifier, grabber: Grabber, display: Display, controls: Controls,
                 store: ShotStore, frames: int | None = None, tta: bool = False):
        self.classifier, self.grabber, self.display = classifier, grabber, display
        self.controls, self.store, self.frames, self.tta = controls, store, frames, tta
        self.smoother = Smoother()
        self.fps = FpsMeter()
        self.quality: Quality | None = None
        self.shot: Shot | None = None

    def run(self) -> int:
        """Until ``frames`` frames, q/Esc/Ctrl-C, or the source ends; 1 if the source failed."""
        last: Frame | None = None
        try:
            while self.frames is None or self.fps.count < self.frames:
                actions = self.controls.poll() + self.display.poll()
                if QUIT in actions:
                    break
                if SHOOT in actions:
                    self.take_shot()
                frame = self.grabber.next_frame(last.seq if last else 0, POLL_INTERVAL)
                if frame is None:
                    if self.grabber.done:
                        break
                    continue
                last = frame
                self._classify(frame)
                self.display.update(frame.image, frame.color_order, self.view)
        except KeyboardInterrupt:
            pass
        if last is not None:
            self.display.update(last.image, last.color_order, self.view, force=True)
        return self._finish()

    def _classify(self, frame: Frame) -> None:
        self.quality = frame.quality
        if frame.model_input is None:
            self.smoother.reset()
        else:
            self.smoother.update(self.classifier.predict(frame.model_input))
        self.fps.tick(time.monotonic())

    def _live(self) -> Result | None:
        value = self.smoother.value
        return None if value is None else self.classifier.result(value)

    def view(self) -> View:
        problem = self.quality.problem if self.quality else None
        live = View(self._live(), problem, "LIVE", self.fps.rate)
        if self.shot is None:
            return live
        title = f"SHOT {self.shot.time}" + (" saved" if self.shot.photo else "")
        return View(self.shot.result, self.shot.problem, title, self.fps.rate,
                    note="live: " + panel(live).summary)

    def take_shot(self) -> None:
        """Capture a still, gate it, classify it (TTA if asked) and save photo + JSON."""
        try:
            image, order = self.grabber.still()
        except SourceError as exc:
            self.display.message(f"shot failed: {exc}", error=True)
            return
        when = datetime.now().astimezone()
        stamp = when.strftime("%H:%M:%S")
        quality = assess(image, order)
        if not quality.ok:
            self.shot = Shot(stamp, None, quality.problem, None)
            self.display.message(f"shot {stamp}: retake - {quality.problem} (not saved)")
            return
        result = self.classifier.classify(image, order, top_k=3, tta=self.tta)
        try:
            photo = self.store.save(image, order, result, quality, when)
        except OSError as exc:
            photo = None
            self.display.message(f"shot {stamp}: NOT saved ({exc})", error=True)
        self.shot = Shot(stamp, result, None, photo)
        if photo is not None and result.decision == OUT_OF_SCOPE:
            self.display.message(f"shot {photo.name}: {NOT_DERMOSCOPY} -> {result.decision}: {result.reason}")
        elif photo is not None:
            self.display.message(f"shot {photo.name}: {result.name} ({result.label}) {result.confidence:.0%} "
                                 f"-> {result.decision}: {result.reason}")

    def _finish(self) -> int:
        failure = self.grabber.failure
        if failure is not None and not isinstance(failure, SourceError):
            raise failure
        self.display.message(f"{self.fps.count} frames, {self.fps.average:.1f} fps; "
                             f"{self.store.count} shot(s) saved in {self.store.directory}")
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr)
            return 1
        return 0
