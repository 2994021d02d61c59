"""argparse types shared by the commands: a bad value stops the command before any work."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable


def positive(kind: type, at_most: float | None = None) -> Callable[[str], float]:
    """A number of ``kind`` (int or float) above zero and, if ``at_most`` is given, not above it; a float
    must be finite (``nan`` and ``inf`` are refused, and so is a value too small to be told from zero)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"at most {at_most:g}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def in_range(kind: type, low: float, high: float, unit: str = "") -> Callable[[str], float]:
    """A finite number of ``kind`` from ``low`` to ``high`` (both included): a value the command
    cannot honour (a 0-byte upload limit, a frame rate whose interval overflows) fails in one line."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):  # nan fails every comparison
            raise argparse.ArgumentTypeError(f"expected {low:,} to {high:,}{unit}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def max_threads() -> int:
    """The most threads an option may ask for: twice the CPUs (at least 4). More only queue for the
    same cores (10,000 interpreter threads made a batch 13 times slower) and cost memory."""
    return max(4, 2 * (os.cpu_count() or 1))


def thread_count(text: str) -> int:
    """``--threads`` and ``--workers``: from 1 to :func:`max_threads`."""
    value = int(positive(int)(text))
    if value > max_threads():
        raise argparse.ArgumentTypeError(f"at most {max_threads()} (twice this machine's {os.cpu_count()} CPUs), "
                                         f"got {text}")
    return value


thread_count.__name__ = "int"


def output_path(text: str) -> str:
    """A file to be written at the end of a run: its folder must exist and be writable now, and
    the name must not be a folder, device or pipe (the file is replaced whole, by a rename), so a
    typo fails before the work rather than after it. A symbolic link is followed: its target is
    written."""
    path = Path(os.path.realpath(text))
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder for {text!r}: {folder}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; name a file in it")
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a regular file (a device or pipe): name a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write to {folder} (permission denied)")
    from lesionlite.edge.preprocess import IMAGE_SUFFIXES

    if path.suffix.lower() in IMAGE_SUFFIXES and path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} is an image file: name another file to write")
    return text


def json_output_path(text: str) -> str:
    """:func:`output_path` for a JSON file: an existing file is replaced only if it is JSON (or empty)."""
    output_path(text)
    try:
        with open(text, "rb") as fh:
            head = fh.read(4096).lstrip()
    except FileNotFoundError:
        return text
    if head and head[:1] not in (b"{", b"["):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a JSON file: name another file or delete it")
    return text


def folder_path(text: str) -> Path:
    """A folder to be created if missing: refused now if the name is taken by a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path
