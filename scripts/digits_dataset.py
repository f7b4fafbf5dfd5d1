#!/usr/bin/env python3
"""Builds data/digits/{train,test}/<digit>/*.png, a second picture set for QUALITY.md,
from the copy of the UCI optical-recognition-of-handwritten-digits test set that the
scikit-learn wheel ships (`sklearn.datasets.load_digits`: 1,797 pictures of 8 x 8 grey
levels 0-16, 10 classes; Alpaydin & Kaynak 1998, UCI, CC BY 4.0). A seeded 70/30 split
per class, written as PNG (levels scaled to 0-255).

    python scripts/digits_dataset.py OUT_DIR     (needs scikit-learn: the bench venv)
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_dataset import png  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


def main():
    out = sys.argv[1]
    d = load_digits()
    rng = random.Random(20202)
    by_class = {}
    for i, y in enumerate(d.target):
        by_class.setdefault(int(y), []).append(i)
    for y, idx in sorted(by_class.items()):
        rng.shuffle(idx)
        cut = int(round(len(idx) * 0.7))
        for split, part in (("train", idx[:cut]), ("test", idx[cut:])):
            folder = os.path.join(out, split, str(y))
            os.makedirs(folder, exist_ok=True)
            for i in part:
                px = [int(round(v * 255 / 16)) for v in d.images[i].reshape(-1)]
                with open(os.path.join(folder, f"{i:04d}.png"), "wb") as f:
                    f.write(png(px, 8, 8))
    print(f"digits: {sum(len(v) for v in by_class.values())} pictures in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
