#!/usr/bin/env bash
# Issue 18's attack rows of RELIABILITY.md, at the shipped defaults: a slow reader at
# scale, 1,000 silent connections, requests at the limits back to back, and inference
# during a TrainHead of long texts; each beside one-text callers. Prints one
# `MEASURE {json}` line per scenario. About 4 minutes on 2 cores.
# Usage: bench/attacks.sh [FILTER]   (FILTER: a test name part, default all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source .polyhead-env
cargo build --release --locked -p polyhead >/dev/null
cargo test --release --locked -p polyhead-e2e --test e2e -- --ignored --test-threads 1 \
  --nocapture "measures::${1:-measure}" 2>/dev/null | grep -o 'MEASURE .*'
