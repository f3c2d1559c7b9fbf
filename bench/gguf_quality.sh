#!/usr/bin/env bash
# Same-run quality race judged by llama.cpp (issue 16): on the WikiText-2 model of the quantize
# bench (bench/train_wikitext5m.sh: byte-level Llama trained on the first 90% of WikiText-2 test),
#   1. slmc exports the f32 GGUF; llama-perplexity records the reference logits
#      (--kl-divergence-base) on the last 10% and its perplexity is compared with
#      `slmc eval --llama-windows` on the same file (the tokenizer travelled iff they agree);
#   2. llama.cpp quantizes it itself: llama-quantize Q4_0 and Q4_K_M, with and without an
#      llama-imatrix computed from the same calibration text slmc uses (the first 90%);
#   3. slmc quantizes it with calibration (GPTQ into Q4_K; GPTQ with target_bpw over llama.cpp's
#      types, budgeted to the size of llama.cpp's Q4_K_M) and exports the bytes unchanged to GGUF;
#   4. llama-perplexity --kl-divergence judges every file against the reference.
# Prints file bytes, bits per weight, perplexity, mean KL and top-token agreement side by side.
# Run it under nice yourself on a shared machine.
# Usage: bench/gguf_quality.sh [build-dir] [wikitext-model-dir (default /work/wt/wikitext5m)]
#        [chunks: llama-perplexity chunks of 256 scored, from the start of the eval text (default 64;
#        0 = all 507)]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
WT=${2:-/work/wt/wikitext5m}
S="$B/compress/cli/slmc"
BIN=$(bash bench/llama_cpp.sh)
[ -f "$WT/model/config.json" ] || bench/train_wikitext5m.sh "$S" "$WT"
out="$B/gguf_quality"
mkdir -p "$out"
CTX=256
CHUNKS=${3:-64}
EV="$out/eval.txt"
# The first CHUNKS chunks: BOS + CHUNKS * CTX - 1 bytes (the byte tokenizer: one token per byte).
if [ "$CHUNKS" -gt 0 ]; then head -c $((CHUNKS * CTX - 1)) "$WT/eval.txt" > "$EV"; else cp "$WT/eval.txt" "$EV"; fi
CAL="$WT/train.txt"
T=2
# lp LOG MARKER ARGS...: llama-perplexity into LOG until its output holds MARKER. Its logger is
# asynchronous and sometimes loses the last lines at exit (exit 0 without them): up to 6 tries.
lp() {
  local log=$1 marker=$2
  shift 2
  for _ in 1 2 3 4 5 6; do
    "$BIN/llama-perplexity" -t $T -c $CTX -b $CTX -f "$EV" "$@" > "$log" 2>&1 ||
      { tail -5 "$log" >&2; return 1; }
    grep -q "$marker" "$log" && return 0
  done
  echo "llama-perplexity: no '$marker' in 6 runs ($log)" >&2
  return 1
}

"$S" -q export --model "$WT/model" --format gguf --type f32 -o "$out/f32.gguf" > /dev/null
lp "$out/f32.log" "Final estimate" -m "$out/f32.gguf" --kl-divergence-base "$out/base.kld"
ppl_llama=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$out/f32.log")
ppl_slmc=$("$S" -q --threads $T eval --model "$out/f32.gguf" --data "$EV" --ctx $CTX --llama-windows \
           --json 2> /dev/null | sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p')
echo "f32 GGUF, llama-perplexity windows of $CTX: llama.cpp PPL $ppl_llama, slmc eval --llama-windows $ppl_slmc" \
     "($(awk -v a="$ppl_llama" -v b="$ppl_slmc" 'BEGIN { printf "%+.4f%%", 100 * (b - a) / a }'))"

# llama.cpp's own quantizations, with and without an importance matrix from the calibration text.
[ -s "$out/imatrix.gguf" ] ||
  "$BIN/llama-imatrix" -m "$out/f32.gguf" -f "$CAL" -c $CTX -t $T --chunks 128 \
    -o "$out/imatrix.gguf" > "$out/imatrix.log" 2>&1
for q in Q4_0 Q4_K_M; do
  "$BIN/llama-quantize" "$out/f32.gguf" "$out/llama_$q.gguf" $q $T > /dev/null 2>&1
  "$BIN/llama-quantize" --imatrix "$out/imatrix.gguf" "$out/f32.gguf" \
    "$out/llama_${q}_imatrix.gguf" $q $T > /dev/null 2>&1
done
budget=$(stat -c %s "$out/llama_Q4_K_M_imatrix.gguf")

# slmc: calibrated quantizations (128 x 256 calibration tokens of the first 90%, as many as the
# imatrix above sees), bytes unchanged into GGUF.
sq() {
  local name=$1
  shift
  "$S" -q --threads $T quantize --model "$WT/model" --calib "$CAL" --samples 128 \
    --seq-len $CTX -o "$out/$name.slm" "$@" > "$out/$name.quant.log" 2>&1
  "$S" -q export --model "$out/$name.slm" --format gguf -o "$out/slmc_$name.gguf" > /dev/null
}
sq gptq_q4_k --method gptq --format q4_k
sq gptq_q4_k_h6 --method gptq --format q4_k --head-format q6_k
# target_bpw over llama.cpp's types, at the bits per weight of llama.cpp's Q4_K_M file: the mix
# is budgeted over the matrices, so aim its bpw at Q4_K_M's and check the file sizes below.
n_w=$(/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$(bash bench/llama_cpp.sh --src)/gguf-py')
from gguf import GGUFReader
r = GGUFReader('$out/f32.gguf'); print(sum(int(t.n_elements) for t in r.tensors))")
bpw=$(awk -v b="$budget" -v n="$n_w" 'BEGIN { printf "%.4f", 8 * (b - 4096) / n }')
sq gptq_mix --method gptq --target-bpw "$bpw" --mix-formats q4_k,q5_k,q6_k,q8_0,q4_0

printf '\n| %-28s | %10s | %6s | %9s | %10s | %8s |\n' file bytes bpw PPL "mean KL" "same top"
echo "|---|---|---|---|---|---|"
for f in "$out"/llama_*.gguf "$out"/slmc_*.gguf; do
  lp "$f.log" "Same top p" -m "$f" --kl-divergence-base "$out/base.kld" --kl-divergence
  bytes=$(stat -c %s "$f")
  printf '| %-28s | %10s | %6.3f | %9s | %10s | %7s%% |\n' "$(basename "$f" .gguf)" "$bytes" \
    "$(awk -v b="$bytes" -v n="$n_w" 'BEGIN { print 8 * b / n }')" \
    "$(sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$f.log")" \
    "$(sed -n 's/^Mean    KLD: *\([0-9.]*\).*/\1/p' "$f.log")" \
    "$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$f.log")"
done
echo "(budget: llama_Q4_K_M_imatrix.gguf, $budget bytes; bpw counts the whole file over all weights)"
