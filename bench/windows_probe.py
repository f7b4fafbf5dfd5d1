#!/usr/bin/env python3
"""Issue 16 item 6, the measurement that decides whether long texts are read whole:
frozen all-MiniLM-L6-v2 features of the *first* window (what polyhead and SetFit read
today: 256 tokens) against the mean of *every* window of the text, both fed to the
same LogisticRegression(C=10), at k = 8, 16, 32 examples per class (seeds 1-5) and
with every training row. The test rows are only scored.

Corpora: a JSONL folder with train.jsonl and test.jsonl ({"text", "label"}), e.g.
data/spam, or `--imdb-uncut`: data/reviews' split without its 2,000-character cut
(bench/windows_quality.py builds it from the npm package's tarball).

usage: bench/windows_probe.py CORPUS_DIR|--imdb-uncut [--test-rows N] [--train-rows N]
Prints a markdown table on stdout; needs torch, transformers and scikit-learn.
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from windows_quality import imdb_uncut

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/all-MiniLM-L6-v2")
WINDOW = 256


def load_jsonl(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]


class Embed:
    def __init__(self, stride):
        self.tok = AutoTokenizer.from_pretrained(MODEL)
        self.model = AutoModel.from_pretrained(MODEL).eval()
        self.stride = stride
        self.windows = []

    def _pool(self, ids):
        """Mean-pooled, L2-normalised embeddings of a list of id lists."""
        out = []
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        res = [None] * len(ids)
        for s in range(0, len(order), 32):
            chunk = [ids[i] for i in order[s:s + 32]]
            width = max(len(c) for c in chunk)
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            m = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, c in enumerate(chunk):
                x[r, :len(c)] = torch.tensor(c)
                m[r, :len(c)] = 1
            with torch.inference_mode():
                h = self.model(input_ids=x, attention_mask=m).last_hidden_state
            e = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)
            e = torch.nn.functional.normalize(e, dim=-1).numpy()
            for r, i in enumerate(order[s:s + 32]):
                res[i] = e[r]
        return res

    def __call__(self, texts):
        """(first-window features, every-window mean features)."""
        body = WINDOW - 2
        cls, sep = self.tok.cls_token_id, self.tok.sep_token_id
        flat, owner = [], []
        for t, text in enumerate(texts):
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            starts = list(range(0, max(len(ids) - self.stride, 1), body - self.stride)) or [0]
            for s in starts:
                flat.append([cls] + ids[s:s + body] + [sep])
                owner.append(t)
            self.windows.append(len(starts))
        e = self._pool(flat)
        first = np.zeros((len(texts), e[0].shape[0]), dtype=np.float32)
        whole = np.zeros_like(first)
        seen = set()
        for emb, t in zip(e, owner):
            if t not in seen:
                first[t] = emb
                seen.add(t)
            whole[t] += emb
        whole /= np.linalg.norm(whole, axis=1, keepdims=True)
        return first, whole


def sample(rows, k, seed):
    by = {}
    for i, r in enumerate(rows):
        by.setdefault(r["label"], []).append(i)
    rng = random.Random(seed)
    return [i for l in sorted(by) for i in rng.sample(by[l], min(k, len(by[l])))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?")
    ap.add_argument("--imdb-uncut", action="store_true")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--stride", type=int, default=32, help="tokens two windows share")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    folder, name = a.corpus, a.corpus
    if a.imdb_uncut:
        folder, name = imdb_uncut(tempfile.mkdtemp()), "imdb (uncut)"
    train = load_jsonl(os.path.join(folder, "train.jsonl"))
    test = load_jsonl(os.path.join(folder, "test.jsonl"))
    rng = random.Random(0)
    test = rng.sample(test, min(a.test_rows, len(test)))
    train = rng.sample(train, min(a.train_rows, len(train)))
    emb = Embed(a.stride)
    t0 = time.time()
    tf, tw = emb([r["text"] for r in test])
    n_test_windows = sum(emb.windows)
    xf, xw = emb([r["text"] for r in train])
    secs = time.time() - t0
    wins = emb.windows  # test rows first, then train rows
    ys = [r["label"] for r in test]
    yt = [r["label"] for r in train]
    long = sum(1 for w in wins if w > 1) / len(wins)
    print(f"{name}: {len(train)} train / {len(test)} test rows; windows per text "
          f"{sum(wins)/len(wins):.2f} mean, {max(wins)} max; {100*long:.0f}% of texts "
          f"have more than one; embedding took {secs:.0f} s ({n_test_windows} test windows)",
          file=sys.stderr)
    print(f"\n**{name}** ({len(test)} test rows, {sum(wins)/len(wins):.2f} windows per text, "
          f"{100*long:.0f}% longer than one)\n")
    print("| k | first window + LR | every window + LR | gain |")
    print("|---|---|---|---|")
    for k in (8, 16, 32, None):
        seeds = [0] if k is None else [1, 2, 3, 4, 5]
        accs = {"first": [], "whole": []}
        for seed in seeds:
            rows = list(range(len(train))) if k is None else sample(train, k, seed)
            y = [yt[i] for i in rows]
            for key, (x, t) in {"first": (xf, tf), "whole": (xw, tw)}.items():
                clf = LogisticRegression(C=10, max_iter=2000).fit(x[rows], y)
                accs[key].append(float(np.mean(clf.predict(t) == np.array(ys))))
        def fmt(v):
            return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
        gains = [w - f for w, f in zip(accs["whole"], accs["first"])]
        print(f"| {k or 'all'} | {fmt(accs['first'])} | {fmt(accs['whole'])} | "
              f"{statistics.mean(gains):+.3f} (won {sum(g > 0 for g in gains)}/{len(gains)}) |")


if __name__ == "__main__":
    main()
