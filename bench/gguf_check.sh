#!/usr/bin/env bash
# llama.cpp judges slmc's GGUF writer: for a tiny random checkpoint of every family llama.cpp runs
# (llama, mistral, qwen2, phi3, gemma3, openelm, mixtral, and a structurally pruned llama whose
# layers differ, written as llama.cpp's deci) and every weight type (f32, f16, bf16, q8_0, q4_0,
# q4_k, q5_k, q6_k), `slmc export --format gguf` writes the file, llama.cpp's llama-perplexity loads
# and scores it, and `slmc eval --llama-windows` scores the same file with slmc's runtime: the two
# perplexities must agree within 0.1% at f32 (llama.cpp rounds its activations to f16/bf16 for
# those weight types and to q8_0/q8_K for the integer ones, slmc keeps them near fp32, so the
# other rows differ by that rounding: printed, not bounded). Prints one row per file; exits 1 if
# llama.cpp fails to load any file or an f32 row disagrees.
# Usage: bench/gguf_check.sh [build-dir]     (llama.cpp from bench/llama_cpp.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
S="$B/compress/cli/slmc"
[ -x "$S" ] && [ -x "$B/bench/slmc_random_model" ] || { echo "build slmc and slmc_random_model first" >&2; exit 1; }
BIN=$(bash bench/llama_cpp.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 40 chunks of 128 byte tokens (BOS + 5119 bytes) of WikiText-2.
head -c 5119 ../shared/data/text/wikitext-2-test.txt > "$tmp/text.txt"
# llama-perplexity's PPL. Its logger is asynchronous and sometimes loses the last lines at exit
# (seen here: exit 0, no "Final estimate"), so a run without the line is repeated (6 tries).
llama_ppl() {
  local log=$tmp/lp.log
  for _ in 1 2 3 4 5 6; do
    nice -n 10 "$BIN/llama-perplexity" "$@" > "$log" 2>&1 || { tail -5 "$log" >&2; return 1; }
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$log" | grep . && return 0
  done
  echo "llama-perplexity printed no final estimate 6 times" >&2
  return 1
}
fail=0
printf '%-8s %-5s | %12s %12s %9s\n' family type llama.cpp slmc diff%
for fam in llama mistral qwen2 phi3 gemma3 openelm mixtral pruned; do
  "$B/bench/slmc_random_model" --shape tiny --family "$fam" --type f32 -o "$tmp/$fam.slm" 2> /dev/null
  for type in f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k; do
    g="$tmp/$fam-$type.gguf"
    "$S" -q export --model "$tmp/$fam.slm" --format gguf --type "$type" -o "$g" > /dev/null 2>&1
    if ! lp=$(llama_ppl -m "$g" -f "$tmp/text.txt" -c 128 -b 128 -t 2); then
      echo "$fam $type: llama.cpp could not load or run $g"; fail=1; continue
    fi
    sp=$(nice -n 10 "$S" -q --threads 2 eval --model "$g" --data "$tmp/text.txt" --ctx 128 \
         --llama-windows --json 2> /dev/null | sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p')
    d=$(awk -v a="$lp" -v b="$sp" 'BEGIN { printf "%.4f", 100 * (b - a) / a }')
    printf '%-8s %-5s | %12s %12.4f %9s\n' "$fam" "$type" "$lp" "$sp" "$d"
    case $type in f32)
      awk -v d="$d" 'BEGIN { exit (d < 0.1 && d > -0.1) ? 0 : 1 }' || { echo "  ^ differs by more than 0.1%"; fail=1; } ;;
    esac
  done
done
exit $fail
