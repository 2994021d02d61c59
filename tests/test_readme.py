"""The README's Python API example runs as written, and the README stays a five-minute read."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def _python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs():
    proc = subprocess.run([sys.executable, "-c", _python_example()], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("refer mel 0.96 p(mel)")
    assert lines[1] == "samples/non-lesion/parrot.jpg out-of-scope"
    assert lines[2].startswith("README.md unreadable: not a readable image")
    assert lines[3].startswith("refused: model not found: no/such/bundle")


def test_readme_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12_000
