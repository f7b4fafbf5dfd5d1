#!/usr/bin/env bash
# Backbone throughput: polyhead vs Python sentence-transformers, same model, same
# texts, same thread count, in one run. Prints JSON lines and a markdown table.
#   bench/backbone.sh [SECONDS_PER_CASE]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
SECS="${1:-5}"
THREADS="${POLYHEAD_BENCH_THREADS:-$(nproc)}"
OUT=target/bench
python bench/make_texts.py "$OUT"
RESULTS="$OUT/backbone.jsonl"
: > "$RESULTS"
for set in short medium long; do
  for dtype in f32 bf16; do
    for bs in 1 32; do
      ./target/release/polyhead bench --input "$OUT/$set.txt" --label "$set" --dtype "$dtype" \
        --batch-size "$bs" --threads "$THREADS" --seconds "$SECS" | tee -a "$RESULTS"
      python bench/python_st.py --model models/all-MiniLM-L6-v2 --input "$OUT/$set.txt" --label "$set" \
        --dtype "$dtype" --batch-size "$bs" --threads "$THREADS" --seconds "$SECS" | tee -a "$RESULTS"
    done
  done
done
python - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["label"], r["dtype"], r["batch_size"])
py = {key(r): r for r in rows if r["impl"] != "polyhead"}
print("| texts | tokens (mean) | dtype | batch | polyhead texts/s | sentence-transformers texts/s | ratio |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if r["impl"] != "polyhead":
        continue
    p = py[key(r)]
    print(f"| {r['label']} | {r['mean_tokens']:.0f} | {r['dtype']} | {r['batch_size']} | "
          f"{r['texts_per_s']:.1f} | {p['texts_per_s']:.1f} | {r['texts_per_s']/p['texts_per_s']:.2f}x |")
PY
