"""MODEL_CARD.md, generated from a bundle's metadata."""
from __future__ import annotations

from pathlib import Path

from lesionlite.convert.data import data_roots
from lesionlite.edge.bundle import trained_on
from lesionlite.edge.labels import DISCLAIMER
from lesionlite.edge.metrics import interval_note

ATTRIBUTION = (
    "HAM10000: Tschandl P., Rosendahl C., Kittler H. \"The HAM10000 dataset, a large collection of "
    "multi-source dermatoscopic images of common pigmented skin lesions.\" Sci. Data 5, 180161 (2018), "
    "doi:10.1038/sdata.2018.161. Licensed CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike); "
    "this model is a derivative of that data and is shared under the same terms.")


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def scope_section(meta: dict) -> str:
    """The card's account of the scope gate: what it is, its threshold, what it was fitted on and
    its held-out figures (or that the bundle has none)."""
    scope = meta.get("scope")
    if not scope:
        return ("## Scope gate\nNone: this bundle gives one of its classes to any image, dermoscopic or not "
                "(add one with `lesionlite scope`).\n")
    from lesionlite.edge.metrics import share

    fitted = ", ".join(f"{k} {v}" for k, v in scope["fitted_on"].items())
    rows = "\n".join(f"| {r['source']} | {'dermoscopy' if r['dermoscopy'] else 'not dermoscopy'} | "
                     f"{share(r['declined'], r['n'])} |" for r in scope["held_out"])
    return f"""## Scope gate
Before the 7-class answer each image gets an in-scope score: {scope['method']}
({len(scope['weights'])} features, C = {scope['regularization_C']}). Below {scope['threshold']:.3f}
({scope['threshold_rule']}) the answer is `out-of-scope`: no label, the reason in words.
Fitted on (images per set, held-out groups excluded): {fitted}.

| held-out images | kind | declined as out-of-scope |
|---|---|---|
{rows}
"""


def data_section(meta: dict, codes: list[str], stopped: str) -> str:
    """The card's account of the images: how many, from where, how they were split, and (for runs that
    recorded it) a table of the images per source, split and class, with what the model trained on."""
    tr = meta["training"]
    folders = [Path(d).name for d in data_roots(tr["data"])]
    where = f"the folder `{folders[0]}`" if len(folders) == 1 else "the folders " + ", ".join(f"`{f}`" for f in folders)
    extra = tr.get("extra_train") or []
    extra_names = ", ".join(f"`{Path(d).name}`" for d in extra)
    extra_note = f" and, for training only, dermoscopy without lesion ids from {extra_names}" if extra else ""
    text = f"""## Data
HAM10000 dermoscopic images ({len(codes)} classes: {', '.join(codes)}), {sum(tr['counts'].values())}
images from {where}{extra_note}. Split grouped by `lesion_id` (no lesion in two splits), stratified by diagnosis,
seed {tr['seed']}: {tr['counts']}, trained on {' + '.join(trained_on(meta))}; split file sha256 `{tr['split_sha256']}` (`split.csv` here).{stopped}
The population is mostly fair-skinned (Austria, Australia); dx labels are histopathology for most
malignant cases and follow-up/expert consensus for many benign ones.
"""
    sources = tr.get("sources")
    if not sources:  # runs from before sources were recorded
        return text
    seen = trained_on(meta)
    rows = []
    for source, splits in sources.items():
        for split, per_class in splits.items():
            mark = "trained on" if split in seen else "held out"
            rows.append(f"| {source} | {split} ({mark}) | " + " | ".join(str(per_class.get(c, 0)) for c in codes)
                        + f" | {sum(per_class.values())} |")
    totals = {c: sum(pc.get(c, 0) for sp in sources.values() for split, pc in sp.items() if split in seen)
              for c in codes}
    rows.append("| **all** | **images the model trained on** | " + " | ".join(f"**{n}**" for n in totals.values())
                + f" | **{sum(totals.values())}** |")
    no_ids = f" (images without lesion ids, from {extra_names}, are in train only: never validation or test)"
    return text + f"""
Images per source, split and class{no_ids if extra else ''}:

| source | split | {' | '.join(codes)} | all |
|---|---|{'---|' * len(codes)}---|
{chr(10).join(rows)}
"""


