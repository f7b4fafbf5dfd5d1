#!/usr/bin/env bash
# BENCHMARKS.md "Long texts": what reading every window costs at serving. Two heads on
# the same 40 labelled reviews, one reading the truncated text (--windows never), one
# every window (--windows always), served by one server (embedding cache off, so every
# request runs the backbone); Classify over gRPC on the reviews test texts for each,
# and one ClassifyMulti naming both. Rounds interleaved, best of ROUNDS; the further
# windows per text are read from the server's own counter.
# Usage: bench/windows_cost.sh [SECONDS_PER_RUN] (env ROUNDS, default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-8}"
ROUNDS="${ROUNDS:-2}"
BIN=target/release/polyhead
OUT=target/windows-cost
rm -rf "$OUT" && mkdir -p "$OUT"
python3 -c 'import json; [print(json.loads(l)["text"]) for l in open("data/reviews/test.jsonl")]' > "$OUT/texts.txt"
python3 -c 'import json,random,sys; r=[json.loads(l) for l in open("data/reviews/train.jsonl")]; by={}
[by.setdefault(x["label"], []).append(x) for x in r]
sys.stdout.writelines(json.dumps(x)+"\n" for v in by.values() for x in random.Random(0).sample(v, 20))' > "$OUT/train.jsonl"
for w in never always; do
  "$BIN" train --task "$w" --data "$OUT/train.jsonl" --store "$OUT/store" --head linear --windows "$w" --json >/dev/null
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GRPC=$(port); METRICS=$(port)
POLYHEAD_LOG=warn POLYHEAD__LOG__ACCESS=false POLYHEAD__SERVER__CACHE_BYTES=0 "$BIN" serve --store "$OUT/store" \
  --addr "127.0.0.1:$GRPC" --metrics-addr "127.0.0.1:$METRICS" >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do "$BIN" health --addr "127.0.0.1:$GRPC" >/dev/null 2>&1 && break; sleep 0.2; done
counter() { curl -s "127.0.0.1:$METRICS/metrics" | awk -v m="$1" '$1==m {print $2}' | head -1; }
run() { # NAME ARGS...: one measurement, appended to results.jsonl
  local name="$1"; shift
  local w0 t0 result
  w0=$(counter polyhead_backbone_extra_windows_total); t0=$(counter polyhead_backbone_texts_total)
  result=$("$BIN" bench --addr "127.0.0.1:$GRPC" --input "$OUT/texts.txt" --json --seconds "$SECS" \
    --concurrency 8 --texts-per-request 8 "$@")
  # Scraped after the run (a substitution in the pipeline would run before it).
  python3 -c 'import json,sys; r=json.loads(sys.argv[6]); print(json.dumps({"run": sys.argv[1], "texts_per_s": r["texts_per_s"], "p50_ms": r["latency_ms"]["p50"], "codes": r["codes"], "windows": float(sys.argv[3] or 0) - float(sys.argv[2] or 0), "passes": float(sys.argv[5] or 0) - float(sys.argv[4] or 0)}))' \
      "$name" "${w0:-0}" "$(counter polyhead_backbone_extra_windows_total)" "${t0:-0}" "$(counter polyhead_backbone_texts_total)" "$result" \
    | tee -a "$OUT/results.jsonl"
}
for _ in $(seq "$ROUNDS"); do
  run truncated --task never
  run "every window" --task always
  run "ClassifyMulti of both" --task never,always --multi
done
python3 - "$OUT/results.jsonl" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    if r["run"] not in best or r["texts_per_s"] > best[r["run"]]["texts_per_s"]:
        best[r["run"]] = r
base = best["truncated"]["texts_per_s"]
print(f"\n{sys.argv[2]}; reviews test texts, 8 callers x 8 texts, cache off, best of the rounds\n")
print("| run | texts/s | vs truncated | p50 ms | backbone passes per text |")
print("|---|---|---|---|---|")
for name, r in best.items():
    texts = r["texts_per_s"]
    # Cache off: every text is one shared pass plus its further windows.
    print(f"| {name} | {texts:.0f} | {texts / base:.2f}x | {r['p50_ms']:.0f} | "
          f"{'%.2f' % (r['passes'] / max(r['passes'] - r['windows'], 1))} |")
PY
