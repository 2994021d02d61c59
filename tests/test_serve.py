"""``lesionlite serve``: the JSON API and the server-rendered page, through Flask's test client.

Uses the default (shipped) bundle, like the device does.
"""
from __future__ import annotations

import argparse
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("flask", reason="lesionlite serve needs Flask (pip install '.[serve]')")

from lesionlite.edge.classifier import Classifier  # noqa: E402
from lesionlite.edge.errors import CommandError  # noqa: E402
from lesionlite.edge.labels import DISCLAIMER  # noqa: E402
from lesionlite.edge.serve import cli  # noqa: E402
from lesionlite.edge.serve.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LESIONS = sorted((ROOT / "samples/lesions").glob("*.jpg"))
SAMPLE = LESIONS[0]


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier()


@pytest.fixture(scope="module")
def app(clf: Classifier):
    return create_app(clf, max_upload_mb=1)


@pytest.fixture()
def client(app):
    return app.test_client()


def post(client, data: bytes, filename: str = "photo.jpg", path: str = "/api/classify", **kwargs):
    return client.post(path, data={"image": (io.BytesIO(data), filename)}, content_type="multipart/form-data",
                       **kwargs)


def answer(payload: dict) -> dict:
    """A response without what legitimately varies between requests."""
    return {k: v for k, v in payload.items() if k not in ("elapsed_ms", "saved")}


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (180, 120, 100)).save(buf, fmt)
    return buf.getvalue()


def test_classify_sample_jpeg(client, clf: Classifier) -> None:
    r = post(client, SAMPLE.read_bytes())
    assert r.status_code == 200 and r.is_json
    body = r.get_json()
    expected = clf.classify(SAMPLE.read_bytes()).to_dict()
    assert {k: body[k] for k in expected} == expected
    assert body["decision"] in ("refer", "uncertain", "monitor", "none") and body["reason"]
    assert [t["code"] for t in body["top"]][0] == body["label"] and len(body["top"]) == 3
    assert body["disclaimer"] == DISCLAIMER
    assert body["model"] == {"name": clf.bundle.name, "version": clf.bundle.sha256[:12], "sha256": clf.bundle.sha256}
    assert body["elapsed_ms"] > 0
    assert "saved" not in body


def test_model_and_health(client, clf: Classifier) -> None:
    info = client.get("/api/model").get_json()
    assert info["name"] == clf.bundle.name and info["sha256"] == clf.bundle.sha256
    assert [lab["code"] for lab in info["labels"]] == clf.bundle.codes
    assert (info["input"]["height"], info["input"]["width"]) == (clf.spec.height, clf.spec.width)
    assert info["runtime"] == clf.runtime and info["quantization"] == clf.bundle.meta.get("quantization")
    assert isinstance(info["metrics"], dict)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "model": clf.bundle.name, "sha256": clf.bundle.sha256,
                                 "runtime": clf.runtime}


def test_page_form_and_result(client, clf: Classifier) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'action="/classify"' in page
    assert 'accept="image/*"' in page and 'capture=' not in page  # a dermatoscope photo, not the bare camera
    assert 'through a dermatoscope' in page
    assert DISCLAIMER in page and clf.bundle.name in page and clf.bundle.sha256[:12] in page
    r = post(client, SAMPLE.read_bytes(), path="/classify")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    expected = clf.classify(SAMPLE.read_bytes())
    assert f'class="result decision-{expected.decision}"' in html
    assert expected.name in html and expected.reason.replace(">", "&gt;") in html
    assert 'src="data:image/jpeg;base64,' in html and DISCLAIMER in html


