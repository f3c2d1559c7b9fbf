#!/usr/bin/env bash
# Pruning accuracy and speed (issue "Pruning: Wanda, SparseGPT, N:M and structured pruning"):
#   stories   stories260K (../shared/data), calibrated on 200 stories it generates itself (seeds
#             100..300, as bench/quant_bench.sh), evaluated on tinystories_valid_slice.txt (14k real
#             tokens, windows of 512);
#   wikitext  the 5.2M-parameter byte-level model of bench/train_wikitext5m.sh, calibrated on the
#             first 90% of WikiText-2 test (128 x 256), evaluated on the held-out last 10% (256);
#   1b        the 1.1B Llama shape with random weights (bench/random_model.cpp, f32): dense q4_0
#             against heads and channels cut by 25% (importance from weights: random weights have
#             no calibration data) then q4_0, .slm bytes and runtime decode alternated in one run.
# Every accuracy row: method x sparsity, parameters, tensor bytes (f32), share of exactly zero
# matrix weights, perplexity (runtime) and its increase over the dense model, KL and top-1 against
# the dense model, wall seconds of the whole command (pruning + export + three evaluations).
# Usage: bench/prune_bench.sh [build-dir] [wikitext-model-dir] [stories|wikitext|1b|all]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
WT=${2:-$B/wikitext5m}
PART=${3:-all}
S="$B/compress/cli/slmc"
[ -x "$S" ] || bash scripts/build.sh
D=../shared/data
out="$B/prune_bench"
mkdir -p "$out"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

get() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" "$2" | head -1; }

# row NAME MODEL CALIB EVAL CTX SAMPLES SEQ ARGS...
row() {
  local name=$1 model=$2 calib=$3 eval=$4 ctx=$5 samples=$6 seq=$7
  shift 7
  "$S" -q prune --model "$model" --calib "$calib" --samples "$samples" --seq-len "$seq" \
    --eval "$eval" --eval-ctx "$ctx" --json -o "$out/$name.slm" "$@" > "$out/$name.json"
  local f="$out/$name.json"
  awk -v n="$name" -v p="$(get table_params "$f")" -v b="$(get table_bytes "$f")" \
      -v z="$(get table_sparsity "$f")" -v ppl="$(get table_ppl "$f")" -v ref="$(get table_ppl_ref "$f")" \
      -v kl="$(get table_kl "$f")" -v t1="$(get table_top1 "$f")" -v pt="$(get table_ppl_torch "$f")" \
      -v s="$(get seconds_total "$f")" \
      'BEGIN { printf "| %-22s | %9d | %10d | %6.2f%% | %9.4f | %+9.4f | %8.5f | %6.2f%% | %9.4f | %6.1f |\n",
               n, p, b, 100 * z, ppl, ppl - ref, kl, 100 * t1, pt, s }'
}

header() {
  echo
  echo "### $1"
  echo
  echo "| run | params | bytes (f32) | zeros | ppl (runtime) | increase | KL | top-1 | ppl (LibTorch) | s |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
}

# Every method and pattern, then structured widths and depth, on one model.
rows() {
  local p=$1
  shift
  row "${p}_dense"            "$@" --method magnitude --sparsity 0
  for m in magnitude wanda sparsegpt; do row "${p}_${m}_50" "$@" --method "$m" --sparsity 0.5; done
  for m in magnitude wanda sparsegpt; do row "${p}_${m}_2of4" "$@" --method "$m" --pattern 2:4; done
  for m in magnitude wanda sparsegpt; do row "${p}_${m}_4of8" "$@" --method "$m" --pattern 4:8; done
  row "${p}_magnitude_50_global" "$@" --method magnitude --sparsity 0.5 --scope global
  row "${p}_heads_25"         "$@" --structured heads --sparsity 0.25
  row "${p}_heads_25_norefit" "$@" --structured heads --sparsity 0.25 --reconstruct false
  row "${p}_heads_25_weights" "$@" --structured heads --sparsity 0.25 --importance weights
  row "${p}_channels_25"      "$@" --structured channels --sparsity 0.25
  row "${p}_channels_25_norefit" "$@" --structured channels --sparsity 0.25 --reconstruct false
  row "${p}_channels_25_weights" "$@" --structured channels --sparsity 0.25 --importance weights
  row "${p}_depth_half_cos"   "$@" --structured layers --sparsity 0.5 --layer-metric cosine
  row "${p}_depth_half_loss"  "$@" --structured layers --sparsity 0.5 --layer-metric loss
}

