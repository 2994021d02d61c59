"""``lesionlite info``: what a model bundle is, from its metadata, once it has loaded as every
other command loads it (checksum, metadata and interpreter checked)."""
from __future__ import annotations

import json

from lesionlite.edge.bundle import trained_on
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.labels import DISCLAIMER
from lesionlite.edge.metrics import interval_note


NO_GATE = "scope gate: none - this model gives a label to any image, dermoscopic or not"


def gate_line(scope: dict) -> str:
    """What the bundle's scope gate is and what it was fitted on, in one line."""
    fitted = scope.get("fitted_on") or {}
    counts = ", ".join(f"{k} {v}" for k, v in fitted.items() if isinstance(v, int))
    return (f"scope gate: {scope.get('method', 'a score')} on {len(scope['weights'])} features, threshold "
            f"{scope['threshold']:.3f}; below it the answer is out-of-scope" + (f" (fitted on {counts})" if counts else ""))


def main(args) -> int:
    clf = Classifier(args.model, args.threads, args.runtime, args.labels_file)
    bundle = clf.bundle
    size = f"{bundle.model_path.stat().st_size / 1e6:.2f} MB"
    if bundle.bare:
        print(f"{bundle.model_path}: a bare model without lesionlite metadata ({size}, input "
              f"{clf.spec.height}x{clf.spec.width} {clf.spec.dtype}, {len(bundle.labels)} outputs)")
        print(NO_GATE)
        return 0
    m = bundle.meta
    test = m.get("metrics", {}).get("test", {}).get("tflite", {})
    spec = bundle.input
    print(f"{bundle.name}: {m.get('training', {}).get('arch', 'unknown architecture')} {m.get('quantization')}, "
          f"input {spec.height}x{spec.width} {spec.dtype} ({spec.crop} crop, colour constancy "
          f"{spec.color_constancy}), {size}")
    checked = "verified" if m.get("sha256") == bundle.sha256 else "no metadata.json to check it against"
    print(f"file {bundle.model_path} (sha256 {bundle.sha256[:16]}..., {checked}), runtime {clf.runtime}")
    print(f"created {m.get('created')} by lesionlite {m.get('code_version')}")
    cal = m.get("calibration", {})
    by = f" by {cal['fitted_by']}" if cal.get("fitted_by") else ""
    print(f"labels: {', '.join(bundle.codes)}; temperature {bundle.temperature:.3f} "
          f"(fitted on {cal.get('fitted_on', 'val')}{by})")
    splits = trained_on(m)
    if splits:  # metadata written by convert always says
        print(f"trained on: {' + '.join(splits)} of its split.csv")
    print(f"thresholds: {json.dumps(bundle.thresholds)}")
    print(gate_line(m.get("scope")) if bundle.scope is not None else NO_GATE)
    if test:
        interval = interval_note(test.get("balanced_accuracy_ci95"))
        print(f"test split: balanced accuracy {test['balanced_accuracy']:.3f}{interval}, accuracy {test['accuracy']:.3f}, "
              f"melanoma sensitivity at 80% specificity {test['mel_sensitivity_at_80_specificity']:.3f}")
    print(DISCLAIMER)
    return 0
