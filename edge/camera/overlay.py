"""The one overlay renderer (Pillow): label, confidence bar, decision colour, top-3, FPS, quality
warning and the disclaimer, with fonts scaled to the frame height. Displays either paste it over
a frame (:func:`annotate`) or hand the transparent RGBA image to the camera preview."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from lesionlite.edge.camera.quality import TIPS
from lesionlite.edge.labels import DECISION_COLOURS as COLOURS
from lesionlite.edge.preprocess import frame_to_image
from lesionlite.edge.result import Result
from lesionlite.edge.scope import NOT_DERMOSCOPY, OUT_OF_SCOPE

Colour = tuple[int, int, int]
DECISION_COLOURS: dict[str, Colour] = {d: ImageColor.getrgb(hex_colour)[:3] for d, hex_colour in COLOURS.items()}
WARNING = DECISION_COLOURS["uncertain"]
WHITE = (255, 255, 255)
BAND = (0, 0, 0, 165)
SHORT_DISCLAIMER = "Decision aid only - not a diagnosis"
HINT = "space: shoot   q: quit"
MIN_HEIGHT = 480
"""Smaller frames are upscaled to this height before annotating so the text stays legible."""
TEXT_FRACTION = 16 / 480
"""Body text height as a fraction of the frame height (16 px at 480p, 36 px at 1080p); a portrait frame
counts as the 4:3 landscape frame of its width, so the words fit across it."""
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class View:
    """What the overlay shows: a result (live or a shot's) or a quality problem, plus status."""

    result: Result | None = None
    problem: str | None = None
    title: str = "LIVE"
    fps: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Panel:
    """A view reduced to the strings and colours drawn (hashable, so renders are cached)."""

    headline: str
    colour: Colour
    chip: str
    confidence: float | None
    detail: str
    top: str
    status: str
    note: str

    @property
    def summary(self) -> str:
        """Headline and confidence, e.g. ``Melanocytic nevus (nv) 62%``."""
        return self.headline + (f" {self.confidence:.0%}" if self.confidence is not None else "")


def panel(view: View) -> Panel:
    status = view.title + (f"  {view.fps:.1f} fps" if view.fps is not None else "")
    if view.problem:
        return Panel(f"retake: {view.problem}", WARNING, "RETAKE", None, TIPS.get(view.problem, ""), "",
                     status, view.note)
    r = view.result
    if r is None:
        return Panel("point the camera at the lesion", WHITE, "", None, "", "", status, view.note)
    if r.decision == OUT_OF_SCOPE:  # no label: the words say why, in the gate's own colour
        what, why = NOT_DERMOSCOPY.split(" - ", 1)
        return Panel(what, DECISION_COLOURS[OUT_OF_SCOPE], "OUT OF SCOPE", None,
                     f"{why} (scope score {r.scope:.2f})", "", status, view.note)
    top = "   ".join(f"{code} {p:.0%}" for code, _, p in r.top)
    return Panel(f"{r.name} ({r.label})", DECISION_COLOURS.get(r.decision, DECISION_COLOURS["none"]),
                 r.decision.upper(), round(r.confidence, 2), r.reason, top, status, view.note)


def status_line(p: Panel) -> str:
    """The panel as one terminal line."""
    return " | ".join(s for s in (p.status, p.summary, p.chip, p.top, p.note) if s)


def _font_paths(name: str) -> list[str | Path]:
    """Pillow finds system fonts by name; matplotlib (if installed) bundles DejaVu too."""
    paths: list[str | Path] = [name]
    spec = importlib.util.find_spec("matplotlib")  # locates the package without importing it
    if spec and spec.submodule_search_locations:
        paths.append(Path(spec.submodule_search_locations[0]) / "mpl-data/fonts/ttf" / name)
    return paths


@lru_cache(maxsize=32)
def font(px: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _font_paths(FONT_FILES[bold]):
        try:
            return ImageFont.truetype(str(path), px)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: a fixed small bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, f: ImageFont.ImageFont, width: float) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "...", font=f) > width:
        text = text[:-1]
    return text + "..."


