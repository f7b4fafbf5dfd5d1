#!/usr/bin/env bash
# Where one Classify's time goes (issue 9): one caller sends one text at a time (the
# embedding cache off, so every text is embedded)
# to `polyhead serve` for SECONDS; the server's own histograms then give the mean time
# of each stage per request. "gRPC + rest" is the client's mean latency minus the
# server-side stages: transport, protobuf decode/encode, validation, the cache lookup.
# Usage: bench/breakdown.sh [SECONDS] [STORE]   (STORE needs a task `spam`; default:
# the one bench/peers.sh trains)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-10}"
STORE="${2:-target/peers/store}"
BIN=target/release/polyhead
OUT=target/breakdown
mkdir -p "$OUT"
[[ -f target/bench/peers.txt ]] || { echo "run bench/peers.sh once first (it makes the texts and the store)" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(port); METRICS=$(port)
POLYHEAD_LOG=warn POLYHEAD__SERVER__CACHE_BYTES=0 "$BIN" serve --store "$STORE" --addr "127.0.0.1:$GRPC" \
  --metrics-addr "127.0.0.1:$METRICS" >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do "$BIN" health --addr "127.0.0.1:$GRPC" >/dev/null 2>&1 && break; sleep 0.2; done
"$BIN" bench --addr "http://127.0.0.1:$GRPC" --input target/bench/peers.txt --task spam \
  --concurrency 1 --texts-per-request 1 --seconds "$SECS" --json > "$OUT/client.json"
curl -s "127.0.0.1:$METRICS/metrics" > "$OUT/metrics.txt"
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
client = json.load(open(f"{out}/client.json"))
sums, counts = {}, {}
for line in open(f"{out}/metrics.txt"):
    m = re.match(r'^(polyhead_\w+?)_(sum|count)(\{[^}]*\})? ([0-9.e+-]+)$', line.strip())
    if not m:
        continue
    name, part, labels, v = m.group(1), m.group(2), m.group(3) or "", float(m.group(4))
    if name == "polyhead_request_duration_seconds" and 'rpc="Classify"' not in labels:
        continue
    (sums if part == "sum" else counts)[name] = (sums if part == "sum" else counts).get(name, 0) + v
mean = lambda n: 1000 * sums[n] / max(counts[n], 1)
rows = [
    ("tokenize (incl. waiting for a worker)", "polyhead_tokenize_seconds"),
    ("batcher: queue wait", "polyhead_queue_wait_seconds"),
    ("batcher: backbone forward + pooling", "polyhead_backbone_forward_seconds"),
    ("embeddings back (queue + forward + handover)", "polyhead_embed_seconds"),
    ("head", "polyhead_head_seconds"),
    ("server total (handler)", "polyhead_request_duration_seconds"),
]
print(f"one caller x one text (cache off), {client['requests']} requests, client mean {client['latency_ms']['mean']:.2f} ms, p50 {client['latency_ms']['p50']:.2f} ms\n")
print("| stage | mean ms per request |\n|---|---|")
for label, n in rows:
    print(f"| {label} | {mean(n):.3f} |")
server = mean("polyhead_request_duration_seconds")
print(f"| gRPC + rest (client mean - server total) | {client['latency_ms']['mean'] - server:.3f} |")
PY
