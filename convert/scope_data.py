"""What the scope gate learns from: dermoscopy (in scope) and what a user's camera may see instead
(out of scope), as items that decode to Pillow images on demand.

Every item belongs to a group (a lesion, a patient, a photo), and a fixed share of the groups of
each set is held out by a hash of the group's name: the gate is fitted on the rest, its threshold
set and its figures measured on the held-out part. HAM10000 lesions of the bundle's test split are
never used at all, so ``lesionlite evaluate --split test`` stays a test of the gate too.
"""
from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from lesionlite.convert.data import find_metadata, index_dataset
from lesionlite.edge.degrade import DEGRADATIONS
from lesionlite.edge.files import images_by_stem
from lesionlite.edge.preprocess import load_image, to_rgb

HELD_OUT_PERCENT = 30
"""Share of each set's groups held out for the threshold and the figures."""
DEGRADED = 1600
"""Camera-degraded copies of HAM10000 images, so a dim or blurred dermoscopy image stays in scope."""
SYNTHETIC = 300
"""Frames a camera sees when it is not on a lesion: dark frames, bare skin, a sleeve, the floor."""
CUTOUT_SIDE = 448
SKIN_TONES = ((241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30), (255, 219, 172))


@dataclass(frozen=True)
class Item:
    """One image the gate sees: ``positive`` if it is dermoscopy of a skin lesion."""

    source: str
    group: str
    positive: bool
    load: Callable[[], Image.Image]
    label: str = ""
    """The diagnosis, where known (HAM10000): the fit weighs each diagnosis equally."""

    @property
    def held_out(self) -> bool:
        return zlib.crc32(self.group.encode()) % 100 < HELD_OUT_PERCENT


def _file(path: Path) -> Callable[[], Image.Image]:
    return lambda: load_image(path, 448)


def ham_items(roots: list[Path], metadata: Path | None, split: dict[str, str]) -> list[Item]:
    """HAM10000 images under ``roots`` (the download's layout; the metadata CSV, unless given, in the
    first), grouped by lesion, leaving out every lesion that ``split`` (lesion -> split of the bundle's
    split.csv) puts in test."""
    # root by root, in each root's metadata order: the order the shipped gate was fitted in (the
    # degraded copies are drawn by position, so another order gives another gate)
    metadata = metadata or find_metadata(roots[0])
    return [Item("ham10000", r.lesion_id, True, _file(r.path), r.dx) for root in roots
            for r in index_dataset(root, metadata).records if split.get(r.lesion_id) != "test"]


def folder_items(folder: Path, source: str, positive: bool) -> list[Item]:
    """Every image under ``folder``, each its own group (dermoscopy without lesion ids)."""
    return [Item(source, f"{source}/{stem}", positive, _file(paths[0]))
            for stem, paths in images_by_stem(folder).items()]


def degraded_items(items: list[Item], n: int = DEGRADED, seed: int = 0) -> list[Item]:
    """``n`` copies of dermoscopy items changed as a camera or hand would (:mod:`lesionlite.edge.degrade`),
    each in its lesion's group, so a held-out lesion's copies are held out too."""
    rng = np.random.default_rng(seed)
    names = sorted(DEGRADATIONS)
    picked = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [Item(f"degraded/{names[i % len(names)]}", items[j].group, True,
                 lambda it=items[j], change=DEGRADATIONS[names[i % len(names)]].change: change(it.load()))
            for i, j in enumerate(picked)]


