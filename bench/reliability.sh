#!/usr/bin/env bash
# RELIABILITY.md's load and overload rows, against a real server on loopback:
#   1. capacity: closed loop, 32 callers x 1 unique text, and 8 callers x 8 unique texts
#   2. overload: a server with server.max_in_flight=16, offered ~4x the measured
#      capacity at a fixed rate (open loop), refusals timed
#   3. recovery: a closed loop of 16 callers (the in-flight limit) right after the overload
# Each line printed is one `polyhead bench --addr ... --json` result, with the command.
# Usage: bench/reliability.sh [SECONDS]   (default 20 per run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-20}"
BIN=target/release/polyhead
OUT=target/reliability
mkdir -p "$OUT"
python3 bench/make_texts.py target/bench
if ! "$BIN" tasks --store "$OUT/store" 2>/dev/null | grep -q '"task":"spam"'; then
  python3 -c 'import json,random,sys; rows=[json.loads(l) for l in open("data/spam/train.jsonl")]; random.Random(1).shuffle(rows); sys.stdout.writelines(json.dumps(r)+"\n" for r in rows[:400])' > "$OUT/train.jsonl"
  "$BIN" train --task spam --data "$OUT/train.jsonl" --store "$OUT/store" --json > /dev/null
fi
serve() { # serve PORT MPORT [extra env...]
  local port="$1" mport="$2"; shift 2
  env "$@" POLYHEAD_LOG=warn "$BIN" serve --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" \
    --store "$OUT/store" > /dev/null 2>"$OUT/server-$port.log" &
  echo $!
}
wait_ready() {
  for _ in $(seq 1 600); do
    "$BIN" classify --addr "127.0.0.1:$1" --task spam warm-up >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on $1 never answered" >&2; exit 1
}
bench() { # bench LABEL ARGS...
  local label="$1"; shift
  local cmd=("$BIN" bench --input target/bench/medium.txt --task spam --unique --json --seconds "$SECS" "$@")
  "${cmd[@]}" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["run"]=sys.argv[1]; r["command"]=" ".join(sys.argv[2:]); print(json.dumps(r))' "$label" "${cmd[@]}"
}
PID=$(serve 50571 9571)
trap 'kill $PID 2>/dev/null || true; kill ${PID2:-} 2>/dev/null || true' EXIT
wait_ready 50571
bench "capacity 32x1" --addr 127.0.0.1:50571 --concurrency 32 --texts-per-request 1 | tee "$OUT/capacity.json"
bench "capacity 8x8" --addr 127.0.0.1:50571 --concurrency 8 --texts-per-request 8
kill "$PID"; wait "$PID" 2>/dev/null || true
RATE=$(python3 -c 'import json; print(round(4 * json.load(open("target/reliability/capacity.json"))["requests_per_s"]))')
PID2=$(serve 50572 9572 POLYHEAD__SERVER__MAX_IN_FLIGHT=16)
wait_ready 50572
bench "overload 4x (max_in_flight 16)" --addr 127.0.0.1:50572 --rate "$RATE" --concurrency 4096 --texts-per-request 1
bench "recovery 16x1 (= max_in_flight)" --addr 127.0.0.1:50572 --concurrency 16 --texts-per-request 1
