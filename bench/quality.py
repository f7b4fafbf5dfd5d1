#!/usr/bin/env python3
"""QUALITY.md numbers: linear head on frozen all-MiniLM-L6-v2 features vs the
from-scratch TF-IDF baseline, on the SpamAssassin split (data/spam), for k examples
per class (5 seeds) and for all training rows. Every run is `polyhead train --json
--test data/spam/test.jsonl`: the test file is never trained on or used to stop.

usage: bench/quality.py [--runs-dir DIR]   (after scripts/setup.sh)
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(train_file: str, seed: int, store: str, head: str = "linear") -> dict:
    cmd = [os.path.join(ROOT, "target/release/polyhead"), "train", "--task", "quality",
           "--data", train_file, "--test", os.path.join(ROOT, "data/spam/test.jsonl"),
           "--seed", str(seed), "--head", head, "--no-activate", "--store", store, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out)


def fmt(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "target/quality"))
    a = p.parse_args()
    os.makedirs(a.runs_dir, exist_ok=True)
    store = os.path.join(a.runs_dir, "store")
    rows = [json.loads(l) for l in open(os.path.join(ROOT, "data/spam/train.jsonl"))]
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    table = []
    for k, head in ((8, "linear"), (16, "linear"), (32, "linear"), (None, "linear"), (None, "mlp")):
        seeds = [1, 2, 3, 4, 5] if k else [1]
        res = {"head_acc": [], "head_f1": [], "base_acc": [], "base_f1": []}
        for seed in seeds:
            if k:
                rng = random.Random(seed)
                sample = [x for lbl in sorted(by_label) for x in rng.sample(by_label[lbl], k)]
                path = os.path.join(a.runs_dir, f"k{k}-s{seed}.jsonl")
                with open(path, "w") as f:
                    f.writelines(json.dumps(x) + "\n" for x in sample)
            else:
                path = os.path.join(ROOT, "data/spam/train.jsonl")
            r = run(path, seed, store, head)
            t = r["test"]
            res["head_acc"].append(t["head"]["accuracy"])
            res["head_f1"].append(t["head"]["macro_f1"])
            res["base_acc"].append(t["baseline"]["accuracy"])
            res["base_f1"].append(t["baseline"]["macro_f1"])
            print(json.dumps({"k": k, "head_kind": head, "seed": seed, "head": t["head"]["accuracy"],
                              "baseline": t["baseline"]["accuracy"]}), file=sys.stderr)
        table.append((k, head, len(seeds), res))
    print("| examples per class | head | runs | head accuracy | baseline accuracy | head macro-F1 | baseline macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for k, head, n, r in table:
        label = str(k) if k else f"all ({len(rows)} rows)"
        print(f"| {label} | {head} | {n} | {fmt(r['head_acc'])} | {fmt(r['base_acc'])} | {fmt(r['head_f1'])} | {fmt(r['base_f1'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
