"""Training side on real sample images laid out like the HAM10000 download."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import ROOT, run_cli

pytest.importorskip("tensorflow", reason="the training side needs TensorFlow (pip install '.[train]')")

from lesionlite.convert.data import DataError, apply_split, index_dataset, read_split  # noqa: E402
from lesionlite.edge.labels import CLASSES  # noqa: E402
from lesionlite.training.splits import cover, make_split, write_split  # noqa: E402


@pytest.fixture(scope="module")
def ham_layout(tmp_path_factory, root):
    """HAM10000_metadata.csv + HAM10000_images_part_1/2, built from the shipped samples: each
    sample gives two lesions (original, mirrored) and a second image of the first lesion (flipped),
    plus a metadata row without an image and an image without a row."""
    base = tmp_path_factory.mktemp("ham")
    parts = [base / "HAM10000_images_part_1", base / "HAM10000_images_part_2"]
    for p in parts:
        p.mkdir()
    labels = list(csv.DictReader(open(root / "samples" / "lesions" / "labels.csv")))
    rows, n = [], 0
    for i, lab in enumerate(labels):
        src = Image.open(root / "samples" / "lesions" / lab["path"])
        for j, (lesion, img) in enumerate([(f"L{i}a", src), (f"L{i}a", ImageOps.flip(src)),
                                           (f"L{i}b", ImageOps.mirror(src))]):
            image_id = f"ISIC_{9000000 + n:07d}"
            img.save(parts[n % 2] / f"{image_id}.jpg", quality=92)
            rows.append({"lesion_id": lesion, "image_id": image_id, "dx": lab["label"], "dx_type": "histo",
                         "age": "50.0", "sex": "male", "localization": "back"})
            n += 1
    rows.append({**rows[0], "image_id": "ISIC_0000001", "lesion_id": "L_missing"})  # no image file
    shutil.copy(parts[0] / f"{rows[0]['image_id']}.jpg", parts[1] / "ISIC_7777777.jpg")  # no row
    with open(base / "HAM10000_metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return base


def test_reader_matches_rows_and_reports_mismatches(ham_layout):
    index = index_dataset(ham_layout)
    assert len(index.records) == 48
    assert index.rows_without_image == ["ISIC_0000001"]
    assert [p.name for p in index.images_without_row] == ["ISIC_7777777.jpg"]
    assert "1 metadata rows have no image" in index.summary()
    with pytest.raises(DataError, match="lacks the columns"):
        bad = ham_layout / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        index_dataset(ham_layout, bad)


def test_reader_takes_a_spreadsheet_csv_and_refuses_rows_that_disagree(ham_layout, tmp_path):
    text = (ham_layout / "HAM10000_metadata.csv").read_text()
    bom = tmp_path / "bom.csv"
    bom.write_text("\ufeff" + text)
    assert len(index_dataset(ham_layout, bom).records) == 48
    first = text.splitlines()[1].split(",")  # lesion_id,image_id,dx,...
    twice = tmp_path / "twice.csv"
    twice.write_text(text + ",".join([first[0], first[1], "nv" if first[2] != "nv" else "mel", *first[3:]]) + "\n")
    with pytest.raises(DataError, match=f"image {first[1]} has two rows that disagree"):
        index_dataset(ham_layout, twice)
    again = tmp_path / "again.csv"
    again.write_text(text + text.splitlines()[1] + "\n")  # the same row twice: one image
    assert len(index_dataset(ham_layout, again).records) == 48


def test_a_split_file_covers_the_other_images_of_its_lesions(ham_layout, capsys):
    records = index_dataset(ham_layout).records
    full = make_split(records, seed=3)
    lesions = {}
    for r in records:
        lesions.setdefault(r.lesion_id, []).append(r.image_id)
    several = next(ids for ids in lesions.values() if len(ids) > 1)
    single = next(ids for ids in lesions.values() if len(ids) == 1)
    partial = {k: v for k, v in full.items() if k not in several[1:] + single}  # as a one-image-per-lesion file
    covered = cover(records, partial)
    assert all(covered[i] == full[several[0]] for i in several) and single[0] not in covered
    out = capsys.readouterr().out
    assert f"{len(several) - 1} more images of the split file's lesions join" in out and "1 images of lesions" in out
    with pytest.raises(DataError, match="another data set"):
        cover(records, {"ISIC_0000000": "train"})


def test_split_is_grouped_by_lesion_seeded_and_reusable(ham_layout, tmp_path):
    records = index_dataset(ham_layout).records
    assignment = make_split(records, seed=7)
    assert assignment == make_split(records, seed=7)
    lesion_split = {}
    for r in records:
        assert lesion_split.setdefault(r.lesion_id, assignment[r.image_id]) == assignment[r.image_id]
    parts = apply_split(records, assignment)
    assert all(parts[s] for s in ("train", "val", "test"))
    path = tmp_path / "split.csv"
    write_split(path, records, assignment)
    assert read_split(path) == assignment
    rows = path.read_text().splitlines()
    first = rows[1].split(",")
    crossing = [",".join([first[0] + "x", first[1], first[2], "test" if first[3] != "test" else "train"])]
    path.write_text("\n".join(rows + crossing) + "\n")
    with pytest.raises(DataError, match="is in both"):
        read_split(path)


def test_full_split_of_shared_data_never_shares_a_lesion():
    """On the real metadata (10,015 rows, many lesions with several images) when it is here."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000" / "HAM10000_metadata.csv"
    if not shared.is_file():
        pytest.skip("../shared HAM10000 metadata not present")
    from lesionlite.convert.data import Record

    rows = list(csv.DictReader(open(shared)))
    records = [Record(r["image_id"], r["lesion_id"], r["dx"], Path(".")) for r in rows]
    assignment = make_split(records, seed=42)
    by_lesion = {}
    for r in records:
        by_lesion.setdefault(r.lesion_id, set()).add(assignment[r.image_id])
    assert all(len(s) == 1 for s in by_lesion.values())
    share = {s: sum(v == s for v in assignment.values()) / len(rows) for s in ("train", "val", "test")}
    assert 0.12 < share["test"] < 0.18 and 0.12 < share["val"] < 0.18


