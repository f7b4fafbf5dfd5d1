#!/usr/bin/env bash
# The int8 option's accuracy cost on the demo tasks (issue 9): a head trained on the
# default f32 features is evaluated on the held-out test set with f32 features and with
# int8 features (switching the dtype under trained heads), and a head trained on int8
# features is evaluated with int8. Training rows: a seeded sample of N per task.
# Usage: bench/int8_accuracy.sh [N_SPAM] [N_REVIEWS]   (default 1000 500)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
BIN=target/release/polyhead
OUT=target/int8
rm -rf "$OUT" && mkdir -p "$OUT"
export POLYHEAD_LOG=warn
for spec in "spam:${1:-1000}" "reviews:${2:-500}"; do
  IFS=: read -r task n <<<"$spec"
  python3 -c 'import json,random,sys; r=[json.loads(l) for l in open(sys.argv[1])]; random.Random(7).shuffle(r); sys.stdout.writelines(json.dumps(x)+"\n" for x in r[:int(sys.argv[2])])' \
    "data/$task/train.jsonl" "$n" > "$OUT/$task-train.jsonl"
  for dtype in f32 int8; do
    "$BIN" train --task "$task" --data "$OUT/$task-train.jsonl" --store "$OUT/store-$dtype" \
      --backend onnxruntime --dtype "$dtype" --json > "$OUT/$task-train-$dtype.json"
  done
  for run in "f32 f32" "f32 int8" "int8 int8"; do
    read -r trained served <<<"$run"
    "$BIN" eval --task "$task" --data "data/$task/test.jsonl" --store "$OUT/store-$trained" \
      --backend onnxruntime --dtype "$served" --json \
      | python3 -c 'import json,sys; m=json.load(sys.stdin); print(json.dumps({"task": sys.argv[1], "train_rows": int(sys.argv[4]), "trained_on": sys.argv[2], "served_with": sys.argv[3], "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1")}))' \
        "$task" "$trained" "$served" "$n"
  done
done
