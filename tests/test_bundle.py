"""Bundle loading and validation with the real interpreter and the shipped model file."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from lesionlite.edge.bundle import (LABELS_FILE, METADATA_FILE, MODEL_FILE, SELF_REFERENTIAL, BundleError, _check_labels,
                                    load_bundle, sha256_file)
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.embedded import embed, read_embedded
from lesionlite.edge.labels import read_labels_file


@pytest.fixture()
def bundle_copy(bundle_dir, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def _edit_meta(bundle, change):
    """Edit ``metadata.json`` alone, as a hand edit would."""
    path = bundle / METADATA_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _rebuild(bundle, change):
    """Change the metadata everywhere, as a faulty converter would: in ``metadata.json``, in the
    copy embedded in the model, and in the checksum, so only the checks on content can catch it."""
    _edit_meta(bundle, change)
    meta = json.loads((bundle / METADATA_FILE).read_text())
    model = bundle / MODEL_FILE
    model.write_bytes(embed(model.read_bytes(), {k: v for k, v in meta.items() if k not in SELF_REFERENTIAL}))
    _edit_meta(bundle, lambda m: m.update(sha256=sha256_file(model), size_bytes=model.stat().st_size))
    if isinstance(meta.get("labels"), list):
        (bundle / LABELS_FILE).write_text("".join(f"{lab['code']}\t{lab['name']}\n" for lab in meta["labels"]))


def test_shipped_bundle_classifies_a_real_jpeg(lesion_images):
    clf = Classifier()
    res = clf.classify(lesion_images[0])
    assert sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert res.decision in ("refer", "uncertain", "monitor")  # never "benign"; "none" needs a bare model
    assert res.label in clf.bundle.codes and res.label == res.top[0][0]
    assert [p for _, _, p in res.top] == sorted((p for _, _, p in res.top), reverse=True)
    assert clf.bundle.meta["quantization"] == "int8" and clf.spec.dtype == "uint8"


def test_info_says_what_the_shipped_model_was_trained_and_calibrated_on():
    meta = Classifier().bundle.meta
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"trained on: {' + '.join(meta['training']['trained_on'])} of its split.csv" in proc.stdout
    by = f" by {meta['calibration']['fitted_by']}" if "fitted_by" in meta["calibration"] else ""
    assert f"temperature {meta['calibration']['temperature']:.3f} (fitted on val{by})" in proc.stdout


def test_tta_answer_does_not_depend_on_how_the_lesion_was_turned(lesion_images):
    clf = Classifier()
    rgb = clf.preprocess(lesion_images[0])
    single = [clf.probabilities(np.ascontiguousarray(np.rot90(rgb, k))) for k in range(4)]
    assert max(np.abs(p - single[0]).max() for p in single) > 1e-3  # one view is orientation-bound
    turned = [clf.probabilities(np.ascontiguousarray(np.rot90(rgb, k)), tta=True) for k in range(4)]
    mirrored = clf.probabilities(np.ascontiguousarray(rgb[:, ::-1]), tta=True)
    for p in [*turned[1:], mirrored]:
        np.testing.assert_allclose(p, turned[0], atol=1e-6)


def test_a_modified_model_file_is_refused(bundle_copy, lesion_images):
    data = bytearray((bundle_copy / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle_copy / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its metadata"):
        load_bundle(bundle_copy)
    proc = run_cli("classify", str(lesion_images[0]), "--model", str(bundle_copy))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("change,reason", [
    (lambda m: m["input"].update(height=m["input"]["height"] + 1), "input size"),
    (lambda m: m["input"].update(scale=0.5), "input quantization"),
    (lambda m: m["labels"].pop(), "labels != model output size"),
    (lambda m: m["output"].update(dtype="uint8"), "output dtype"),
    (lambda m: m["input"].update(color_constancy="retinex"), "colour constancy 'retinex'"),
    (lambda m: m["input"].update(crop="lesion_mask"), "crop 'lesion_mask'"),
    (lambda m: m["input"].update(color_constancy=["shades_of_gray"]), "colour constancy"),
    (lambda m: m["input"].update(color_order="BGR"), "colour order 'BGR'"),
    (lambda m: m["input"].update(resize="bicubic"), "resize 'bicubic'"),
    (lambda m: m["input"].update(height="224"), "input size '224'"),
    (lambda m: m["output"].update(kind="softmax"), "output kind 'softmax'"),
    (lambda m: m["output"].update(scale="x"), "scale"),
    (lambda m: m["calibration"].update(temperature=0), "temperature 0"),
    (lambda m: m["calibration"].update(temperature=-1.0), "temperature -1.0"),
    (lambda m: m["calibration"].update(temperature="abc"), "temperature 'abc'"),
    (lambda m: m["thresholds"]["refer"].update(melanoma=0.1), "'melanoma': 0.1"),
    (lambda m: m["thresholds"]["refer"].update(mel="0.2"), "'mel': '0.2'"),
    (lambda m: m["thresholds"]["refer"].pop("mel"), "no referral threshold for mel"),
    (lambda m: m["thresholds"].update(confidence_floor="high"), "confidence_floor"),
    (lambda m: m.update(thresholds=None), "thresholds"),
])
def test_metadata_the_runtime_cannot_honour_is_refused(bundle_copy, change, reason):
    _rebuild(bundle_copy, change)
    with pytest.raises(BundleError, match=reason):
        Classifier(bundle_copy)
    # ... and in one line by the CLI, wherever the bundle is used
    proc = run_cli("info", "--model", str(bundle_copy))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.parametrize("change", [
    lambda m: m["thresholds"]["refer"].update(mel=0.99),  # would silence most referrals
    lambda m: m["calibration"].update(temperature=5.0),
    lambda m: m["labels"].__setitem__(slice(4, 6), m["labels"][5:3:-1]),  # mel and nv swapped
])
def test_a_hand_edited_metadata_file_is_refused(bundle_copy, lesion_images, change):
    _edit_meta(bundle_copy, change)
    with pytest.raises(BundleError, match="differs from the metadata embedded in model.tflite .*refusing"):
        load_bundle(bundle_copy)


def test_a_labels_file_that_disagrees_with_the_metadata_is_refused(bundle_copy, tmp_path):
    lone = tmp_path / "lone.tflite"
    shutil.copy(bundle_copy / MODEL_FILE, lone)
    (tmp_path / "two.txt").write_text("nv\nmel\n")
    with pytest.raises(BundleError, match="two.txt does not match the bundle's labels"):
        load_bundle(lone, str(tmp_path / "two.txt"))  # against the metadata embedded in a lone model
    shipped = (bundle_copy / LABELS_FILE).read_text()
    (bundle_copy / LABELS_FILE).write_text("nv\nmel\n")
    for path in (bundle_copy, bundle_copy / MODEL_FILE):  # the folder, or the model inside it
        with pytest.raises(BundleError, match="labels.txt does not match the bundle's labels"):
            load_bundle(path)
    (bundle_copy / LABELS_FILE).write_text(shipped.replace("Melanoma", "Mole"))  # a name shown on screen
    with pytest.raises(BundleError, match="label names \\(mel: 'Mole', not 'Melanoma'\\)"):
        load_bundle(bundle_copy)
    meta = json.loads((bundle_copy / METADATA_FILE).read_text())
    (bundle_copy / LABELS_FILE).write_text("".join(f"{lab['code']}\n" for lab in meta["labels"]))
    bundle = load_bundle(bundle_copy)  # codes alone: the metadata's names stand, whatever they are
    assert bundle.labels[4] == ("mel", "Melanoma")
    own_names = dataclasses.replace(bundle, labels=[(c, f"Class {c}") for c in bundle.codes])
    _check_labels(own_names, read_labels_file(str(bundle_copy / LABELS_FILE)), LABELS_FILE)


def test_a_model_without_malignant_labels_may_carry_no_thresholds(bundle_copy, lesion_images):
    _rebuild(bundle_copy, lambda m: (m.update(thresholds={}),
                                     [lab.update(code=f"class{i}") for i, lab in enumerate(m["labels"])]))
    result = Classifier(bundle_copy).classify(lesion_images[0])
    assert result.decision == "none" and result.label.startswith("class")


def test_without_a_reader_for_embedded_metadata_the_check_is_said_to_be_off(bundle_copy, monkeypatch, capfd):
    import lesionlite.edge.bundle

    _edit_meta(bundle_copy, lambda m: m["thresholds"]["refer"].update(mel=0.99))
    monkeypatch.setattr(lesionlite.edge.bundle, "can_read", lambda: False)  # as with tflite-runtime alone
    load_bundle(bundle_copy)
    assert "an edited metadata.json would go unnoticed" in capfd.readouterr().err


def test_unknown_schema_and_missing_fields_are_refused(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m.update(schema="other/9"))
    with pytest.raises(BundleError, match="schema"):
        load_bundle(bundle_copy)
    _edit_meta(bundle_copy, lambda m: (m.update(schema="lesionlite.bundle/1"), m.pop("calibration")))
    with pytest.raises(BundleError, match="missing a field"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("text", ["[1, 2]", '"x"', "null"])
def test_metadata_that_is_not_an_object_is_refused_in_one_line(bundle_copy, lesion_images, text):
    (bundle_copy / METADATA_FILE).write_text(text)
    proc = run_cli("classify", "--model", str(bundle_copy), str(lesion_images[0]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {bundle_copy / METADATA_FILE} is not a JSON object: "
                                                "refusing the bundle"]


def test_a_field_of_the_wrong_type_is_named_as_such(bundle_copy):
    _edit_meta(bundle_copy, lambda m: m.update(input="224x224"))
    with pytest.raises(BundleError, match="wrong type"):
        load_bundle(bundle_copy)


def test_embedded_metadata_round_trip_and_lone_model_file(bundle_dir, tmp_path, lesion_images, capfd):
    meta = json.loads((bundle_dir / METADATA_FILE).read_text())
    embedded = read_embedded(bundle_dir / MODEL_FILE)
    assert embedded == {k: v for k, v in meta.items() if k not in ("sha256", "size_bytes")}
    lone = tmp_path / "copied.tflite"
    shutil.copy(bundle_dir / MODEL_FILE, lone)
    clf = Classifier(lone)
    assert "embedded" in capfd.readouterr().err
    assert clf.bundle.temperature == meta["calibration"]["temperature"]
    ref = Classifier(bundle_dir).classify(lesion_images[1])
    assert clf.classify(lesion_images[1]).probabilities == pytest.approx(ref.probabilities)
    proc = run_cli("info", "--model", str(lone))
    assert proc.returncode == 0, proc.stderr
    assert f"{lone.stat().st_size / 1e6:.2f} MB" in proc.stdout and "no metadata.json to check it against" in proc.stdout


def test_embed_then_read_on_a_model_and_disagreement_warning(bundle_copy, capfd):
    path = bundle_copy / MODEL_FILE
    path.write_bytes(embed(path.read_bytes(), {"schema": "x", "note": "other"}))
    assert read_embedded(path) == {"schema": "x", "note": "other"}
    _rebuild(bundle_copy, lambda m: m.update(created="yesterday"))
    _edit_meta(bundle_copy, lambda m: m.update(created="today"))  # a field the device does not act on
    Classifier(bundle_copy)
    assert "differs from the metadata embedded in model.tflite (created)" in capfd.readouterr().err


def test_missing_runtime_names_its_install_command(lesion_images):
    pytest.importorskip("ai_edge_litert")
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite-runtime is installed here")
    except ImportError:
        pass
    proc = run_cli("classify", str(lesion_images[0]), "--runtime", "tflite-runtime")
    assert proc.returncode == 2 and "pip install tflite-runtime" in proc.stderr


def test_tensorflow_fallback_runtime_gives_the_same_answer(lesion_images):
    pytest.importorskip("tensorflow")
    litert = Classifier(runtime="ai-edge-litert").classify(lesion_images[2]).probabilities
    tf_lite = Classifier(runtime="tensorflow")
    assert tf_lite.runtime == "tensorflow"
    assert tf_lite.classify(lesion_images[2]).probabilities == pytest.approx(litert, abs=0.02)


def test_bare_third_party_model_runs_with_a_labels_file(tmp_path, lesion_images):
    tf = pytest.importorskip("tensorflow")
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path / "bare.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    proc = run_cli("classify", str(lesion_images[0]), "--model", str(path), "--labels", str(labels),
                   "--output", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["label"] in ("red", "green", "blue") and row["decision"] == "none"
    assert sum(row[f"p_{c}"] for c in ("red", "green", "blue")) == pytest.approx(1.0, abs=1e-3)
    labels.write_text("red\ngreen\n")
    with pytest.raises(BundleError, match="2 labels but the model outputs 3"):
        Classifier(path, labels_file=str(labels))
    labels.write_text("\n")
    with pytest.raises(BundleError, match="names no labels"):
        Classifier(path, labels_file=str(labels))
    assert np.isfinite(Classifier(path).classify(lesion_images[0]).confidence)
