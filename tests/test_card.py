"""The model card and the interval note say what the metadata and the figures say, not fixed words."""
from __future__ import annotations

import json

from conftest import ROOT
from lesionlite.convert.card import model_card
from lesionlite.edge.metrics import INTERVAL_LEVEL, interval_note


def shipped_meta() -> dict:
    return json.loads((ROOT / "models/ham10000-efficientnet-lite0/metadata.json").read_text())


def test_the_card_counts_and_names_the_classes_of_its_metadata():
    card = model_card(shipped_meta())
    assert "Output: 7 logits" in card and "(7 classes: akiec, bcc, bkl, df, mel, nv, vasc)" in card
    meta = {k: v for k, v in shipped_meta().items() if k != "scope"}  # without a gate, it names the classes
    meta["labels"] = [label for label in meta["labels"] if label["code"] in ("bcc", "mel", "nv")]
    card = model_card(meta)
    assert "Output: 3 logits" in card and "(3 classes: bcc, mel, nv)" in card
    assert "7 logits" not in card and "7 classes" not in card
    assert "one of its 3 classes" in card and "## Scope gate\nNone" in card  # it warns that it labels anything


def test_the_card_gives_the_scope_gate_and_its_held_out_figures():
    meta = shipped_meta()
    card = model_card(meta)
    assert "## Scope gate" in card and f"Below {meta['scope']['threshold']:.3f}" in card
    for row in meta["scope"]["held_out"]:  # every held-out row, as the metadata gives it
        assert f"| {row['source']} | " in card and f"{row['declined']} of {row['n']} (" in card
    assert "declines most of them" in card


def test_the_interval_note_names_its_level():
    assert INTERVAL_LEVEL == 0.95 and interval_note([0.61, 0.7]) == " (95% interval 0.610-0.700)"
    assert interval_note((0.61, 0.7), 0.9) == " (90% interval 0.610-0.700)"
    assert interval_note((0.61, 0.7), 0.975) == " (97.5% interval 0.610-0.700)"
    assert interval_note(None) == ""


def test_the_shipped_card_is_what_its_metadata_makes():
    """A bundle from before sources were recorded (one data folder, no per-source counts) keeps its card."""
    shipped = ROOT / "models" / "ham10000-efficientnet-lite0"
    assert model_card(shipped_meta()) == (shipped / "MODEL_CARD.md").read_text()
