#!/usr/bin/env bash
# The main job: install, build, then train a small model on a corpus slmc makes itself,
# evaluate it on held-out text and print samples. Output goes to ./demo_out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec ./build/compress/cli/slmc demo -o demo_out "$@"
