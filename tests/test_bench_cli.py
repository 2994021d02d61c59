"""`lesionlite bench` through the real CLI on the shipped model: the figures it prints and writes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

REFERENCE = ROOT / "models" / "reference" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"  # shipped, as make demo uses it


def test_figures_sweep_reference_and_folder_reach_the_json(tmp_path):
    out = tmp_path / "bench.json"
    folder = tmp_path / "photos"
    shutil.copytree(ROOT / "samples" / "lesions", folder)
    (folder / "broken.jpg").write_bytes(b"not a picture")
    proc = run_cli("bench", "--runs", "5", "--warmup", "1", "--sweep", "1", "2", "--reference",  # alone: the shipped one
                   "--folder", str(folder), "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert [s["threads"] for s in r["sweep"]] == [1, 2] and all(s["invoke_p50_ms"] > 0 for s in r["sweep"])
    invoke, e2e = r["invoke_ms"], r["end_to_end_ms"]
    for t in (invoke, e2e):  # no speed claim here: under load either may be the faster
        assert 0 < t["min"] <= t["p50"] <= t["max"]
    assert r["overhead_ratio_p50"] == pytest.approx(e2e["p50"] / invoke["p50"], rel=1e-3)
    assert r["folder"]["images"] == 16 and r["folder"]["failed"] == 1 and 0 < r["folder"]["ratio"]
    assert f"folder {folder}: 16 images (1 failed to read, skipped) at" in proc.stdout
    assert r["ratio"]["invoke_ms"] == pytest.approx(invoke["p50"] / r["reference"]["invoke_ms"]["p50"], rel=1e-3)
    assert f"end-to-end / invoke-only (p50): {r['overhead_ratio_p50']:.2f}" in proc.stdout
    assert r["reference"]["size_mb"] == pytest.approx(4.07, abs=0.01)
    assert Path(r["reference"]["model"]).samefile(REFERENCE)  # make test installs editable
    assert f"ours / reference ({REFERENCE.name}), p50: invoke {r['ratio']['invoke_ms']:.2f}" in proc.stdout


def test_no_sweep_skips_it_and_bad_arguments_stop_before_the_work(tmp_path):
    proc = run_cli("bench", "--runs", "3", "--warmup", "0", "--no-sweep")
    assert proc.returncode == 0 and "threads sweep" not in proc.stdout
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "zero.jpg"
    empty.write_bytes(b"")
    for args, message in ((["--folder", str(tmp_path / "empty")], "no image files in"),
                          (["--folder", str(tmp_path / "nope")], "no such folder"),
                          (["--json", str(tmp_path / "nope" / "b.json")], "no such folder"),
                          (["--sweep", "0"], "must be positive"),
                          (["--image", str(empty)], f"error: {empty}: empty file"),
                          (["--reference", str(tmp_path / "ref.tflite")], "error: reference model: model not found"),
                          (["--reference", str(empty)], "error: reference model: ")):
        proc = run_cli("bench", *args)
        assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1], args
        assert not proc.stdout  # nothing was measured
