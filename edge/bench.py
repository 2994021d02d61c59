"""``lesionlite bench``: init, first inference, invoke-only and end-to-end latency, peak RSS,
a threads sweep, and the same for a reference model with the ratio ours/reference."""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lesionlite.edge.args import json_output_path, thread_count
from lesionlite.edge.batch import classify_paths
from lesionlite.edge.errors import CommandError
from lesionlite.edge.files import find_images
from lesionlite.edge.bundle import BundleError, models_dir
from lesionlite.edge.classifier import Classifier
from lesionlite.edge.io import atomic_write_text
from lesionlite.edge.preprocess import ImageError, load_image, to_input
from lesionlite.edge.runtime import RuntimeUnavailable

STATS = ("min", "p50", "p90", "p99", "mean", "std", "max")


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"min": float(a.min()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "std": float(a.std()),
            "max": float(a.max())}


def _timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "lesions"
"""The repository's 224 px sample JPEGs (absent from an installed wheel)."""


def sample_image() -> Path | None:
    """The first shipped 224 px sample JPEG, when the repo's samples are there."""
    found = sorted(SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []
    return found[0] if found else None


def default_image() -> bytes:
    """A shipped sample JPEG, else a synthetic 224 px JPEG."""
    if sample_image():
        return sample_image().read_bytes()
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bench_model(model: str | None, image: bytes, runs: int, warmup: int, threads: int | None,
                runtime: str = "auto", labels: str | None = None) -> dict:
    """All latency figures of one model on one image."""
    t = time.perf_counter()
    clf = Classifier(model, threads, runtime, labels)
    init_ms = (time.perf_counter() - t) * 1e3
    rgb = clf.preprocess(image)
    t = time.perf_counter()
    clf.invoke(rgb)
    first_ms = (time.perf_counter() - t) * 1e3
    interp, index = clf.interpreter, clf.input_detail["index"]

    def invoke_only() -> None:
        interp.invoke()

    def end_to_end() -> None:
        clf.classify(image)

    interp.set_tensor(index, to_input(rgb, clf.spec)[None])
    _timed(invoke_only, warmup)
    invoke = _timed(invoke_only, runs)
    _timed(end_to_end, max(1, warmup // 2))
    e2e = _timed(end_to_end, runs)
    return {"model": str(clf.bundle.model_path), "name": clf.bundle.name, "runtime": clf.runtime,
            "threads": threads, "input": [clf.spec.height, clf.spec.width, clf.spec.dtype],
            "size_mb": round(clf.bundle.model_path.stat().st_size / 1e6, 3),
            "init_ms": init_ms, "first_inference_ms": first_ms,
            "invoke_ms": stats(invoke), "end_to_end_ms": stats(e2e),
            "overhead_ratio_p50": stats(e2e)["p50"] / stats(invoke)["p50"]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(model: str | None, image: bytes, runs: int, warmup: int, threads: int | None, runtime: str,
        labels: str | None, reference: str | None, sweep: list[int]) -> dict:
    result = bench_model(model, image, runs, warmup, threads, runtime, labels)
    result["peak_rss_mb"] = peak_rss_mb()
    result["sweep"] = [{"threads": t, "invoke_p50_ms": bench_model(model, image, max(10, runs // 4), 3, t,
                                                                    runtime, labels)["invoke_ms"]["p50"]}
                       for t in sweep]
    if reference:
        ref = bench_model(reference, image, runs, warmup, threads, runtime)
        result["reference"] = ref
        result["ratio"] = {k: result[k]["p50"] / ref[k]["p50"] for k in ("invoke_ms", "end_to_end_ms")}
    return result


class ImageFolder(NamedTuple):
    """A folder and the image files found in it (as ``lesionlite classify`` finds them)."""

    path: str
    images: list[str]


def folder_throughput(model: str | None, folder: ImageFolder, workers: int, threads: int | None, runtime: str,
                      labels: str | None) -> dict:
    """Images per second of ``lesionlite classify``'s pipeline over a folder, against the
    invoke-only bound (one invoke after another on a ready input)."""
    clf = Classifier(model, threads, runtime, labels)
    interp, detail = clf.interpreter, clf.input_detail
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))  # invoke time ignores content
    bound_ms = stats(_timed(interp.invoke, 50))["p50"]
    t = time.perf_counter()
    n = sum(1 for row in classify_paths(clf, folder.images, workers) if not row.error)
    rate = n / (time.perf_counter() - t)
    bound = 1e3 / bound_ms
    return {"folder": folder.path, "images": n, "failed": len(folder.images) - n, "workers": workers,
            "images_per_s": rate, "invoke_bound_per_s": bound, "ratio": rate / bound}


def cold_start(image: str, model_args: list[str], repeats: int = 3) -> dict:
    """Wall time of ``lesionlite classify IMAGE`` in a fresh process, next to ``import tensorflow``
    (None where the command failed or TensorFlow is not installed)."""
    import subprocess

    def wall(cmd: list[str]) -> float | None:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                return None
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    return {"classify_one_ms": wall([sys.executable, "-m", "lesionlite.cli", "classify", image, *model_args]),
            "import_tensorflow_ms": wall([sys.executable, "-c", "import tensorflow"])}


def format_report(r: dict) -> str:
    lines = [f"model {r['name']} ({r['size_mb']} MB, input {r['input'][0]}x{r['input'][1]} {r['input'][2]}) "
             f"on {r['runtime']}, threads {r['threads'] or 'default'}",
             f"init {r['init_ms']:.1f} ms, first inference {r['first_inference_ms']:.1f} ms, "
             f"peak RSS {r['peak_rss_mb']:.0f} MB",
             f"{'ms':<22}" + "".join(f"{s:>8}" for s in STATS)]
    rows = [("invoke only", r["invoke_ms"]), ("end to end", r["end_to_end_ms"])]
    if "reference" in r:
        rows += [("reference invoke", r["reference"]["invoke_ms"]),
                 ("reference end to end", r["reference"]["end_to_end_ms"])]
    lines += [f"{name:<22}" + "".join(f"{v[s]:>8.2f}" for s in STATS) for name, v in rows]
    lines.append(f"end-to-end / invoke-only (p50): {r['overhead_ratio_p50']:.2f}")
    if r["sweep"]:
        lines.append("threads sweep (invoke p50 ms): "
                     + ", ".join(f"{s['threads']}: {s['invoke_p50_ms']:.2f}" for s in r["sweep"]))
    if "folder" in r:
        f = r["folder"]
        skipped = f" ({f['failed']} failed to read, skipped)" if f["failed"] else ""
        lines.append(f"folder {f['folder']}: {f['images']} images{skipped} at {f['images_per_s']:.1f}/s with {f['workers']} "
                     f"decode workers; invoke-only bound {f['invoke_bound_per_s']:.1f}/s (ratio {f['ratio']:.2f})")
    if "cold_start" in r:
        c = r["cold_start"]
        def ms(v: float | None, missing: str) -> str:
            return f"{v:.0f} ms" if v is not None else missing

        lines.append(f"cold start: lesionlite classify one image {ms(c['classify_one_ms'], 'failed')}; "
                     f"python -c 'import tensorflow' {ms(c['import_tensorflow_ms'], 'not installed')}")
    if "ratio" in r:
        lines.append(f"ours / reference ({Path(r['reference']['model']).name}), p50: "
                     f"invoke {r['ratio']['invoke_ms']:.2f}, end to end {r['ratio']['end_to_end_ms']:.2f}")
    return "\n".join(lines)


REFERENCE_NAME = "tf2_mobilenet_v2_1.0_224_ptq.tflite"


def shipped_reference() -> Path:
    """The latency yardstick that ships in ``models/reference/`` (checkout or install alike)."""
    return models_dir() / "reference" / REFERENCE_NAME


def add_arguments(p) -> None:
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--image", help="image to run end to end (default: a shipped 224 px sample)")
    p.add_argument("--reference", nargs="?", const=str(shipped_reference()), metavar="MODEL.tflite",
                   help="also time this reference model the same way and print ours/reference "
                   f"(alone: the shipped {REFERENCE_NAME})")
    sweep = p.add_mutually_exclusive_group()
    sweep.add_argument("--sweep", type=thread_count, nargs="+", metavar="THREADS",
                       help="thread counts to sweep (default: 1, 2 and the CPU count)")
    sweep.add_argument("--no-sweep", action="store_true", help="skip the threads sweep")
    p.add_argument("--folder", type=_folder, help="also time classifying this folder (images/s against the invoke bound)")
    p.add_argument("--workers", type=thread_count, default=2, help="decode workers for --folder")
    p.add_argument("--cold-start", action="store_true",
                   help="also time `lesionlite classify` in a fresh process next to `import tensorflow`")
    p.add_argument("--memory", action="store_true",
                   help="instead of latency: the peak memory of `lesionlite classify` and `lesionlite serve` on "
                   "7070 x 7070 images of every kind, against their targets (exit 1 when over; about 2 minutes)")
    p.add_argument("--json", type=json_output_path, help="write the figures to this JSON file")


def _folder(text: str) -> ImageFolder:
    """A folder holding images, listed once here, before any work."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    images = find_images([text]).images
    if not images:
        raise argparse.ArgumentTypeError(f"no image files in {text}")
    return ImageFolder(text, images)


def main(args) -> int:
    if args.runs < 1 or args.warmup < 0:
        raise CommandError("--runs must be >= 1 and --warmup >= 0")
    model_args = [a for flag, v in (("--model", args.model), ("--runtime", args.runtime),
                                    ("--threads", args.threads), ("--labels", args.labels_file))
                  if v is not None for a in (flag, str(v))]
    if args.memory:
        return _memory(args, model_args)
    if args.reference is not None:  # a reference that cannot run fails now, not after the timing
        try:
            Classifier(args.reference, args.threads, args.runtime)
        except (BundleError, RuntimeUnavailable) as exc:
            raise CommandError(f"reference model: {exc}") from None
    image = default_image()
    if args.image:
        try:
            image = Path(args.image).read_bytes()
            load_image(args.image)
        except OSError as exc:
            raise CommandError(f"cannot read {args.image}: {exc.strerror}") from None
        except ImageError as exc:
            raise CommandError(f"{args.image}: {exc}") from None
    sweep = [] if args.no_sweep else args.sweep or sorted({1, 2, os.cpu_count() or 1})
    r = run(args.model, image, args.runs, args.warmup, args.threads, args.runtime, args.labels_file,
            args.reference, sweep)
    if args.folder:
        r["folder"] = folder_throughput(args.model, args.folder, args.workers, args.threads, args.runtime,
                                        args.labels_file)
    if args.cold_start:
        image_path = args.image or sample_image()
        if not image_path:
            raise CommandError("--cold-start needs --image FILE")
        r["cold_start"] = cold_start(str(image_path), model_args)
    print(format_report(r))
    if args.json:
        atomic_write_text(args.json, json.dumps(r, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _memory(args, model_args: list[str]) -> int:
    """``--memory``: :mod:`lesionlite.edge.membench`'s figures; exit 1 when one is over its target."""
    import importlib.util

    from lesionlite.edge import membench

    serve = all(importlib.util.find_spec(m) for m in ("flask", "waitress"))
    if not serve:
        print("note: Flask or waitress is not installed: serve is not measured", file=sys.stderr)
    r = membench.run(model_args, serve)
    print(membench.format_report(r))
    if args.json:
        atomic_write_text(args.json, json.dumps(r, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if membench.over_target(r) else 0
