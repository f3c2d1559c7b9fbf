#!/usr/bin/env bash
# The whole test suite: install, build, run every ctest test (GoogleTest, the SentencePiece oracle,
# PyTorch goldens, CLI end-to-end). Reads ../shared/data when present (CI has it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
