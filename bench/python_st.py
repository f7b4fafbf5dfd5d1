#!/usr/bin/env python3
"""The Python reference: sentence-transformers encode() throughput on a file of texts,
printed as one JSON line in the same shape as `polyhead bench`."""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--label", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    texts = open(a.input).read().splitlines()
    model = SentenceTransformer(a.model, device="cpu")
    if a.dtype == "bf16":
        model = model.to(torch.bfloat16)
    enc = lambda: model.encode(texts, batch_size=a.batch_size, show_progress_bar=False)  # noqa: E731
    with torch.inference_mode():
        enc()
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < a.seconds:
            enc()
            done += len(texts)
        secs = time.perf_counter() - start
    print(json.dumps({
        "impl": "sentence-transformers",
        "label": a.label,
        "dtype": a.dtype,
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "texts": len(texts),
        "texts_per_s": done / secs,
        "seconds": secs,
    }))


if __name__ == "__main__":
    main()
