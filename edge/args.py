"""argparse types shared by the commands: a bad value stops the command before any work."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable


def positive(kind: type) -> Callable[[str], float]:
    """A number of ``kind`` (int or float) above zero."""
    return _number(kind, lambda value: value > 0, "positive")


def non_negative(kind: type) -> Callable[[str], float]:
    """A number of ``kind`` (int or float), zero or above."""
    return _number(kind, lambda value: value >= 0, "non-negative")


def _number(kind: type, fits: Callable[[float], bool], words: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {words} {kind.__name__}, got {text!r}") from None
        if not fits(value):  # NaN fits neither
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


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
    return text


def folder_path(text: str) -> Path:
    """A folder to be created if missing: refused now if the name is taken by a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return path
