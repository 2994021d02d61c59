"""Bounded load test of ``POST /api/classify`` from a second process on this machine.

    python -m lesionlite.edge.serve.loadtest http://127.0.0.1:8080 samples/lesions/ISIC_0025994.jpg --requests 300

Sends ``--requests`` (after ``--warmup``) requests over ``--concurrency`` keep-alive connections and
prints requests/second and latency percentiles as JSON. Only for servers you run yourself.
"""
from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np


def multipart(image: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"upload.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def run(url: str, image: bytes, requests: int, concurrency: int, warmup: int) -> dict:
    target = urlsplit(url)
    body, headers = multipart(image)
    latencies: list[float] = []
    labels: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(requests + warmup))

    def worker() -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        for i in counter:
            t = time.perf_counter()
            conn.request("POST", "/api/classify", body, headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - t) * 1e3
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
            with lock:
                labels.add(json.loads(payload)["label"])
                if i >= warmup:
                    latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "concurrency": concurrency,
            "requests_per_s": round((requests + warmup) / wall, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2), "labels": sorted(labels)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("image")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--warmup", type=int, default=20)
    a = p.parse_args()
    with open(a.image, "rb") as fh:
        image = fh.read()
    print(json.dumps(run(a.url, image, a.requests, a.concurrency, a.warmup)))


if __name__ == "__main__":
    main()
