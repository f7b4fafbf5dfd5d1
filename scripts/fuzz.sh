#!/usr/bin/env bash
# Fuzzing with proptest (cargo-fuzz needs a nightly toolchain, which this project's
# machines cannot install): the artifact decoder, the dataset parsers and request
# validation, CASES inputs per property (default 100000; the test suite runs 256).
# Failing inputs are kept in the crates' proptest-regressions/ folders and replayed
# first by every later run.
#
# Usage: scripts/fuzz.sh [CASES]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --no-build
# shellcheck disable=SC1091
source .polyhead-env
export PROPTEST_CASES="${1:-100000}"
for target in "-p polyhead-heads --test fuzz" "-p polyhead-trainer --test fuzz" \
              "-p polyhead-server --lib engine::tests" "-p polyhead-server --lib inference::tests::any_grpc"; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  cargo test --release --locked $target 2>&1 | grep -E "^test |test result" || true
  echo "[fuzz] $target: $PROPTEST_CASES cases per property in $(( $(date +%s) - start )) s"
done
