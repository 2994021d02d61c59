"""Model bundles: ``model.tflite`` + ``labels.txt`` + ``metadata.json`` (the contract between
training and the edge). Loading validates everything before the model is used."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionlite.edge.embedded import can_read, read_embedded
from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.labels import CLASS_NAMES, MALIGNANT, read_labels_file
from lesionlite.edge.preprocess import COLOR_CONSTANCY, CROPS, InputSpec
from lesionlite.edge.scope import ScopeGate

SCHEMA = "lesionlite.bundle/3"
"""Written by convert. /2 added ``input.color_constancy``, /3 the ``scope`` gate: an older runtime
refuses such a bundle instead of preparing its input without the correction, or answering for any
image."""
READABLE_SCHEMAS = ("lesionlite.bundle/1", "lesionlite.bundle/2", SCHEMA)
METADATA_FILE = "metadata.json"
MODEL_FILE = "model.tflite"
LABELS_FILE = "labels.txt"
SPLIT_FILE = "split.csv"
"""The lesion-grouped split the model was trained with (``training.split_sha256`` names it)."""
DEFAULT_BUNDLE = "ham10000-efficientnet-lite0"
MODELS_ENV = "LESIONLITE_MODEL"
SELF_REFERENTIAL = ("sha256", "size_bytes")
"""Metadata fields that describe the final file, so they cannot be embedded in it."""
ACTED_ON = ("schema", "labels", "input", "output", "calibration", "thresholds", "scope")
"""Metadata fields that change what the device answers: ``metadata.json`` must agree with the copy
embedded in the checksummed model on these, or the bundle is refused."""
DTYPES = ("uint8", "int8", "float32")


class BundleError(LesionliteError, ValueError):
    """A bundle that must not be used; the message is the one-line reason."""


@dataclass(frozen=True)
class OutputSpec:
    """What the model's output tensor holds. ``kind`` is ``logits``, ``probabilities`` or
    ``auto`` (bare models: probabilities if they already sum to one, else logits)."""

    kind: str = "logits"
    dtype: str = "float32"
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "OutputSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Bundle:
    model_path: Path
    labels: list[tuple[str, str]]
    input: InputSpec | None  # None for a bare model: taken from the interpreter
    output: OutputSpec
    temperature: float = 1.0
    thresholds: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    sha256: str = ""
    scope: ScopeGate | None = None
    """None: the bundle has no gate and answers for any image."""

    @property
    def name(self) -> str:
        return self.meta.get("name", self.model_path.stem)

    @property
    def bare(self) -> bool:
        return not self.meta

    @property
    def codes(self) -> list[str]:
        return [c for c, _ in self.labels]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def models_dir() -> Path:
    """``models/`` beside the packages (a checkout or editable install) or inside the install."""
    from lesionlite import models

    return Path(models.__file__).resolve().parent


def trained_on(meta: dict) -> list[str] | None:
    """The splits a bundle's model was trained on: None for a bare model, ``["train"]`` for bundles
    made before refits (``lesionlite train --refit``) recorded it."""
    training = meta.get("training")
    return (training.get("trained_on") or ["train"]) if isinstance(training, dict) else None


def default_bundle_path() -> Path:
    return Path(os.environ.get(MODELS_ENV) or models_dir() / DEFAULT_BUNDLE)


def from_metadata(meta: dict, model_path: Path, sha256: str = "") -> Bundle:
    """A :class:`Bundle` from a metadata dict; raises :class:`BundleError` if a field is missing or
    holds a value this runtime cannot honour."""
    if meta.get("schema") not in READABLE_SCHEMAS:
        raise BundleError(f"unsupported metadata schema {meta.get('schema')!r} (expected one of {READABLE_SCHEMAS})")
    try:
        labels = [(lab["code"], lab.get("name") or CLASS_NAMES.get(lab["code"], lab["code"]))
                  for lab in meta["labels"]]
        bundle = Bundle(model_path, labels, InputSpec.from_dict(meta["input"]), OutputSpec.from_dict(meta["output"]),
                        meta["calibration"]["temperature"], meta.get("thresholds") or {}, meta, sha256)
    except KeyError as exc:
        raise BundleError(f"metadata is missing a field: {exc}") from None
    except (TypeError, AttributeError):
        raise BundleError("metadata has a field of the wrong type (labels, input, output or calibration)") from None
    problems = _bad_values(bundle) + _bad_scope(meta.get("scope"))
    if problems:
        raise BundleError("metadata holds values this runtime cannot use: " + "; ".join(problems))
    if meta.get("scope") is not None:
        bundle.scope = ScopeGate.from_dict(meta["scope"])
    return bundle


def _number(v: Any, lo: float = -math.inf, hi: float = math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _bad_values(bundle: Bundle) -> list[str]:
    """What in a bundle's metadata the runtime would misuse: wrong types, preprocessing it cannot
    do, and calibration or thresholds that would corrupt probabilities or silence ``refer``."""
    spec, out, thr, codes = bundle.input, bundle.output, bundle.thresholds, bundle.codes
    checks = [
        (all(isinstance(c, str) and c for c in codes) and len(set(codes)) == len(codes) > 0,
         f"labels {codes} (need distinct non-empty codes)"),
        (all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (spec.height, spec.width)),
         f"input size {spec.height!r}x{spec.width!r}"),
        (spec.dtype in DTYPES and out.dtype in DTYPES, f"dtypes {spec.dtype!r} in, {out.dtype!r} out"),
        (_number(spec.scale, 1e-12) and _number(spec.mean) and _number(spec.std, 1e-12)
         and _number(out.scale, 0.0) and all(isinstance(z, int) for z in (spec.zero_point, out.zero_point)),
         "input or output scale, zero point, mean or std"),
        (spec.color_order == "RGB" and spec.resize == "bilinear" and isinstance(spec.crop, str)
         and spec.crop in CROPS and isinstance(spec.color_constancy, str) and spec.color_constancy in COLOR_CONSTANCY,
         f"input colour order {spec.color_order!r}, resize {spec.resize!r}, crop {spec.crop!r}, "
         f"colour constancy {spec.color_constancy!r}"),
        (out.kind in ("logits", "probabilities"), f"output kind {out.kind!r}"),
        (_number(bundle.temperature, 1e-6), f"calibration temperature {bundle.temperature!r} (must be > 0)"),
    ]
    problems = [what for ok, what in checks if not ok]
    malignant = [c for c in MALIGNANT if c in codes]
    if not thr and not malignant:  # no class to refer: decisions are "none", as for a bare model
        return problems
    refer = thr.get("refer") if isinstance(thr, dict) else None
    if not isinstance(refer, dict) or not _number(thr.get("confidence_floor"), 0.0, 1.0):
        problems.append("thresholds need a 'refer' table and a confidence_floor in [0, 1]")
        return problems
    bad = {c: t for c, t in refer.items() if c not in codes or not _number(t, 0.0, 1.0)}
    if bad:
        problems.append(f"referral thresholds {bad} (labels of this model, in [0, 1])")
    missing = [c for c in malignant if c not in refer]
    if missing:
        problems.append(f"no referral threshold for {', '.join(missing)} (each malignant label needs one)")
    return problems


def _bad_scope(scope: Any) -> list[str]:
    """What is wrong with a ``scope`` section (absent is allowed: a bundle without a gate)."""
    if scope is None:
        return []
    weights = scope.get("weights") if isinstance(scope, dict) else None
    if not (isinstance(weights, list) and weights and all(_number(w) for w in weights)
            and _number(scope.get("bias")) and _number(scope.get("threshold"), 0.0, 1.0)):
        return ["scope gate (needs finite weights, a bias and a threshold in [0, 1])"]
    return []


def load_bundle(path: str | Path | None = None, labels_file: str | None = None) -> Bundle:
    """Load and validate a bundle directory, a ``.tflite`` inside one, or a bare ``.tflite``."""
    path = Path(path) if path else default_bundle_path()
    if path.is_dir():
        meta_path = path / METADATA_FILE
        if not meta_path.is_file():
            raise BundleError(f"{path} is not a model bundle: no {METADATA_FILE}")
    elif path.is_file():
        model_path, meta_path = path, path.parent / METADATA_FILE
        if not meta_path.is_file():
            return _bare_or_embedded(path, labels_file)
    else:
        hint = "" if path.suffix else f" (bundles live in {models_dir()})"
        raise BundleError(f"model not found: {path}{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"unreadable {meta_path}: {exc}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path} is not a JSON object: refusing the bundle")
    if path.is_dir():
        model_path = path / Path(str(meta.get("model_file", MODEL_FILE))).name
    elif meta.get("model_file", MODEL_FILE) != model_path.name:
        return _bare_or_embedded(model_path, labels_file)
    if not model_path.is_file():
        raise BundleError(f"bundle {path} has no {model_path.name}")
    digest = sha256_file(model_path)
    if digest != meta.get("sha256"):
        raise BundleError(f"{model_path} does not match its metadata (sha256 {digest[:12]}... "
                          f"!= {str(meta.get('sha256'))[:12]}...): refusing a modified or mismatched model")
    bundle = from_metadata(meta, model_path, digest)
    _check_embedded(meta, model_path)
    beside = model_path.parent / LABELS_FILE
    for source in (labels_file, str(beside) if beside.is_file() else None):
        if source:
            _check_labels(bundle, _labels(source), source)
    return bundle


def _check_embedded(meta: dict, model_path: Path) -> None:
    """``metadata.json`` is not checksummed, the copy embedded in the model is: refuse a bundle whose
    JSON differs from it on a field the device acts on, warn if it differs elsewhere."""
    if not can_read():
        print(f"warning: without ai-edge-litert the metadata embedded in {model_path.name} cannot be read, "
              f"so an edited {METADATA_FILE} would go unnoticed (pip install ai-edge-litert)", file=sys.stderr)
        return
    embedded = read_embedded(model_path)
    if embedded is None:  # a bundle from before embedding
        return
    differ = sorted(k for k in set(meta) | set(embedded)
                    if k not in SELF_REFERENTIAL and meta.get(k) != embedded.get(k))
    acted_on = [k for k in differ if k in ACTED_ON]
    if acted_on:
        raise BundleError(f"{METADATA_FILE} differs from the metadata embedded in {model_path.name} "
                          f"({', '.join(acted_on)}): refusing an edited bundle")
    if differ:
        print(f"warning: {METADATA_FILE} differs from the metadata embedded in {model_path.name} "
              f"({', '.join(differ)}); using {METADATA_FILE}", file=sys.stderr)


def _labels(labels_file: str) -> list[tuple[str, str]]:
    try:
        labels = read_labels_file(labels_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read labels file {labels_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if not labels:
        raise BundleError(f"labels file {labels_file} names no labels (one per line)")
    return labels


def _check_labels(bundle: Bundle, labels: list[tuple[str, str]], source: str) -> None:
    """Refuse a labels file whose codes, or the names it gives (shown to the user), differ from the metadata's."""
    if [c for c, _ in labels] != bundle.codes:
        raise BundleError(f"{source} does not match the bundle's labels {bundle.codes}")
    renamed = next((f"{c}: {n!r}, not {m!r}" for (c, n), (_, m) in zip(labels, bundle.labels) if n and n != m), None)
    if renamed:
        raise BundleError(f"{source} does not match the bundle's label names ({renamed})")


