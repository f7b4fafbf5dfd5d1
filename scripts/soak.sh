#!/usr/bin/env bash
# Soak: the e2e soak test (load on two tasks from 8 callers, a version flip every
# 300 ms, a TrainHead during the run) for SECONDS (default 600). Prints one JSON line:
# requests ok / failed, swap rounds, p99, RSS at start and end. The test suite runs
# the same test for 15 s.
#
# Usage: scripts/soak.sh [SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source .polyhead-env
POLYHEAD_SOAK_SECONDS="${1:-600}" cargo test --release --locked -p polyhead-e2e --test e2e \
  load::soak_under_swaps_and_training -- --exact --nocapture
