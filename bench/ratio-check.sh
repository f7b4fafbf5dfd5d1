#!/usr/bin/env bash
# CI's short performance check (issue 9): polyhead serving Classify over gRPC vs
# PyTorch (sentence-transformers, f32, batch 32, in-process) in the same run, on the
# same texts and threads. Each is measured three times, interleaved, best of three. Fails when
# polyhead's throughput falls below MIN_RATIO x PyTorch's.
#
# The margin: with the ONNX Runtime backend (the default on CPUs without AMX) this check
# gave 1.36x PyTorch f32 on the AVX2 machines (BENCHMARKS.md; before it, libtorch gave
# 0.84-1.08x). Single measurements on these shared 2-core VMs differ by up to ~25% (31
# vs 42 texts/s seen for the same server), hence best of three, and MIN_RATIO defaults
# to 1.0: a drop of about a quarter from today's ratio fails. libtorch alone gave 1.13x
# in the same setting, so losing the ONNX Runtime path is checked directly: on a CPU
# without AMX-BF16 the default must have chosen it (the server's start line says). The
# server runs with its embedding cache off and gets the same texts as PyTorch.
# Usage: bench/ratio-check.sh [SECONDS_PER_MEASUREMENT] (env MIN_RATIO, default 1.0)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-4}"
MIN_RATIO="${MIN_RATIO:-1.0}"
THREADS="$(nproc)"
OUT=target/ratio-check
BIN=target/release/polyhead
rm -rf "$OUT" && mkdir -p "$OUT"
python bench/make_texts.py target/bench >/dev/null
# A small head to classify with (40 labelled emails: embedding them takes seconds).
python3 -c 'import json,sys; r=[json.loads(l) for l in open("data/spam/train.jsonl")]; by={}
[by.setdefault(x["label"], []).append(x) for x in r]
sys.stdout.writelines(json.dumps(x)+"\n" for v in by.values() for x in v[:20])' > "$OUT/train.jsonl"
# --windows never: PyTorch reads each text's first 256 tokens, so polyhead does too (a
# head that reads every window of a long text does more work per text, by choice).
"$BIN" train --task ci --data "$OUT/train.jsonl" --store "$OUT/store" --head linear --windows never --json >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(port); METRICS=$(port)
POLYHEAD_LOG=warn,polyhead_server=info POLYHEAD__LOG__ACCESS=false POLYHEAD__SERVER__CACHE_BYTES=0 "$BIN" serve --store "$OUT/store" --addr "127.0.0.1:$GRPC" \
  --metrics-addr "127.0.0.1:$METRICS" >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do "$BIN" health --addr "127.0.0.1:$GRPC" >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN" health --addr "127.0.0.1:$GRPC" >/dev/null
USED="$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep -o 'dtype=[a-z0-9]* backend=[a-z]*' | head -1 || true)"
echo "ratio-check: the default configuration runs $USED"
# The default's backend: OpenVINO (bf16) on CPUs with native bf16 (AMX or AVX512-BF16),
# ONNX Runtime elsewhere.
WANT=onnxruntime
grep -qwE "amx_bf16|avx512_bf16" /proc/cpuinfo && WANT=openvino
if [[ "$USED" != *backend=$WANT* ]] && [[ -z "${POLYHEAD__BACKBONE__BACKEND:-}" ]]; then
  echo "ratio-check: the default should run $WANT on this CPU, but runs: ${USED:-?}" >&2
  exit 1
fi
for round in 1 2 3; do
  python bench/python_st.py --model models/all-MiniLM-L6-v2 --input target/bench/medium.txt \
    --dtype f32 --batch-size 32 --threads "$THREADS" --seconds "$SECS" --label "round $round" \
    >> "$OUT/pytorch.jsonl"
  "$BIN" bench --addr "http://127.0.0.1:$GRPC" --input target/bench/medium.txt --task ci \
    --concurrency 8 --texts-per-request 8 --seconds "$SECS" --json >> "$OUT/polyhead.jsonl"
  echo >> "$OUT/polyhead.jsonl"
done
python3 - "$OUT" "$MIN_RATIO" <<'PY'
import json, sys
out, min_ratio = sys.argv[1], float(sys.argv[2])
torch = [json.loads(l) for l in open(f"{out}/pytorch.jsonl") if l.strip()]
ph = [json.loads(l) for l in open(f"{out}/polyhead.jsonl") if l.strip()]
bad = [r["codes"] for r in ph if set(r["codes"]) != {"Ok"}]
best_t = max(r["texts_per_s"] for r in torch)
best_p = max(r["texts_per_s"] for r in ph)
ratio = best_p / best_t
print(json.dumps({"pytorch_f32_texts_per_s": [round(r["texts_per_s"], 1) for r in torch],
                  "polyhead_grpc_texts_per_s": [round(r["texts_per_s"], 1) for r in ph],
                  "ratio": round(ratio, 3), "min_ratio": min_ratio}))
if bad:
    sys.exit(f"ratio-check: polyhead answered errors: {bad}")
if ratio < min_ratio:
    sys.exit(f"ratio-check: polyhead {best_p:.1f} texts/s is {ratio:.2f}x PyTorch's {best_t:.1f}, below {min_ratio}")
print(f"ratio-check: polyhead {ratio:.2f}x PyTorch f32 (minimum {min_ratio})")
PY