def negative_items(root: Path, seed: int = 0) -> list[Item]:
    """Everything under ``root`` that is not dermoscopy, by its first-level folder:
    ``cutouts/`` (transparent cut-outs) are pasted on skin, plain and textured backgrounds;
    a folder with a ``labels.csv`` naming ``patient_id`` groups its images by patient (clinical
    photos); any other image is a photo, used whole and as a close crop."""
    items: list[Item] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        found = images_by_stem(folder)
        if folder.name == "cutouts":
            items += [Item("cutouts", f"cutouts/{stem}", False, lambda p=paths[0], k=k: _pasted(p, seed + k))
                      for k, (stem, paths) in enumerate(found.items())]
            continue
        patients = _patients(folder / "labels.csv")
        for stem, paths in found.items():
            group = patients.get(paths[0].name) or f"{folder.name}/{stem}"
            items.append(Item(folder.name, group, False, _file(paths[0])))
            items.append(Item(f"{folder.name}/close-crop", group, False, lambda p=paths[0]: _close_crop(load_image(p))))
    return items + [Item("camera-like", f"synthetic/{k}", False, lambda k=k: synthetic_frame(seed + k))
                    for k in range(SYNTHETIC)]


def _patients(labels: Path) -> dict[str, str]:
    """``image file name -> patient`` from a ``labels.csv`` with ``image`` and ``patient_id`` columns."""
    if not labels.is_file():
        return {}
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    return {r["image"]: f"patient/{r['patient_id']}" for r in rows if r.get("image") and r.get("patient_id")}


def _close_crop(im: Image.Image) -> Image.Image:
    """The centre half of the image: the camera held close."""
    w, h = im.size
    return im.crop((w // 4, h // 4, w - w // 4, h - h // 4))


def _skin(rng: np.random.Generator, side: int) -> np.ndarray:
    """Bare skin in some light: a tone with a soft gradient and fine noise (float RGB)."""
    tone = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], float) * rng.uniform(0.6, 1.15)
    ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), side)[:, None, None]
    return tone * ramp * np.ones((side, side, 1)) + rng.normal(0, 4, (side, side, 3))


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """A sleeve, a floor, a table: a random colour with blotchy low-frequency texture (float RGB)."""
    coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC), float)
    base = rng.uniform(20, 235, 3)
    return base * 0.6 + blotches * 0.4 + rng.normal(0, 6, (side, side, 3))


def _image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _pasted(path: Path, seed: int) -> Image.Image:
    """A cut-out pasted at a random size and place on skin, a plain colour or a texture."""
    rng = np.random.default_rng(seed)
    kind = seed % 3
    bg = _skin(rng, CUTOUT_SIDE) if kind == 0 else (
        np.ones((CUTOUT_SIDE, CUTOUT_SIDE, 3)) * rng.uniform(0, 255, 3) if kind == 1 else _texture(rng, CUTOUT_SIDE))
    canvas = _image(bg)
    with Image.open(path) as cut:
        cut = cut.convert("RGBA")
        scale = rng.uniform(0.4, 0.95) * CUTOUT_SIDE / max(cut.size)
        cut = cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.BILINEAR)
    x = int(rng.integers(0, CUTOUT_SIDE - cut.width + 1))
    y = int(rng.integers(0, CUTOUT_SIDE - cut.height + 1))
    canvas.paste(cut, (x, y), cut)
    return canvas


def synthetic_frame(seed: int, side: int = 320) -> Image.Image:
    """What a camera sees off the lesion: a dark frame, bare skin, a finger over the lens, a
    sleeve or the floor, sometimes out of focus."""
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind == 0:  # lens cap, a dark room
        frame = rng.uniform(0, 40, 3) + rng.normal(0, 5, (side, side, 3))
    elif kind == 1:
        frame = _skin(rng, side)
    elif kind == 2:  # a finger: skin filling part of the frame over something else
        frame = _texture(rng, side)
        yy, xx = np.mgrid[:side, :side]
        cx, r = rng.uniform(0.2, 0.8) * side, rng.uniform(0.25, 0.5) * side
        finger = ((xx - cx) / r) ** 2 + ((yy - side) / (1.6 * r)) ** 2 < 1
        frame[finger] = _skin(rng, side)[finger]
    else:
        frame = _texture(rng, side)
    im = _image(frame)
    return im.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8))) if rng.random() < 0.5 else to_rgb(im)
