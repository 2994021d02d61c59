"""The one image preprocessing path, shared by training, conversion and the edge.

Any source (file path, bytes, file object, PIL image, numpy camera frame) becomes an RGB
image, is centre-cropped to a square, resized with Pillow, optionally colour-corrected for the
light it was taken under, and, for model input, normalized and quantized as the bundle's
``input`` spec says.  Training and conversion call :func:`pixels`; the edge's
``Classifier.preprocess`` calls it with the bundle's spec, and ``Classifier.invoke`` then :func:`to_input`.

Decoding is bounded in memory, not only in pixels (:data:`MAX_DECODE_BYTES`): an image is decoded in
its own mode (16-bit grey stays 2 bytes a pixel), converted to RGB a band of rows at a time (never a
whole image in floating point), and only the part the model sees (the centre square) is converted.
JPEGs decode reduced (DCT scaling); other images over :data:`REDUCE_ABOVE` pixels are box-reduced by
an integer factor while they are converted, so what is resized last is at most a few times the model's
input. Images at or under that size go the exact path: their model input is what it always was.
"""
from __future__ import annotations

import errno
import io
import math
import os
import stat
import threading
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

import numpy as np
from PIL import Image, PngImagePlugin

from lesionlite.edge.errors import LesionliteError

MAX_PIXELS = 50_000_000
"""Images with more pixels than this are refused before decoding (decompression bombs)."""
MIN_SIDE = 32
"""Images or frames with a shorter side than this are refused: too few pixels to show a lesion."""
MAX_DECODE_BYTES = 110 * 2**20
"""The memory that decoding may hold, for one image and for all images a process decodes at once
(threads wait their turn for it): the decoded image in its own mode, the decoder's buffers and what
is converted from it. An image that alone needs more is refused before decoding: a 50-megapixel
8-bit or 16-bit grey or palette PNG or TIFF fits (16-bit: 95 MiB); a 50-megapixel RGB one, 4 bytes a
pixel as Pillow holds it, does not (a JPEG of any size does: it decodes reduced)."""
REDUCE_ABOVE = 8_000_000
"""Images with more pixels than this (after a JPEG's reduced decoding) are box-reduced by an integer
factor while converted to RGB; images up to it are converted whole, and their model input is exactly
that of a plain decode, crop and resize."""
BAND_PIXELS = 1 << 17
"""Pixels converted at a time (a band of rows): what converting holds beside the image."""
_BAND_BYTES = 40 * BAND_PIXELS  # a band in float64 and its temporaries, and its RGB and RGBA forms
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""File name endings read as images (classify, replay); anything else in a folder is skipped."""

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
"""Pillow formats read (those ``IMAGE_SUFFIXES`` name; JPEG includes MPO). None decodes pixels while
reading its header, so the size checks run first; others (ICO, ICNS, ...) are refused whatever the name."""

# Pillow warns of a bomb from 89 million pixels, over MAX_PIXELS: such an image is refused anyway.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# A photo whose EXIF block is damaged is read as far as it can be, without Pillow's warnings about it.
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")
# A PNG's text chunks are read while its header is, before the memory budget applies: at most 4 MB
# of them (Pillow allows 64 MB), which is still a hundred times what a camera or an editor writes.
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, 4 * 2**20)

Source = Union[str, Path, bytes, BinaryIO, Image.Image, np.ndarray]


class ImageError(LesionliteError, ValueError):
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


def to_rgb(im: Image.Image, scale16: bool | None = None) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white. Every step is of one
    pixel alone, so a large image is converted a tile at a time (what converting holds beside the
    image is one tile of :data:`BAND_PIXELS`, whatever the image's size). ``scale16``: whether 16-bit
    values are scaled to 8 bits (:func:`_scale16`, decided on the whole image; by default, on ``im``)."""
    if im.mode == "RGB":
        return im
    if scale16 is None:
        scale16 = _scale16(im)
    if im.width * im.height <= BAND_PIXELS:
        return _to_rgb(im, scale16)
    out = Image.new("RGB", im.size)
    for box in _tiles(*im.size):
        out.paste(_to_rgb(im.crop(box), scale16), box[:2])
    return out


