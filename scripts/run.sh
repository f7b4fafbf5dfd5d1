#!/usr/bin/env bash
# The run command: set-up (idempotent, cached), train the demo task `spam` if the
# store lacks it, then start the server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
# shellcheck disable=SC1091
source .polyhead-env
BIN=target/release/polyhead
if ! "$BIN" tasks | grep -q '"task":"spam"'; then
  echo "[run] training the demo task 'spam' on data/spam/train.jsonl" >&2
  "$BIN" train --task spam --data data/spam/train.jsonl --test data/spam/test.jsonl
fi
"$BIN" tasks
if "$BIN" serve --help >/dev/null 2>&1; then
  exec "$BIN" serve "$@"
fi
echo "[run] (no server in this build yet) embedding two lines:" >&2
printf 'Congratulations, you won a free cruise!\nCan we move our meeting to 3pm?\n' | "$BIN" embed | cut -c1-120