@pytest.fixture(scope="module")
def tiny_run(ham_layout, tmp_path_factory):
    """A real (tiny) MobileNetV2 training run through the CLI."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    proc = run_cli("train", "--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35",
                   "--input-size", "48", "--epochs", "1", "--fine-tune-epochs", "1", "--batch", "16",
                   "--out", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_tiny_training_run_converts_to_every_format(tiny_run, tmp_path, lesion_images):
    run = tiny_run
    for name in ("model.keras", "config.json", "split.csv", "history.csv", "calibration.json",
                 "report/metrics.json", "report/confusion_matrix.png", "report/reliability.png",
                 "report/summary.md"):
        assert (run / name).is_file(), name
    assert json.loads((run / "calibration.json").read_text())["temperature"] > 0
    assert "balanced_accuracy" in json.loads((run / "report" / "metrics.json").read_text())

    from lesionlite.edge.classifier import Classifier

    for quant, extra in (("float32", []), ("float16", []), ("int8", ["--min-agreement", "0", "--max-ba-loss", "1"])):
        out = tmp_path / f"bundle-{quant}"
        proc = run_cli("convert", str(run), "--quantize", quant, "--out", str(out), "--representative", "20",
                       *extra, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        clf = Classifier(out)
        assert clf.bundle.meta["quantization"] == quant
        assert (clf.spec.dtype == "uint8") == (quant == "int8")
        res = clf.classify(lesion_images[0])
        assert sum(res.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert (out / "MODEL_CARD.md").read_text().count("not a diagnosis") >= 1
        assert (out / "split.csv").read_bytes() == (run / "split.csv").read_bytes()
        for png in ("confusion_matrix.png", "reliability.png"):  # drawn for the converted model
            assert Image.open(out / png).format == "PNG"
            assert (out / png).read_bytes() != (run / "report" / png).read_bytes()
        readme = (out / "README.md").read_text()
        assert "lesionlite train" in readme and f"lesionlite convert {run}" in readme
        if quant == "float32":
            assert clf.bundle.meta["metrics"]["verification"]["agreement"] == 1.0

    refused = tmp_path / "refused"
    proc = run_cli("convert", str(run), "--quantize", "float16", "--out", str(refused),
                   "--min-agreement", "1.01", timeout=600)
    assert proc.returncode == 2 and "refusing" in proc.stderr and not refused.exists()


def test_train_and_convert_refuse_bad_paths_before_any_work(tiny_run, ham_layout, tmp_path):
    base = ["train", "--data", str(ham_layout), "--arch", "seed-cnn", "--input-size", "24", "32", "--epochs", "1"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    for args, message in (
            (["--out", str(tiny_run)], f"--out {tiny_run} already holds files"),
            (["--out", str(notes / "keep.txt")], "is a file"),
            (["--arch", "mobilenetv2", "--weights", "imagenet", "--out", str(tmp_path / "w")],
             "--weights imagenet: no such file (weights come from a file; nothing is downloaded)"),
            (["--init", str(tmp_path / "nothere.keras"), "--out", str(tmp_path / "i")],
             f"--init {tmp_path / 'nothere.keras'}: no such file"),
            (["--arch", "mobilenetv2", "--weights", str(ham_layout / "HAM10000_metadata.csv"), "--input-size", "48",
              "--out", str(tmp_path / "x")], "cannot build --arch mobilenetv2 at 48x48 px with --weights")):
        proc = run_cli(*base, *args, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
        assert "Downloading" not in proc.stdout + proc.stderr
    assert (notes / "keep.txt").read_text() == "mine" and not (tmp_path / "x").exists()  # nothing left behind

    broken = tmp_path / "broken"
    shutil.copytree(ham_layout, broken)
    victim = sorted((broken / "HAM10000_images_part_1").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    proc = run_cli(*base[:2], str(broken), *base[3:], "--out", str(tmp_path / "b"), timeout=300)
    assert proc.returncode == 2 and str(victim) in proc.stderr and "replace or remove this image" in proc.stderr
    assert not (tmp_path / "b").exists()  # a run that never trained leaves no folder to trip the next one
    made = tmp_path / "made"
    made.mkdir()  # made by the user: emptied, not removed
    assert run_cli(*base[:2], str(broken), *base[3:], "--out", str(made), timeout=300).returncode == 2
    assert made.is_dir() and not any(made.iterdir())

    fake = tmp_path / "project"
    fake.mkdir()
    (fake / "metadata.json").write_text("{}")  # a name alone does not make a bundle
    for out, message in ((tiny_run, "holds files of its own (calibration.json, checkpoint.json, config.json"),
                         (fake, "holds no lesionlite bundle"), (notes / "keep.txt", "is a file"),
                         (notes / "keep.txt" / "b", "keep.txt is a file, not a folder")):
        proc = run_cli("convert", str(tiny_run), "--quantize", "float32", "--out", str(out), timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert (tiny_run / "model.keras").is_file() and (notes / "keep.txt").read_text() == "mine"
    sparse = tmp_path / "sparse"
    shutil.copytree(ham_layout, sparse)
    test_ids = [r["image_id"] for r in csv.DictReader(open(tiny_run / "split.csv")) if r["split"] == "test"]
    for image in sparse.rglob(f"{test_ids[0]}.jpg"):
        image.unlink()
    proc = run_cli("convert", str(tiny_run), "--quantize", "float32", "--out", str(tmp_path / "s"),
                   "--data", str(sparse), timeout=300)
    assert proc.returncode == 2 and f"1 of {len(test_ids)} test" in proc.stderr, proc.stderr[-2000:]


def test_fake_quant_twin_shares_weights_and_rounds_like_the_int8_model(tiny_run, ham_layout):
    import keras

    from lesionlite.convert.tflite import convert
    from lesionlite.edge.classifier import Classifier
    from lesionlite.training.qat import calibrate, fake_quant_clone

    model = keras.models.load_model(tiny_run / "model.keras")
    twin, points = fake_quant_clone(model)
    assert {id(w) for w in model.weights} <= {id(w) for w in twin.weights}  # shared, not copied
    names = {p.name for p in points}
    assert {"rescaling_fq", "logits_fq", "out_relu_fq"} <= names
    assert any(n.endswith("project_BN_fq") for n in names) and not any(n.endswith("expand_BN_fq") for n in names)
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((48, 48)))
                       for p in sorted(ham_layout.rglob("*.jpg"))[:24]]).astype(np.float32)
    calibrate(twin, points, images)
    assert all(p.lo.numpy() <= 0 <= p.hi.numpy() and not p.calibrating for p in points)

    path = tiny_run.parent / "int8.tflite"
    path.write_bytes(convert(model, "int8", images))
    clf = Classifier(path, threads=1)  # a bare .tflite: raw float logits out
    lite = np.array([clf.invoke(img.astype(np.uint8)) for img in images])
    plain, rounded = model.predict(images, verbose=0), twin.predict(images, verbose=0)
    assert np.abs(rounded - plain).max() > 0  # the twin does round
    assert np.abs(rounded - lite).mean() < np.abs(plain - lite).mean()  # ... as the int8 model does


@pytest.fixture(scope="module")
def twin_run(tiny_run, tmp_path_factory):
    """A second run of ``tiny_run``'s recipe, as far as a soup can tell: its weights halved."""
    import keras

    model = keras.models.load_model(tiny_run / "model.keras")
    model.set_weights([w * 0.5 if w.dtype.kind == "f" else w for w in model.get_weights()])
    run = tmp_path_factory.mktemp("twin") / "run"
    run.mkdir()
    model.save(run / "model.keras")
    config = json.loads((tiny_run / "config.json").read_text())
    command = config["command"].replace(str(tiny_run), str(run))
    (run / "config.json").write_text(json.dumps({**config, "command": command, "commands": [command]}))
    return run


