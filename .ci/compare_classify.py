"""Full-precision classify output, and the comparison of two such outputs (``make pi-check``).

``lesionlite classify`` rounds probabilities to 4 decimals in CSV and JSON lines, too coarse to check
an agreement to 1e-4, so this runs the same code path (file discovery, decoding threads,
:func:`classify_paths`, :meth:`Classifier.result`) and keeps every digit::

    python .ci/compare_classify.py dump OUT.json PATH [PATH ...]   # also records the versions used
    python .ci/compare_classify.py compare REFERENCE.json OTHER.json [--tolerance 1e-4]

``compare`` exits 1 when the two differ in the images classified, any label or decision, or any
probability or scope score by more than the tolerance, and prints one line saying what was compared.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def dump(out: str, paths: list[str]) -> int:
    from lesionlite.edge.batch import classify_paths
    from lesionlite.edge.classifier import Classifier
    from lesionlite.edge.files import find_images

    images = find_images(paths).images
    clf = Classifier()
    rows = []
    for row in classify_paths(clf, images):
        if row.error:
            rows.append({"path": row.path, "error": row.error})
            continue
        res = clf.result(row.prediction)
        rows.append({"path": row.path, "label": res.label, "decision": res.decision, "scope": res.scope,
                     "probabilities": {c: float(p) for c, p in zip(clf.bundle.codes, row.prediction.probs)}})
    versions = {"machine": platform.machine(), "python": platform.python_version(), "runtime": clf.runtime}
    versions.update({d: version(d) for d in ("numpy", "Pillow", "ai-edge-litert", "gpiozero")})
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"versions": versions, "model_sha256": clf.bundle.sha256, "rows": rows}, fh, indent=1)
    print(" ".join(f"{k} {v}" for k, v in versions.items()))
    return 0


def compare(reference: str, other: str, tolerance: float) -> int:
    with open(reference, encoding="utf-8") as fh:
        ref = json.load(fh)
    with open(other, encoding="utf-8") as fh:
        oth = json.load(fh)
    problems = []
    if ref["model_sha256"] != oth["model_sha256"]:
        problems.append("different model files")
    ref_rows, oth_rows = ({r["path"]: r for r in d["rows"]} for d in (ref, oth))
    if list(ref_rows) != list(oth_rows):
        problems.append(f"different images: {sorted(set(ref_rows) ^ set(oth_rows))}")
    worst = 0.0
    for path in (p for p in ref_rows if p in oth_rows):
        a, b = ref_rows[path], oth_rows[path]
        if a.get("error") or b.get("error"):
            if a.get("error") != b.get("error"):
                problems.append(f"{path}: error {a.get('error')!r} vs {b.get('error')!r}")
            continue
        for key in ("label", "decision"):
            if a[key] != b[key]:
                problems.append(f"{path}: {key} {a[key]} vs {b[key]}")
        if a["probabilities"].keys() != b["probabilities"].keys():
            problems.append(f"{path}: different classes")
            continue
        diff = max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"])
        if (a.get("scope") is None) != (b.get("scope") is None):
            problems.append(f"{path}: scope score {a.get('scope')} vs {b.get('scope')}")
        elif a.get("scope") is not None:
            diff = max(diff, abs(a["scope"] - b["scope"]))
        worst = max(worst, diff)
        if diff > tolerance:
            problems.append(f"{path}: a probability or the scope score differs by {diff:.3g} (> {tolerance:g})")
    where = f"{oth['versions']['machine']} vs {ref['versions']['machine']}"
    if problems:
        print(f"classify differs ({where}):", *problems, sep="\n  ")
        return 1
    print(f"classify agrees ({where}): {len(ref_rows)} images, same labels and decisions, "
          f"largest difference in a probability or scope score {worst:.3g} (tolerance {tolerance:g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="classify PATHs with the shipped model; full precision to OUT")
    d.add_argument("out")
    d.add_argument("paths", nargs="+")
    c = sub.add_parser("compare", help="compare two dumps; exit 1 if they differ")
    c.add_argument("reference")
    c.add_argument("other")
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args(argv)
    if args.command == "dump":
        return dump(args.out, args.paths)
    return compare(args.reference, args.other, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
