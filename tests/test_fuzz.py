"""Property-based fuzzing of image decoding and of the upload path (hypothesis): whatever the bytes,
preprocessing gives a model input or an ImageError, never another exception, a hang or a blow-up,
and an upload gets 200 or a 400 with a reason, never a 500.

The suite runs a short, deterministic budget. A longer, randomised run:

    LESIONLITE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/test_fuzz.py
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install '.[test]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from lesionlite.edge import preprocess  # noqa: E402
from lesionlite.edge.preprocess import ImageError, pixels  # noqa: E402

EXAMPLES = int(os.environ.get("LESIONLITE_FUZZ_EXAMPLES", "120"))
LONG = EXAMPLES > 120
FUZZ = settings(max_examples=EXAMPLES, derandomize=not LONG, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ROOT = Path(__file__).resolve().parents[1]


def _seeds() -> list[bytes]:
    """Small valid files of every format and mode the edge reads, in their common variants."""
    photo = Image.open(ROOT / "samples/lesions/ISIC_0025994.jpg").convert("RGB").resize((48, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    grey16 = Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257)
    variants = [
        (photo, "JPEG", {}), (photo, "JPEG", {"progressive": True, "exif": exif.tobytes()}),
        (photo.convert("CMYK"), "JPEG", {}), (photo.convert("L"), "JPEG", {}),
        (photo, "PNG", {}), (photo.convert("RGBA"), "PNG", {}), (photo.convert("P"), "PNG", {"transparency": 2}),
        (grey16, "PNG", {}), (photo.convert("1"), "PNG", {}), (photo, "PNG", {"interlace": 1}),
        (photo.convert("LA"), "PNG", {}),
        (photo.convert("P"), "GIF", {}), (photo.convert("P"), "GIF", {"save_all": True,
                                                                     "append_images": [photo.convert("P").rotate(90)]}),
        (photo, "BMP", {}), (photo.convert("P"), "BMP", {}),
        (photo, "TIFF", {}), (photo, "TIFF", {"compression": "tiff_deflate"}), (grey16, "TIFF", {"compression": "tiff_lzw"}),
        (photo.convert("F"), "TIFF", {}), (photo.convert("CMYK"), "TIFF", {"exif": exif.tobytes()}),
        (photo, "WEBP", {}), (photo.convert("RGBA"), "WEBP", {"lossless": True}),
    ]
    seeds = []
    for im, fmt, kwargs in variants:
        buf = io.BytesIO()
        im.save(buf, fmt, **kwargs)
        seeds.append(buf.getvalue())
    return seeds


SEEDS = _seeds()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@st.composite
def png_headers(draw) -> bytes:
    """A well-formed PNG header of any size, depth and colour type, over little or damaged data: a
    small file that claims a large image."""
    w, h = draw(st.integers(1, 9000)), draw(st.integers(1, 9000))
    depth, colour = draw(st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (8, 6), (16, 6)]))
    body = zlib.compress(draw(st.binary(max_size=2048)) * draw(st.integers(1, 64)))
    plte = _chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0,
                                                                draw(st.integers(0, 1))))
            + plte + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


@st.composite
def mutated(draw) -> bytes:
    """A valid file with bytes flipped, cut, inserted or repeated: corrupt, truncated, inconsistent."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "zero"]))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[max(pos, 1):]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 512))] * draw(st.integers(1, 16))
        elif op == "zero":
            data[pos:pos + 16] = bytes(len(data[pos:pos + 16]))
    return bytes(data)


ANY_BYTES = st.one_of(mutated(), png_headers(), st.binary(max_size=256))


def _model_input_or_image_error(data: bytes, as_file: bool) -> None:
    try:
        if as_file:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, "fuzz.jpg")
                path.write_bytes(data)
                out = pixels(path, (224, 224))
        else:
            out = pixels(data, (224, 224))
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8


@FUZZ
@given(data=ANY_BYTES, as_file=st.booleans())
def test_any_bytes_give_a_model_input_or_an_image_error(data: bytes, as_file: bool) -> None:
    _model_input_or_image_error(data, as_file)
    assert preprocess._BUDGET.free == preprocess.MAX_DECODE_BYTES  # every decode gave its memory back


def test_every_seed_decodes() -> None:  # so the mutations start from files that work
    for data in SEEDS:
        assert pixels(data, (224, 224)).shape == (224, 224, 3)


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("flask", reason="the upload path needs Flask (pip install '.[serve]')")
    from lesionlite.edge.classifier import Classifier
    from lesionlite.edge.serve.app import create_app

    return create_app(Classifier(), max_upload_mb=1).test_client()


@FUZZ
@given(data=ANY_BYTES, page=st.booleans())
def test_any_upload_gets_an_answer_or_a_400_never_a_500(client, data: bytes, page: bool) -> None:
    response = client.post("/classify" if page else "/api/classify",
                           data={"image": (io.BytesIO(data), "photo.jpg")}, content_type="multipart/form-data")
    assert response.status_code in (200, 400, 413), response.get_data(as_text=True)[:500]
    if not page:
        body = response.get_json()
        assert body["decision"] if response.status_code == 200 else body["error"]
