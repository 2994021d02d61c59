"""The model card and the interval note say what the metadata and the figures say, not fixed words."""
from __future__ import annotations

from lesionlite.edge.metrics import INTERVAL_LEVEL, interval_note


def test_the_interval_note_names_its_level():
    assert INTERVAL_LEVEL == 0.95 and interval_note([0.61, 0.7]) == " (95% interval 0.610-0.700)"
    assert interval_note((0.61, 0.7), 0.9) == " (90% interval 0.610-0.700)"
    assert interval_note((0.61, 0.7), 0.975) == " (97.5% interval 0.610-0.700)"
    assert interval_note(None) == ""
