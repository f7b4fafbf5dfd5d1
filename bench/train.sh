#!/usr/bin/env bash
# Time to train the default (auto) head on 3,000 examples with a warm feature cache
# (target < 5 s). The first run fills the cache; the next three are timed. Prints JSON
# timings per run: `total_s` is the in-process training time (features read, candidate
# selection on a held-out split, the refit on every example, the TF-IDF baseline),
# `wall_s` the whole `polyhead train` process, backbone load included.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
OUT=target/bench/train
mkdir -p "$OUT"
head -n 3000 data/spam/train.jsonl > "$OUT/train3000.jsonl"
run() {
  local start end
  start=$(date +%s.%N)
  ./target/release/polyhead train --task bench --data "$OUT/train3000.jsonl" --store "$OUT/store" \
    --no-activate --json "$@" > "$OUT/last.json"
  end=$(date +%s.%N)
  python3 - "$OUT/last.json" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"examples": r["n_train"], "head": r["head_kind"], "chosen": (r.get("selection") or {}).get("chosen"),
                  "iterations": r["epochs"], "feature_cache": r["feature_cache"],
                  **{k: round(v, 3) for k, v in r["timings"].items()}, "wall_s": round(float(sys.argv[3]) - float(sys.argv[2]), 3)}))
PY
}
echo "# warm-up (fills the feature cache)" >&2
run > /dev/null
for i in 1 2 3; do run --seed "$i"; done
