"""Bounded load test of ``POST /api/classify`` from a second process on this machine.

    python -m lesionlite.edge.serve.loadtest http://127.0.0.1:8080 samples/lesions/ISIC_0025994.jpg --requests 300

Sends ``--requests`` (after ``--warmup``) requests over ``--concurrency`` keep-alive connections and
prints requests/second and latency percentiles as JSON. Only for servers you run yourself. A request
that fails (refused, an HTTP error, a broken connection) is counted with its reason, not timed; the
rate counts answered requests only, and the exit status is 1 when any failed (2 for bad arguments).
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import numpy as np


def multipart(image: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"upload.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _reason(status: int, payload: bytes) -> str:
    """An HTTP error's one-line reason: the API's JSON ``error``, else the start of the body."""
    try:
        message = json.loads(payload).get("error", "")
    except (ValueError, AttributeError):
        message = payload[:80].decode("utf-8", "replace")
    return f"HTTP {status}: {' '.join(str(message).split())}"


def run(url: str, image: bytes, requests: int, concurrency: int, warmup: int, timeout: float = 30) -> dict:
    target = urlsplit(url)
    body, headers = multipart(image)
    latencies: list[float] = []
    labels: set[str] = set()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    counter = iter(range(requests + warmup))

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        for i in counter:
            t = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
                conn.request("POST", "/api/classify", body, headers)
                response = conn.getresponse()
                payload = response.read()
                elapsed = (time.perf_counter() - t) * 1e3
                answer = json.loads(payload) if response.status == 200 else {}
                label = answer["label"] or answer["decision"] if answer else None  # a declined image has no label
                failure = None if label else _reason(response.status, payload)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                if failure:
                    errors[failure] += 1
                else:
                    labels.add(label)
                    if i >= warmup:
                        latencies.append(elapsed)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]  # Ctrl-C ends them
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    answered = requests + warmup - sum(errors.values())
    result = {"requests": len(latencies), "failed": sum(errors.values()), "concurrency": concurrency,
              "requests_per_s": round(answered / wall, 1),
              "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
              "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
              "labels": sorted(labels)}
    if errors:
        result["errors"] = dict(errors.most_common(5))
    return result


def _count(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= 1_000_000:
            raise argparse.ArgumentTypeError(f"expected {low} to 1,000,000, got {text}")
        return value
    return parse


def _url(text: str) -> str:
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block above it
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m lesionlite.edge.serve.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("url", type=_url, help="the server, http://HOST:PORT")
    p.add_argument("image")
    p.add_argument("--requests", type=_count(1), default=300)
    p.add_argument("--concurrency", type=_count(1), default=2)
    p.add_argument("--warmup", type=_count(0), default=20)
    a = p.parse_args(argv)
    if a.concurrency > 256:
        p.error(f"argument --concurrency: at most 256, got {a.concurrency}")
    try:
        with open(a.image, "rb") as fh:
            image = fh.read()
    except OSError as exc:
        print(f"error: cannot read {a.image}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = run(a.url, image, a.requests, a.concurrency, a.warmup)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result))
    if result["failed"]:
        first = next(iter(result["errors"]))
        print(f"error: {result['failed']} of {a.requests + a.warmup} requests failed ({first})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
