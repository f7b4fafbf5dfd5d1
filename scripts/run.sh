#!/usr/bin/env bash
# The run command: set-up (idempotent, cached), then the server with the demo tasks
# `spam` (SpamAssassin: words decide) and `reviews` (IMDb sentiment: meaning decides),
# answering within about two minutes of set-up:
#   1. a task missing from the store gets a first head trained on a stratified sample
#      of its training file (POLYHEAD_DEMO_SAMPLE examples, default 300: ~20-40 s a task
#      on 2 cores);
#   2. the server starts at once with those heads;
#   3. in the background the full head of each task trains (every training example,
#      reported against the from-scratch TF-IDF baseline on its test file) and is
#      hot-swapped in when it is done: the server polls the store. A task whose full
#      head exists is left alone on the next run.
# Extra arguments go to `polyhead serve`. Ctrl-C (or SIGTERM) stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source .polyhead-env
BIN=target/release/polyhead
SAMPLE="${POLYHEAD_DEMO_SAMPLE:-300}"
START=$SECONDS
say() { echo "[run +$((SECONDS - START))s] $*" >&2; }

# Trained in full already (a marker per task, written when its full head is stored).
full_done() { [[ -e "store/.demo-full-$1" ]]; }

pending=()
for task in spam reviews; do
  rows=$(wc -l <"data/$task/train.jsonl")
  if ! "$BIN" tasks 2>/dev/null | grep -q "\"task\":\"$task\""; then
    say "task '$task': a first head from a sample of $SAMPLE of its $rows training examples (embedding them: ~20-40 s)"
    "$BIN" train --task "$task" --data "data/$task/train.jsonl" --sample "$SAMPLE" --seed 0
  fi
  if ! full_done "$task"; then
    pending+=("$task")
  fi
done

if [[ -z "${POLYHEAD__ADMIN__TOKEN:-}" ]]; then
  POLYHEAD__ADMIN__TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  export POLYHEAD__ADMIN__TOKEN
fi
ADDR="$("$BIN" serve --print-config --json "$@" | python3 -c 'import json,sys; c=json.load(sys.stdin)["server"]; print(c["addr"], c["metrics_addr"], c["http_addr"] or "off")')"
read -r GRPC METRICS HTTP <<<"$ADDR"

"$BIN" serve "$@" &
SERVER=$!
TRAINER=""
stop() {
  trap - INT TERM
  [[ -n "$TRAINER" ]] && kill -TERM "$TRAINER" 2>/dev/null || true
  kill -TERM "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null
  exit $?
}
trap stop INT TERM

# Wait for SERVING (the backbone loads and warms in a few seconds).
until "$BIN" health --addr "$GRPC" --timeout-ms 1000 >/dev/null 2>&1; do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    wait "$SERVER"
    exit $?
  fi
  sleep 0.5
done
cat >&2 <<MSG

  [run +$((SECONDS - START))s] polyhead is SERVING on $GRPC (gRPC) and $HTTP (HTTP) with the demo tasks 'spam' and 'reviews'.
    classify:  $BIN classify --addr $GRPC --task spam "You WON a free cruise, click now" "Lunch at noon?"
               $BIN classify --addr $GRPC --task reviews "A moving, beautifully acted film" "Two hours I will never get back"
    HTTP:      curl -s http://$HTTP/v1/tasks/spam/classify -H 'content-type: application/json' -d '{"texts": ["Lunch at noon?"]}'
    metrics:   curl -s http://$METRICS/metrics | grep ^polyhead_
    health:    $BIN health --addr $GRPC
    admin:     authorization: Bearer $POLYHEAD__ADMIN__TOKEN
  Ctrl-C (or SIGTERM) drains in-flight requests and stops.

MSG

if ((${#pending[@]})); then
  (
    child=""
    trap '[[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null; exit 143' TERM
    for task in "${pending[@]}"; do
      rows=$(wc -l <"data/$task/train.jsonl")
      tests=$(wc -l <"data/$task/test.jsonl")
      say "task '$task': training the full head in the background ($rows examples, then the $tests-row test file; the served head is swapped when it is done)"
      nice -n 10 "$BIN" train --task "$task" --data "data/$task/train.jsonl" --test "data/$task/test.jsonl" --seed 0 &
      child=$!
      if wait "$child"; then
        touch "store/.demo-full-$task"
        say "task '$task': the full head is stored and active; the server picks it up within a second"
      else
        say "task '$task': full training failed (the sample head keeps serving); run scripts/run.sh again to retry"
      fi
    done
  ) &
  TRAINER=$!
fi
rc=0
wait "$SERVER" || rc=$?
[[ -n "$TRAINER" ]] && kill -TERM "$TRAINER" 2>/dev/null
exit "$rc"
