"""``.ci/compare_classify.py``, which ``make pi-check`` uses to hold the emulated Pi's answers against this
host's, run here on the host so that a change to the edge code that breaks it fails ``make test`` too."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, scaled

SCRIPT = ROOT / ".ci" / "compare_classify.py"
PATHS = ["samples/lesions", "samples/non-lesion"]


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=scaled(300))


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dump") / "host.json"
    proc = script("dump", str(out), *PATHS)
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in proc.stdout and "ai-edge-litert" in proc.stdout  # the versions it ran with
    return out


def test_dump_holds_what_classify_prints_at_full_precision(dump: Path, tmp_path: Path) -> None:
    rows = {r["path"]: r for r in json.loads(dump.read_text())["rows"]}
    run_cli("classify", *PATHS, "-o", str(tmp_path / "out.csv"), check=True)
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as fh:
        printed = {r["path"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(printed) and len(rows) == 18
    for path, row in rows.items():
        assert (row["label"], row["decision"]) == (printed[path]["label"], printed[path]["decision"]), path
        for code, p in row["probabilities"].items():
            assert abs(p - float(printed[path][f"p_{code}"])) <= 5e-5, (path, code)
        assert abs(row["scope"] - float(printed[path]["scope"])) <= 5e-5, path
    assert rows["samples/non-lesion/parrot.jpg"]["decision"] == "out-of-scope"


def test_compare_agrees_with_itself_and_names_each_difference(dump: Path, tmp_path: Path) -> None:
    same = script("compare", str(dump), str(dump))
    assert same.returncode == 0 and "classify agrees" in same.stdout and "18 images" in same.stdout

    data = json.loads(dump.read_text())
    first, second, third = data["rows"][:3]
    code = next(iter(first["probabilities"]))
    first["probabilities"][code] += 2e-4
    second["decision"] = "refer" if second["decision"] != "refer" else "monitor"
    third["scope"] += 2e-4
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    differs = script("compare", str(dump), str(other))
    assert differs.returncode == 1, differs.stdout
    assert f"{first['path']}: a probability or the scope score differs" in differs.stdout
    assert f"{second['path']}: decision" in differs.stdout
    assert f"{third['path']}: a probability or the scope score differs" in differs.stdout
    assert script("compare", str(dump), str(other), "--tolerance", "1e-3").returncode == 1  # the decision still
