#!/usr/bin/env bash
# Issue 9's comparison in one run: the in-process peers (bench/peers.py: PyTorch f32 /
# bf16, ONNX Runtime f32 / int8, OpenVINO) and polyhead serving Classify over gRPC
# (f32, the shipped default, and bf16), on the same ~72-token texts (the first 24
# words of held-out reviews and emails; --unique so no cache helps), the same 2
# threads. polyhead: best of 32 callers x 1 text and 8 callers x 8 texts, plus the p50
# of one caller x one text. Prints JSON lines and a markdown table with the ratios.
# The peers' Python packages are installed into the project venv on first use (one
# torch install serves both; they add ~200 MB).
# Usage: bench/peers.sh [SECONDS]   (default 10 per measurement)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-10}"
OUT=target/peers
mkdir -p "$OUT" target/bench
python -c "import onnxruntime, openvino, onnx, onnxscript" 2>/dev/null \
  || python -m pip install -q onnxruntime openvino onnx onnxscript
python3 - <<'PY'
import json
out = []
for corpus in ("reviews", "spam"):
    for l in open(f"data/{corpus}/test.jsonl"):
        t = " ".join(json.loads(l)["text"].split()[:24])
        if t:
            out.append(t)
open("target/bench/peers.txt", "w").write("\n".join(out[:1024]) + "\n")
PY
python bench/peers.py --input target/bench/peers.txt --threads 2 --seconds "$SECS" --out "$OUT" 2>/dev/null | tee "$OUT/results.jsonl"
BIN=target/release/polyhead
STORE="$OUT/store"
if ! "$BIN" tasks --store "$STORE" | grep -q '"task":"spam"'; then
  python3 -c 'import json,random,sys; r=[json.loads(l) for l in open("data/spam/train.jsonl")]; random.Random(1).shuffle(r); sys.stdout.writelines(json.dumps(x)+"\n" for x in r[:400])' > "$OUT/train.jsonl"
  "$BIN" train --task spam --data "$OUT/train.jsonl" --store "$STORE" --json > /dev/null
fi
for dtype in f32 bf16; do
  POLYHEAD_LOG=warn POLYHEAD__BACKBONE__DTYPE=$dtype POLYHEAD__BACKBONE__THREADS=2 "$BIN" serve \
    --addr 127.0.0.1:50581 --metrics-addr 127.0.0.1:9581 --store "$STORE" >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do "$BIN" classify --addr 127.0.0.1:50581 --task spam warm >/dev/null 2>&1 && break; sleep 0.1; done
  for shape in "32 1" "8 8" "1 1"; do
    read -r c n <<<"$shape"
    "$BIN" bench --addr 127.0.0.1:50581 --input target/bench/peers.txt --task spam --unique --json \
      --seconds "$SECS" --concurrency "$c" --texts-per-request "$n" \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"polyhead": sys.argv[1], "callers": int(sys.argv[2]), "texts_per_request": int(sys.argv[3]), "texts_per_s": r["texts_per_s"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "codes": r["codes"]}))' "$dtype" "$c" "$n" \
      | tee -a "$OUT/results.jsonl"
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][-11:]
peers = [r for r in rows if "peer" in r]
ph = [r for r in rows if "polyhead" in r]
fastest = max(peers, key=lambda r: r["texts_per_s"])
torch_bf16 = next(r for r in peers if r["peer"] == "pytorch bf16")
quickest = min(peers, key=lambda r: r["single_ms"])
print("\n| system | texts/s (batch 32) | one text, ms |\n|---|---|---|")
for r in peers:
    print(f"| {r['peer']} (in-process) | {r['texts_per_s']:.0f} | {r['single_ms']:.1f} |")
for dtype in ("f32", "bf16"):
    d = {(r["callers"], r["texts_per_request"]): r for r in ph if r["polyhead"] == dtype}
    best = max(d[(32, 1)]["texts_per_s"], d[(8, 8)]["texts_per_s"])
    print(f"| polyhead {dtype}, Classify over gRPC: 32x1 / 8x8 | {d[(32,1)]['texts_per_s']:.0f} / {d[(8,8)]['texts_per_s']:.0f} | p50 {d[(1,1)]['p50_ms']:.1f} |")
    print(f"|   ratios | best / fastest peer ({fastest['peer']}) {best / fastest['texts_per_s']:.2f}x; / PyTorch bf16 {best / torch_bf16['texts_per_s']:.2f}x; 32x1 / 8x8 {d[(32,1)]['texts_per_s'] / d[(8,8)]['texts_per_s']:.2f} | p50 / quickest peer ({quickest['peer']}) {d[(1,1)]['p50_ms'] / quickest['single_ms']:.2f}x |")
PY
