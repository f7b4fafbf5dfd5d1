#!/usr/bin/env python3
"""The peers of polyhead's image serving, in-process, on the same pictures:
  - PyTorch reference: PIL decode + the torchvision recipe (resize 256, crop 224,
    normalise) + the eager EfficientNet-Lite0 feature extractor;
  - ONNX Runtime (Python, CPU provider, all cores) on the same exported graph polyhead
    serves, with the same PIL preprocessing.
Each is timed end to end (bytes in, features out) in batches of --batch, and the
decode + preprocess step alone per picture.

usage: bench/image_peers.py --batch 8 --seconds 15 FILE...   (prints one JSON object)
"""
import argparse
import io
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import export_image  # noqa: E402
import golden_image  # noqa: E402


def timed(fn, seconds):
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += fn()
    return n / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    blobs = [open(f, "rb").read() for f in a.files]
    state = {"i": 0}

    def batch_bytes():
        out = [blobs[(state["i"] + j) % len(blobs)] for j in range(a.batch)]
        state["i"] += a.batch
        return out

    def prep(blob):
        return golden_image.normalised(golden_image.reference_crop(io.BytesIO(blob)))

    model, _ = export_image.load()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(os.path.join(ROOT, "models/efficientnet-lite0/model.onnx"), so,
                                providers=["CPUExecutionProvider"])

    def torch_e2e():
        x = torch.cat([prep(b) for b in batch_bytes()])
        with torch.no_grad():
            model(x)
        return a.batch

    def ort_e2e():
        x = torch.cat([prep(b) for b in batch_bytes()]).numpy()
        sess.run(None, {"pixel_values": x})
        return a.batch

    fixed = torch.cat([prep(b) for b in batch_bytes()])

    def torch_net():
        with torch.no_grad():
            model(fixed)
        return a.batch

    def ort_net():
        sess.run(None, {"pixel_values": fixed.numpy()})
        return a.batch

    def decode():
        prep(batch_bytes()[0])
        return 1

    out = {
        "threads": threads, "batch": a.batch, "files": len(blobs),
        "torch_e2e_images_per_s": timed(torch_e2e, a.seconds),
        "onnxruntime_e2e_images_per_s": timed(ort_e2e, a.seconds),
        "torch_network_images_per_s": timed(torch_net, a.seconds),
        "onnxruntime_network_images_per_s": timed(ort_net, a.seconds),
        "pil_decode_preprocess_ms": 1000.0 / timed(decode, min(a.seconds, 5)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
