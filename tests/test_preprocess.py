"""The one preprocessing function on real files: modes, EXIF, crop, frames, bytes, bad input."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from lesionlite.edge import preprocess
from lesionlite.edge.preprocess import ImageError, InputSpec, pixels


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def test_center_square_crop_and_size(fullres_images):
    src = Image.open(fullres_images[0])
    assert src.size == (600, 450)
    out = pixels(fullres_images[0], (160, 160))
    assert out.shape == (160, 160, 3) and out.dtype == np.uint8
    # the crop is the centre 450x450: same as cropping by hand, then resizing
    manual = np.asarray(src.convert("RGB").crop((75, 0, 525, 450)).resize((160, 160), Image.BILINEAR))
    assert np.abs(out.astype(int) - manual.astype(int)).mean() < 3.0  # draft-mode DCT scaling only


def test_no_crop_keeps_whole_image(tmp_path):
    im = Image.new("RGB", (400, 100), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 100, 100))  # white left quarter: cut away by a centre crop
    path = tmp_path / "wide.png"
    im.save(path)
    assert pixels(path, (50, 200), crop="none")[:, :40].mean() > 250
    assert pixels(path, (50, 50), crop="center_square").mean() < 5


def test_shades_of_gray_removes_a_colour_cast_as_the_published_formula_does(fullres_images):
    src = Image.open(fullres_images[0]).convert("RGB")
    r, g, b = src.split()
    warm = Image.merge("RGB", (r.point(lambda v: min(255, v * 1.15)), g, b.point(lambda v: v * 0.8)))
    plain = [pixels(im, (224, 224)).astype(int) for im in (src, warm)]
    fixed = [pixels(im, (224, 224), color_constancy="shades_of_gray").astype(int) for im in (src, warm)]

    def colour(rgb):  # each channel's share of the brightness: what a colour cast changes
        means = rgb.mean(axis=(0, 1))
        return means / means.sum()

    assert np.abs(colour(plain[0]) - colour(plain[1])).max() > 0.03  # the cast shows in the input ...
    assert np.abs(colour(fixed[0]) - colour(fixed[1])).max() < 0.005  # ... but not once corrected
    # Finlayson & Trezzi's estimate over all pixels, in floating point
    x = plain[0].astype(np.float64)
    light = np.mean(x ** 6, axis=(0, 1)) ** (1 / 6)
    reference = np.clip(x * np.linalg.norm(light) / (light * np.sqrt(3)), 0, 255)
    assert np.abs(reference - fixed[0]).max() <= 0.5 + 1e-9
    dim = plain[0].astype(np.uint8)
    dim[..., 2] = dim[..., 2] // 40  # a nearly black blue channel: its noise is not stretched to 255
    assert pixels(dim, (224, 224), color_constancy="shades_of_gray")[..., 2].max() <= 3 * dim[..., 2].max() + 1
    with pytest.raises(ValueError, match="colour constancy"):
        pixels(fullres_images[0], (224, 224), color_constancy="retinex")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_pillow_mode_becomes_rgb(mode, lesion_images, tmp_path):
    rgb = Image.open(lesion_images[0]).convert("RGB")
    if mode == "I;16":
        im = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257))
        assert im.mode.startswith("I;16")
    else:
        im = rgb.convert(mode)
    path = tmp_path / f"img.{'tiff' if mode in ('I;16', 'I', 'F', 'CMYK') else 'png'}"
    im.save(path)
    out = pixels(path, (64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert 10 < out.mean() < 245  # real content, not a blank


def test_transparency_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    im.save(tmp_path / "clear.png")
    assert pixels(tmp_path / "clear.png", (8, 8)).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (200, 100), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 100, 100))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg(im, exif=exif.tobytes()))
    upright = np.asarray(preprocess.load_image(path))
    assert upright.shape[:2] == (200, 100)  # portrait after rotation
    assert upright[10, 50, 0] > 200 and upright[190, 50, 2] > 200  # red on top, blue below


def test_frames_in_rgb_and_bgr_and_bytes_agree(lesion_images):
    data = lesion_images[0].read_bytes()
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    from_file = pixels(lesion_images[0], (96, 96))
    assert np.array_equal(pixels(data, (96, 96)), from_file)
    assert np.array_equal(pixels(rgb, (96, 96)), pixels(np.ascontiguousarray(rgb[..., ::-1]), (96, 96), "BGR"))
    bgrx = np.concatenate([rgb[..., ::-1], np.zeros_like(rgb[..., :1])], axis=2)  # picamera2 XBGR8888
    assert np.array_equal(pixels(bgrx, (96, 96), "BGR"), pixels(rgb, (96, 96)))


def test_quantized_input_matches_spec():
    rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert np.array_equal(preprocess.to_input(rgb, InputSpec(4, 4, "uint8", 1.0, 0)), rgb)
    x = preprocess.to_input(rgb, InputSpec(4, 4, "int8", 1.0, -128))
    assert x.dtype == np.int8 and int(x.min()) == -128
    f = preprocess.to_input(rgb, InputSpec(4, 4, "float32", mean=127.5, std=127.5))
    assert f.dtype == np.float32 and f.min() == pytest.approx(-1.0)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"this is a text file, not an image\n", "not a readable image"),
])
def test_bad_bytes_are_refused_with_a_reason(content, reason, tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        pixels(path, (32, 32))


def test_truncated_jpeg_is_refused(lesion_images, tmp_path):
    data = lesion_images[0].read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        pixels(path, (32, 32))


def test_oversized_image_is_refused_before_decoding(monkeypatch, fullres_images):
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 100_000)
    with pytest.raises(ImageError, match="too large"):
        pixels(fullres_images[0], (32, 32))


def test_sixteen_bit_grey_keeps_its_brightness(lesion_images, tmp_path):
    grey = np.asarray(Image.open(lesion_images[0]).convert("L"), np.uint16) // 3  # a dark picture
    Image.fromarray(grey.astype(np.uint8), "L").save(tmp_path / "eight.png")
    Image.fromarray(grey * 257).save(tmp_path / "sixteen.png")  # the same picture, 16-bit
    eight, sixteen = (np.asarray(preprocess.load_image(tmp_path / n)) for n in ("eight.png", "sixteen.png"))
    assert np.array_equal(eight, sixteen)


@pytest.mark.parametrize("size", [(1, 1), (31, 400)])
def test_images_too_small_to_show_a_lesion_are_refused(size, tmp_path):
    Image.new("RGB", size, (120, 80, 60)).save(tmp_path / "small.png")
    with pytest.raises(preprocess.ImageError, match=f"image too small: {size[0]}x{size[1]} pixels"):
        preprocess.load_image(tmp_path / "small.png")


def test_a_decompression_bomb_header_is_refused_without_a_pillow_warning(tmp_path):
    import struct
    import zlib

    from conftest import run_cli

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    paths = []
    for side in (8_000, 10_000, 14_000):  # 64, 100 and 196 million pixels: ours, Pillow's warning, its error
        path = tmp_path / f"bomb{side}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                         + chunk(b"IEND", b""))
        paths.append(str(path))
    proc = run_cli("classify", *paths, "-o", str(tmp_path / "rows.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert proc.returncode == 1 and "Warning" not in proc.stderr and "Traceback" not in proc.stderr
    assert [r["error"] for r in rows] == ["image too large: 8000x8000 pixels (limit 50,000,000)",
                                          "image too large: 10000x10000 pixels (limit 50,000,000)",
                                          "image too large: over 178,956,970 pixels (limit 50,000,000)"]


def test_formats_that_decode_while_opening_are_refused_whatever_the_name(tmp_path, lesion_images):
    Image.open(lesion_images[0]).save(tmp_path / "icon.ico")  # an icon wraps PNG frames Pillow decodes on open
    (tmp_path / "icon.jpg").write_bytes((tmp_path / "icon.ico").read_bytes())
    with pytest.raises(preprocess.ImageError, match="not a known image format"):
        preprocess.load_image(tmp_path / "icon.jpg")


def test_a_dark_sixteen_bit_png_opened_as_32_bit_stays_dark(tmp_path):
    grey = Image.fromarray(np.full((64, 64), 200, np.int32), "I")  # as older Pillow opens a 16-bit PNG
    grey.format = "PNG"
    assert np.asarray(preprocess.to_rgb(grey)).max() == 1


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


TURNS = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270}
"""EXIF orientations and the transposition that makes each upright."""


def _whole_image_reference(plain, orientation: int, size=(224, 224), crop="center_square") -> np.ndarray:
    """The model input of ``plain`` stored with ``orientation``, as decoded whole: the unturned file
    converted to RGB as one image, turned upright, cropped and resized."""
    im = Image.open(plain)
    rgb = preprocess._to_rgb(im, preprocess._scale16(im))
    if TURNS[orientation]:
        rgb = rgb.transpose(TURNS[orientation])
    if crop == "center_square":
        rgb = preprocess.center_square(rgb)
    return np.asarray(rgb.resize(size[::-1], Image.BILINEAR) if size else rgb)


@pytest.mark.parametrize("mode,fmt", [("I;16", "png"), ("I;16", "tiff"), ("F", "tiff"), ("P", "gif"),
                                      ("RGBA", "png"), ("CMYK", "tiff"), ("LA", "png"), ("RGB", "png")])
@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_images_up_to_the_reduction_size_are_converted_in_tiles_exactly_as_whole(mode, fmt, orientation,
                                                                                 fullres_images, tmp_path):
    if fmt == "gif" and orientation != 1:
        pytest.skip("a GIF has no orientation")
    rgb = Image.open(fullres_images[0]).convert("RGB").resize((701, 523))  # over a tile: converted in parts
    assert 701 * 523 > preprocess.BAND_PIXELS
    if mode == "I;16":
        im = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 199)
    elif mode == "P":
        im = rgb.convert("P")
        im.info["transparency"] = 3
    else:
        im = rgb.convert(mode)
    plain, turned = tmp_path / f"plain.{fmt}", tmp_path / f"turned.{fmt}"
    im.save(plain, **({"transparency": 3} if fmt == "gif" else {}))
    im.save(turned, **({"exif": _exif(orientation)} if fmt != "gif" else {"transparency": 3}))
    for crop in ("center_square", "none"):
        assert np.array_equal(pixels(turned, (224, 224), crop=crop),
                              _whole_image_reference(plain, orientation, crop=crop))
    assert np.array_equal(np.asarray(preprocess.load_image(turned)),
                          _whole_image_reference(plain, orientation, size=None, crop="none"))


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "CMYK", "F"])
def test_a_tiff_turned_by_its_orientation_tag_is_upright_in_every_mode(mode, fullres_images, tmp_path):
    rgb = Image.open(fullres_images[0]).convert("RGB")
    im = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257) if mode == "I;16" else rgb.convert(mode)
    im.save(tmp_path / "plain.tif")
    im.save(tmp_path / "turned.tif", exif=_exif(6))  # stored on its side: viewers turn it clockwise
    plain = preprocess.load_image(tmp_path / "plain.tif").transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(np.asarray(preprocess.load_image(tmp_path / "turned.tif")), np.asarray(plain))


def test_an_image_over_the_reduction_size_is_reduced_first_to_nearly_the_same_input(fullres_images, tmp_path,
                                                                                    monkeypatch):
    big = Image.open(fullres_images[0]).convert("RGB").resize((3600, 2700), Image.BICUBIC)  # 9.7 megapixels
    big.save(tmp_path / "big.png", exif=_exif(8))
    reduced = pixels(tmp_path / "big.png", (224, 224))
    assert preprocess._reduction(3600, 2700, 224) == 6  # 600 x 450 before the last resize
    monkeypatch.setattr(preprocess, "REDUCE_ABOVE", 10**9)
    monkeypatch.setattr(preprocess, "MAX_DECODE_BYTES", 2**31)
    exact = pixels(tmp_path / "big.png", (224, 224))
    assert reduced.shape == exact.shape and 0 < np.abs(reduced.astype(int) - exact).mean() < 2.0


def test_an_image_too_large_to_decode_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (3000, 3000), (120, 80, 60)).save(tmp_path / "rgb.png")  # 36 MB as Pillow holds it
    Image.new("L", (3000, 3000), 90).save(tmp_path / "grey.png")  # 9 MB
    monkeypatch.setattr(preprocess, "MAX_DECODE_BYTES", 30 * 2**20)
    monkeypatch.setattr(preprocess, "_BUDGET", preprocess._Budget(30 * 2**20))
    with pytest.raises(ImageError, match=r"image too large to decode in memory: 3000x3000 pixels of mode RGB "
                                         r"\(PNG\) need \d+ MiB \(limit 30 MiB\); save it smaller"):
        pixels(tmp_path / "rgb.png", (224, 224))
    assert pixels(tmp_path / "grey.png", (224, 224)).mean() == pytest.approx(90, abs=1)
    assert preprocess._BUDGET.free == 30 * 2**20  # all of it given back


def test_decoding_threads_wait_for_the_memory_in_the_order_they_asked():
    import threading

    budget = preprocess._Budget(100)
    order: list[str] = []
    first_holds, first_may_go = threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold(80):
            order.append("first")
            first_holds.set()
            first_may_go.wait(10)

    def take(name: str, nbytes: int) -> None:
        with budget.hold(nbytes):
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    first_holds.wait(10)
    threads.append(threading.Thread(target=take, args=("large", 60)))
    threads[1].start()
    while not budget._queue:  # the large one is waiting
        pass
    threads.append(threading.Thread(target=take, args=("small", 10)))  # would fit now, but queues behind
    threads[2].start()
    while len(budget._queue) < 2:
        pass
    assert order == ["first"]
    first_may_go.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "large", "small"] and budget.free == 100
