"""``lesionlite info``: what a model bundle is, from its metadata."""
from __future__ import annotations

import json

from edge.bundle import load_bundle
from edge.labels import DISCLAIMER
from edge.metrics import interval_note


def main(args) -> int:
    bundle = load_bundle(args.model, args.labels_file)
    if bundle.bare:
        print(f"{bundle.model_path}: a bare model without lesionlite metadata")
        return 0
    m = bundle.meta
    test = m.get("metrics", {}).get("test", {}).get("tflite", {})
    spec = bundle.input
    print(f"{m['name']}: {m['training']['arch']} {m['quantization']}, input {spec.height}x{spec.width} "
          f"{spec.dtype} ({spec.crop} crop, colour constancy {spec.color_constancy}), "
          f"{m['size_bytes'] / 1e6:.2f} MB")
    print(f"file {bundle.model_path} (sha256 verified {bundle.sha256[:16]}...)")
    print(f"created {m.get('created')} by lesionlite {m.get('code_version')}")
    print(f"labels: {', '.join(bundle.codes)}; temperature {bundle.temperature:.3f}")
    print(f"thresholds: {json.dumps(bundle.thresholds)}")
    if test:
        interval = interval_note(test.get("balanced_accuracy_ci95"))
        print(f"test split: balanced accuracy {test['balanced_accuracy']:.3f}{interval}, accuracy {test['accuracy']:.3f}, "
              f"melanoma sensitivity at 80% specificity {test['mel_sensitivity_at_80_specificity']:.3f}")
    print(DISCLAIMER)
    return 0
