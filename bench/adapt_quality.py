#!/usr/bin/env python3
"""Fine-tuning transfer against frozen features, on the same examples: for each
corpus, k examples per class (seed s picks them, as bench/quality.py does) and
seeds, three `polyhead train` runs scored on one stratified test subset:
  never   frozen features only (`--adapt never`, the previous default)
  auto    the default: adapted candidates scored beside the frozen ones, kept only
          when their held-out gain clears the rule
  always  the best adapted candidate (d = 1 or 2 layers), whatever its gain
The test rows are only scored. Prints a JSON line per run on stderr and a markdown
table on stdout.

usage: bench/adapt_quality.py [--corpus spam reviews] [--k 8 16] [--seeds 1 2 3]
                              [--test-per-label 250] [--runs-dir DIR]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/polyhead")


def load(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def by_label(rows):
    out = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    return out


def train(data, test, seed, adapt, store, cache):
    cmd = [BIN, "train", "--task", "adapt", "--data", data, "--test", test, "--seed", str(seed),
           "--no-activate", "--store", store, "--json", "--adapt", adapt]
    env = dict(os.environ, POLYHEAD__TRAIN__FEATURE_CACHE_DIR=cache, POLYHEAD_LOG="warn")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(out)


def fmt(v):
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", nargs="+", default=["spam", "reviews"])
    p.add_argument("--k", nargs="+", type=int, default=[8, 16])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--test-per-label", type=int, default=250)
    p.add_argument("--runs-dir", default=None)
    a = p.parse_args()
    runs = a.runs_dir or tempfile.mkdtemp(prefix="polyhead-adapt-")
    os.makedirs(runs, exist_ok=True)
    store, cache = os.path.join(runs, "store"), os.path.join(runs, "cache")
    table = ["| corpus | k/class | never (frozen) | auto (default) | always (adapted) | auto kept a branch | auto train s |",
             "|---|---|---|---|---|---|---|"]
    for corpus in a.corpus:
        data = os.path.join(ROOT, "data", corpus)
        train_rows = by_label(load(os.path.join(data, "train.jsonl")))
        test_rows = by_label(load(os.path.join(data, "test.jsonl")))
        rng = random.Random(0)
        test = [r for lbl in sorted(test_rows)
                for r in rng.sample(test_rows[lbl], min(a.test_per_label, len(test_rows[lbl])))]
        test_file = os.path.join(runs, f"{corpus}-test.jsonl")
        write(test_file, test)
        for k in a.k:
            acc = {"never": [], "auto": [], "always": []}
            kept, secs = 0, []
            for seed in a.seeds:
                rng = random.Random(seed)
                sample = [x for lbl in sorted(train_rows) for x in rng.sample(train_rows[lbl], k)]
                path = os.path.join(runs, f"{corpus}-k{k}-s{seed}.jsonl")
                write(path, sample)
                for mode in ("never", "auto", "always"):
                    r = train(path, test_file, seed, mode, store, cache)
                    acc[mode].append(r["test"]["head"]["accuracy"])
                    chosen = r["selection"]["chosen"] if r.get("selection") else r["head_kind"]
                    if mode == "auto":
                        kept += chosen.startswith("adapted")
                        secs.append(r["timings"]["total_s"])
                    print(json.dumps({"corpus": corpus, "k": k, "seed": seed, "mode": mode,
                                      "test_accuracy": r["test"]["head"]["accuracy"],
                                      "chosen": chosen, "train_s": r["timings"]["total_s"],
                                      "candidates": r.get("selection", {}).get("candidates", [])}),
                          file=sys.stderr, flush=True)
            table.append(f"| {corpus} | {k} | {fmt(acc['never'])} | {fmt(acc['auto'])} | "
                         f"{fmt(acc['always'])} | {kept}/{len(a.seeds)} | {statistics.mean(secs):.0f} |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
