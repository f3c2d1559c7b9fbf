#!/usr/bin/env bash
# Gets llama.cpp (the judge of issue 16) from the npm registry and builds its CPU tools into a cache
# outside the repo. node-llama-cpp@3.22.1 ships package/llama/gitRelease.bundle, a git bundle of
# llama.cpp's release; we clone it and build llama-bench, llama-perplexity, llama-quantize,
# llama-imatrix and llama-simple (CPU only, -DGGML_NATIVE=ON). Idempotent: a finished build is reused.
# Usage: bench/llama_cpp.sh            prints the directory holding the binaries (stdout, one line)
#        bench/llama_cpp.sh --src      only fetches and clones; prints the source directory (its
#                                      gguf-py is the numpy oracle of tests/codec/kquant_ggufpy_check.py)
# Environment: SLMC_CACHE (default ~/.cache/slmc), JOBS (default 2). Fails loudly, never skips.
set -euo pipefail
CACHE=${SLMC_CACHE:-$HOME/.cache/slmc}
PKG=node-llama-cpp@3.22.1
ROOT="$CACHE/llama.cpp-3.22.1"
SRC="$ROOT/src"
BIN="$ROOT/build/bin"
TOOLS=(llama-bench llama-perplexity llama-quantize llama-imatrix llama-simple)
SRC_ONLY=0; [ "${1:-}" = "--src" ] && SRC_ONLY=1
done_all() { for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }
if [ $SRC_ONLY = 1 ] && [ -f "$SRC/gguf-py/gguf/quants.py" ]; then echo "$SRC"; exit 0; fi
if done_all && [ -f "$SRC/gguf-py/gguf/quants.py" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE" "$ROOT"
tgz="$CACHE/node-llama-cpp-3.22.1.tgz"
if [ ! -s "$tgz" ]; then
  (cd "$CACHE" && npm pack "$PKG" >&2) || { echo "llama_cpp.sh: npm pack $PKG failed" >&2; exit 1; }
fi
if [ ! -d "$SRC/.git" ]; then
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle ||
    { echo "llama_cpp.sh: $tgz has no package/llama/gitRelease.bundle" >&2; exit 1; }
  rm -rf "$SRC" "$SRC.part"
  git clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC.part" >&2
  mv "$SRC.part" "$SRC"
  rm -rf "$tmp"
fi
[ -f "$SRC/gguf-py/gguf/quants.py" ] || { echo "llama_cpp.sh: $SRC has no gguf-py" >&2; exit 1; }
if [ $SRC_ONLY = 1 ]; then echo "$SRC"; exit 0; fi
if ! done_all; then
  cmake -S "$SRC" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
    -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  nice -n 10 cmake --build "$ROOT/build" -j"${JOBS:-2}" --target "${TOOLS[@]}" >&2
fi
done_all || { echo "llama_cpp.sh: build did not produce ${TOOLS[*]} in $BIN" >&2; exit 1; }
echo "$BIN"
