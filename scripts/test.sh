#!/usr/bin/env bash
# The test command: set-up (idempotent, cached), then every test of the workspace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source .polyhead-env
# One profile (release) for build, tests and benchmarks: libtorch and tokenizers are
# slow unoptimised, and one target dir keeps CI's build to one pass.
cargo test --release --workspace --locked "$@"
