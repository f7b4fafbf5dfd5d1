#!/usr/bin/env bash
# Regenerates the Python client's gRPC stubs (clients/python/polyhead/v1/*_pb2*.py) from
# proto/ with grpcio-tools, in a venv under the cache. `--check` regenerates into a
# temporary folder and fails when the checked-in stubs differ (the test runs that).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
VENV="$CACHE/venv-client"
TOOLS="grpcio-tools==1.85.1"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import grpc_tools" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$TOOLS"
fi
out="$ROOT/clients/python"
if [[ "${1:-}" == "--check" ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/polyhead/v1"
"$VENV/bin/python" -m grpc_tools.protoc -I "$ROOT/proto" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$ROOT/proto/polyhead/v1/inference.proto" "$ROOT/proto/polyhead/v1/registry.proto"
touch "$out/polyhead/__init__.py" "$out/polyhead/v1/__init__.py"
if [[ "${1:-}" == "--check" ]]; then
  for f in "$out"/polyhead/v1/*.py "$out"/polyhead/v1/*.pyi; do
    name="polyhead/v1/$(basename "$f")"
    if ! cmp -s "$f" "$ROOT/clients/python/$name"; then
      echo "clients/python/$name is stale: run scripts/gen-python-client.sh" >&2
      exit 1
    fi
  done
  echo "python stubs up to date"
fi
