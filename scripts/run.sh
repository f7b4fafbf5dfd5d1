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
# The image demo task `fashion` (Fashion-MNIST pictures, data/fashion/{train,test}/LABEL/)
# is served by a second server on the image backbone (EfficientNet-Lite0), sharing the
# store: gRPC POLYHEAD_IMAGE_ADDR (default 127.0.0.1:50052), HTTP POLYHEAD_IMAGE_HTTP
# (127.0.0.1:8081), metrics POLYHEAD_IMAGE_METRICS (127.0.0.1:9465);
# POLYHEAD_DEMO_IMAGES=0 leaves it out.
# Extra arguments go to the text server's `polyhead serve`. Ctrl-C (or SIGTERM) stops all.
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

IMAGES="${POLYHEAD_DEMO_IMAGES:-1}"
IMAGE_MODEL=models/efficientnet-lite0
# What each demo task trains on: its data and, for pictures, the backbone.
data_of() { if [[ "$1" == fashion ]]; then echo "data/fashion/train"; else echo "data/$1/train.jsonl"; fi; }
test_of() { if [[ "$1" == fashion ]]; then echo "data/fashion/test"; else echo "data/$1/test.jsonl"; fi; }
model_of() { if [[ "$1" == fashion ]]; then echo "--model $IMAGE_MODEL"; fi; }
count() { if [[ -d "$1" ]]; then find "$1" -type f | wc -l; else wc -l <"$1"; fi; }
# The picture task first: its heads train in seconds.
TASKS=(spam reviews)
[[ "$IMAGES" != 0 ]] && TASKS=(fashion spam reviews)

pending=()
for task in "${TASKS[@]}"; do
  rows=$(count "$(data_of "$task")")
  # shellcheck disable=SC2046
  if ! "$BIN" tasks 2>/dev/null | grep -q "\"task\":\"$task\""; then
    say "task '$task': a first head from a sample of $SAMPLE of its $rows training examples (embedding them: ~5-40 s)"
    "$BIN" train $(model_of "$task") --task "$task" --data "$(data_of "$task")" --sample "$SAMPLE" --seed 0
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
IMAGE_SERVER=""
IGRPC="${POLYHEAD_IMAGE_ADDR:-127.0.0.1:50052}"
IHTTP="${POLYHEAD_IMAGE_HTTP:-127.0.0.1:8081}"
IMETRICS="${POLYHEAD_IMAGE_METRICS:-127.0.0.1:9465}"
if [[ "$IMAGES" != 0 ]]; then
  # The same store (and token) as the text server; its own backbone and ports.
  STORE_URL="$("$BIN" serve --print-config --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["url"])')"
  "$BIN" serve --model "$IMAGE_MODEL" --store "$STORE_URL" --addr "$IGRPC" --http-addr "$IHTTP" --metrics-addr "$IMETRICS" &
  IMAGE_SERVER=$!
fi
TRAINER=""
stop() {
  trap - INT TERM
  [[ -n "$TRAINER" ]] && kill -TERM "$TRAINER" 2>/dev/null || true
  [[ -n "$IMAGE_SERVER" ]] && kill -TERM "$IMAGE_SERVER" 2>/dev/null || true
  kill -TERM "$SERVER" 2>/dev/null || true
  [[ -n "$IMAGE_SERVER" ]] && wait "$IMAGE_SERVER" 2>/dev/null
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
if [[ -n "$IMAGE_SERVER" ]]; then
  until "$BIN" health --addr "$IGRPC" --timeout-ms 1000 >/dev/null 2>&1; do
    kill -0 "$IMAGE_SERVER" 2>/dev/null || { say "the image server stopped (see its log above)"; IMAGE_SERVER=""; break; }
    sleep 0.5
  done
fi
SHOE="$(find data/fashion/test/sneaker -name '*.png' 2>/dev/null | sort | head -1)"
BAG="$(find data/fashion/test/bag -name '*.png' 2>/dev/null | sort | head -1)"
cat >&2 <<MSG

  [run +$((SECONDS - START))s] polyhead is SERVING on $GRPC (gRPC) and $HTTP (HTTP) with the demo tasks 'spam' and 'reviews'.
    classify:  $BIN classify --addr $GRPC --task spam "You WON a free cruise, click now" "Lunch at noon?"
               $BIN classify --addr $GRPC --task reviews "A moving, beautifully acted film" "Two hours I will never get back"
    HTTP:      curl -s http://$HTTP/v1/tasks/spam/classify -H 'content-type: application/json' -d '{"texts": ["Lunch at noon?"]}'
    metrics:   curl -s http://$METRICS/metrics | grep ^polyhead_
    health:    $BIN health --addr $GRPC
    admin:     authorization: Bearer $POLYHEAD__ADMIN__TOKEN
MSG
if [[ -n "$IMAGE_SERVER" ]]; then
  cat >&2 <<MSG
  The image task 'fashion' is served on $IGRPC (gRPC) and $IHTTP (HTTP), backbone EfficientNet-Lite0.
    classify:  $BIN classify --addr $IGRPC --task fashion --image $SHOE --image $BAG
    HTTP:      curl -s http://$IHTTP/v1/tasks/fashion/classify -H 'content-type: application/json' -d "{\"images\": [\"\$(base64 -w0 $BAG)\"]}"
MSG
fi
cat >&2 <<MSG
  Ctrl-C (or SIGTERM) drains in-flight requests and stops.

MSG

if ((${#pending[@]})); then
  (
    child=""
    trap '[[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null; exit 143' TERM
    for task in "${pending[@]}"; do
      rows=$(count "$(data_of "$task")")
      tests=$(count "$(test_of "$task")")
      say "task '$task': training the full head in the background ($rows examples, then the $tests-row test set; the served head is swapped when it is done)"
      # shellcheck disable=SC2046
      nice -n 10 "$BIN" train $(model_of "$task") --task "$task" --data "$(data_of "$task")" --test "$(test_of "$task")" --seed 0 &
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