def test_soup_is_the_mean_of_the_runs_and_refuses_a_mismatched_one(tiny_run, twin_run, tmp_path):
    import keras

    from lesionlite.training.train import TrainConfig, _check_init, _init_runs, soup

    paths = [str(tiny_run / "model.keras"), str(twin_run / "model.keras")]
    own = keras.models.load_model(paths[0]).get_weights()
    mean = soup(paths)
    assert any(w.dtype.kind == "f" and np.any(w) for w in own)
    assert all(m.dtype == w.dtype and np.allclose(m, 0.75 * w if w.dtype.kind == "f" else w)
               for m, w in zip(mean, own, strict=True))

    odd = tmp_path / "odd"  # one ingredient that saw colour-corrected images
    shutil.copytree(twin_run, odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "color_constancy": "shades_of_gray"}))
    cfg = TrainConfig(data="", out="", init=[paths[0], str(odd / "model.keras")])
    with pytest.raises(DataError, match="--init .*odd/model.keras was trained on 48x48 px, colour constancy "
                       "shades_of_gray"):
        _check_init(cfg, _init_runs(cfg), (48, 48))


def test_quantization_aware_phase_continues_a_soup_of_runs_and_converts(tiny_run, twin_run, ham_layout,
                                                                        tmp_path):
    run = tmp_path / "qat"
    proc = run_cli("train", "--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35",
                   "--input-size", "48", "--init", str(tiny_run / "model.keras"), str(twin_run / "model.keras"),
                   "--split",
                   str(tiny_run / "split.csv"), "--epochs", "0", "--fine-tune-epochs", "0", "--qat-epochs", "1",
                   "--imbalance", "logit-adjust", "--mixup", "0.2", "--augment", "robust", "--batch", "16", "--out", str(run),
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "simulating int8 rounding at" in proc.stdout and "phase head" not in proc.stdout
    assert json.loads((run / "config.json").read_text())["augmentation"] == "robust"
    assert (run / "split.csv").read_bytes() == (tiny_run / "split.csv").read_bytes()
    proc = run_cli("convert", str(run), "--quantize", "int8", "--out", str(tmp_path / "bundle"),
                   "--representative", "20", "--min-agreement", "0", "--max-ba-loss", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    made_by = (tmp_path / "bundle" / "README.md").read_text()
    assert made_by.count("lesionlite train") == 3 and "--qat-epochs 1" in made_by  # the whole chain
    assert str(twin_run) in made_by  # ... both ingredients


def test_refit_trains_on_train_and_val_to_the_end_and_reuses_the_runs_calibration(tiny_run, ham_layout,
                                                                                   tmp_path):
    recipe = ["--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35", "--input-size", "48",
              "--epochs", "1", "--fine-tune-epochs", "1", "--batch", "16"]  # tiny_run's
    run = tmp_path / "refit"
    proc = run_cli("train", *recipe, "--patience", "1", "--refit", str(tiny_run), "--out", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    counts = json.loads((tiny_run / "config.json").read_text())["counts"]
    assert config["trained_on"] == ["train", "val"] and config["counts"] == counts
    assert config["commands"][0] == json.loads((tiny_run / "config.json").read_text())["commands"][0]  # reproducible
    assert f"refit: training on train + val ({counts['train'] + counts['val']} images)" in proc.stdout
    assert (run / "split.csv").read_bytes() == (tiny_run / "split.csv").read_bytes()
    history = list(csv.DictReader(open(run / "history.csv")))
    assert len(history) == 2 and "val_balanced_accuracy" not in history[0]  # nothing scored on val
    assert proc.stdout.count("a refit keeps the last epoch") == 2
    source = json.loads((tiny_run / "calibration.json").read_text())
    assert json.loads((run / "calibration.json").read_text()) == {**source, "fitted_by": tiny_run.name}

    bundle = tmp_path / "bundle"
    proc = run_cli("convert", str(run), "--quantize", "float32", "--out", str(bundle), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "trained on train + val" in card and f"by `{tiny_run.name}`, the same recipe trained on train alone" in card
    for part, held_out in (("val", False), ("test", True)):
        out = tmp_path / f"{part}.json"
        proc = run_cli("evaluate", str(ham_layout / "HAM10000_metadata.csv"), "--images", str(ham_layout),
                       "--split-file", str(bundle / "split.csv"), "--split", part, "-m", str(bundle),
                       "--json", str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(out.read_text())["held_out"] is held_out
        assert ("(its train + val split): these figures are not held out" in proc.stderr) is not held_out

    other = tmp_path / "other.csv"
    other.write_text((tiny_run / "split.csv").read_text().replace(",test\n", ",val\n", 1))
    stopped = tmp_path / "stopped"
    shutil.copytree(tiny_run, stopped)
    config = json.loads((stopped / "config.json").read_text())
    (stopped / "config.json").write_text(json.dumps({**config, "interrupted_after_epochs": 1}))
    for args, message in (
            (["--refit", str(tiny_run), "--split", str(other)], "is not the split of --refit"),
            (["--refit", str(stopped)], f"--refit {stopped} was interrupted"),
            (["--refit", str(run)], f"--refit {run} was trained on val itself"),
            (["--refit", str(tiny_run), "--fine-tune-epochs", "2"],
             f"--refit {tiny_run} used another recipe: --fine-tune-epochs 1 (this run 2)"),
            (["--refit", str(tiny_run), "--augment", "robust"],  # named by its flag, not its field
             f"--refit {tiny_run} used another recipe: --augment mild (this run robust)"),
            (["--init", str(run / "model.keras"), "--epochs", "0", "--fine-tune-epochs", "0", "--qat-epochs", "1"],
             f"--init {run / 'model.keras'} was trained on val too")):
        proc = run_cli("train", *recipe, *args, "--out", str(tmp_path / "no"), timeout=600)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "no").exists()


def test_colour_constancy_travels_from_training_to_the_device(tiny_run, ham_layout, tmp_path):
    from lesionlite.edge.classifier import Classifier
    from lesionlite.edge.preprocess import pixels, shades_of_gray
    from lesionlite.convert.data import load_arrays

    records = index_dataset(ham_layout).records[:4]
    x, _ = load_arrays(records, (24, 32), "center_square", "shades_of_gray")
    assert np.array_equal(x, np.stack([shades_of_gray(pixels(r.path, (24, 32))) for r in records]))

    run = tmp_path / "sog"
    proc = run_cli("train", "--data", str(ham_layout), "--arch", "seed-cnn", "--input-size", "24", "32",
                   "--epochs", "1", "--batch", "16", "--color-constancy", "shades_of_gray", "--out", str(run),
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("convert", str(run), "--quantize", "float32", "--out", str(tmp_path / "bundle"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clf = Classifier(tmp_path / "bundle")  # the device corrects colour as training did
    image = sorted(ham_layout.rglob("*.jpg"))[0]
    assert clf.spec.color_constancy == "shades_of_gray"
    assert np.array_equal(clf.preprocess(image), shades_of_gray(pixels(image, (24, 32))))
    assert "colour constancy `shades_of_gray`" in (tmp_path / "bundle" / "MODEL_CARD.md").read_text()

    # continuing a run that saw uncorrected images with corrected ones is refused, not silently mixed
    proc = run_cli("train", "--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35",
                   "--input-size", "48", "--init", str(tiny_run / "model.keras"), "--epochs", "1",
                   "--color-constancy", "shades_of_gray", "--out", str(tmp_path / "mixed"), timeout=600)
    last = proc.stderr.strip().splitlines()[-1]  # (TensorFlow's own start-up lines come first)
    assert proc.returncode == 2 and last.startswith("error: --init") and "colour constancy none" in last
    assert "Traceback" not in proc.stderr and not (tmp_path / "mixed").exists()


def test_batchnorm_adapts_only_when_asked_and_ema_keeps_the_average(tiny_run, ham_layout, tmp_path):
    import keras

    def load(path):
        model = keras.models.load_model(path)
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        means = {layer.name: layer.moving_mean.numpy() for layer in backbone.layers
                 if isinstance(layer, keras.layers.BatchNormalization)}
        return means, model.get_layer("logits").kernel.numpy()

    before, head_before = load(tiny_run / "model.keras")  # fine-tuned with BatchNorm frozen: still 0
    assert all(np.all(m == 0) for m in before.values())
    run = tmp_path / "bn"
    proc = run_cli("train", "--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35",
                   "--input-size", "48", "--init", str(tiny_run / "model.keras"), "--split",
                   str(tiny_run / "split.csv"), "--epochs", "0", "--fine-tune-epochs", "2",
                   "--fine-tune-fraction", "0.2", "--train-batchnorm", "--ema", "0.9999", "--batch", "16",
                   "--out", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(BatchNorm too)" in proc.stdout
    after, head_after = load(run / "model.keras")
    moved = [name for name in after if np.any(after[name] != before[name])]
    assert moved and len(moved) < len(after)  # the unfrozen top's BatchNorm layers only
    # the average at momentum 0.9999 is still the weights after Adam's first step, which moves each
    # weight by at most the warm-up's first rate (1e-4 / 10); the raw weights have moved further
    assert 0 < np.abs(head_after - head_before).max() <= 1.01e-5


def test_ctrl_c_keeps_the_best_checkpoint_and_still_reports(ham_layout, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, interruptible

    run = tmp_path / "interrupted"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "train", "--data", str(ham_layout), "--arch",
                             "seed-cnn", "--input-size", "24", "32", "--epochs", "500", "--patience", "500",
                             "--batch", "8", "--out", str(run)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=interruptible)
    deadline = time.time() + 300
    for line in proc.stdout:
        if "saved model.keras" in line or time.time() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, rest[-2000:]  # so `train && convert` stops here
    assert "epochs: keeping the best checkpoint so far" in rest
    assert (run / "model.keras").is_file() and (run / "report" / "summary.md").is_file()
    assert (run / "calibration.json").is_file()
    stopped = json.loads((run / "config.json").read_text())["interrupted_after_epochs"]
    logged = len(list(csv.DictReader(open(run / "history.csv"))))  # the logger writes after the scorer
    assert 1 <= stopped and logged <= stopped <= logged + 1
    bundle = tmp_path / "bundle"
    converted = run_cli("convert", str(run), "--quantize", "float32", "--out", str(bundle), timeout=600)
    assert converted.returncode == 0 and f"interrupted after {stopped} epochs" in converted.stderr
    assert f"Training was stopped by hand after {stopped} epochs" in (bundle / "MODEL_CARD.md").read_text()


@pytest.fixture(scope="module")
def two_roots(ham_layout, tmp_path_factory):
    """The HAM layout split over two roots as the full data is: ``ham`` (the metadata and the 48
    images at their size) and ``ham-more/images`` (9 more views at 200x150: one more of each of 5 lesions
    and a view of each of 4 new lesions, rows added to the one metadata CSV), plus ``isic-x`` (images
    squashed to 64x64, labels.csv of image_id,dx, no lesion ids) with one image id that is a HAM image's,
    a row without an image and an image without a row."""
    base = tmp_path_factory.mktemp("roots")
    ham, more, isic = base / "ham", base / "ham-more" / "images", base / "isic-x"
    shutil.copytree(ham_layout, ham)
    (ham / "HAM10000_images_part_2" / "ISIC_7777777.jpg").unlink()
    more.mkdir(parents=True)
    (isic / "images").mkdir(parents=True)
    rows = [r for r in csv.DictReader(open(ham / "HAM10000_metadata.csv")) if r["lesion_id"] != "L_missing"]
    new_rows, labels = [], []
    for i, row in enumerate([r for r in rows if r["lesion_id"].endswith("a")][::2][:5]):  # 5 lesions' first views
        src = Image.open(next(ham.rglob(row["image_id"] + ".jpg"))).convert("RGB")
        for lesion, k in [(row["lesion_id"], 0)] + [(f"N{i}", 1)] * (i < 4):
            image_id = f"ISIC_{8000000 + 10 * i + k:07d}"
            ImageOps.fit(ImageOps.mirror(src) if k else src, (200, 150)).save(more / f"{image_id}.jpg")
            new_rows.append({**row, "image_id": image_id, "lesion_id": lesion})
        isic_id = f"ISIC_{100 + i:07d}"
        src.resize((64, 64)).save(isic / "images" / f"{isic_id}.jpg")
        labels.append({"image_id": isic_id, "dx": row["dx"], "source": "test"})
    labels.append({"image_id": rows[0]["image_id"], "dx": rows[0]["dx"], "source": "test"})  # a HAM image's id
    labels.append({"image_id": "ISIC_0000999", "dx": "nv", "source": "test"})  # no image
    Image.new("RGB", (64, 64)).save(isic / "images" / "ISIC_0000998.jpg")  # no row
    for path, table in ((ham / "HAM10000_metadata.csv", rows + new_rows), (isic / "labels.csv", labels)):
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, list(table[0]))
            w.writeheader()
            w.writerows(table)
    return ham, more.parent, isic


def _one_image_per_lesion_split(ham: Path, out: Path) -> Path:
    """A split file of the first root's images, one per lesion, as the shipped one is of the subset."""
    records = index_dataset(ham).records
    first = {}
    for r in records:
        first.setdefault(r.lesion_id, r)
    picked = list(first.values())
    write_split(out, picked, make_split(picked, val=0.3, test=0.3, seed=1))
    return out


def test_several_roots_keep_each_lesion_on_its_side_and_extra_images_go_to_train_only(two_roots, tmp_path,
                                                                                      capsys):
    from lesionlite.training.config import TrainConfig
    from lesionlite.training.train import _read_data

    ham, more, isic = two_roots
    split = _one_image_per_lesion_split(ham, tmp_path / "split.csv")
    named = read_split(split)
    lesion_side = {r.lesion_id: named[r.image_id] for r in index_dataset(ham).records if r.image_id in named}
    for unnamed in ("leave-out", "train"):
        cfg = TrainConfig(data=[str(ham), str(more)], extra_train=[str(isic)], split=str(split),
                          unnamed_lesions=unnamed, out="")
        records, assignment, metadata = _read_data(cfg, split)
        out = capsys.readouterr().out
        assert metadata == ham / "HAM10000_metadata.csv"
        by_source = {}
        for r in records:
            by_source.setdefault(r.source, []).append(r)
        assert {k: len(v) for k, v in by_source.items()} == {"ham": 48, "ham-more": 9, "isic-x": 5}
        assert all(Image.open(r.path).size == (200, 150) for r in by_source["ham-more"])
        for r in records:
            if r.lesion_id in lesion_side:  # every view of a named lesion on its side, whichever root
                assert assignment[r.image_id] == lesion_side[r.lesion_id]
            elif r.lesion_id:  # a lesion the split file does not name
                assert assignment.get(r.image_id) == ("train" if unnamed == "train" else None)
            else:
                assert assignment[r.image_id] == "train"  # no lesion id: training only
        assert "4 images of 4 lesions the split file does not name go to train" in out if unnamed == "train" else \
            "4 images of lesions the split file does not name are left out" in out
        assert "isic-x: 1 images share an image id with the HAM10000 metadata" in out
        assert "5 images matched to labels.csv (no lesion ids: training only)" in out
        assert "1 metadata rows have no image" in out and "1 image files have no metadata row" in out
    path = tmp_path / "written.csv"
    write_split(path, records, assignment)
    assert read_split(path) == assignment  # rows without lesion ids read back, none crossing a split
    with pytest.raises(DataError, match="unknown dx codes \\['NV'\\]"):
        bad = tmp_path / "bad"
        shutil.copytree(isic, bad)
        (bad / "labels.csv").write_text("image_id,dx\nISIC_0000100,NV\n")
        _read_data(TrainConfig(data=[str(ham)], extra_train=[str(bad)], out=""), split)


def test_training_on_several_roots_records_its_images_per_source_and_the_card_shows_them(two_roots, tmp_path):
    ham, more, isic = two_roots
    split = _one_image_per_lesion_split(ham, tmp_path / "split.csv")
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    proc = run_cli("train", "--data", str(ham), "--data", str(more), "--extra-train", str(isic), "--split", str(split),
                   "--unnamed-lesions", "train", "--arch", "seed-cnn", "--input-size", "24", "32", "--epochs", "1",
                   "--batch", "16", "--out", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == [str(ham.resolve()), str(more.resolve())]
    assert config["extra_train"] == [str(isic.resolve())]
    sources = config["sources"]
    assert set(sources) == {"ham", "ham-more", "isic-x"} and set(sources["isic-x"]) == {"train"}
    assert {s: sum(sum(c.values()) for c in sp.values()) for s, sp in sources.items()} == \
        {"ham": 48, "ham-more": 9, "isic-x": 5}
    assert {k: sum(sp.get(k, {}).get(c, 0) for sp in sources.values() for c in CLASSES)
            for k in ("train", "val", "test")} == config["counts"]
    rows = list(csv.DictReader(open(run / "split.csv")))
    assert sum(r["lesion_id"] == "" and r["split"] == "train" for r in rows) == 5 and len(rows) == 62

    proc = run_cli("convert", str(run), "--quantize", "float32", "--out", str(bundle), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["training"]["sources"] == sources and meta["training"]["extra_train"] == config["extra_train"]
    card = (bundle / "MODEL_CARD.md").read_text()
    assert ("from the folders `ham`, `ham-more` and, for training only, dermoscopy without lesion ids from `isic-x`"
            in card)
    isic_row = "| isic-x | train (trained on) | " + " | ".join(str(sources["isic-x"]["train"][c]) for c in CLASSES)
    assert isic_row + " | 5 |" in card and "(images without lesion ids, from `isic-x`, are in train only" in card
    trained = config["counts"]["train"]
    assert f"| **all** | **images the model trained on** | " in card and f" | **{trained}** |" in card
    assert "| ham | test (held out) |" in card

    proc = run_cli("evaluate", str(isic / "labels.csv"), "--images", str(isic), "-m", str(bundle),
                   "--json", str(tmp_path / "isic.json"))  # the extra images: known to be training images
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "isic.json").read_text())["held_out"] is False
    assert "note: 5 of these 5 images are of lesions" in proc.stderr


def test_the_shipped_split_extends_to_all_of_ham10000_and_the_isic_archive_trains_only():
    """On ../shared, when it is here: the shipped split keeps its 855 test lesions, which have 1,156 images."""
    from lesionlite.training.config import TrainConfig
    from lesionlite.training.train import _read_data

    data = ROOT.parent / "shared" / "data"
    if not (data / "ham10000-more").is_dir() or not (data / "isic-archive" / "labels.csv").is_file():
        pytest.skip("../shared data not present")
    split = ROOT / "models" / "ham10000-efficientnet-lite0" / "split.csv"
    cfg = TrainConfig(data=[str(data / "ham10000"), str(data / "ham10000-more")],
                      extra_train=[str(data / "isic-archive")], split=str(split), unnamed_lesions="train", out="")
    records, assignment, _ = _read_data(cfg, split)
    parts = apply_split(records, assignment)
    shipped = read_split(split)
    assert len(parts["test"]) == 1156 and len({r.lesion_id for r in parts["test"]}) == 855
    assert {r.image_id for r in parts["test"]} >= {i for i, s in shipped.items() if s == "test"}
    assert len(parts["val"]) == 1171 and len(parts["train"]) == 5696 + 1992 + 3066
    assert sum(not r.lesion_id for r in parts["train"]) == 3066
    assert all(r.lesion_id for r in parts["val"] + parts["test"])


def _train_until(marker: str, sig: int, *args: str) -> tuple[int, str]:
    """``lesionlite train ARGS`` in a subprocess, sent ``sig`` as soon as it prints ``marker``;
    its exit code and output."""
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT, interruptible

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lesionlite.cli", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    seen, deadline = [], time.time() + 300
    for line in proc.stdout:
        seen.append(line)
        if marker in line or time.time() > deadline:
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + rest


def _rows(run) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


def test_a_killed_run_resumes_from_its_last_checkpoint_with_its_optimizer_state(ham_layout, tmp_path):
    import signal

    from lesionlite.convert.run import Run

    recipe = ["--data", str(ham_layout), "--arch", "mobilenetv2", "--alpha", "0.35", "--input-size", "48",
              "--epochs", "1", "--fine-tune-epochs", "3", "--patience", "10", "--batch", "16"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = run_cli("train", *recipe, "--out", str(whole), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, output = _train_until("epoch 2: checkpoint.npz written", signal.SIGKILL, *recipe, "--out", str(killed))
    assert code == -signal.SIGKILL, output[-2000:]
    state = json.loads((killed / "checkpoint.json").read_text())
    assert 2 <= state["epoch"] < 4 and state["phase_name"] == "fine-tune", state  # killed before the end
    assert (killed / "checkpoint.npz").is_file() and len(_rows(killed)) in (state["epoch"], state["epoch"] + 1)
    with pytest.raises(DataError, match=f"continue it with lesionlite train --resume {killed}"):
        Run.finished(killed)  # convert refuses it

    proc = run_cli("train", "--resume", str(killed), "--epochs", "9", timeout=60)  # its own options only
    assert proc.returncode == 2 and "leave out --epochs" in proc.stderr
    proc = run_cli("train", "--resume", str(killed), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = 3  # ceil(34 training images / 16)
    done = state["epoch"] - 1  # fine-tune epochs before the kill
    assert (f"continuing at its epoch {done + 1} of 3 (optimizer step {done * steps})") in proc.stdout
    assert "phase head" not in proc.stdout  # the finished phase is not trained again
    assert [r["epoch"] for r in _rows(killed)] == [r["epoch"] for r in _rows(whole)] == ["0", "1", "2", "3"]
    assert all(float(r["seconds"]) > 0 for r in _rows(killed))  # each epoch's wall time, for estimates
    ends = [json.loads((run / "checkpoint.json").read_text()) for run in (whole, killed)]
    assert ends[0]["optimizer_step"] == ends[1]["optimizer_step"] == 3 * steps  # continued, not restarted at 0
    assert ends[1]["epoch"] == 4 and ends[1]["seconds"] > state["seconds"]  # time adds up over the sittings
    config = Run.finished(killed).config
    assert config["resumed"] == [{"at_epoch": state["epoch"], "command": f"lesionlite train --resume {killed}"}]
    assert not (killed / "checkpoint.npz").exists() and (killed / "report" / "summary.md").is_file()
    from lesionlite.training.train import resume

    with pytest.raises(DataError, match="finished its schedule, nothing is left to train"):
        resume(killed)


def test_a_run_stopped_by_ctrl_c_in_quantization_aware_training_resumes_and_is_no_longer_marked(ham_layout,
                                                                                              tmp_path):
    import signal

    from lesionlite.convert.run import Run

    run, data = tmp_path / "qat", tmp_path / "data"
    shutil.copytree(ham_layout, data)
    code, output = _train_until("epoch 2: checkpoint.npz written", signal.SIGINT, "--data", str(data),
                                "--arch", "seed-cnn", "--input-size", "24", "32", "--epochs", "1", "--qat-epochs", "6",
                                "--patience", "10", "--batch", "4", "--out", str(run))
    assert code == 130 and "continues it from its last checkpoint" in output, output[-2000:]
    stopped = Run.finished(run).interrupted_after
    assert 2 <= stopped < 7
    image = next(data.rglob("*.jpg"))
    image.rename(tmp_path / image.name)  # the data changed: refused, and the run left as it was
    proc = run_cli("train", "--resume", str(run), timeout=600)
    assert proc.returncode == 2 and "no longer gives the run's split" in proc.stderr, proc.stderr[-2000:]
    assert Run.finished(run).interrupted_after == stopped and (run / "report" / "summary.md").is_file()
    (tmp_path / image.name).rename(image)
    proc = run_cli("train", "--resume", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "simulating int8 rounding" in proc.stdout and "phase all" not in proc.stdout
    finished = Run.finished(run)
    assert finished.interrupted_after is None and len(_rows(run)) == 7
    assert json.loads((run / "checkpoint.json").read_text())["optimizer_step"] == 6 * 9  # ceil(34 / 4) a step


def test_a_checkpoint_restores_weights_and_optimizer_state_and_refuses_another_model(tmp_path):
    import keras

    from lesionlite.training.checkpoint import State, load, restore, save

    def model(width):
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(width), keras.layers.Dense(2)])
        m.compile(keras.optimizers.Adam(0.01), "mse")
        return m

    keras.utils.set_random_seed(1)
    x, y = np.random.rand(16, 3).astype(np.float32), np.random.rand(16, 2).astype(np.float32)
    trained = model(4)
    trained.fit(x, y, epochs=3, batch_size=4, verbose=0)
    state = State(epoch=3, phase=0, phase_name="all", phase_epochs=3, phase_over=False, best=0.5,
                  patience={"wait": 1, "best": 0.5}, optimizer_step=12, seconds=1.0, seed=1)
    path = tmp_path / "checkpoint.npz"
    save(path, state, [v.numpy() for v in trained.weights], [v.numpy() for v in trained.optimizer.variables])
    loaded, weights, optimizer = load(path)
    assert loaded == state and json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 3
    fresh = model(4)
    restore(fresh, weights, optimizer, path)
    assert int(fresh.optimizer.iterations.numpy()) == 12
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(trained.optimizer.variables, fresh.optimizer.variables, strict=True))
    trained.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)  # the same next step from both
    fresh.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert np.allclose(trained.predict(x, verbose=0), fresh.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(DataError, match="does not fit the model of this phase"):
        restore(model(5), weights, optimizer, path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot be read"):
        load(path)


def test_folds_deal_train_and_validation_by_lesion_and_the_report_gives_their_spread(ham_layout, tmp_path):
    recipe = ["--data", str(ham_layout), "--arch", "seed-cnn", "--input-size", "24", "32", "--epochs", "2",
              "--batch", "16"]
    runs = [tmp_path / f"fold{i}" for i in (1, 2)]
    for i, run in enumerate(runs, 1):
        proc = run_cli("train", *recipe, "--fold", f"{i}/2", "--out", str(run), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"fold {i}/2: " in proc.stdout
    splits = [read_split(run / "split.csv") for run in runs]  # each refuses a lesion on two sides
    sides = [{s: {k for k, v in split.items() if v == s} for s in ("train", "val", "test")} for split in splits]
    assert sides[0]["test"] == sides[1]["test"]  # test is untouched
    assert not sides[0]["val"] & sides[1]["val"] and sides[0]["val"] and sides[1]["val"]
    pool = sides[0]["train"] | sides[0]["val"]
    assert sides[0]["val"] | sides[1]["val"] == pool == sides[1]["train"] | sides[1]["val"]

    proc = run_cli("folds", *map(str, runs[::-1]))
    assert proc.returncode == 0, proc.stderr
    scores = [max(float(r["val_balanced_accuracy"]) for r in _rows(run)) for run in runs]
    mean, sd = np.mean(scores), np.std(scores, ddof=1)
    val_lesions = {r["lesion_id"] for r in csv.DictReader(open(runs[0] / "split.csv")) if r["split"] == "val"}
    assert proc.stdout.splitlines()[1].split()[:4] == ["1/2", str(len(sides[0]["val"])), str(len(val_lesions)),
                                                       f"{scores[0]:.4f}"]
    assert f"mean {mean:.4f}, standard deviation {sd:.4f}" in proc.stdout
    assert "test" not in proc.stdout.replace(str(tmp_path), "")  # no test figure before the choice
    for run, best in zip(runs, (0.6, 0.7)):  # known scores: the kept epoch's, the sample SD
        rows = _rows(run)
        for r, score in zip(rows, (best - 0.1, best)):
            r["val_balanced_accuracy"] = score
        with open(run / "history.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    proc = run_cli("folds", *map(str, runs))
    assert "mean 0.6500, standard deviation 0.0707, range 0.6000-0.7000" in proc.stdout, proc.stdout
    assert "0.7000 (ep  2)" in proc.stdout

    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "batch": 8}))
    proc = run_cli("folds", str(runs[0]), str(other))
    assert proc.returncode == 2 and "are runs of other recipes: --batch 16" in proc.stderr
    (other / "config.json").write_text(json.dumps({**config, "fold": None}))
    proc = run_cli("folds", str(runs[0]), str(other))
    assert proc.returncode == 2 and f"{other} was not trained on a fold" in proc.stderr


def test_mixup_blends_images_labels_and_weights_by_the_same_share():
    import tensorflow as tf

    from lesionlite.training.pipeline import mix_batch

    x = tf.constant(np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) * 10)
    y = tf.one_hot(np.arange(6), 6)  # six classes: an example and its partner never share one
    w = tf.constant([1.0, 2, 3, 4, 5, 6])
    mx, my, mw = (t.numpy() for t in mix_batch((x, y, w), 0.2))
    lam = my[np.arange(6), np.arange(6)]  # the share of each example's own class
    partner = np.arange(6)[::-1]
    assert np.allclose(my.sum(1), 1) and np.all(lam >= 0.5) and np.any(lam < 0.999)
    assert np.allclose(my[np.arange(6), partner], 1 - lam)
    assert np.allclose(mw, lam * w.numpy() + (1 - lam) * w.numpy()[partner])
    assert np.allclose(mx[:, 0, 0, 0], lam * x.numpy()[:, 0, 0, 0] + (1 - lam) * x.numpy()[partner, 0, 0, 0],
                       atol=1e-4)


def test_logit_adjusted_loss_leaves_raw_logits_balanced_where_plain_loss_follows_the_prior():
    import keras

    from lesionlite.training.losses import LogitAdjustedCrossEntropy

    y = np.array([0] * 80 + [1] * 15 + [2] * 5)  # as skewed as nv against the rare classes
    x = np.ones((len(y), 1), np.float32)  # no evidence: the best answer is the prior alone
    biases = {}
    for name, loss in (("plain", keras.losses.CategoricalCrossentropy(from_logits=True)),
                       ("adjusted", LogitAdjustedCrossEntropy.for_labels(y, 3))):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3, kernel_initializer="zeros")])
        model.compile(keras.optimizers.Adam(0.05), loss)
        model.fit(np.tile(x, (600, 1)), np.tile(np.eye(3)[y], (600, 1)), batch_size=len(y), shuffle=False,
                  verbose=0)  # 600 full-batch steps
        logits = model.predict(x[:1], verbose=0)[0]
        biases[name] = logits - logits.mean()
    prior = np.log(np.bincount(y) / len(y))
    assert np.allclose(biases["plain"], prior - prior.mean(), atol=0.1)  # plain CE learns the prior
    assert np.abs(biases["adjusted"]).max() < 0.1  # adjusted: no class favoured for being common


def test_a_soup_of_models_of_different_shapes_is_a_one_line_error(tiny_run, tmp_path):
    import keras

    from lesionlite.training.train import soup

    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(other)
    with pytest.raises(DataError, match="different shapes cannot be averaged"):
        soup([str(tiny_run / "model.keras"), str(other)])


def test_affine_map_turns_zooms_and_shifts_about_the_centre():
    import tensorflow as tf

    from lesionlite.training.pipeline import affine

    square = np.zeros((32, 32), np.float32)
    square[12:20, 12:20] = 1.0  # an 8 x 8 lesion in the middle

    def warp(angle=0.0, scale=1.0, shift=(0.0, 0.0), black=True):
        return affine(tf.constant(square[..., None]), tf.constant(angle), tf.constant(scale),
                      tf.constant(shift), black).numpy()[..., 0]

    assert np.allclose(warp(), square, atol=1e-5)
    areas = {z: warp(scale=z).sum() for z in (0.75, 1.3)}
    assert abs(areas[0.75] - 64 * 0.75 ** 2) < 4 and abs(areas[1.3] - 64 * 1.3 ** 2) < 8  # below 1: smaller
    moved = warp(shift=(0.25, 0.0))
    assert np.allclose(moved[:, 8:], square[:, :-8], atol=1e-5)  # a quarter of the width to the right
    assert np.allclose(warp(angle=np.pi / 2), np.rot90(square, -1), atol=1e-4)  # a quarter turn
    ring = np.pad(np.ones((16, 16, 1), np.float32), ((8, 8), (8, 8), (0, 0)), constant_values=0.5)
    corners = [float(affine(tf.constant(ring), tf.constant(0.0), tf.constant(0.5), tf.constant((0.0, 0.0)),
                            black)[0, 0, 0]) for black in (True, False)]
    assert corners[0] == 0.0 and corners[1] >= 0.5  # a zoomed-out frame's border: black, or mirrored image


def test_gaussian_blur_is_a_gaussian_of_the_given_width():
    import tensorflow as tf

    from lesionlite.training.pipeline import gaussian_blur

    impulse = np.zeros((224, 224, 1), np.float32)
    impulse[112, 112] = 1.0
    out = gaussian_blur(tf.constant(impulse), tf.constant(1.5)).numpy()[..., 0]
    r = np.arange(-4, 5)
    k = np.exp(-0.5 * (r / 1.5) ** 2)
    k /= k.sum()
    assert np.allclose(out[108:117, 108:117], np.outer(k, k), atol=1e-6) and abs(out.sum() - 1) < 1e-5


def test_robust_augmentation_adds_exposure_and_black_borders_that_mild_never_makes(lesion_images):
    import tensorflow as tf

    from lesionlite.edge.preprocess import pixels
    from lesionlite.training.pipeline import augment

    tf.random.set_seed(0)
    photo = tf.constant(pixels(lesion_images[0], (64, 64)).astype(np.float32))
    grey = tf.fill([64, 64, 3], 128.0)  # geometry cannot change its brightness, only a black border

    def draws(image, policy, n=120):
        return np.stack([augment(image, policy).numpy() for _ in range(n)])

    for policy in ("mild", "robust"):
        d = draws(photo, policy)
        assert d.shape == (120, 64, 64, 3) and d.min() >= 0 and d.max() <= 255.001
        dark_corners = (d[:, :3, :3].max(axis=(1, 2, 3)) < 30).sum()  # black after colour jitter
        assert (dark_corners == 0) if policy == "mild" else (dark_corners >= 10)
        level = np.median(draws(grey, policy), axis=(1, 2, 3)) / 128
        if policy == "mild":  # brightness jitter only: +-0.08 of full range
            assert level.min() > 0.8 and level.max() < 1.2
        else:  # exposure 0.6-1.4x on top
            assert level.min() < 0.7 and level.max() > 1.3
    with pytest.raises(ValueError, match="unknown augmentation 'strong'"):
        augment(photo, "strong")


def test_camera_effects_defocus_or_compress_about_half_the_images():
    import tensorflow as tf

    from lesionlite.training.pipeline import camera_effects

    tf.random.set_seed(0)
    board = np.indices((224, 224)).sum(0) % 8 < 4  # 4-px checks: sharp edges a lens or JPEG softens
    x = tf.constant(np.repeat(board[..., None], 3, -1).astype(np.float32))
    out = np.stack([camera_effects(x).numpy() for _ in range(200)])
    change = np.abs(out - x.numpy()).mean(axis=(1, 2, 3))
    detail = np.abs(np.diff(out, axis=2)).mean(axis=(1, 2, 3)) / np.abs(np.diff(x.numpy(), axis=1)).mean()
    assert 0.35 < (change == 0).mean() < 0.65  # 0.7 x 0.7 of the images untouched
    assert change[change > 0].min() > 1e-3 and detail[change > 0].mean() < 0.9  # the rest changed, softer


def test_aspect_jitter_stretches_either_way_within_its_bound_and_is_off_by_default():
    import tensorflow as tf

    from lesionlite.training.pipeline import augment, stretch

    yy, xx = np.mgrid[:96, :96]
    disk = ((yy - 47.5) ** 2 + (xx - 47.5) ** 2 < 24 ** 2).astype(np.float32)  # a round lesion, 48 px across

    def aspect(image: np.ndarray) -> float:  # width / height of what is bright
        mask = image[..., 0] > 127 if image.ndim == 3 else image > 0.5
        return mask.any(axis=0).sum() / mask.any(axis=1).sum()

    squashed = stretch(tf.constant(disk[..., None]), tf.constant(0.75)).numpy()[..., 0]  # 4:3 made 1:1
    assert abs(aspect(squashed) - 0.75) < 0.05 and squashed.shape == disk.shape
    assert abs(aspect(stretch(tf.constant(disk[..., None]), tf.constant(4 / 3)).numpy()[..., 0]) - 4 / 3) < 0.06
    tf.random.set_seed(0)
    image = tf.constant(np.repeat(disk[..., None], 3, -1) * 255)
    for jitter in (0.0, 0.34):
        ratios = np.array([aspect(augment(image, "mild", jitter).numpy()) for _ in range(120)])
        if jitter == 0:  # the shipped recipe: flips, quarter turns and square crops keep a disk round
            assert np.all(np.abs(np.log(ratios)) < 0.05)
        else:  # wider and taller, up to 1.34 times, log-uniformly
            assert ratios.min() < 0.8 and ratios.max() > 1.25 and np.all(np.abs(np.log(ratios)) < np.log(1.34) + 0.05)
            assert 0.35 < (ratios > 1).mean() < 0.65
