"""Finding image files: the folder scan every command shares (classify, evaluate, bench, replay
sources, the training data index)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, NamedTuple

from lesionlite.edge.preprocess import IMAGE_SUFFIXES

DATASET_SUFFIXES = (".jpg", ".jpeg", ".png")
"""Image files of a labelled data set (HAM10000-style), matched to metadata rows by file stem."""


def images_by_stem(folder: Path, suffixes: Iterable[str] = DATASET_SUFFIXES) -> dict[str, list[Path]]:
    """Every image file under ``folder`` (recursively, sorted), keyed by file stem."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in suffixes and path.is_file():
            found.setdefault(path.stem, []).append(path)
    return found


UNDECODED_SUFFIXES = frozenset({".heic", ".heif", ".avif", ".dng", ".cr2", ".nef", ".arw", ".raw"})
"""Camera and phone image files that Pillow cannot decode here: a folder scan names them, not silently."""


class Found(NamedTuple):
    """What :func:`find_images` found: the image files, and one line for each thing it had to leave
    out (a folder it cannot read, image files of a kind it cannot decode)."""

    images: list[str]
    skipped: list[str]


def find_images(paths: Iterable[str]) -> Found:
    """Files named directly (any kind: a FIFO, a device or a broken link is listed too, and its
    reading fails with a reason), plus image files found recursively in folders (:func:`scan_folder`).
    A path that does not exist, or an empty one (an unset variable), is refused before any work
    (:class:`FileNotFoundError`)."""
    images: list[str] = []
    skipped: list[str] = []
    for p in paths:
        if not p:
            raise FileNotFoundError(2, "an empty path is not a file or folder", "''")
        path = Path(p)
        if not os.path.lexists(path):
            raise FileNotFoundError(2, "no such file or folder", p)
        if path.is_dir():
            found = scan_folder(path)
            images += found.images
            skipped += found.skipped
        else:
            images.append(str(path))
    return Found(images, skipped)


def scan_folder(folder: Path) -> Found:
    """The image files under ``folder``, sorted; hidden files and folders are left out, and so are
    linked folders (a link may lead anywhere, ``/`` included), each named in ``skipped`` with any
    folder that cannot be read and any image file of a kind that is not decoded. An entry with an
    image file's name that is not a regular file (a FIFO, a link to a device, a broken link, a link
    loop) is listed: reading it fails with a reason (:func:`~lesionlite.edge.preprocess.open_file`),
    so it gets a row that names it rather than vanishing."""
    found: list[str] = []
    skipped: list[str] = []
    links: list[str] = []
    undecoded: list[str] = []

    def unreadable(exc: OSError) -> None:
        skipped.append(f"cannot read folder {exc.filename} ({exc.strerror}): its images are left out")

    for parent, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        links += [str(Path(parent, d)) for d in dirs if os.path.islink(os.path.join(parent, d))]
        for name in files:
            suffix = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                continue
            if suffix in IMAGE_SUFFIXES:
                found.append(str(Path(parent, name)))
            elif suffix in UNDECODED_SUFFIXES:
                undecoded.append(suffix)
    if links:
        skipped.append(f"{len(links)} linked folder(s) not followed ({', '.join(links[:3])}"
                       f"{', ...' if len(links) > 3 else ''}): name them too to include their images")
    if undecoded:
        skipped.append(f"{len(undecoded)} file(s) in {folder} of a kind lesionlite cannot decode "
                       f"({', '.join(sorted(set(undecoded)))}) left out: convert them to JPEG")
    return Found(sorted(found), skipped)
