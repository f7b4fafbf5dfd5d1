#!/usr/bin/env bash
# Issue 9's comparison in one run: the in-process peers (bench/peers.py: PyTorch f32 /
# bf16, ONNX Runtime f32 / int8, OpenVINO) and polyhead serving Classify over gRPC
# (the shipped default, the int8 option, the openvino backend at f32, the torch reference), on the same ~72-token texts (the first 24
# words of held-out reviews and emails, ~33 tokens; the server's embedding cache is off, so
# polyhead gets exactly the peers' texts and no cache helps), the same 2
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
  || python -m pip install -q "onnxruntime==1.31.1" "openvino==2026.4.1" onnx onnxscript
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
if ! "$BIN" tasks --store "$STORE" 2>/dev/null | grep -q '"task":"spam"'; then
  python3 -c 'import json,random,sys; r=[json.loads(l) for l in open("data/spam/train.jsonl")]; random.Random(1).shuffle(r); sys.stdout.writelines(json.dumps(x)+"\n" for x in r[:400])' > "$OUT/train.jsonl"
  # --windows never: the peers read each text's first 256 tokens, so polyhead does too.
  "$BIN" train --task spam --data "$OUT/train.jsonl" --store "$STORE" --windows never --json > /dev/null
fi
# polyhead's configurations: the shipped default (backend auto: ONNX Runtime f32 on
# CPUs without AMX, OpenVINO bf16 with it), the int8 option, OpenVINO at f32, and the
# torch reference (and torch bf16 where AMX runs it natively).
CONFIGS=("default::" "onnxruntime int8:onnxruntime:int8" "openvino f32:openvino:f32" "torch f32:torch:f32")
grep -qwE "amx_bf16|avx512_bf16" /proc/cpuinfo && CONFIGS+=("torch bf16:torch:bf16")
for cfg in "${CONFIGS[@]}"; do
  IFS=: read -r name backend dtype <<<"$cfg"
  POLYHEAD_LOG=warn,polyhead_server=info POLYHEAD__LOG__ACCESS=false POLYHEAD__SERVER__CACHE_BYTES=0 POLYHEAD__BACKBONE__BACKEND=${backend:-auto} POLYHEAD__BACKBONE__DTYPE=${dtype:-auto} \
    POLYHEAD__BACKBONE__THREADS=2 "$BIN" serve \
    --addr 127.0.0.1:50581 --metrics-addr 127.0.0.1:9581 --store "$STORE" >"$OUT/server-${name// /-}.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do "$BIN" classify --addr 127.0.0.1:50581 --task spam warm >/dev/null 2>&1 && break; sleep 0.1; done
  log="$OUT/server-${name// /-}.log"
  used="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'dtype=[a-z0-9]* backend=[a-z]*'  | head -1 || echo "?")"
  for shape in "32 1" "8 8" "1 1"; do
    read -r c n <<<"$shape"
    "$BIN" bench --addr 127.0.0.1:50581 --input target/bench/peers.txt --task spam --json \
      --seconds "$SECS" --concurrency "$c" --texts-per-request "$n" \
      | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"polyhead": sys.argv[1], "runs": sys.argv[4], "callers": int(sys.argv[2]), "texts_per_request": int(sys.argv[3]), "texts_per_s": r["texts_per_s"], "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"], "codes": r["codes"]}))' "$name" "$c" "$n" "$used" \
      | tee -a "$OUT/results.jsonl"
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# This run's rows: the peers' block is the last one starting with "pytorch f32".
start = max(i for i, r in enumerate(rows) if r.get("peer") == "pytorch f32")
rows = rows[start:]
peers = [r for r in rows if "peer" in r]
ph = [r for r in rows if "polyhead" in r]
fastest = max(peers, key=lambda r: r["texts_per_s"])
torch_bf16 = next(r for r in peers if r["peer"] == "pytorch bf16")
torch_f32 = next(r for r in peers if r["peer"] == "pytorch f32")
quickest = min(peers, key=lambda r: r["single_ms"])
print("\n| system | texts/s (batch 32) | one text, ms |\n|---|---|---|")
for r in peers:
    print(f"| {r['peer']} (in-process) | {r['texts_per_s']:.0f} | {r['single_ms']:.1f} |")
names = list(dict.fromkeys(r["polyhead"] for r in ph))
for name in names:
    d = {(r["callers"], r["texts_per_request"]): r for r in ph if r["polyhead"] == name}
    best = max(d[(32, 1)]["texts_per_s"], d[(8, 8)]["texts_per_s"])
    print(f"| polyhead {name} ({d[(1,1)]['runs']}), Classify over gRPC: 32x1 / 8x8 | {d[(32,1)]['texts_per_s']:.0f} / {d[(8,8)]['texts_per_s']:.0f} | p50 {d[(1,1)]['p50_ms']:.1f} |")
    print(f"|   ratios | best / fastest peer ({fastest['peer']}) {best / fastest['texts_per_s']:.2f}x; / PyTorch bf16 {best / torch_bf16['texts_per_s']:.2f}x; / PyTorch f32 {best / torch_f32['texts_per_s']:.2f}x; 32x1 / 8x8 {d[(32,1)]['texts_per_s'] / d[(8,8)]['texts_per_s']:.2f} | p50 / quickest peer ({quickest['peer']}) {d[(1,1)]['p50_ms'] / quickest['single_ms']:.2f}x |")
PY
