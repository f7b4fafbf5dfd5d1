#!/usr/bin/env bash
# The run command: set-up (idempotent, cached), train the demo task `spam` if the
# store lacks it, then start the server. Extra arguments go to `polyhead serve`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source .polyhead-env
BIN=target/release/polyhead
# Two demo tasks: spam (SpamAssassin: words decide) and reviews (IMDb sentiment:
# meaning decides). Each is trained with the default `auto` head and reported against
# the from-scratch TF-IDF baseline on its test file.
for task in spam reviews; do
  if ! "$BIN" tasks | grep -q "\"task\":\"$task\""; then
    echo "[run] training the demo task '$task' on data/$task/train.jsonl (the first run embeds its texts: a few minutes)" >&2
    "$BIN" train --task "$task" --data "data/$task/train.jsonl" --test "data/$task/test.jsonl"
  fi
done
if [[ -z "${POLYHEAD__ADMIN__TOKEN:-}" ]]; then
  POLYHEAD__ADMIN__TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  export POLYHEAD__ADMIN__TOKEN
fi
ADDR="$("$BIN" serve --print-config "$@" | python3 -c 'import json,sys; c=json.load(sys.stdin)["server"]; print(c["addr"], c["metrics_addr"])')"
read -r GRPC METRICS <<<"$ADDR"
cat >&2 <<MSG

  polyhead is starting on $GRPC (gRPC) with the demo tasks 'spam' and 'reviews'.
    classify:  $BIN classify --addr $GRPC --task spam "You WON a free cruise, click now" "Lunch at noon?"
               $BIN classify --addr $GRPC --task reviews "A moving, beautifully acted film" "Two hours I will never get back"
    metrics:   curl -s http://$METRICS/metrics | grep ^polyhead_
    health:    grpcurl -plaintext $GRPC grpc.health.v1.Health/Check
    admin:     authorization: Bearer $POLYHEAD__ADMIN__TOKEN
  Ctrl-C (or SIGTERM) drains in-flight requests and stops.

MSG
exec "$BIN" serve "$@"