def _wrap(draw: ImageDraw.ImageDraw, text: str, f: ImageFont.ImageFont, width: float, max_lines: int = 2) -> list[str]:
    """``text`` broken at spaces into at most ``max_lines`` lines of ``width`` pixels: on a narrow
    (portrait) frame the words wrap before any is cut; only what still does not fit ends in "..."."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=f) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    return [_fit(draw, line, f, width) for line in lines] or [""]


def _ink(colour: Colour) -> Colour:
    """Black or white text, whichever reads better on ``colour``."""
    return (0, 0, 0) if sum(c * w for c, w in zip(colour, (0.299, 0.587, 0.114))) > 150 else WHITE


@lru_cache(maxsize=8)
def render(size: tuple[int, int], p: Panel) -> Image.Image:
    """A transparent RGBA image of ``size`` (W, H) with the panel drawn in a top and a bottom band."""
    w, h = size
    u = max(10, round(min(h, w * 3 / 4) * TEXT_FRACTION))  # a portrait frame: sized as if 4:3 landscape
    pad = max(3, u // 2)
    big, body, small, bold = font(round(u * 1.3), True), font(u), font(round(u * 0.85)), font(round(u * 0.85), True)
    line = {f: f.getbbox("Ag")[3] + 2 for f in (big, body, small, bold)}
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(im)

    status_w = d.textlength(p.status, font=small)
    headline = _wrap(d, p.headline, big, w - 3 * pad - status_w)
    detail = _wrap(d, p.detail, small, w - 2 * pad)
    top_h = pad + len(headline) * line[big] + pad + line[body] + pad // 2 + len(detail) * line[small] + pad
    d.rectangle((0, 0, w, top_h), fill=BAND)
    d.text((w - pad - status_w, pad), p.status, font=small, fill=WHITE)
    headline_colour = p.colour if p.chip in ("RETAKE", "OUT OF SCOPE") else WHITE
    for i, text in enumerate(headline):
        d.text((pad, pad + i * line[big]), text, font=big, fill=headline_colour)
    x, y = pad, pad + len(headline) * line[big] + pad
    if p.chip:
        chip_w = d.textlength(p.chip, font=body) + pad
        d.rounded_rectangle((x, y, x + chip_w, y + line[body]), radius=pad // 2, fill=p.colour)
        d.text((x + pad // 2, y), p.chip, font=body, fill=_ink(p.colour))
        x += chip_w + pad
    if p.confidence is not None:
        bar_w = w * 0.35
        d.rectangle((x, y + 2, x + bar_w, y + line[body] - 2), outline=WHITE, width=max(1, u // 12))
        d.rectangle((x, y + 2, x + bar_w * p.confidence, y + line[body] - 2), fill=p.colour)
        d.text((x + bar_w + pad, y), f"{p.confidence:.0%}", font=body, fill=WHITE)
    y += line[body] + pad // 2
    for text in detail:
        d.text((pad, y), text, font=small, fill=WHITE)
        y += line[small]

    hint_w = d.textlength(HINT, font=small)
    beside = d.textlength(SHORT_DISCLAIMER, font=bold) + hint_w + 3 * pad <= w  # else the hint gets its own line
    rows = [(text, f) for text, f in ((p.top, body), (p.note, small), ("" if beside else HINT, small),
                                      (SHORT_DISCLAIMER, bold)) if text]
    bottom = h - pad - sum(line[f] + pad // 2 for _, f in rows)
    d.rectangle((0, bottom - pad, w, h), fill=BAND)
    y = bottom
    for text, f in rows:
        room = w - 2 * pad - (hint_w + pad if f is bold and beside else 0)
        d.text((pad, y), _fit(d, text, f, room), font=f, fill=WHITE)
        if f is bold and beside:
            d.text((w - pad - hint_w, y), HINT, font=small, fill=WHITE)
        y += line[f] + pad // 2

    if w > h:  # brackets marking the centre square the model sees
        left, right, arm, width = (w - h) // 2, (w + h) // 2, h // 10, max(1, u // 8)
        for xs, sign in ((left, 1), (right, -1)):
            for ys, vsign in ((top_h + pad, 1), (bottom - 2 * pad, -1)):
                d.line((xs, ys, xs + sign * arm, ys), fill=WHITE + (200,), width=width)
                d.line((xs, ys, xs, ys + vsign * arm), fill=WHITE + (200,), width=width)
    return im


def overlay_rgba(size: tuple[int, int], view: View) -> Image.Image:
    """The overlay alone, for a camera preview (cached: the same object while nothing changes)."""
    return render(size, panel(view))


def annotate(frame: np.ndarray, color_order: str, view: View) -> Image.Image:
    """``frame`` with the overlay pasted on (upscaled first if shorter than :data:`MIN_HEIGHT`)."""
    im = frame_to_image(frame, color_order, check_size=False)  # a frame too small to classify is still shown
    if im.height < MIN_HEIGHT:
        im = im.resize((round(im.width * MIN_HEIGHT / im.height), MIN_HEIGHT), Image.BILINEAR)
    layer = overlay_rgba(im.size, view)
    im.paste(layer, (0, 0), layer)
    return im
