"""Shared fixtures: the repo's sample images and the shipped model bundle (no ../shared needed)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TIMEOUT_SCALE = float(os.environ.get("LESIONLITE_TIMEOUT_SCALE") or 1)
"""Multiplies the subprocess timeouts (:func:`scaled`): ``make pi-check`` runs the suite under arm64
emulation, where a command takes several times as long as here."""


def scaled(seconds: float) -> float:
    """A timeout for a child process, in seconds, stretched by ``LESIONLITE_TIMEOUT_SCALE``."""
    return seconds * TIMEOUT_SCALE


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def lesion_images() -> list[Path]:
    return sorted((SAMPLES / "lesions").glob("*.jpg"))


@pytest.fixture(scope="session")
def fullres_images() -> list[Path]:
    return sorted((SAMPLES / "fullres").glob("*.jpg"))


@pytest.fixture(scope="session")
def parrot() -> Path:
    return SAMPLES / "non-lesion" / "parrot.jpg"


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    """The shipped default bundle (every edge command's default)."""
    from lesionlite.edge.bundle import default_bundle_path

    return default_bundle_path()


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess:
    """The real ``lesionlite`` CLI in a subprocess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "lesionlite.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=scaled(timeout))
    if check and proc.returncode != 0:
        raise AssertionError(f"lesionlite {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def interruptible() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C even when the suite runs as a background job:
    such jobs start with SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def serving(*args: str, timeout: float = 60) -> Iterator[str]:
    """``lesionlite serve --port 0 ARGS`` in a subprocess; its URL once it listens, and stopped after."""
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "serve", "--port", "0", *args], cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "serving on" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1) and proc.poll() is None and time.monotonic() < deadline:
        pass
    try:
        if not ready.is_set():
            raise AssertionError("the server did not start:\n" + "".join(lines))
        yield re.search(r"serving on (\S+)", "".join(lines)).group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