if [ "$PART" = stories ] || [ "$PART" = all ]; then
  M1=$D/models/stories260K/stories260K.bin
  "$S" -q export --model "$M1" --format slm --type f32 -o "$out/stories260K-f32.slm" > /dev/null
  if [ ! -s "$out/selfgen.txt" ]; then
    for seed in $(seq 100 300); do
      "$S" -q --threads 1 generate --model "$out/stories260K-f32.slm" -n 255 --temperature 1.0 --seed "$seed"
      echo
    done > "$out/selfgen.txt.tmp" 2> /dev/null
    mv "$out/selfgen.txt.tmp" "$out/selfgen.txt"
  fi
  header "stories260K (tinystories_valid_slice.txt, windows of 512; calibration 100 x 256 self-generated)"
  rows s "$M1" "$out/selfgen.txt" "$D/text/tinystories_valid_slice.txt" 512 100 256
fi

if [ "$PART" = wikitext ] || [ "$PART" = all ]; then
  [ -f "$WT/model/config.json" ] || bench/train_wikitext5m.sh "$S" "$WT"
  header "wikitext5m ($WT/eval.txt, held-out 10% of WikiText-2 test, windows of 256; calibration 128 x 256)"
  rows w "$WT/model" "$WT/train.txt" "$WT/eval.txt" 256 128 256
  # The half-depth student as a Hugging Face directory (what `slmc distill --student` takes).
  "$S" -q prune --model "$WT/model" --calib "$WT/train.txt" --samples 128 --seq-len 256 \
    --structured layers --sparsity 0.5 --save-hf "$out/w_student_half" > /dev/null
  "$S" -q eval --model "$out/w_student_half" --data "$WT/eval.txt" --ctx 256 --json > "$out/w_student_half.json"
  echo
  echo "half-depth student $out/w_student_half: $(get n_tokens "$out/w_student_half.json") tokens," \
       "ppl $(get ppl "$out/w_student_half.json") (slmc eval on the HF directory)"
fi

if [ "$PART" = 1b ] || [ "$PART" = all ]; then
  r="$out/r1b-f32.slm"
  [ -f "$r" ] || "$B/bench/slmc_random_model" --shape 1.1b --type f32 -o "$r" 2> /dev/null
  cat > "$out/r1b-pruned.yaml" <<EOF
version: 1
stages:
  - prune: {structured: heads, sparsity: 0.25, importance: weights}
  - prune: {structured: channels, sparsity: 0.25, importance: weights}
  - quantize: {method: rtn, format: q4_0, head_format: q4_0}
export: [{format: slm, path: $out/r1b-pruned-q4_0.slm}]
EOF
  t0=$(date +%s.%N)
  "$S" -q quantize --model "$r" --method rtn --format q4_0 --head-format q4_0 \
    -o "$out/r1b-dense-q4_0.slm" > /dev/null
  t1=$(date +%s.%N)
  "$S" -q run "$out/r1b-pruned.yaml" --model "$r" --json > "$out/r1b-pruned.json"
  t2=$(date +%s.%N)
  dense=$(stat -c %s "$out/r1b-dense-q4_0.slm")
  pruned=$(stat -c %s "$out/r1b-pruned-q4_0.slm")
  echo
  echo "### 1.1B Llama shape, random weights, q4_0 (heads and channels cut by 25%)"
  echo
  awk -v d="$dense" -v p="$pruned" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    printf "- .slm bytes: dense %d, pruned %d (%.1f%% smaller); dense quantize %.0f s, prune + quantize %.0f s\n",
           d, p, 100 * (1 - p / d), b - a, c - b }'
  # Decode alternated A B A B ... in one run (the host is shared: ratios are the figure).
  echo
  echo "| rep | dense decode tok/s | pruned decode tok/s | ratio |"
  echo "|---|---|---|---|"
  sd=0; sp=0
  for rep in 1 2 3 4; do
    "$S" --threads 2 -q bench --model "$out/r1b-dense-q4_0.slm" --prompt-len 16 --gen 32 --reps 3 --json > "$out/b_dense.json"
    "$S" --threads 2 -q bench --model "$out/r1b-pruned-q4_0.slm" --prompt-len 16 --gen 32 --reps 3 --json > "$out/b_pruned.json"
    a=$(get decode_tok_s "$out/b_dense.json"); b=$(get decode_tok_s "$out/b_pruned.json")
    awk -v r="$rep" -v a="$a" -v b="$b" 'BEGIN { printf "| %d | %.2f | %.2f | %.3f |\n", r, a, b, b / a }'
    sd=$(awk -v s="$sd" -v a="$a" 'BEGIN { print s + a }'); sp=$(awk -v s="$sp" -v b="$b" 'BEGIN { print s + b }')
  done
  awk -v a="$sd" -v b="$sp" 'BEGIN { printf "| mean | %.2f | %.2f | %.3f |\n", a / 4, b / 4, b / a }'
fi
