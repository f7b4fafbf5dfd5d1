#!/usr/bin/env python3
"""QUALITY.md numbers: polyhead's default (`auto`) head on frozen all-MiniLM-L6-v2
features against two scikit-learn peers run on the same examples:
  (a) the same frozen features + LogisticRegression()          ("frozen + LR")
  (b) TfidfVectorizer() + LogisticRegression(), from scratch   ("TF-IDF + LR")
on three corpora: data/spam (SpamAssassin: words decide), data/reviews (IMDb
sentiment: meaning decides) and data/genres (Brown Corpus passages in 15 genres,
split by document: meaning decides); k = 8, 16, 32 examples per class (seeds 1-5:
seed s picks the examples and seeds polyhead) and all training rows.

Every polyhead run is `polyhead train --json --test <corpus>/test.jsonl`: the test file
is only scored. Peer (a) reads polyhead's own feature cache of the truncated texts
(same backbone and dtype: what a sentence-transformers script reads), so it differs
from polyhead in the head and in polyhead reading every window of a long text.

usage: bench/quality.py [--corpus spam|reviews|genres ...] [--runs-dir DIR]   (after scripts/setup.sh)
Prints a JSON line per run on stderr and the markdown tables on stdout.
"""
import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/polyhead")


def load(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]


def polyhead(train_file, test_file, seed, store, cache):
    cmd = [BIN, "train", "--task", "quality", "--data", train_file, "--test", test_file,
           "--seed", str(seed), "--no-activate", "--store", store, "--json"]
    env = dict(os.environ, POLYHEAD__TRAIN__FEATURE_CACHE_DIR=cache, POLYHEAD_LOG="warn")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(out)


class Features:
    """Reads polyhead's feature cache: <dir>/<fingerprint>-<dtype>/<sha256[:2]>/<sha256[2:]>
    (the dtype the backbone runs here: f32, or bf16 where the CPU runs it natively)."""

    def __init__(self, cache):
        info = json.loads(subprocess.run([BIN, "info"], check=True, capture_output=True,
                                         text=True, cwd=ROOT).stdout)
        self.dir = os.path.join(cache, f"{info['fingerprint']}-{info['dtype']}")
        self.dim = info["dim"]

    def __call__(self, texts):
        rows = []
        for t in texts:
            h = hashlib.sha256(t.encode("utf-8")).hexdigest()
            rows.append(np.fromfile(os.path.join(self.dir, h[:2], h[2:]), dtype="<f4"))
        return np.stack(rows)


def scores(y_true, y_pred):
    return accuracy_score(y_true, y_pred), f1_score(y_true, y_pred, average="macro")


def peers(train, test, feats):
    xt, yt = [r["text"] for r in train], [r["label"] for r in train]
    xs, ys = [r["text"] for r in test], [r["label"] for r in test]
    frozen = LogisticRegression().fit(feats(xt), yt)
    a = scores(ys, frozen.predict(feats(xs)))
    vec = TfidfVectorizer()
    tfidf = LogisticRegression().fit(vec.fit_transform(xt), yt)
    b = scores(ys, tfidf.predict(vec.transform(xs)))
    return a, b


def fmt(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def corpus_table(name, runs_dir, cache):
    data = os.path.join(ROOT, "data", name)
    train_rows, test_file = load(os.path.join(data, "train.jsonl")), os.path.join(data, "test.jsonl")
    test_rows = load(test_file)
    by_label = {}
    for r in train_rows:
        by_label.setdefault(r["label"], []).append(r)
    store = os.path.join(runs_dir, "store")
    out = []
    feats = None
    for k in (8, 16, 32, None):
        seeds = [1, 2, 3, 4, 5] if k else [1]
        res = {key: [] for key in ("ph_acc", "ph_f1", "base_acc", "a_acc", "a_f1", "b_acc", "b_f1")}
        kinds = []
        for seed in seeds:
            if k:
                rng = random.Random(seed)
                sample = [x for lbl in sorted(by_label) for x in rng.sample(by_label[lbl], k)]
                path = os.path.join(runs_dir, f"{name}-k{k}-s{seed}.jsonl")
                with open(path, "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(x) + "\n" for x in sample)
            else:
                sample, path = train_rows, os.path.join(data, "train.jsonl")
            r = polyhead(path, test_file, seed, store, cache)
            feats = feats or Features(cache)
            (a_acc, a_f1), (b_acc, b_f1) = peers(sample, test_rows, feats)
            t = r["test"]
            for key, v in (("ph_acc", t["head"]["accuracy"]), ("ph_f1", t["head"]["macro_f1"]),
                           ("base_acc", t["baseline"]["accuracy"]), ("a_acc", a_acc), ("a_f1", a_f1),
                           ("b_acc", b_acc), ("b_f1", b_f1)):
                res[key].append(v)
            kinds.append(r["head_kind"])
            print(json.dumps({"corpus": name, "k": k, "seed": seed, "polyhead": t["head"]["accuracy"],
                              "chosen": r["selection"]["chosen"] if r.get("selection") else r["head_kind"],
                              "tfidf_baseline": t["baseline"]["accuracy"], "frozen_lr": a_acc,
                              "tfidf_lr": b_acc, "train_s": r["timings"]["total_s"]}), file=sys.stderr)
        out.append((k, len(seeds), res, kinds, len(train_rows)))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", action="append", choices=["spam", "reviews", "genres"])
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "target/quality"))
    a = p.parse_args()
    os.makedirs(a.runs_dir, exist_ok=True)
    cache = os.path.join(a.runs_dir, "feature-cache")
    for name in a.corpus or ["spam", "reviews", "genres"]:
        print(f"\n### {name}\n")
        print("| examples per class | runs | polyhead auto: accuracy | (a) frozen + LR | (b) TF-IDF + LR "
              "| auto − best peer | polyhead macro-F1 | (a) macro-F1 | (b) macro-F1 | kinds chosen |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for k, n, r, kinds, rows in corpus_table(name, a.runs_dir, cache):
            label = str(k) if k else f"all ({rows} rows)"
            gap = statistics.mean(r["ph_acc"]) - max(statistics.mean(r["a_acc"]), statistics.mean(r["b_acc"]))
            chosen = ", ".join(f"{kind} x{kinds.count(kind)}" for kind in sorted(set(kinds)))
            print(f"| {label} | {n} | {fmt(r['ph_acc'])} | {fmt(r['a_acc'])} | {fmt(r['b_acc'])} | "
                  f"{gap:+.3f} | {fmt(r['ph_f1'])} | {fmt(r['a_f1'])} | {fmt(r['b_f1'])} | {chosen} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
