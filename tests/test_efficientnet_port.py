"""EfficientNet-Lite0: int8-friendly structure, weight loading by layer name, and the PyTorch weight port."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="the port needs Keras and TensorFlow (pip install '.[train]')")

from lesionlite.training import efficientnet_lite as effl  # noqa: E402
from lesionlite.training import port_efficientnet as pe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARROT_CANDIDATES = (ROOT / "samples/non-lesion/parrot.jpg",  # the repo copy, preferred
                     ROOT.parent / "shared/reference-models/parrot.jpg")
MACAW = 88  # ImageNet-1k class index
INT8_FRIENDLY = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add",
                 "GlobalAveragePooling2D", "Dropout", "Dense"}


def _parrot() -> Path | None:
    return next((p for p in PARROT_CANDIDATES if p.is_file()), None)


def test_structure_is_lite_and_int8_friendly() -> None:
    model = effl.efficientnet_lite0(input_shape=(96, 96, 3))
    assert model.output_shape == (None, 3, 3, 1280)
    assert {type(layer).__name__ for layer in model.layers} <= INT8_FRIENDLY  # no SE (Multiply), no swish
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert len(relus) == 1 + 15 * 2 + 1 + 1  # stem, expand+depthwise (block1a has no expand), top
    assert all(float(r.max_value) == 6.0 for r in relus)
    assert all(layer.get_config().get("activation") in (None, "linear") for layer in model.layers)


def test_weights_load_by_name_into_any_variant(tmp_path: Path) -> None:
    source = effl.efficientnet_lite0(input_shape=(128, 128, 3), include_top=True)
    path = tmp_path / "w.npz"
    effl.save_npz_weights(source, path)

    no_top = effl.efficientnet_lite0(input_shape=(96, 96, 3), weights=str(path))
    np.testing.assert_array_equal(no_top.get_layer("top_bn").moving_variance,
                                  source.get_layer("top_bn").moving_variance)
    other_head = effl.efficientnet_lite0(input_shape=(96, 96, 3), include_top=True, classes=7,
                                         weights=str(path))
    assert other_head.get_layer("predictions").kernel.shape == (1280, 7)
    np.testing.assert_array_equal(other_head.get_layer("block7a_dwconv").kernel,
                                  source.get_layer("block7a_dwconv").kernel)

    with np.load(path) as archive:
        arrays = dict(archive)
    del arrays["block3b_project_bn/gamma"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="block3b_project_bn"):
        effl.efficientnet_lite0(input_shape=(96, 96, 3), weights=str(tmp_path / "broken.npz"))


def test_main_without_torch_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    assert pe.main(["--out", str(tmp_path / "w.npz")]) == 2
    assert "lesionlite[port]" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()


def test_main_exits_2_when_the_logits_disagree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pe, "port", lambda out, images: {"out": out, "relative_diff": pe.MAX_RELATIVE_DIFF})
    assert pe.main(["--out", str(tmp_path / "w.npz"), "--image", "x.jpg"]) == 2
    assert "Keras and PyTorch logits differ" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("torch", reason="torch not installed (pip install 'lesionlite[port]')")
    pytest.importorskip(pe.PACKAGE, reason=f"{pe.PACKAGE} not installed (pip install 'lesionlite[port]')")
    parrot = _parrot()
    return pe.port(str(tmp_path_factory.mktemp("port") / "effl.npz"), [str(parrot)] if parrot else [])


def test_port_logits_match_pytorch(ported: dict) -> None:
    assert ported["tensors"] == 247
    assert ported["relative_diff"] < pe.MAX_RELATIVE_DIFF, ported["max_abs_logit_diff_by_input"]


def test_port_classifies_parrot_as_macaw(ported: dict) -> None:
    if not ported["images"]:
        pytest.skip("no parrot photo: samples/non-lesion/parrot.jpg is missing")
    (parrot,) = ported["images"]
    assert parrot["keras_top1"] == parrot["torch_top1"] == MACAW
    assert parrot["keras_prob"] > 0.5 and parrot["torch_prob"] > 0.5
