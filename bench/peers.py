#!/usr/bin/env python3
"""Issue 9's in-process peers on the texts polyhead is loaded with over gRPC
(bench/peers.sh): sentence-transformers on PyTorch (f32, bf16 weights), ONNX Runtime
(f32, int8 dynamic quantisation) and OpenVINO (its CPU default), all-MiniLM-L6-v2 from
models/, the same texts, the same thread count. Each: texts/s at batch 32 over
length-sorted texts, and the median single-text latency. One JSON line per peer.

usage: bench/peers.py --input FILE --threads N --seconds S --out DIR
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/all-MiniLM-L6-v2")


def timed(fn, texts, seconds, batch=32):
    order = sorted(texts, key=len)
    fn(order[:batch])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(order), batch):
            fn(order[i:i + batch])
        done += len(order)
    tps = done / (time.perf_counter() - start)
    singles = []
    for t in texts[:64]:
        s = time.perf_counter()
        fn([t])
        singles.append((time.perf_counter() - s) * 1000)
    return tps, statistics.median(singles)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--out", default=os.path.join(ROOT, "target/peers"))
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(a.threads)
    texts = [l.rstrip("\n") for l in open(a.input, encoding="utf-8") if l.strip()]
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(MODEL, device="cpu")
    tok = st.tokenizer

    def report(name, tps, ms):
        print(json.dumps({"peer": name, "texts_per_s": tps, "single_ms": ms, "threads": a.threads}), flush=True)

    with torch.inference_mode():
        report("pytorch f32", *timed(lambda b: st.encode(b, batch_size=32), texts, a.seconds))
        st_bf16 = SentenceTransformer(MODEL, device="cpu").to(torch.bfloat16)
        report("pytorch bf16", *timed(lambda b: st_bf16.encode(b, batch_size=32), texts, a.seconds))

    # ONNX: the transformer through a wrapper taking keyword arguments (dynamo=False).
    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    onnx_path = os.path.join(a.out, "model.onnx")
    if not os.path.exists(onnx_path):
        enc = tok(["hello world"], return_tensors="pt")
        torch.onnx.export(Wrapper(st[0].auto_model).eval(), (), onnx_path, dynamo=False,
                          kwargs={k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["hidden"],
                          dynamic_axes={k: {0: "b", 1: "s"} for k in ("input_ids", "attention_mask", "token_type_ids", "hidden")},
                          opset_version=17)

    def pooled(run):
        def fn(batch):
            enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            h = run(feeds)
            m = feeds["attention_mask"][..., None].astype(np.float32)
            e = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            return e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
        return fn

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    report("onnxruntime f32", *timed(pooled(lambda f: sess.run(None, f)[0]), texts, a.seconds))
    q_path = os.path.join(a.out, "model.int8.onnx")
    if not os.path.exists(q_path):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(onnx_path, q_path, weight_type=QuantType.QInt8)
    qs = ort.InferenceSession(q_path, so, providers=["CPUExecutionProvider"])
    report("onnxruntime int8", *timed(pooled(lambda f: qs.run(None, f)[0]), texts, a.seconds))

    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(core.read_model(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": a.threads})
    report("openvino (CPU default)", *timed(pooled(lambda f: compiled(f)[0]), texts, a.seconds))


if __name__ == "__main__":
    main()
