"""argparse types shared by the commands: a bad value stops the command before any work."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def positive(kind: type) -> Callable[[str], float]:
    """A number of ``kind`` (int or float) above zero."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def output_path(text: str) -> str:
    """A file to be written at the end of a run: its folder must exist now, so a typo fails
    before the work rather than after it."""
    folder = Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder for {text!r}: {folder}")
    return text