def test_security_headers_host_and_origin(client) -> None:
    r = client.get("/")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-store"
    rebound = client.get("/healthz", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and "Host" in rebound.get_json()["error"]
    cross = post(client, SAMPLE.read_bytes(), headers={"Origin": "http://attacker.example"})
    assert cross.status_code == 403
    assert post(client, SAMPLE.read_bytes(), headers={"Origin": "http://localhost"}).status_code == 200


def test_exposed_app_accepts_any_host(clf: Classifier) -> None:
    client = create_app(clf, loopback_only=False).test_client()
    assert client.get("/healthz", headers={"Host": "lesionlite.local:8080"}).status_code == 200


def test_upload_too_large(client) -> None:
    big = b"\xff\xd8" + bytes(1024 * 1024 + 10)
    r = post(client, big)
    assert r.status_code == 413 and "1 MB" in r.get_json()["error"]
    page = post(client, big, path="/classify")
    assert page.status_code == 413 and "1 MB limit" in page.get_data(as_text=True)


@pytest.mark.parametrize("name, data", [
    ("zero-byte", b""),
    ("text", b"hello, this is a text file\n"),
    ("truncated", SAMPLE.read_bytes()[: SAMPLE.stat().st_size // 2]),
    ("corrupt", SAMPLE.read_bytes()[:200] + bytes(range(256)) * 40),
    ("ppm", image_bytes("PPM")),
])
def test_bad_images_are_400_with_a_reason(client, name: str, data: bytes) -> None:
    r = post(client, data)
    assert r.status_code == 400, name
    assert r.get_json()["error"] and r.get_json()["status"] == 400
    page = post(client, data, path="/classify")
    assert page.status_code == 400 and 'role="alert">Could not classify: ' in page.get_data(as_text=True)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_other_formats_are_accepted(client, fmt: str) -> None:
    assert post(client, image_bytes(fmt), filename=f"x.{fmt.lower()}").status_code == 200


def test_missing_field(client) -> None:
    r = client.post("/api/classify", data={"photo": (io.BytesIO(SAMPLE.read_bytes()), "a.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and "'image'" in r.get_json()["error"]
    assert client.post("/api/classify").status_code == 400


def test_wrong_paths_and_methods(client) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.is_json
    r = client.get("/api/classify")
    assert r.status_code == 405 and r.is_json and "POST" in r.headers["Allow"]
    assert client.post("/api/model").status_code == 405
    assert client.delete("/healthz").get_json()["status"] == 405
    page = client.get("/nope")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Could not classify" not in page.get_data(as_text=True)  # no upload was made
    assert client.get("/classify").status_code == 405


def test_concurrent_requests_do_not_mix(app) -> None:
    paths = [*LESIONS[:6], *sorted((ROOT / "samples/fullres").glob("*.jpg")), ROOT / "samples/non-lesion/parrot.jpg"]
    distinct: dict[str, tuple[bytes, dict]] = {}
    for path in paths:
        single = answer(post(app.test_client(), path.read_bytes()).get_json())
        distinct.setdefault(json.dumps(single["probabilities"], sort_keys=True), (path.read_bytes(), single))
    cases = list(distinct.values())
    assert len(cases) >= 3, "the samples must give different answers for this test to mean anything"

    def one(i: int) -> tuple[int, dict]:
        return i, answer(post(app.test_client(), cases[i][0]).get_json())

    with ThreadPoolExecutor(6) as pool:
        for i, got in pool.map(one, [i % len(cases) for i in range(6 * len(cases))]):
            assert got == cases[i][1]


def test_save_dir_uses_server_names(clf: Classifier, tmp_path: Path) -> None:
    client = create_app(clf, save_dir=tmp_path / "kept").test_client()
    data = SAMPLE.read_bytes()
    body = post(client, data, filename="../../Jane Doe.jpg").get_json()
    assert post(client, b"not an image").status_code == 400
    kept = sorted((tmp_path / "kept").iterdir())
    assert [p.name for p in kept] == [f"{body['saved']}.jpg", f"{body['saved']}.json"]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}", body["saved"])
    assert kept[0].read_bytes() == data
    sidecar = json.loads(kept[1].read_text())
    assert answer(sidecar) == {**answer(body), "image": kept[0].name, "image_sha256": sidecar["image_sha256"],
                               "received": sidecar["received"]}
    assert "Jane" not in kept[1].read_text()
    assert (tmp_path / "kept").stat().st_mode & 0o077 == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"]


def test_cli_refuses_network_host_without_expose() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model")  # the edge commands' shared option, added before serve's own
    cli.add_arguments(p)
    args = p.parse_args(["--host", "0.0.0.0", "--model", "m"])
    assert args.model == "m" and args.port == 8080 and not args.expose and args.save_dir is None
    with pytest.raises(CommandError, match="--expose"):
        cli.main(args)


def test_live_camera_view_from_a_replayed_source(clf: Classifier):
    import time

    from lesionlite.edge.camera.sources import open_source
    from lesionlite.edge.serve.live import LiveView

    live = LiveView(open_source(f"replay:{ROOT / 'samples/lesions'}", fps=20), clf, interval=0.05).start()
    try:
        client = create_app(clf, live=live).test_client()
        deadline = time.time() + 30
        while (status := client.get("/api/live").get_json()).get("state") != "live" and time.time() < deadline:
            time.sleep(0.05)
        assert status["state"] == "live" and status["result"]["label"] in clf.bundle.codes
        image = client.get("/live.jpg")
        assert image.status_code == 200 and image.mimetype == "image/jpeg"
        assert Image.open(io.BytesIO(image.data)).size[1] >= 224
        page = client.get("/live").get_data(as_text=True)
        assert "refresh" in page and DISCLAIMER in page and "live.jpg" in page
        assert 'href="/live"' in client.get("/").get_data(as_text=True)
    finally:
        live.stop()
    assert create_app(clf).test_client().get("/api/live").status_code == 404


def test_serve_refuses_a_missing_camera_in_one_line(tmp_path):
    from conftest import run_cli

    proc = run_cli("serve", "--port", "0", "--camera", f"replay:{tmp_path / 'nothing'}", timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("for_good", [False, True])
def test_live_view_reopens_a_camera_that_drops_out(clf: Classifier, capsys, for_good: bool):
    import time

    from lesionlite.edge.camera.sources import RETRIES, ReplaySource, SourceError
    from lesionlite.edge.serve.live import LiveView

    class DropsOut(ReplaySource):
        """Stops delivering after 3 frames; reopened, it delivers again unless it is gone for good."""

        def __init__(self, path: Path):
            self.opens = self.reads = 0
            super().__init__(path, fps=50)

        def _open(self) -> None:
            self.opens, self.reads = self.opens + 1, 0
            super()._open()

        def read(self):
            self.reads += 1
            if (self.reads > 3) if self.opens == 1 else for_good:
                raise SourceError("the camera stopped delivering frames (Device timeout)")
            return super().read()

    source = DropsOut(ROOT / "samples/lesions")
    live = LiveView(source, clf, interval=0.01).start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            _, status = live.latest()
            if status["state"] == "stopped" or (source.opens == 2 and source.reads >= 3):
                break
            time.sleep(0.05)
    finally:
        live.stop()
    err = capsys.readouterr().err
    assert "Device timeout); retrying (1/3)" in err
    if for_good:
        assert status == {"state": "stopped", "error": "camera stopped: the camera stopped delivering frames "
                          f"(Device timeout); gave up after {RETRIES} retries"}
        assert source.opens == 1 + RETRIES
    else:
        assert status["state"] == "live" and status["result"] is not None and "retrying (2/3)" not in err


@pytest.fixture(scope="module")
def server():
    """A real ``lesionlite serve`` (waitress) on a free port: its base URL's port."""
    import os
    import re
    import subprocess
    import sys
    import threading

    pytest.importorskip("waitress")
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "serve", "--port", "0"], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        port = None
        for line in proc.stderr:
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "lesionlite serve did not start"
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
             timeout: float = 10) -> tuple[int, bytes, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        conn.close()


def test_idle_connections_do_not_keep_healthz_from_answering(server):
    import socket

    idle = [socket.create_connection(("127.0.0.1", server), timeout=5) for _ in range(150)]  # waitress' limit was 100
    try:
        status, body, kind = _request(server, "GET", "/healthz", timeout=5)
        assert status == 200 and json.loads(body)["status"] == "ok" and kind == "application/json"
    finally:
        for s in idle:
            s.close()


def test_a_body_declared_over_128_mib_is_refused_at_its_headers_before_any_of_it_is_taken(server):
    import socket

    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:  # the headers only: no body follows
        s.sendall(b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                  b"boundary=x\r\nContent-Length: %d\r\n\r\n" % (2**27 + 1))
        reply = b"".join(iter(lambda: s.recv(4096), b"")).decode("latin-1")  # answered and closed, unread
    assert reply.startswith("HTTP/1.1 413 ") and "exceeds max_body" in reply
    assert _request(server, "GET", "/healthz")[0] == 200


def test_an_upload_far_over_the_limit_gets_the_pages_json_413(server):
    boundary = "lesionlite-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + bytes(60 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    status, payload, kind = _request(server, "POST", "/api/classify", body,
                                     {"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=60)
    assert (status, kind) == (413, "application/json")
    assert json.loads(payload) == {"error": "upload larger than the 16 MB limit", "status": 413}
    assert _request(server, "GET", "/healthz")[0] == 200


def test_save_dir_stops_at_its_limit_and_says_so(clf: Classifier, tmp_path: Path, capsys, monkeypatch) -> None:
    from lesionlite.edge.serve import app as app_module

    client = create_app(clf, save_dir=tmp_path / "kept", save_limit=2).test_client()
    answers = [post(client, SAMPLE.read_bytes()).get_json() for _ in range(3)]
    assert [bool(a["saved"]) for a in answers] == [True, True, False]
    assert answers[2]["not_saved"] == "the save folder holds 2 photos, its limit (--save-limit 2)"
    assert {k: v for k, v in answers[2].items() if k not in ("saved", "not_saved", "elapsed_ms")} == \
        {k: v for k, v in answers[0].items() if k not in ("saved", "elapsed_ms")}  # answered all the same
    assert len(list((tmp_path / "kept").iterdir())) == 4  # two photos and their sidecars
    page = post(client, SAMPLE.read_bytes(), path="/classify").get_data(as_text=True)
    assert 'id="not-saved"' in page and "its limit (--save-limit 2)" in page
    assert capsys.readouterr().err.count("not keeping photos: the save folder holds 2 photos") == 1  # said once
    roomy = create_app(clf, save_dir=tmp_path / "other").test_client()
    monkeypatch.setattr(app_module, "SAVE_MIN_FREE", 2**62)  # a disk with less free than that
    full = post(roomy, SAMPLE.read_bytes()).get_json()
    assert full["saved"] is None and "MiB free on the save folder's disk" in full["not_saved"]
    assert list((tmp_path / "other").iterdir()) == []


def test_loadtest_counts_refused_requests_without_tracebacks(server, tmp_path):
    import subprocess
    import sys

    def loadtest(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lesionlite.edge.serve.loadtest", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    good = loadtest(f"http://127.0.0.1:{server}", str(SAMPLE), "--requests", "8", "--warmup", "2")
    assert good.returncode == 0, good.stderr
    result = json.loads(good.stdout)
    assert result["requests"] == 8 and result["failed"] == 0 and result["p50_ms"] > 0 and result["labels"]
    (tmp_path / "notes.jpg").write_text("not a photo")
    refused = loadtest(f"http://127.0.0.1:{server}", str(tmp_path / "notes.jpg"), "--requests", "6", "--warmup", "0")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    result = json.loads(refused.stdout)
    assert (result["requests"], result["failed"], result["requests_per_s"], result["p50_ms"]) == (0, 6, 0.0, None)
    assert list(result["errors"]) == ["HTTP 400: not an image in an accepted format (bmp, gif, jpg, png, tif, webp)"]
    assert refused.stderr.strip().splitlines() == [
        "error: 6 of 6 requests failed (HTTP 400: not an image in an accepted format (bmp, gif, jpg, png, tif, webp))"]
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = loadtest(f"http://127.0.0.1:{closed}", str(SAMPLE), "--requests", "3", "--warmup", "0")
    assert down.returncode == 1 and "Traceback" not in down.stderr and "ConnectionRefusedError" in down.stderr
    for args, message in ((["nowhere", str(SAMPLE)], "expected http://HOST:PORT"),
                          ([f"http://127.0.0.1:{server}", str(tmp_path / "missing.jpg")], "cannot read"),
                          ([f"http://127.0.0.1:{server}", str(SAMPLE), "--requests", "0"], "expected 1 to 1,000,000")):
        bad = loadtest(*args)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
