"""The one image preprocessing path, shared by training, conversion and the edge.

Any source (file path, bytes, file object, PIL image, numpy camera frame) becomes an RGB
image, is centre-cropped to a square, resized with Pillow, optionally colour-corrected for the
light it was taken under, and, for model input, normalized and quantized as the bundle's
``input`` spec says.  Training and conversion call :func:`pixels`; the edge's
``Classifier.preprocess`` calls it with the bundle's spec, and ``Classifier.invoke`` then :func:`to_input`.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000
"""Images with more pixels than this are refused before decoding (decompression bombs)."""
MIN_SIDE = 32
"""Images or frames with a shorter side than this are refused: too few pixels to show a lesion."""
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""File name endings read as images (classify, replay); anything else in a folder is skipped."""

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
"""Pillow formats read (those ``IMAGE_SUFFIXES`` name; JPEG includes MPO). None decodes pixels while
reading its header, so the size checks run first; others (ICO, ICNS, ...) are refused whatever the name."""

# Pillow warns of a bomb from 89 million pixels, over MAX_PIXELS: such an image is refused anyway.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# A photo whose EXIF block is damaged is read as far as it can be, without Pillow's warnings about it.
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")

Source = Union[str, Path, bytes, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An input that cannot be turned into a model input (corrupt, empty, too large, ...)."""


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its input; stored under ``input`` in the bundle metadata."""

    height: int
    width: int
    dtype: str = "uint8"
    scale: float = 1.0
    zero_point: int = 0
    mean: float = 0.0
    std: float = 1.0
    color_order: str = "RGB"
    crop: str = "center_square"
    resize: str = "bilinear"
    color_constancy: str = "none"

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def open_file(path: str | Path) -> tuple[BinaryIO, os.stat_result]:
    """Open an image file to read, and its status as it was opened (what ``classify --resume``
    identifies the file by). Never blocks and never reads without end: a FIFO, a device (a link to
    ``/dev/zero``), a folder, a broken link and a link loop are refused with an :class:`ImageError`
    that names what they are, as is an empty file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)  # a FIFO opens at once
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(f"broken link: its target {os.readlink(path)} does not exist") from None
        raise ImageError(f"no such file: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("a link that leads back to itself (symbolic link loop)") from None
        if exc.errno == errno.ENXIO:
            raise ImageError("not a regular file but a socket: not read") from None
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "character device"
                    if stat.S_ISCHR(st.st_mode) else "block device" if stat.S_ISBLK(st.st_mode) else "special file")
            raise ImageError(f"not a regular file but a {kind}: not read")
        if st.st_size == 0:
            raise ImageError("empty file")
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def _open(source: Source) -> Image.Image:
    if isinstance(source, (str, Path)):
        raise TypeError("a path is opened by open_file() first")  # load_image() does, and closes it
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty upload")
        fp: BinaryIO = io.BytesIO(source)
    else:
        fp = source
    try:
        return Image.open(fp, formats=FORMATS)
    except Image.DecompressionBombError:  # Pillow's own limit, twice its warning's
        raise ImageError(f"image too large: over {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
                         f"(limit {MAX_PIXELS:,})") from None
    except Image.UnidentifiedImageError:  # its message names a path or a BytesIO object
        raise ImageError("not a readable image: not a known image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a readable image: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (or 32-bit holding 8- or 16-bit values)
        arr = np.asarray(im, dtype=np.float64)
        if im.mode != "I" or im.format == "PNG" or arr.max() > 255:  # a PNG's "I" is 16-bit grey
            arr = arr / 257.0  # the fixed 16-to-8-bit scale: a dark picture stays dark
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def size_problem(what: str, w: int, h: int, limit: int | None = None) -> str | None:
    """Why a ``w`` x ``h`` image or frame is refused (over ``limit`` pixels, a side under
    :data:`MIN_SIDE`), or None. Files are limited to :data:`MAX_PIXELS`; frames, already decoded, are not."""
    if limit and w * h > limit:
        return f"{what} too large: {w}x{h} pixels (limit {limit:,})"
    if min(w, h) < MIN_SIDE:
        return f"{what} too small: {w}x{h} pixels (at least {MIN_SIDE} a side)"
    return None


def load_image(source: Source, min_side: int | None = None, color_order: str = "RGB") -> Image.Image:
    """Decode ``source`` to an upright RGB Pillow image.

    ``min_side`` lets JPEG decoding use draft mode (DCT scaling) as long as the short side
    stays at least that large.  ``color_order`` applies to numpy frames only ("RGB" or "BGR").
    A path is opened with :func:`open_file` (a FIFO or device is refused, never read).
    """
    if isinstance(source, np.ndarray):
        return frame_to_image(source, color_order)
    if isinstance(source, (str, Path)):
        fh, _ = open_file(source)
        with fh:
            return load_image(fh, min_side, color_order)
    im = source if isinstance(source, Image.Image) else _open(source)
    problem = size_problem("image", *im.size, MAX_PIXELS)
    if problem:
        raise ImageError(problem)
    try:
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))
        im = ImageOps.exif_transpose(im)
        im.load()
        return to_rgb(im)
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def frame_to_image(frame: np.ndarray, color_order: str = "RGB", check_size: bool = True) -> Image.Image:
    """A camera frame (HxW, HxWx3 or HxWx4 uint8) in RGB or BGR order as an RGB image; one too
    small to classify is refused unless ``check_size`` is False (to draw it)."""
    if frame.dtype != np.uint8:
        raise ImageError(f"frame must be uint8, got {frame.dtype}")
    problem = size_problem("frame", frame.shape[1], frame.shape[0]) if check_size and frame.ndim >= 2 else None
    if problem:
        raise ImageError(problem)
    if frame.ndim == 2:
        return Image.fromarray(frame, "L").convert("RGB")
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ImageError(f"frame must be HxW, HxWx3 or HxWx4, got shape {frame.shape}")
    rgb = frame[..., :3]
    if color_order.upper() == "BGR":
        rgb = rgb[..., ::-1]
    elif color_order.upper() != "RGB":
        raise ImageError(f"unknown colour order {color_order!r}")
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def center_square(im: Image.Image) -> Image.Image:
    """The largest centred square of ``im``."""
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


MAX_GAIN = 3.0
"""Shades of Gray never scales a channel by more than this (or less than its inverse), so the noise
of a nearly black channel (a dim frame, red light) is not stretched to full range."""


def shades_of_gray(rgb: np.ndarray, power: int = 6) -> np.ndarray:
    """Colour constancy by Shades of Gray (Finlayson & Trezzi, 2004), as ISIC challenge entries use
    it: estimate the light's colour as each channel's ``power``-mean and divide it out, so one
    lesion under warm or cool light, or through another dermatoscope, gives nearly one input.
    Byte histograms and lookup tables keep it to about 0.4 ms at 224 x 224."""
    levels = np.arange(256, dtype=np.float64)
    light = np.array([np.bincount(rgb[..., c].ravel(), minlength=256) @ levels ** power for c in range(3)])
    light = (light / max(rgb.shape[0] * rgb.shape[1], 1)) ** (1.0 / power)
    gain = np.linalg.norm(light) / (np.maximum(light, 1e-3) * np.sqrt(3.0))
    gain = np.clip(gain, 1.0 / MAX_GAIN, MAX_GAIN)
    table = np.clip(levels[:, None] * gain + 0.5, 0, 255).astype(np.uint8)  # (256, 3)
    out = np.empty_like(rgb)
    for c in range(3):
        out[..., c] = table[:, c].take(rgb[..., c])
    return out


CROPS = ("center_square", "none")
COLOR_CONSTANCY = {"none": None, "shades_of_gray": shades_of_gray}
"""Colour corrections a bundle's ``input.color_constancy`` may name."""


def pixels(source: Source, size: tuple[int, int], color_order: str = "RGB",
           crop: str = "center_square", color_constancy: str = "none") -> np.ndarray:
    """Decode, crop (``center_square`` or ``none``), resize and colour-correct (a name in
    :data:`COLOR_CONSTANCY`): an ``(H, W, 3)`` uint8 RGB array.  ``size`` is (H, W).
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop policy {crop!r}; expected one of {CROPS}")
    if color_constancy not in COLOR_CONSTANCY:
        raise ValueError(f"unknown colour constancy {color_constancy!r}; expected one of "
                         f"{tuple(COLOR_CONSTANCY)}")
    height, width = size
    im = load_image(source, min_side=max(height, width), color_order=color_order)
    if crop == "center_square":
        im = center_square(im)
    rgb = np.asarray(im.resize((width, height), Image.BILINEAR), dtype=np.uint8)
    correct = COLOR_CONSTANCY[color_constancy]
    return correct(rgb) if correct else rgb


def to_input(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Normalize and quantize an ``(..., H, W, 3)`` uint8 array into the model's input dtype."""
    x = rgb.astype(np.float32)
    if spec.mean != 0.0 or spec.std != 1.0:
        x = (x - spec.mean) / spec.std
    if spec.dtype in ("uint8", "int8"):
        info = np.iinfo(spec.dtype)
        x = np.round(x / spec.scale + spec.zero_point)
        return np.clip(x, info.min, info.max).astype(spec.dtype)
    return x.astype(spec.dtype)

