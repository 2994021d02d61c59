"""`lesionlite evaluate` through the real CLI on the shipped model and sample JPEGs."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import ROOT, run_cli

SAMPLES = ROOT / "samples" / "lesions"


def _write_labels(path, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["path", "label", "lesion_id"])
        w.writeheader()
        w.writerows(rows)


def _evaluate(labels, tmp_path, name):
    out = tmp_path / f"{name}.json"
    proc = run_cli("evaluate", str(labels), "--images", str(SAMPLES), "--json", str(out))
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_scores_the_samples_with_an_interval_and_the_disclaimer(tmp_path):
    proc, m = _evaluate(SAMPLES / "labels.csv", tmp_path, "samples")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lo, hi = m["balanced_accuracy_ci95"]
    assert m["n"] == 16 and lo <= m["balanced_accuracy"] <= hi
    assert f"(95% interval {lo:.3f}-{hi:.3f})" in proc.stdout
    assert "not a diagnosis" in proc.stdout.lower()


def test_images_of_one_lesion_count_once_in_the_interval(tmp_path):
    rows = list(csv.DictReader(open(SAMPLES / "labels.csv")))
    _write_labels(tmp_path / "once.csv", rows)
    _write_labels(tmp_path / "same_lesion.csv", [r for r in rows for _ in range(3)])
    _write_labels(tmp_path / "new_lesions.csv", [{**r, "lesion_id": f"{r['lesion_id']}-{i}"}
                                                 for r in rows for i in range(3)])
    intervals = {}
    for name in ("once", "same_lesion", "new_lesions"):
        proc, m = _evaluate(tmp_path / f"{name}.csv", tmp_path, name)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lo, hi = m["balanced_accuracy_ci95"]
        intervals[name] = hi - lo
    assert intervals["same_lesion"] == intervals["once"]  # three photos of a lesion: still one draw
    assert intervals["new_lesions"] < intervals["once"]  # three lesions: more evidence, narrower


def test_a_broken_image_is_reported_and_the_rest_still_scored(tmp_path):
    rows = list(csv.DictReader(open(SAMPLES / "labels.csv")))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((SAMPLES / rows[0]["path"]).read_bytes()[:500])
    _write_labels(tmp_path / "labels.csv", rows + [{"path": str(broken), "label": "nv", "lesion_id": "X"}])
    proc, m = _evaluate(tmp_path / "labels.csv", tmp_path, "broken")
    assert proc.returncode == 1
    assert "skipped" in proc.stderr and "broken.jpg" in proc.stderr and "Traceback" not in proc.stderr
    assert m["n"] == 16 and m["failed"] == 1


def test_a_simulated_light_reaches_the_model_and_bad_gains_are_refused(tmp_path):
    labels = ROOT / "samples" / "fullres" / "labels.csv"  # 600x450 JPEGs: decoded in draft mode
    runs = {}
    for name, gains in (("plain", None), ("neutral", "1,1,1"), ("warm", "1.3,1,0.7")):
        out = tmp_path / f"{name}.json"
        proc = run_cli("evaluate", str(labels), *(["--light", gains] if gains else []), "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert gains is None or f"simulated light: channel gains R,G,B = {gains}" in proc.stdout
        runs[name] = json.loads(out.read_text())
    plain = runs["plain"]
    assert runs["warm"]["light"] == [1.3, 1.0, 0.7]
    assert runs["neutral"]["ece"] == plain["ece"]  # decoded exactly as without --light
    assert runs["warm"]["ece"] != plain["ece"]  # the shipped model sees the cast
    proc = run_cli("evaluate", str(SAMPLES / "labels.csv"), "--light", "1,2")
    assert proc.returncode == 2 and "expected three gains" in proc.stderr and "Traceback" not in proc.stderr


def test_metadata_rows_without_images_are_counted_and_a_split_file_is_checked(tmp_path):
    rows = list(csv.DictReader(open(SAMPLES / "labels.csv")))
    meta = tmp_path / "HAM10000_metadata.csv"  # the download's layout, two rows with no image here
    with open(meta, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["lesion_id", "image_id", "dx"])
        w.writeheader()
        w.writerows([{"lesion_id": r["lesion_id"], "image_id": r["path"][:-4], "dx": r["label"]} for r in rows])
        w.writerows([{"lesion_id": "HAM_X", "image_id": f"ISIC_999999{i}", "dx": "nv"} for i in range(2)])
    proc, m = _evaluate(meta, tmp_path, "meta")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert m["n"] == 16 and "note: 2 of 18 metadata rows have no image" in proc.stderr

    split = tmp_path / "split.csv"
    split.write_text("image_id,split\n" + "".join(f"{r['path'][:-4]},test\n" for r in rows))
    for split_file in (ROOT / "models" / "ham10000-efficientnet-lite0" / "split.csv", split):
        out = tmp_path / "split.json"
        proc = run_cli("evaluate", str(meta), "--images", str(SAMPLES), "--split-file", str(split_file),
                       "--split", "test", "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        m = json.loads(out.read_text())  # the samples are test images of the shipped model's own split
        assert m["n"] == 16 and m["split"] == "test" and m["held_out"] is True and "not held out" not in proc.stderr

    split.write_text("image_id,part\nISIC_0025994,test\n")
    proc = run_cli("evaluate", str(meta), "--images", str(SAMPLES), "--split-file", str(split))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"error: {split}: expected a split.csv with columns image_id and split")


@pytest.mark.parametrize("args,message", [
    (["--json", "{tmp}/nope/m.json"], "no such folder for '{tmp}/nope/m.json'"),
    (["--json", "{tmp}"], "'{tmp}' is a folder; name a file in it"),
    (["--split", "val"], "error: --split needs --split-file"),
])
def test_bad_options_are_refused_before_the_work(tmp_path, args, message):
    proc = run_cli("evaluate", str(SAMPLES / "labels.csv"), *(a.format(tmp=tmp_path) for a in args))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "images" not in proc.stdout
    assert message.format(tmp=tmp_path) in proc.stderr.strip().splitlines()[-1]
    assert len([line for line in proc.stderr.splitlines() if "error:" in line]) == 1


def test_a_spreadsheet_csv_is_read_and_bad_rows_are_named(tmp_path):
    text = (SAMPLES / "labels.csv").read_text()
    bom = tmp_path / "excel.csv"
    bom.write_text("\ufeff" + text, encoding="utf-8")  # as Excel saves "CSV UTF-8"
    proc, m = _evaluate(bom, tmp_path, "bom")
    assert proc.returncode == 0 and m["n"] == 16, proc.stderr
    first = text.splitlines()[1].split(",")[0]
    cases = {"blank.csv": (f"path,label\n{first},\n".encode(), f"the row of {SAMPLES / first} has no label"),
             "short.csv": (f"path,label\n{first}\n".encode(), "line 2: expected the header's 2 columns"),
             "latin1.csv": (f"path,label\n{first},n\xe6v\n".encode("latin-1"), "latin1.csv is not UTF-8 text")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        proc = run_cli("evaluate", str(tmp_path / name), "--images", str(SAMPLES))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_images_the_shipped_model_trained_on_are_flagged_however_they_are_listed(tmp_path):
    bundle = ROOT / "models" / "ham10000-efficientnet-lite0"
    trained = next(r for r in csv.DictReader(open(bundle / "split.csv")) if r["split"] == "train")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "ISIC_0025994.jpg", images / f"{trained['image_id']}.jpg")  # stands in for a training image
    shutil.copy(SAMPLES / "ISIC_0026731.jpg", images / "ISIC_9999999.jpg")  # another image of that lesion
    shutil.copy(SAMPLES / "ISIC_0026458.jpg", images)  # a test image
    labels = images / "labels.csv"
    labels.write_text(f"path,label,lesion_id\n{trained['image_id']}.jpg,nv,\n"
                      f"ISIC_9999999.jpg,nv,{trained['lesion_id']}\nISIC_0026458.jpg,mel,HAM_0005588\n")
    out = tmp_path / "m.json"
    proc = run_cli("evaluate", str(labels), "--json", str(out))  # no split file named
    assert proc.returncode == 0, proc.stderr
    assert "note: 2 of these 3 images are of lesions ham10000-efficientnet-lite0 was trained on (its train + val " \
        "split): these figures are not held out" in proc.stderr
    assert f"--split-file {bundle / 'split.csv'} --split test" in proc.stderr
    assert json.loads(out.read_text())["held_out"] is False
    proc = run_cli("evaluate", str(labels), "--split-file", str(bundle / "split.csv"), "--split", "train",
                   "--json", str(out))  # the other image of a train lesion is on the train side too
    assert proc.returncode == 0 and json.loads(out.read_text())["n"] == 2, proc.stderr


def test_held_out_is_unknown_without_the_models_own_split_file(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "models" / "ham10000-efficientnet-lite0", bundle)
    out = tmp_path / "m.json"
    with open(bundle / "split.csv", "a") as fh:
        fh.write("ISIC_9999999,train\n")  # no longer the split the metadata names
    proc = run_cli("evaluate", str(SAMPLES / "labels.csv"), "-m", str(bundle), "--json", str(out))
    assert proc.returncode == 0 and json.loads(out.read_text())["held_out"] is None
    assert f"note: {bundle / 'split.csv'} is not the split ham10000-efficientnet-lite0 was trained with" in proc.stderr
    (bundle / "split.csv").unlink()
    proc = run_cli("evaluate", str(SAMPLES / "labels.csv"), "-m", str(bundle), "--json", str(out))
    assert proc.returncode == 0 and json.loads(out.read_text())["held_out"] is None and "note:" not in proc.stderr


def test_a_missing_labels_file_is_named_without_python_jargon(tmp_path):
    proc = run_cli("evaluate", str(tmp_path / "nope.csv"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'nope.csv'}: No such file or directory"


def test_a_simulated_camera_reaches_the_model_and_combines_with_a_light(tmp_path):
    labels = ROOT / "samples" / "fullres" / "labels.csv"
    runs = {}
    for name, extra in (("plain", []), ("blur", ["--degrade", "blur"]),
                        ("warm-blur", ["--light", "1.3,1,0.7", "--degrade", "blur"])):
        out = tmp_path / f"{name}.json"
        proc = run_cli("evaluate", str(labels), *extra, "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not extra or "simulated degradation: blur" in proc.stdout
        runs[name] = json.loads(out.read_text())
    assert runs["blur"]["degrade"] == "blur" and runs["plain"]["degrade"] is None
    assert runs["warm-blur"]["light"] == [1.3, 1.0, 0.7]
    assert len({r["ece"] for r in runs.values()}) == 3  # each change reaches the model
    proc = run_cli("evaluate", str(labels), "--degrade", "fog")
    assert proc.returncode == 2 and "invalid choice: 'fog'" in proc.stderr
