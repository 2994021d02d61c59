"""``python -m lesionlite.edge.serve.loadtest`` against the real server, with small numbers."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLES, serving

pytest.importorskip("flask", reason="lesionlite serve needs Flask (pip install '.[serve]')")

SAMPLE = sorted((SAMPLES / "lesions").glob("*.jpg"))[0]


def loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lesionlite.edge.serve.loadtest", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def server_url():
    with serving() as url:
        yield url


def test_a_small_load_test_measures_the_real_server(server_url):
    from lesionlite.edge.classifier import Classifier

    proc = loadtest(server_url, str(SAMPLE), "--requests", "6", "--concurrency", "2", "--warmup", "2")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["requests"] == 6 and figures["concurrency"] == 2  # measured: the requests after the warm-up
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["requests_per_s"] > 0
    assert figures["labels"] == [Classifier().classify(SAMPLE).label]  # every answer the same, the model's


def test_a_refused_upload_or_no_server_is_a_one_line_error(server_url, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    for url, image, message in ((server_url, SAMPLES / "lesions" / "labels.csv", f"error: {server_url}: HTTP 400"),
                                (closed, SAMPLE, f"error: {closed}: "),
                                (server_url, tmp_path / "missing.jpg", "error: [Errno 2] No such file")):
        proc = loadtest(url, str(image), "--requests", "3", "--concurrency", "2", "--warmup", "0")
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("args, message", [(["--requests", "0"], "argument --requests: must be positive, got 0"),
                                           (["--concurrency", "0"], "argument --concurrency: must be positive"),
                                           (["--warmup", "-1"], "argument --warmup: must be non-negative, got -1")])
def test_counts_out_of_range_are_refused_when_parsed(args, message):
    proc = loadtest("http://127.0.0.1:9", str(SAMPLE), *args)
    assert proc.returncode == 2 and message in proc.stderr
