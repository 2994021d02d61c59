"""The on-device web page and JSON API: upload (or take) a photo, get the edge's answer.

One :class:`~lesionlite.edge.classifier.Classifier` is shared by all request threads (its invoke is
locked). Uploads live in memory only, unless ``save_dir`` is given: then each classified
image is written atomically under a server-made name, with a JSON sidecar holding the answer, as long
as the folder holds fewer than ``save_limit`` of them and its disk keeps :data:`SAVE_MIN_FREE` free
(:class:`SaveDir`; the answer says when a photo was not kept, and why).
"""
from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, render_template, request
from PIL import Image
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound, ServiceUnavailable

from lesionlite.edge.classifier import Classifier
from lesionlite.edge.io import atomic_write_bytes, atomic_write_text
from lesionlite.edge.labels import DECISION_COLOURS, DISCLAIMER
from lesionlite.edge.preprocess import ImageError, thumbnail
from lesionlite.edge.scope import OUT_OF_SCOPE
from lesionlite.edge.serve import SAVE_LIMIT, SAVE_MIN_FREE
from lesionlite.edge.serve.live import LiveView

FIELD = "image"
"""The multipart field holding the photo, for the page's form and for ``POST /api/classify``."""
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}
"""Accepted upload formats (Pillow's name: file suffix); anything else is refused before decoding."""
PREVIEW_SIDE = 480
SAVED_NAME = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}\.json")
SUMMARY_METRICS = ("n", "accuracy", "balanced_accuracy", "macro_auc", "ece", "mel_sensitivity_at_80_specificity")
DECISION_TEXT = {
    "refer": "Have this lesion seen by a dermatologist.",
    "uncertain": "The model is not confident. Retake the photo or have the lesion checked.",
    "monitor": "Watch it for changes, and see a doctor if it changes or worries you.",
    "none": "This model carries no decision thresholds.",
    OUT_OF_SCOPE: "This model reads dermatoscope images only, so it gives no answer for this photo. "
                  "Take the photo through a dermatoscope (or a phone dermoscopy attachment) pressed on the lesion.",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def metrics_summary(meta: dict) -> dict:
    """The headline test metrics of the deployed (TFLite) model, as stored in the bundle."""
    metrics = meta.get("metrics") or {}
    test = metrics.get("test") or {}
    scores = test.get("tflite") or test.get("float") or {}
    summary = {k: scores[k] for k in SUMMARY_METRICS if k in scores}
    if summary and "split" in metrics:
        summary["split"] = metrics["split"]
    return summary


def model_info(clf: Classifier) -> dict:
    """What ``GET /api/model`` returns and the page's footer shows."""
    bundle, spec = clf.bundle, clf.spec
    meta = bundle.meta
    return {"name": bundle.name, "version": bundle.sha256[:12], "sha256": bundle.sha256,
            "created": meta.get("created"), "code_version": meta.get("code_version"),
            "quantization": meta.get("quantization"),
            "labels": [{"code": c, "name": n} for c, n in bundle.labels],
            "input": {"height": spec.height, "width": spec.width, "dtype": spec.dtype, "crop": spec.crop,
                      "color_constancy": spec.color_constancy},
            "thresholds": bundle.thresholds, "metrics": metrics_summary(meta),
            "runtime": clf.runtime, "threads": clf.threads}


def image_format(data: bytes) -> str:
    """The Pillow format name of an upload, read from its header; :class:`ImageError` if not accepted."""
    if not data:
        raise ImageError("empty upload")
    Image.init()  # register every plugin, so that ``formats`` can name them
    try:
        with Image.open(io.BytesIO(data), formats=list(FORMATS)) as im:
            return "JPEG" if im.format == "MPO" else im.format  # MPO: some phones' multi-picture JPEG
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageError("not an image in an accepted format (" + ", ".join(sorted(set(FORMATS.values())))
                         + ")") from None


def preview(data: bytes, side: int = PREVIEW_SIDE) -> str:
    """A small upright JPEG of the upload as a ``data:`` URL, so the page never stores it."""
    im = thumbnail(data, side)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def create_app(classifier: Classifier | None = None, save_dir: str | Path | None = None,
               max_upload_mb: float = 16.0, loopback_only: bool = True, live: LiveView | None = None,
               save_limit: int = SAVE_LIMIT) -> Flask:
    """The Flask app around ``classifier`` (default: the shipped bundle); ``live`` adds the
    camera view (``/live``, ``/live.jpg``, ``/api/live``).

    ``loopback_only`` refuses requests whose ``Host`` is not a loopback name (DNS rebinding);
    cross-origin POSTs are always refused.
    """
    clf = classifier or Classifier()
    info = model_info(clf)
    save = SaveDir(Path(save_dir), save_limit) if save_dir else None
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    too_large = f"upload larger than the {max_upload_mb:g} MB limit"

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path in ("/healthz", "/live.jpg")

    def classify_upload() -> tuple[bytes, dict]:
        """The uploaded bytes and the API payload; HTTP errors for bad input."""
        upload = request.files.get(FIELD)
        if upload is None:
            raise BadRequest(f"no photo: send it as a file in the multipart field {FIELD!r}")
        data = upload.read()
        try:
            fmt = image_format(data)
            t = time.perf_counter()
            result = clf.classify(data)
            elapsed = (time.perf_counter() - t) * 1e3
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        payload = {**result.to_dict(), "model": {k: info[k] for k in ("name", "version", "sha256")},
                   "elapsed_ms": round(elapsed, 2)}
        if save:
            payload.update(save.keep(data, FORMATS[fmt], payload))
        return data, payload

    @app.before_request
    def check_host_and_origin() -> None:
        host = urlsplit(f"//{request.host}").hostname or ""
        if loopback_only and not is_loopback(host):
            raise BadRequest(f"unexpected Host {request.host!r}: this server answers loopback names only")
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and urlsplit(origin).netloc != request.host:
            raise Forbidden("cross-origin request refused")

    @app.context_processor
    def page_context() -> dict:
        return {"model": info, "disclaimer": DISCLAIMER, "saving": save is not None, "live": live is not None}

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.errorhandler(HTTPException)
    def error(exc: HTTPException) -> tuple[Response | str, int, dict]:
        message = too_large if exc.code == 413 else exc.description
        headers = {k: v for k, v in exc.get_headers() if k == "Allow"}
        if wants_json():
            return jsonify(error=message, status=exc.code), exc.code, headers
        if request.endpoint == "classify_page":  # an upload that failed, not a page that does not exist
            message = f"Could not classify: {message}"
        return render_template("page.html", error=message), exc.code, headers

    @app.get("/decisions.css")
    def decision_css() -> Response:
        """The decision colours, from the one table the camera overlay also draws with."""
        rules = "".join(f".decision-{d} .decision {{ background: {c}; }}\n" for d, c in DECISION_COLOURS.items())
        return Response(f":root {{ --refer: {DECISION_COLOURS['refer']}; }}\n{rules}", mimetype="text/css")

    @app.get("/")
    def index() -> str:
        return render_template("page.html")

    @app.post("/classify")
    def classify_page() -> str:
        data, payload = classify_upload()
        return render_template("page.html", result=payload, image=preview(data),
                               decision_text=DECISION_TEXT.get(payload["decision"], ""))

    @app.post("/api/classify")
    def classify_api() -> Response:
        return jsonify(classify_upload()[1])

    @app.get("/api/model")
    def model() -> Response:
        return jsonify(info)

    def live_view() -> LiveView:
        if live is None:
            raise NotFound("no camera is attached: start the server with --camera SOURCE")
        return live

    @app.get("/live")
    def live_page() -> str:
        return render_template("live.html", status=live_view().latest()[1])

    @app.get("/live.jpg")
    def live_image() -> Response:
        jpeg, status = live_view().latest()
        if jpeg is None:
            raise ServiceUnavailable(status.get("error", "no camera frame yet"))
        return Response(jpeg, mimetype="image/jpeg")

    @app.get("/api/live")
    def live_status() -> Response:
        return jsonify(live_view().latest()[1])

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", model=info["name"], sha256=info["sha256"], runtime=info["runtime"])

    return app


class SaveDir:
    """``--save-dir``: keeps each classified photo (:func:`store`) while the folder holds fewer than
    ``limit`` photos saved so and keeping one leaves :data:`SAVE_MIN_FREE` free on its disk. When it
    stops keeping them (and when it starts again) it says so once on stderr."""

    def __init__(self, path: Path, limit: int = SAVE_LIMIT):
        self.path, self.limit = path, limit
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._said: str | None = None

    def why_not(self, size: int) -> str | None:
        """Why a photo of ``size`` bytes would not be kept now, or None."""
        with os.scandir(self.path) as entries:
            kept = sum(1 for e in entries if SAVED_NAME.fullmatch(e.name))
        if kept >= self.limit:
            return f"the save folder holds {kept} photos, its limit (--save-limit {self.limit})"
        if shutil.disk_usage(self.path).free - 2 * size < SAVE_MIN_FREE:
            return f"keeping it would leave less than {SAVE_MIN_FREE // 2**20} MiB free on the save folder's disk"
        return None

    def keep(self, data: bytes, suffix: str, payload: dict) -> dict:
        """``{"saved": stem}``, or ``{"saved": None, "not_saved": why}``."""
        with self._lock:  # counted and written by one request at a time, so the limit holds
            reason = self.why_not(len(data))
            if reason is None:
                try:
                    stem = store(self.path, data, suffix, payload)
                except OSError as exc:
                    reason = f"it could not be written ({exc.strerror or exc})"
            if reason != self._said:
                print(f"lesionlite serve: not keeping photos: {reason}" if reason else
                      "lesionlite serve: keeping photos again", file=sys.stderr, flush=True)
                self._said = reason
        return {"saved": None, "not_saved": reason} if reason else {"saved": stem}


def store(directory: Path, data: bytes, suffix: str, payload: dict) -> str:
    """Write the upload and its JSON sidecar atomically under a server-made name; the name's stem."""
    now = datetime.now(timezone.utc)
    stem = f"{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:12]}"
    atomic_write_bytes(directory / f"{stem}.{suffix}", data)
    sidecar = {**payload, "saved": stem, "image": f"{stem}.{suffix}",
               "image_sha256": hashlib.sha256(data).hexdigest(),
               "received": now.isoformat(timespec="seconds")}
    atomic_write_text(directory / f"{stem}.json", json.dumps(sidecar, indent=2))
    return stem
