#!/usr/bin/env bash
# Trains the >= 5M-parameter model the quantization benchmark uses:
#   bench/train_wikitext5m.sh [SLMC] [OUT_DIR]
# It splits ../shared/data/text/wikitext-2-test.txt at the line boundary nearest 90% of its bytes:
# the head trains (OUT_DIR/train.txt), the tail (OUT_DIR/eval.txt) is never seen in training.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
slmc="${1:-$here/../build/compress/cli/slmc}"
out="${2:-$here/../build/wikitext5m}"
data="$here/../../shared/data/text/wikitext-2-test.txt"
[[ -f "$data" ]] || { echo "train_wikitext5m.sh: $data not found (../shared must sit beside the repo)" >&2; exit 2; }
mkdir -p "$out"
bytes=$(wc -c < "$data")
head_lines=$(awk -v limit=$(( bytes * 9 / 10 )) '{ n += length($0) + 1; if (n > limit) { print NR - 1; exit } }' "$data")
head -n "$head_lines" "$data" > "$out/train.txt"
tail -n +"$(( head_lines + 1 ))" "$data" > "$out/eval.txt"
echo "train: $(wc -c < "$out/train.txt") bytes, eval: $(wc -c < "$out/eval.txt") bytes" >&2
"$slmc" ${SLMC_TRAIN_THREADS:+--threads "$SLMC_TRAIN_THREADS"} train --config "$here/wikitext5m.yaml" --data "$out/train.txt" -o "$out/model"