def model_card(meta: dict) -> str:
    m = meta["metrics"]
    tr = meta["training"]
    codes = [label["code"] for label in meta["labels"]]
    thr = meta["thresholds"]
    rows = []
    keras_name = "Keras float32" + (" (quantization-aware, int8-grid kernels)" if tr.get("qat_epochs") else "")
    for name, key in ((keras_name, "float"), (f"TFLite {meta['quantization']} (this file)", "tflite")):
        t = m["test"][key]
        ba = _f(t["balanced_accuracy"]) + interval_note(t.get("balanced_accuracy_ci95"))
        rows.append(f"| {name} | {ba} | {_f(t['accuracy'])} | "
                    f"{_f(t['mel_sensitivity_at_80_specificity'])} | {_f(t['macro_auc'])} | {_f(t['ece'])} |")
    recall = m["test"]["tflite"]["recall"]
    v = m["verification"]
    refer = ", ".join(f"{c} >= {t:.3f}" for c, t in thr["refer"].items())
    by = meta["calibration"].get("fitted_by")
    on_val = (f"the validation split by `{by}`, the same recipe trained on train alone: this model "
              "also trained on validation" if by else "the validation split")
    rule = (f" of `{by}`; this model's own sensitivity at them is measured on test only" if by else "")
    seen = ("; validation is training data for this model, so this checks the conversion, not accuracy"
            if "val" in trained_on(meta) else "")
    stopped = (f"\n**Training was stopped by hand after {tr['interrupted_after_epochs']} epochs**, before its "
               "schedule ended; the best checkpoint so far is this model." if "interrupted_after_epochs" in tr else "")
    gate_note = ("the scope gate declines most of them (figures above), not all: look at what was photographed."
                 if meta.get("scope") else f"the model\n  still outputs one of its {len(codes)} classes; check the image.")
    return f"""# Model card: {meta['name']}

**{DISCLAIMER}** This model is a decision aid for trained users (clinicians, dermoscopy-trained
staff). It is not a medical device, is not cleared or approved by any regulator, and must not be used
to rule out skin cancer.

## Model
- Architecture: {tr['arch']} (input {meta['input']['height']}x{meta['input']['width']} RGB, crop
  `{meta['input']['crop']}`, colour constancy `{meta['input']['color_constancy']}`), converted to TFLite `{meta['quantization']}`: {meta['size_bytes'] / 1e6:.2f} MB,
  sha256 `{meta['sha256']}`.
- Output: {len(codes)} logits; the edge applies softmax with the calibration temperature
  T = {meta['calibration']['temperature']:.3f} (fitted on {on_val}).
- Decisions: `refer` when a malignant class reaches its threshold ({refer}; set on
  validation for {thr['refer_sensitivity_on_val']:.0%} sensitivity per class{rule}), `uncertain` when the top
  probability is below {thr['confidence_floor']:.2f}, else `monitor`. It never says "benign".

{data_section(meta, codes, stopped)}
## Metrics (lesion-disjoint test split, {m['test']['tflite']['n']} images)
| model | balanced accuracy | accuracy | mel sensitivity @ 80% specificity | macro AUC | ECE |
|---|---|---|---|---|---|
{chr(10).join(rows)}

The interval is a bootstrap over the test lesions, each class resampled on its own: it shows how far
the figure could move on another sample of lesions like these, which the rare classes dominate.
Per-class recall (TFLite): {', '.join(f'{c} {_f(r)}' for c, r in recall.items())}.

Conversion check (validation + test, through the edge runtime{seen}): top-1 agreement with Keras
{v['agreement']:.2%}, balanced accuracy change {-v['balanced_accuracy_loss'] * 100:+.2f} points, max probability
difference {v['max_probability_difference']:.3f}, top-1 ties {v['top1_ties']:.2%}.

{scope_section(meta)}
## Known failure modes
- Non-dermoscopic photos (phone snapshots without a dermatoscope), or non-skin images: {gate_note}
- Other skin types than those in HAM10000, and body sites it saw rarely (nails, mucosa, palms).
- Classes it does not know (e.g. squamous cell carcinoma other than akiec, Merkel cell carcinoma,
  lentigo maligna variants): they are forced into the nearest known class.
- Rare classes (df, vasc) have few test images; their recall figures are uncertain.

## Reproduce
See `README.md` beside this card for the exact commands.

## Licence and attribution
{ATTRIBUTION}
"""
