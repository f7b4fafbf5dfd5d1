#!/usr/bin/env python3
"""Where issue 9's remaining gap is, on the CPU at hand: Hugging Face BERT in PyTorch
eager f32 vs PyTorch dynamic int8 quantisation (torch.ao quantize_dynamic on every
Linear), batch 32 and batch 1, 2 threads (and f32 with 1 thread at batch 1), on
target/bench/medium.txt (bench/make_texts.py). Prints texts/s.
Usage: source .polyhead-env && python bench/int8_probe.py"""
import time, torch, os
os.environ["HF_HUB_OFFLINE"]="1"
from transformers import AutoModel, AutoTokenizer
torch.set_num_threads(2)
tok=AutoTokenizer.from_pretrained("models/all-MiniLM-L6-v2"); m=AutoModel.from_pretrained("models/all-MiniLM-L6-v2").eval()
texts=open("target/bench/medium.txt").read().splitlines()
def bench(model, bs, secs=3):
    n=0; t0=time.time()
    with torch.inference_mode():
        while time.time()-t0<secs:
            for i in range(0,len(texts),bs):
                b=tok(texts[i:i+bs],padding=True,truncation=True,return_tensors="pt"); model(**b); n+=len(texts[i:i+bs])
    return n/(time.time()-t0)
print("f32 bs32", round(bench(m,32),1), "bs1", round(bench(m,1),1))
q=torch.ao.quantization.quantize_dynamic(m,{torch.nn.Linear},dtype=torch.qint8)
print("dyn-int8 bs32", round(bench(q,32),1), "bs1", round(bench(q,1),1))
torch.set_num_threads(1)
print("f32 1thread bs1", round(bench(m,1),1))
