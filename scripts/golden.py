#!/usr/bin/env python3
"""Regenerates crates/backbone/tests/fixtures/golden.json: reference embeddings of
all-MiniLM-L6-v2 computed by Python sentence-transformers (the implementation
polyhead must match). Run with the project venv:

    source .polyhead-env && python scripts/golden.py
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "crates", "backbone", "tests", "fixtures", "golden.json")

LONG = " ".join(
    f"Sentence number {i} talks about transfer learning, frozen encoders and small task heads."
    for i in range(60)
)
TEXTS = [
    "",
    "hello",
    "Hello",
    "a",
    "?",
    "The quick brown fox jumps over the lazy dog.",
    "I loved this movie, the acting was superb and the plot kept me guessing.",
    "Terrible service. Never coming back.",
    "Congratulations! You've WON a $1,000 gift card. Click here to claim now!!!",
    "Hi John, can we move tomorrow's meeting to 3pm? Thanks, Mary",
    "Café crème brûlée à la carte — naïve façade.",
    "Grüße aus München, schöne Straße!",
    "日本語のテキストも埋め込みます。",
    "中文文本嵌入测试。",
    "Привет, как дела?",
    "مرحبا بالعالم",
    "👍🔥😂 best day ever 🎉",
    "🙂",
    "emoji in the middle 🚀 of a sentence",
    "fn main() { println!(\"Hello, world!\"); }",
    "def f(x):\n    return x ** 2  # square",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;",
    "<html><body><h1>Title</h1><p>Paragraph with <a href=\"https://example.com\">a link</a>.</p></body></html>",
    "<div class='x'>&amp; &lt;tag&gt; &nbsp;</div>",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "ALL CAPS SHOUTING TEXT",
    "MiXeD cAsE tExT",
    "numbers 1234567890 and 3.14159 and 1e-12",
    "user@example.com https://www.example.org/path?q=1&r=2#frag",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The patient was prescribed 20mg of atorvastatin daily.",
    "Stock prices fell 3% after the quarterly earnings report.",
    "!!!???...,,,;;;:::",
    "word " * 100,
    LONG,
    LONG + " " + LONG,
    "Short text.",
    "A medium length text that has a few clauses, some punctuation, and enough words to matter.",
    "Can you recommend a good restaurant near the train station?",
    "This product broke after two days. I want a refund.",
    "Meeting notes: discussed Q3 roadmap; action items assigned to Alice and Bob.",
    "ünïcödé wïth dïäcrïtïcs everywhere",
    "\u200b zero width space and \u00a0 non-breaking space",
]


def main() -> int:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(MODEL, device="cpu")
    emb = model.encode(TEXTS, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "generator": "scripts/golden.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "cases": [
            {"text": t, "embedding": [round(float(v), 7) for v in e]} for t, e in zip(TEXTS, emb)
        ],
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(TEXTS)} reference embeddings to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
