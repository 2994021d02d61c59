"""The edge never imports TensorFlow: statically, and after a real classification."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

HEAVY = ("tensorflow", "keras", "torch", "sklearn", "matplotlib", "scipy")


def test_no_module_in_edge_imports_a_heavy_package():
    offenders = []
    for path in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not offenders, offenders


def test_classify_does_not_load_tensorflow(lesion_images):
    code = (
        "import sys, lesionlite.cli\n"
        f"rc = lesionlite.cli.main(['classify', {str(lesion_images[0])!r}])\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY', heavy, 'RC', rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "HEAVY [] RC 0" in proc.stdout, proc.stdout + proc.stderr
