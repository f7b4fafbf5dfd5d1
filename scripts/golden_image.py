#!/usr/bin/env python3
"""Regenerates crates/backbone/tests/fixtures/images/: fixed test pictures (drawn
here, seeded: every format and layout polyhead decodes), the reference
preprocessing of each (PIL + the torchvision recipe: shorter side resized to 256
bilinear with antialiasing, centre crop 224) as a lossless PNG, and the reference
features of each computed by the PyTorch model in eager mode (golden.json). Run
with the project venv:

    source .polyhead-env && python scripts/golden_image.py
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "backbone", "tests", "fixtures", "images")


def pictures():
    rng = np.random.default_rng(7)
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w]
    grad = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    grad = np.clip(grad + rng.normal(0, 12, grad.shape), 0, 255).astype(np.uint8)
    yield "gradient.png", Image.fromarray(grad, "RGB"), {}

    shapes = Image.new("RGB", (500, 375), (30, 90, 160))
    d = ImageDraw.Draw(shapes)
    d.ellipse((60, 40, 260, 240), fill=(240, 200, 40))
    d.rectangle((280, 120, 470, 340), fill=(200, 30, 60))
    d.polygon([(100, 360), (250, 250), (330, 370)], fill=(20, 180, 90))
    for i in range(0, 500, 25):
        d.line((i, 0, 500 - i, 375), fill=(255, 255, 255), width=2)
    yield "shapes.jpg", shapes, {"quality": 90}

    tall = np.clip(rng.normal(128, 60, (400, 200, 3)), 0, 255).astype(np.uint8)
    tall[150:250, 50:150] = (250, 250, 250)
    yield "tall.webp", Image.fromarray(tall, "RGB"), {"lossless": True}

    yy, xx = np.mgrid[0:300, 0:300]
    gray = 128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + rng.normal(0, 8, (300, 300))
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    yield "gray.png", Image.fromarray(gray, "L"), {}

    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 1] = np.arange(256)[None, :]
    rgba[..., 2] = np.arange(256)[:, None]
    rgba[..., 3] = 128
    yield "rgba.png", Image.fromarray(rgba, "RGBA"), {}

    small = np.clip(rng.normal(100, 50, (60, 100, 3)), 0, 255).astype(np.uint8)
    yield "small.png", Image.fromarray(small, "RGB"), {}


def reference_crop(path):
    """The torchvision recipe on a PIL image: Resize(256) (the shorter side to 256,
    the longer truncated as torchvision does), CenterCrop(224)."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = export_image.RESIZE, int(export_image.RESIZE * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize(size, Image.BILINEAR)
    w, h = im.size
    c = export_image.CROP
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return im.crop((left, top, left + c, top + c))


def normalised(crop):
    a = np.asarray(crop, dtype=np.float32) / 255.0
    a = (a - np.array(export_image.MEAN, np.float32)) / np.array(export_image.STD, np.float32)
    return torch.from_numpy(a.transpose(2, 0, 1).copy()).unsqueeze(0)


def main():
    os.makedirs(OUT, exist_ok=True)
    model, _ = export_image.load()
    cases = []
    for name, picture, save in pictures():
        path = os.path.join(OUT, name)
        picture.save(path, **save)
        crop = reference_crop(path)
        crop_name = os.path.splitext(name)[0] + ".crop.png"
        crop.save(os.path.join(OUT, crop_name))
        with torch.no_grad():
            features = model(normalised(crop))[0]
        cases.append({
            "file": name,
            "crop": crop_name,
            "size": list(picture.size),
            "features": [float(v) for v in features],
        })
    golden = {
        "model": export_image.ARCH,
        "torch": torch.__version__,
        "preprocess": {
            "resize": export_image.RESIZE, "crop": export_image.CROP,
            "mean": export_image.MEAN, "std": export_image.STD,
        },
        "cases": cases,
    }
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f)
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