def _bare_or_embedded(model_path: Path, labels_file: str | None) -> Bundle:
    embedded = read_embedded(model_path)
    if embedded is not None:
        bundle = from_metadata(embedded, model_path, sha256_file(model_path))
        if labels_file:
            _check_labels(bundle, _labels(labels_file), labels_file)
        print(f"note: no {METADATA_FILE} beside {model_path.name}; using the metadata embedded in it",
              file=sys.stderr)
        return bundle
    labels = [(c, n or CLASS_NAMES.get(c, c)) for c, n in _labels(labels_file)] if labels_file else []
    return Bundle(model_path, labels, None, OutputSpec(kind="auto"))


def bare_input_spec(height: int, width: int, dtype: str) -> InputSpec:
    """The usual convention of third-party image models: a quantized input holds the pixel
    bytes themselves (its scale maps them to the model's own normalization); a float input
    takes pixels scaled to [-1, 1]."""
    if dtype == "uint8":
        return InputSpec(height, width, dtype)
    if dtype == "int8":
        return InputSpec(height, width, dtype, zero_point=-128)
    return InputSpec(height, width, dtype, mean=127.5, std=127.5)


def check_interpreter(bundle: Bundle, input_detail: dict[str, Any], output_detail: dict[str, Any],
                      features_detail: dict[str, Any] | None = None) -> Bundle:
    """Refuse a bundle whose metadata disagrees with the model; fill in a bare bundle's specs.
    ``features_detail``: the model's second output, which a scope gate reads."""
    in_shape = [int(v) for v in input_detail["shape"]]
    out_shape = [int(v) for v in output_detail["shape"]]
    in_dtype = input_detail["dtype"].__name__
    out_dtype = output_detail["dtype"].__name__
    in_q = input_detail.get("quantization", (0.0, 0))
    out_q = output_detail.get("quantization", (0.0, 0))
    if len(in_shape) != 4 or in_shape[3] != 3:
        raise BundleError(f"model input must be NHWC RGB, got shape {in_shape}")
    n_out = out_shape[-1]
    if bundle.bare:
        if bundle.labels and len(bundle.labels) != n_out:
            raise BundleError(f"labels file has {len(bundle.labels)} labels but the model outputs {n_out}")
        if not bundle.labels:
            bundle.labels = [(str(i), f"class {i}") for i in range(n_out)]
        bundle.input = bare_input_spec(in_shape[1], in_shape[2], in_dtype)
        bundle.output = OutputSpec("auto", out_dtype, float(out_q[0]), int(out_q[1]))
        return bundle
    spec, out = bundle.input, bundle.output
    problems = []
    if [spec.height, spec.width] != in_shape[1:3]:
        problems.append(f"input size {spec.height}x{spec.width} != model {in_shape[1]}x{in_shape[2]}")
    if spec.dtype != in_dtype:
        problems.append(f"input dtype {spec.dtype} != model {in_dtype}")
    if out.dtype != out_dtype:
        problems.append(f"output dtype {out.dtype} != model {out_dtype}")
    if len(bundle.labels) != n_out:
        problems.append(f"{len(bundle.labels)} labels != model output size {n_out}")
    if in_dtype in ("uint8", "int8") and (abs(spec.scale - in_q[0]) > 1e-6 * max(1.0, spec.scale)
                                         or spec.zero_point != in_q[1]):
        problems.append(f"input quantization {spec.scale},{spec.zero_point} != model {in_q[0]},{in_q[1]}")
    if out_dtype in ("uint8", "int8") and (abs(out.scale - out_q[0]) > 1e-6 * max(1.0, out.scale)
                                          or out.zero_point != out_q[1]):
        problems.append(f"output quantization {out.scale},{out.zero_point} != model {out_q[0]},{out_q[1]}")
    if bundle.scope is not None:
        size = int(features_detail["shape"][-1]) if features_detail is not None else None
        if size != bundle.scope.size:
            problems.append(f"the scope gate reads {bundle.scope.size} features but the model's second output "
                            + (f"has {size}" if size is not None else "is missing"))
    if problems:
        raise BundleError(f"{bundle.model_path}: metadata does not match the model: " + "; ".join(problems))
    return bundle
