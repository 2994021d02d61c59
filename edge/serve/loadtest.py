"""Bounded load test of ``POST /api/classify`` from a second process on this machine.

    python -m lesionlite.edge.serve.loadtest http://127.0.0.1:8080 samples/lesions/ISIC_0025994.jpg --requests 300

Sends ``--requests`` (after ``--warmup``) requests over ``--concurrency`` keep-alive connections and
prints requests/second and latency percentiles as JSON. Only for servers you run yourself.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np

from lesionlite.edge.args import non_negative, positive


class LoadTestError(RuntimeError):
    """A request failed: the server answered other than 200, or could not be reached."""


def multipart(image: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"upload.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def run(url: str, image: bytes, requests: int, concurrency: int, warmup: int) -> dict:
    """Send ``warmup`` then ``requests`` uploads of ``image`` over ``concurrency`` connections; the
    figures of the ``requests``. The first failure (not HTTP 200, or no connection) stops every
    connection and is raised as :class:`LoadTestError`."""
    target = urlsplit(url)
    body, headers = multipart(image)
    latencies: list[float] = []
    labels: set[str] = set()
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests + warmup))

    def send(conn: http.client.HTTPConnection, i: int) -> None:
        t = time.perf_counter()
        conn.request("POST", "/api/classify", body, headers)
        response = conn.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - t) * 1e3
        if response.status != 200:
            raise LoadTestError(f"HTTP {response.status}: {payload[:200]!r}")
        try:
            label = json.loads(payload)["label"]
        except (ValueError, KeyError, TypeError):
            raise LoadTestError(f"HTTP 200 without a lesionlite answer: {payload[:200]!r}") from None
        with lock:
            labels.add(label)
            if i >= warmup:
                latencies.append(elapsed)

    def worker() -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            for i in counter:
                if failures:
                    return
                send(conn, i)
        except (LoadTestError, OSError, http.client.HTTPException) as exc:
            with lock:
                failures.append(str(exc) or type(exc).__name__)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise LoadTestError(f"{url}: {failures[0]}")
    return {"requests": len(latencies), "concurrency": concurrency,
            "requests_per_s": round((requests + warmup) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2), "labels": sorted(labels)}


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON (0), or a one-line error (2)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("image")
    p.add_argument("--requests", type=positive(int), default=300)
    p.add_argument("--concurrency", type=positive(int), default=2)
    p.add_argument("--warmup", type=non_negative(int), default=20)
    a = p.parse_args(argv)
    try:
        with open(a.image, "rb") as fh:
            image = fh.read()
        print(json.dumps(run(a.url, image, a.requests, a.concurrency, a.warmup)))
    except (LoadTestError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
