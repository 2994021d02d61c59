"""The scope gate: the shipped model declines what is not dermoscopy, through the real interpreter
and the real CLI; bundles without a gate still load; an edited gate is refused."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from lesionlite.edge.bundle import BundleError, load_bundle
from lesionlite.edge.classifier import Classifier, tta_views
from lesionlite.edge.embedded import embed, pack, unpack
from lesionlite.edge.metrics import wilson
from lesionlite.edge.scope import OUT_OF_SCOPE, ScopeGate

DECIDED = ("refer", "uncertain", "monitor")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _ungated_copy(bundle_dir: Path, dest: Path) -> Path:
    """The shipped bundle as an older one was: the same model and metadata without a ``scope``
    section, embedded and checksummed as convert writes them."""
    from lesionlite.edge.bundle import sha256_file

    shutil.copytree(bundle_dir, dest)
    meta = json.loads((dest / "metadata.json").read_text())
    meta.pop("scope")
    meta["schema"] = "lesionlite.bundle/2"
    for key in ("sha256", "size_bytes"):
        meta.pop(key)
    model = embed((dest / "model.tflite").read_bytes(), meta)
    (dest / "model.tflite").write_bytes(model)
    meta.update(sha256=sha256_file(dest / "model.tflite"), size_bytes=len(model))
    (dest / "metadata.json").write_text(json.dumps(meta))
    return dest


def test_shipped_bundle_has_a_gate(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.scope is not None and bundle.scope.size == 1280
    assert 0.0 < bundle.scope.threshold < 1.0


def test_parrot_is_out_of_scope_through_the_real_model(parrot):
    res = Classifier().classify(parrot)
    assert res.decision == OUT_OF_SCOPE
    assert res.label == "" and res.top == []
    assert res.scope is not None and res.scope < 0.1
    assert res.reason.startswith("not a dermoscopic image of a skin lesion (scope score")
    assert sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-4)  # kept for inspection


def test_a_phone_photo_of_a_lesion_is_out_of_scope(root):
    """A nevus photographed without a dermatoscope: skin and a lesion, but not the view the model reads."""
    res = Classifier().classify(root / "samples/non-lesion/phone-photo-PAT_100_393_595.jpg")
    assert res.decision == OUT_OF_SCOPE and res.label == ""


def test_classify_keeps_the_declined_row_with_its_probabilities(tmp_path, parrot, lesion_images):
    out = tmp_path / "rows.csv"
    proc = run_cli("classify", str(parrot), *map(str, lesion_images[:3]), "-o", str(out))
    assert proc.returncode == 0, proc.stderr  # the image was read; the model declined
    rows = {Path(r["path"]).name: r for r in _rows(out)}
    declined = rows["parrot.jpg"]
    assert declined["decision"] == OUT_OF_SCOPE and declined["label"] == "" and declined["error"] == ""
    assert float(declined["scope"]) < 0.1 and float(declined["p_mel"]) >= 0.0
    assert "1 image(s) out of scope" in proc.stderr
    table = run_cli("classify", str(parrot)).stdout
    assert "out-of-scope" in table and "not a dermoscopic image" in table


def test_dermoscopic_samples_get_labels(lesion_images, fullres_images):
    clf = Classifier()
    results = [clf.classify(p) for p in lesion_images + fullres_images]
    answered = [r for r in results if r.decision in DECIDED]
    assert all(r.label and r.scope >= clf.bundle.scope.threshold for r in answered)
    declined = [p.name for p, r in zip(lesion_images + fullres_images, results) if r.decision == OUT_OF_SCOPE]
    assert len(answered) + len(declined) == len(results)
    assert len(declined) <= 1, declined  # samples/NOTICE names the one dermatofibroma the gate declines


def test_tta_scores_the_mean_features(lesion_images):
    clf = Classifier()
    rgb = clf.preprocess(lesion_images[0])
    mean = np.mean([clf.features(np.ascontiguousarray(v)) for v in tta_views(rgb)], axis=0)
    assert clf.predict(rgb, tta=True).scope == pytest.approx(clf.bundle.scope.score(mean), abs=1e-9)


def test_a_bundle_without_a_gate_loads_and_answers_anything(tmp_path, bundle_dir, parrot):
    old = _ungated_copy(bundle_dir, tmp_path / "old-bundle")
    clf = Classifier(old)
    assert clf.bundle.scope is None
    res = clf.classify(parrot)
    assert res.decision in DECIDED and res.label and res.scope is None
    info = run_cli("info", "--model", str(old))
    assert info.returncode == 0 and "scope gate: none" in info.stdout


def test_a_bare_model_says_it_has_no_gate(root):
    info = run_cli("info", "--model", str(root / "models/reference/tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    assert info.returncode == 0 and "scope gate: none" in info.stdout


def test_info_describes_the_gate(bundle_dir):
    info = run_cli("info", "--model", str(bundle_dir))
    assert "scope gate: logistic regression" in info.stdout and "threshold" in info.stdout


@pytest.mark.parametrize("edit", ["threshold", "weights", "remove"])
def test_an_edited_gate_is_refused(tmp_path, bundle_dir, parrot, edit):
    copy = tmp_path / "edited"
    shutil.copytree(bundle_dir, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    if edit == "threshold":
        meta["scope"]["threshold"] = 0.0  # would let every photo through
    elif edit == "weights":
        meta["scope"]["weights"][0] += 1.0
    else:
        meta.pop("scope")
    (copy / "metadata.json").write_text(json.dumps(meta))
    proc = run_cli("classify", str(parrot), "--model", str(copy))
    assert proc.returncode == 2
    assert "refusing an edited bundle" in proc.stderr and "scope" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_gate_whose_model_lacks_the_features_output_is_refused(tmp_path, bundle_dir):
    """A scope section on a model without the pooled-features output (metadata embedded and
    checksummed, so only the interpreter check can catch it)."""
    from lesionlite.edge.bundle import sha256_file

    old = _ungated_copy(bundle_dir, tmp_path / "old")
    gated_meta = json.loads((bundle_dir / "metadata.json").read_text())
    meta = json.loads((old / "metadata.json").read_text())
    meta.update(scope=gated_meta["scope"], schema=gated_meta["schema"])
    for key in ("sha256", "size_bytes"):
        meta.pop(key)
    model = unpack((old / "model.tflite").read_bytes())
    model.subgraphs[0].outputs = model.subgraphs[0].outputs[:1]
    data = embed(pack(model), meta)
    (old / "model.tflite").write_bytes(data)
    meta.update(sha256=sha256_file(old / "model.tflite"), size_bytes=len(data))
    (old / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="scope gate reads 1280 features"):
        Classifier(old)


def test_gate_arithmetic():
    gate = ScopeGate(np.array([1.0, -1.0]), 0.0, 0.5)
    assert gate.score(np.array([0.0, 0.0])) == pytest.approx(0.5)
    assert gate.admits(0.5) and not gate.admits(0.4999)
    assert "0.499 < 0.500" in gate.reason(0.4990)  # more digits when two would print the same
    assert gate.score(np.array([-1e6, 1e6])) == 0.0  # no overflow
    lo, hi = wilson(0, 82)
    assert lo == 0.0 and hi == pytest.approx(0.0447, abs=1e-3)


def _tiny_sources(tmp: Path, lesion_images: list[Path], parrot: Path, root: Path) -> dict[str, Path]:
    """A small dermoscopy folder (turned and cropped views of the samples, each its own group) and a
    negatives folder laid out as ../shared/data/not-dermoscopy is."""
    from PIL import Image

    derm = tmp / "derm"
    derm.mkdir()
    for i, path in enumerate(lesion_images):
        with Image.open(path) as im:
            for k in range(4):
                view = im.rotate(90 * k).crop((8 * k, 8 * k, 224 - 8 * k, 224 - 8 * k))
                view.save(derm / f"{path.stem}_{k}.jpg", quality=92)
    neg = tmp / "negatives"
    (neg / "photos").mkdir(parents=True)
    (neg / "cutouts").mkdir()
    (neg / "clinical").mkdir()
    with Image.open(parrot) as im:
        im.convert("RGB").save(neg / "photos" / "parrot.jpg")
        cut = im.convert("RGBA").resize((200, 150))
        cut.putalpha(Image.new("L", cut.size, 255).point(lambda v: v))
        for k in range(3):
            cut.rotate(20 * k).save(neg / "cutouts" / f"parrot{k}.png")
    phone = root / "samples/non-lesion/phone-photo-PAT_100_393_595.jpg"
    shutil.copy(phone, neg / "clinical" / phone.name)
    (neg / "clinical" / "labels.csv").write_text(f"image,patient_id\n{phone.name},PAT_100\n")
    return {"derm": derm, "negatives": neg}


def test_scope_command_fits_a_gate_and_keeps_the_logits(tmp_path, bundle_dir, lesion_images, parrot, root):
    """`lesionlite scope` on a bundle without a gate: the written bundle loads, carries the gate and
    its held-out table, answers with the same probabilities, and can be refitted."""
    pytest.importorskip("sklearn", reason="lesionlite scope needs scikit-learn (pip install '.[train]')")
    src = _tiny_sources(tmp_path, lesion_images, parrot, root)
    old = _ungated_copy(bundle_dir, tmp_path / "old")
    ham = tmp_path / "ham"
    ham.mkdir()
    (ham / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\n")  # no HAM images: others only
    out = tmp_path / "gated"
    args = ["scope", str(old), "--data", str(ham), "--dermoscopy", str(src["derm"]),
            "--negatives", str(src["negatives"])]
    proc = run_cli(*args, "--out", str(out))
    assert proc.returncode == 2 and "no image under" in proc.stderr  # an empty HAM folder is named
    (ham / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nHAM_x,ISIC_x,nv\n")
    shutil.copy(lesion_images[0], ham / "ISIC_x.jpg")
    proc = run_cli(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "declined as out-of-scope" in proc.stdout and "camera-like" in proc.stdout and "derm" in proc.stdout
    gated = Classifier(out)
    meta = gated.bundle.meta
    assert gated.bundle.scope is not None and meta["scope"]["fitted_on"]["camera-like"] > 100
    assert "## Scope gate" in (out / "MODEL_CARD.md").read_text()
    assert "lesionlite scope" in (out / "README.md").read_text()
    assert (out / "split.csv").read_bytes() == (old / "split.csv").read_bytes()
    before, after = Classifier(old), gated
    for path in lesion_images[:4]:
        np.testing.assert_array_equal(before.probabilities(before.preprocess(path)),
                                      after.probabilities(after.preprocess(path)))
    again = run_cli(*args)  # refit in place: the features output is not added twice
    assert again.returncode == 0 and Classifier(old).bundle.scope is not None


def test_scope_refuses_too_little_data_and_a_foreign_out(tmp_path, bundle_dir, lesion_images, parrot, root):
    pytest.importorskip("sklearn", reason="lesionlite scope needs scikit-learn (pip install '.[train]')")
    src = _tiny_sources(tmp_path, lesion_images[:2], parrot, root)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    ham = tmp_path / "ham"
    ham.mkdir()
    (ham / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\nHAM_x,ISIC_x,nv\n")
    shutil.copy(lesion_images[0], ham / "ISIC_x.jpg")
    args = ["scope", str(bundle_dir), "--data", str(ham), "--dermoscopy", str(src["derm"]),
            "--negatives", str(src["negatives"])]
    proc = run_cli(*args, "--out", str(foreign))
    assert proc.returncode == 2 and "holds files of its own" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    proc = run_cli(*args, "--out", str(tmp_path / "new"))
    assert proc.returncode == 2 and "too few held-out images" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


def test_web_api_says_the_same(parrot):
    """``POST /api/classify`` of the parrot: the same decision and reason as the CLI, no label."""
    pytest.importorskip("flask", reason="lesionlite serve needs Flask (pip install '.[serve]')")
    import io

    from lesionlite.edge.serve.app import create_app

    clf = Classifier()
    client = create_app(clf).test_client()
    reply = client.post("/api/classify", data={"image": (io.BytesIO(parrot.read_bytes()), "parrot.jpg")},
                        content_type="multipart/form-data")
    body = reply.get_json()
    assert reply.status_code == 200 and body["decision"] == OUT_OF_SCOPE
    assert body["label"] == "" and body["top"] == [] and body["scope"] < 0.1
    assert body["reason"] == clf.classify(parrot).reason
    page = client.post("/classify", data={"image": (io.BytesIO(parrot.read_bytes()), "parrot.jpg")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert "Not a dermoscopic image" in page and "Most likely classes" not in page and "Refer" not in page


def test_camera_shows_and_saves_an_out_of_scope_shot(tmp_path, parrot):
    """A replayed camera pointed at the parrot: the status line says it is not dermoscopy, the shot
    is saved with its out-of-scope decision."""
    from PIL import Image

    source = tmp_path / "frames"
    source.mkdir()
    shutil.copy(parrot, source / "parrot.jpg")
    shots = tmp_path / "shots"
    proc = run_cli("camera", "--source", f"replay:{source}", "--display", "headless", "--save-dir", str(shots),
                   "--frames", "8", "--auto-shoot", "0.3", "--frame-every", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Not a dermoscopic image | OUT OF SCOPE" in proc.stdout + proc.stderr
    records = [json.loads(p.read_text()) for p in shots.glob("*.json")]
    assert records and all(r["decision"] == OUT_OF_SCOPE and r["label"] == "" for r in records)
    assert all((shots / r["image"]).is_file() for r in records)
    frame = next((shots / ".frames").glob("*.jpg"))
    with Image.open(frame) as im:
        assert im.size == Image.open(parrot).size  # annotated at the camera's own portrait size


def test_overlay_wraps_the_words_on_a_portrait_frame():
    """On a phone-shaped frame the decline notice and the disclaimer wrap or fit; none is cut to "..."."""
    from PIL import ImageDraw

    from lesionlite.edge.camera.overlay import SHORT_DISCLAIMER, View, _wrap, font, panel, render
    from lesionlite.edge.result import Prediction, make_result

    clf = Classifier()
    res = make_result(Prediction(np.full(7, 1 / 7), 0.01), clf.bundle.labels, clf.bundle.thresholds, 3, clf.bundle.scope)
    p = panel(View(res))
    assert p.headline == "Not a dermoscopic image" and p.chip == "OUT OF SCOPE" and p.top == ""
    image = render((512, 929), p)
    assert image.size == (512, 929)
    draw = ImageDraw.Draw(image)
    lines = _wrap(draw, "Not a dermoscopic image - this model reads dermatoscope images only", font(40, True), 420, 8)
    assert len(lines) > 1 and not any(line.endswith("...") for line in lines)
    assert " ".join(lines) == "Not a dermoscopic image - this model reads dermatoscope images only"
    assert _wrap(draw, SHORT_DISCLAIMER * 5, font(40, True), 300, 2)[-1].endswith("...")