def _tiles(w: int, h: int, step: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """Boxes that cover a ``w`` x ``h`` image in reading order, of about :data:`BAND_PIXELS` each
    (whole rows when they fit), with sides that are multiples of ``step`` except at the image's edges."""
    cols = min(w, max(step, BAND_PIXELS // step * step))
    rows = max(step, BAND_PIXELS // cols // step * step)
    for y in range(0, h, rows):
        for x in range(0, w, cols):
            yield x, y, min(x + cols, w), min(y + rows, h)


def _scale16(im: Image.Image) -> bool:
    """Whether ``im`` holds 16-bit grey values, read by the fixed 16-to-8-bit scale (a dark picture
    stays dark): always for the 16-bit modes; for 32-bit "I", when it comes from a PNG (some Pillow
    versions open 16-bit PNGs so) or holds a value over 255."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return True
    return im.mode == "I" and (im.format == "PNG" or (im.getextrema()[1] or 0) > 255)


def _to_rgb(im: Image.Image, scale16: bool) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey (or 32-bit holding 8- or 16-bit values)
        arr = np.asarray(im, dtype=np.float64)
        if scale16:
            arr = arr / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)  # "not a number" pixels are black
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
    stays at least that large, and other images over :data:`REDUCE_ABOVE` pixels be reduced as far
    (without it, they are reduced to at most that many pixels).  ``color_order`` applies to numpy
    frames only ("RGB" or "BGR"). A path is opened with :func:`open_file` (a FIFO or device is
    refused, never read).
    """
    if isinstance(source, np.ndarray):
        return frame_to_image(source, color_order)
    return _decode(source, min_side)


def thumbnail(source: Source, side: int) -> Image.Image:
    """The upright RGB image, shrunk to fit ``side`` x ``side`` (a preview), decoded as
    :func:`load_image` decodes within the memory budget."""
    def shrink(im: Image.Image) -> Image.Image:
        im.thumbnail((side, side))
        return im

    return _decode(source, side, finish=shrink)


class _Budget:
    """Bytes of memory that decoding threads reserve before decoding and give back after, in the
    order they asked (a large image is not overtaken for ever by small ones)."""

    def __init__(self, total: int):
        self.total, self.free = total, total
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                self._cond.wait_for(lambda: self._queue[0] is ticket and self.free >= nbytes)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
            self.free -= nbytes
        try:
            yield
        finally:
            with self._cond:
                self.free += nbytes
                self._cond.notify_all()


_BUDGET = _Budget(MAX_DECODE_BYTES)

_ORIENTATION = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
"""The EXIF orientations and the transposition that makes each upright (as ``ImageOps.exif_transpose``)."""
_SWAPS_SIDES = {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
                Image.Transpose.ROTATE_90}


def _pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in a Pillow image (RGB is stored in 4)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _decoder_bytes(im: Image.Image, full: tuple[int, int]) -> int:
    """What the decoder holds beside the image: libjpeg keeps every DCT coefficient of a progressive
    JPEG at its full size (``full``: before reduced decoding), 2 bytes each; Pillow's WebP reader keeps
    libwebp's two whole RGBA canvases and a copy of the frame (12 bytes a pixel, measured); libtiff
    decodes a strip or tile at a time (a single-strip TIFF: the whole image again)."""
    w, h = im.size
    if im.format in ("JPEG", "MPO") and im.info.get("progression"):
        layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * 3
        hmax, vmax = max(c[1] for c in layers), max(c[2] for c in layers)
        return sum(math.ceil(full[0] * c[1] / hmax / 8) * math.ceil(full[1] * c[2] / vmax / 8) * 128 for c in layers)
    if im.format == "WEBP":
        return w * h * 12
    if im.format == "TIFF" and im.tile and im.tile[0][0] != "raw":
        tags = getattr(im, "tag_v2", {})
        samples = int(tags.get(277, 1) or 1)
        bits = tags.get(258, (8,))
        row = math.ceil(w * samples * max(bits if isinstance(bits, tuple) else (bits,)) / 8)
        if 322 in tags and 323 in tags:
            return int(tags[322]) * int(tags[323]) * samples * 4
        return min(h, int(tags.get(278, h) or h)) * row
    return 0


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation still to apply, read without decoding the pixels where it can be. A PNG's
    eXIf chunk after the image data is found only once decoded (:func:`_convert` looks again then); a
    TIFF's tag is read as it is, as Pillow may turn a TIFF upright while decoding it (and asking for
    its EXIF block first would stop that)."""
    if im.format == "TIFF" and not getattr(im, "_exif", None):
        return int(getattr(im, "tag_v2", {}).get(_ORIENTATION, 1) or 1)
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: as if it had none (Pillow's exif_transpose reads it so)
        return 1


def _reduction(w: int, h: int, min_side: int | None) -> int:
    """The integer factor an image over :data:`REDUCE_ABOVE` pixels is box-reduced by: as far as
    keeps its short side at least twice ``min_side`` (a reducing gap of 2, as Pillow's thumbnails use),
    and at least as far as brings it to :data:`REDUCE_ABOVE` pixels."""
    if w * h <= REDUCE_ABOVE:
        return 1
    factor = math.ceil(math.sqrt(w * h / REDUCE_ABOVE))
    if min_side:
        factor = max(factor, min(w, h) // (2 * min_side))
    return max(1, factor)


def _square_box(w: int, h: int) -> tuple[int, int, int, int]:
    """The box :func:`center_square` keeps of a ``w`` x ``h`` image."""
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _box_before(method: Image.Transpose | None, box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    """The box of a ``w`` x ``h`` image that ``method`` turns into ``box`` of the transposed image."""
    l, t, r, b = box
    T = Image.Transpose
    return {None: (l, t, r, b), T.FLIP_LEFT_RIGHT: (w - r, t, w - l, b), T.ROTATE_180: (w - r, h - b, w - l, h - t),
            T.FLIP_TOP_BOTTOM: (l, h - b, r, h - t), T.TRANSPOSE: (t, l, b, r),
            T.ROTATE_270: (t, h - r, b, h - l), T.TRANSVERSE: (w - b, h - r, w - t, h - l),
            T.ROTATE_90: (w - b, l, w - t, r)}[method]


def _cost(im: Image.Image, full: tuple[int, int], factor: int, method: Image.Transpose | None, square: bool) -> int:
    """The memory decoding ``im`` (opened, not decoded; ``full``: its size before reduced decoding)
    holds at most, in bytes: the image in its own mode, the decoder's buffers, a tile being
    converted, and the RGB images made from it."""
    w, h = im.size
    cost = w * h * _pixel_bytes(im.mode) + _decoder_bytes(im, full) + _BAND_BYTES
    if factor > 1:
        return cost + 3 * math.ceil(w / factor) * math.ceil(h / factor) * 4  # reduced, turned, cropped
    kept = min(w, h) ** 2 if square else w * h
    converted = kept * 4 if im.mode != "RGB" or kept < w * h else 0
    return cost + converted + (kept * 4 if method else 0)  # and turned upright


def _decode(source: Source, min_side: int | None, square: bool = False,
            finish: Callable[[Image.Image], Image.Image] | None = None) -> Image.Image:
    """Decode ``source`` upright to RGB within :data:`MAX_DECODE_BYTES` (reduced if large), keep its
    centre square if ``square``, and ``finish`` it (resize it) before the memory is given back."""
    if isinstance(source, (str, Path)):
        fh, _ = open_file(source)
        with fh:
            return _decode(fh, min_side, square, finish)
    im = source if isinstance(source, Image.Image) else _open(source)
    problem = size_problem("image", *im.size, MAX_PIXELS)
    if problem:
        raise ImageError(problem)
    try:
        full = im.size
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))
        w, h = im.size
        factor = _reduction(w, h, min_side)
        method = _TRANSPOSE.get(_orientation(im))
        if isinstance(source, Image.Image):  # decoded by the caller already: nothing to reserve
            return _convert(im, factor, square, finish)
        cost = _cost(im, full, factor, method, square)
        if cost > MAX_DECODE_BYTES:
            raise ImageError(f"image too large to decode in memory: {full[0]}x{full[1]} pixels of mode {im.mode} "
                             f"({im.format}{', progressive' if im.info.get('progression') else ''}) need "
                             f"{cost / 2**20:.0f} MiB (limit {MAX_DECODE_BYTES / 2**20:.0f} MiB); "
                             "save it smaller or as a baseline JPEG")
        with _BUDGET.hold(cost):
            try:
                out = _convert(im, factor, square, finish)
            except BaseException:
                im.close()  # the decoded pixels go now, before the memory is given back
                raise
            if out is not im:
                im.close()
            return out
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def _convert(im: Image.Image, factor: int, square: bool,
             finish: Callable[[Image.Image], Image.Image] | None) -> Image.Image:
    im.load()
    method = _TRANSPOSE.get(_orientation(im))
    scale16 = _scale16(im)
    w, h = im.size
    if factor > 1:  # reduced a tile at a time (sides multiples of the factor: as if reduced whole)
        out = Image.new("RGB", (math.ceil(w / factor), math.ceil(h / factor)))
        for box in _tiles(w, h, factor):
            out.paste(to_rgb(im.crop(box), scale16).reduce(factor), (box[0] // factor, box[1] // factor))
        out = out.transpose(method) if method else out
        out = center_square(out) if square else out
    else:  # only the part kept is converted, in the image's own orientation, then turned upright
        upright = (h, w) if method in _SWAPS_SIDES else (w, h)
        box = _box_before(method, _square_box(*upright) if square else (0, 0, *upright), w, h)
        out = _rgb_part(im, box, scale16)
        if method:
            out = out.transpose(method)
    return finish(out) if finish else out


def _rgb_part(im: Image.Image, box: tuple[int, int, int, int], scale16: bool) -> Image.Image:
    """``to_rgb(im.crop(box))``, without a copy of the part in the image's own mode."""
    l, t, r, b = box
    if im.mode == "RGB" or (r - l) * (b - t) <= BAND_PIXELS:
        return to_rgb(im if box == (0, 0, *im.size) else im.crop(box), scale16)
    out = Image.new("RGB", (r - l, b - t))
    for x0, y0, x1, y1 in _tiles(r - l, b - t):
        out.paste(_to_rgb(im.crop((l + x0, t + y0, l + x1, t + y1)), scale16), (x0, y0))
    return out


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

    def resize(im: Image.Image) -> Image.Image:
        return im.resize((width, height), Image.BILINEAR)

    if isinstance(source, np.ndarray):
        im = frame_to_image(source, color_order)
        rgb = np.asarray(resize(center_square(im) if crop == "center_square" else im), dtype=np.uint8)
    else:
        rgb = np.asarray(_decode(source, max(height, width), crop == "center_square", resize), dtype=np.uint8)
    correct = COLOR_CONSTANCY[color_constancy]
    return correct(rgb) if correct else rgb


def model_pixels(source: Source, spec: InputSpec, color_order: str = "RGB") -> np.ndarray:
    """:func:`pixels` as a model with this input ``spec`` was trained: what ``Classifier.preprocess``
    gives, without loading the model (for decoding apart from it)."""
    return pixels(source, (spec.height, spec.width), color_order, spec.crop, spec.color_constancy)


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

