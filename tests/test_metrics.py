"""lesionlite.edge.metrics (numpy only, runs on the Pi) against scikit-learn on the same data."""
from __future__ import annotations

import numpy as np
import pytest

skm = pytest.importorskip("sklearn.metrics", reason="compares against scikit-learn (pip install '.[train]')")

from lesionlite.edge import metrics  # noqa: E402
from lesionlite.edge.labels import CLASSES  # noqa: E402


@pytest.fixture()
def predictions():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 400)
    logits = rng.normal(size=(400, 7))
    logits[np.arange(400), y] += rng.uniform(0, 3, 400)  # informative but imperfect
    return y, metrics.softmax(logits)


def test_matches_scikit_learn(predictions):
    y, p = predictions
    pred = p.argmax(1)
    out = metrics.evaluate(y, p, CLASSES)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert np.array_equal(out["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(7)))
    for i, c in enumerate(CLASSES):
        assert out["per_class"][c]["auc"] == pytest.approx(skm.roc_auc_score(y == i, p[:, i]))
        assert out["per_class"][c]["precision"] == pytest.approx(skm.precision_score(y == i, pred == i))


def test_a_class_without_images_has_no_f1_and_stays_out_of_the_macro_f1(predictions):
    y, p = predictions
    keep = y != CLASSES.index("df")
    out = metrics.evaluate(y[keep], p[keep], CLASSES)
    assert out["per_class"]["df"]["f1"] is None and out["per_class"]["df"]["support"] == 0
    present = [c for c in CLASSES if c != "df"]
    assert out["macro_f1"] == pytest.approx(np.mean([out["per_class"][c]["f1"] for c in present]))
    assert out["per_class"]["nv"]["f1"] == pytest.approx(
        skm.f1_score(y[keep] == CLASSES.index("nv"), p[keep].argmax(1) == CLASSES.index("nv")))


def test_sensitivity_at_specificity_meets_the_specificity(predictions):
    y, p = predictions
    mel = CLASSES.index("mel")
    sens, t = metrics.sensitivity_at_specificity(p[:, mel], y == mel, 0.8)
    neg, pos = p[y != mel, mel], p[y == mel, mel]
    assert np.mean(neg <= t) >= 0.8
    assert sens == pytest.approx(np.mean(pos > t))
    fpr, tpr, _ = skm.roc_curve(y == mel, p[:, mel])
    assert sens == pytest.approx(tpr[fpr <= 0.2].max(), abs=1.0 / len(pos))


def test_threshold_for_sensitivity_catches_that_share():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2])
    positive = np.array([1, 1, 1, 1, 0, 0], bool)
    t = metrics.threshold_for_sensitivity(scores, positive, 0.75)
    assert np.mean(scores[positive] >= t) >= 0.75 and t == pytest.approx(0.7)


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    y = np.array([0] * 8 + [1] * 2)
    honest = np.tile([0.8, 0.2], (10, 1))  # right 80% of the time at 0.8 confidence
    assert metrics.reliability(honest, y)["ece"] == pytest.approx(0.0, abs=1e-9)
    overconfident = np.tile([0.99, 0.01], (10, 1))
    assert metrics.reliability(overconfident, y)["ece"] == pytest.approx(0.19)


def test_temperature_softmax_sums_to_one():
    p = metrics.softmax(np.array([[2.0, 1.0, 0.0]]), temperature=2.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] < metrics.softmax(np.array([[2.0, 1.0, 0.0]]))[0, 0]


def test_balanced_accuracy_interval_holds_the_figure_and_narrows_with_more_lesions(predictions):
    y, p = predictions
    pred = p.argmax(1)
    lo, hi = metrics.balanced_accuracy_interval(y, pred, 7)
    assert lo < metrics.balanced_accuracy(y, pred, 7) < hi
    assert metrics.balanced_accuracy_interval(y, pred, 7) == (lo, hi)  # seeded
    y4, pred4 = np.tile(y, 4), np.tile(pred, 4)  # four times the lesions, same recall
    lo4, hi4 = metrics.balanced_accuracy_interval(y4, pred4, 7)
    assert hi4 - lo4 < 0.6 * (hi - lo)  # about half as wide (1 / sqrt(4))
    assert metrics.evaluate(y, p, CLASSES)["balanced_accuracy_ci95"] == (lo, hi)


def test_balanced_accuracy_interval_counts_a_lesion_once_however_many_images(predictions):
    y, p = predictions
    pred = p.argmax(1)
    lo, hi = metrics.balanced_accuracy_interval(y, pred, 7)
    lesions = np.tile(np.arange(len(y)), 4)  # every lesion photographed four times, same answer
    glo, ghi = metrics.balanced_accuracy_interval(np.tile(y, 4), np.tile(pred, 4), 7, lesions)
    assert ghi - glo == pytest.approx(hi - lo, rel=0.15)  # not the narrower interval of 4x the lesions
