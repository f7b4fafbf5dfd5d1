#!/usr/bin/env bash
# Issue 9's many-task targets with the shipped defaults: RSS with 100 tasks loaded,
# ClassifyMulti over 10 tasks vs a single-task Classify (same unique texts), and cache
# hits (the same 256 texts again). The 100 tasks are copies of the `spam` head that
# bench/peers.sh trains (a hybrid head: embedding + the task's own TF-IDF words), each
# under its own task name. One JSON line per measurement.
# Usage: bench/many_tasks.sh [SECONDS]   (default 8; run bench/peers.sh once first)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-8}"
BIN=target/release/polyhead
OUT=target/many-tasks
SRC=target/peers/store/spam
[[ -f target/bench/peers.txt && -d "$SRC" ]] || { echo "run bench/peers.sh once first (it makes the texts and the spam head)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT/store"
python3 - "$SRC" "$OUT/store" <<'PY'
import json, os, shutil, sys
src, store = sys.argv[1], sys.argv[2]
active = json.load(open(os.path.join(src, "ACTIVE")))["version"]
for i in range(100):
    task = f"t{i:03d}"
    d = os.path.join(store, task, str(active))
    os.makedirs(d)
    shutil.copy(os.path.join(src, str(active), "head.safetensors"), d)
    m = json.load(open(os.path.join(src, str(active), "manifest.json")))
    m["task"] = task
    json.dump(m, open(os.path.join(d, "manifest.json"), "w"))
    json.dump({"version": active, "previous": []}, open(os.path.join(store, task, "ACTIVE"), "w"))
PY
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(port); METRICS=$(port)
POLYHEAD_LOG=warn,polyhead_server=info POLYHEAD__LOG__ACCESS=false "$BIN" serve --store "$OUT/store" \
  --addr "127.0.0.1:$GRPC" --metrics-addr "127.0.0.1:$METRICS" >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 600); do "$BIN" health --addr "127.0.0.1:$GRPC" >/dev/null 2>&1 && break; sleep 0.2; done
rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status"; }
loaded="$(curl -s "127.0.0.1:$METRICS/metrics" | grep -c '^polyhead_head_active_version{' || true)"
echo "{\"measure\":\"rss_after_start_mb\",\"tasks\":$loaded,\"value\":$(rss)}"
TEN="t000,t001,t002,t003,t004,t005,t006,t007,t008,t009"
run() { "$BIN" bench --addr "127.0.0.1:$GRPC" --input target/bench/peers.txt --seconds "$SECS" --json "$@"; }
show() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"measure": sys.argv[1], "texts_per_s": round(r["texts_per_s"],1), "p50_ms": r["latency_ms"]["p50"], "codes": r["codes"]}))' "$1"; }
for round in 1 2; do
  run --task t000 --unique --concurrency 8 --texts-per-request 8 | show "classify_1_task_8x8_round$round"
  run --task "$TEN" --multi --unique --concurrency 8 --texts-per-request 8 | show "classify_multi_10_tasks_8x8_round$round"
done
# Cache hits: the first 256 texts once (they enter the cache), then again and again.
head -256 target/bench/peers.txt > "$OUT/cached.txt"
"$BIN" bench --addr "127.0.0.1:$GRPC" --input "$OUT/cached.txt" --task t000 --requests 4 \
  --concurrency 1 --texts-per-request 64 --json >/dev/null
for n in 64 256; do
  "$BIN" bench --addr "127.0.0.1:$GRPC" --input "$OUT/cached.txt" --task t000 --seconds "$SECS" \
    --concurrency 8 --texts-per-request "$n" --json | show "cache_hits_${n}_per_request"
done
echo "{\"measure\":\"rss_after_runs_mb\",\"tasks\":$loaded,\"value\":$(rss)}"
sed 's/\x1b\[[0-9;]*m//g' "$OUT/server.log" | grep -o 'dtype=[a-z0-9]* backend=[a-z]*'  | head -1 | sed 's/^/# server: /'
