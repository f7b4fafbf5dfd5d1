#!/usr/bin/env bash
# The test command: set-up (idempotent, cached), then every test of the workspace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# deploy/ checked with promtool, kubernetes-validate and the Compose schema (tools
# installed on first use); the e2e suite runs promtool on a live scrape.
scripts/deploy-checks.sh
# The PostgreSQL tests (store, replicas) need a server: POLYHEAD_TEST_DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/test. They fail, not skip, without it.
# shellcheck disable=SC1091
source .polyhead-env
# One profile (release) for build, tests and benchmarks: libtorch and tokenizers are
# slow unoptimised, and one target dir keeps CI's build to one pass.
# Style first (seconds): formatting, then lints as errors on every target, in the
# same profile as the tests so the build is shared.
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
# A build that leaves out the optional runtimes (ONNX Runtime, OpenVINO) still
# compiles: the runtime registry is the only place that names them.
cargo clippy --release -p polyhead-backbone --no-default-features --locked -- -D warnings
cargo test --release --workspace --locked "$@"
# Issue 9's short performance check: polyhead over gRPC vs PyTorch in the same run
# (fails below bench/ratio-check.sh's stated margin). About a minute.
bench/ratio-check.sh
