#!/usr/bin/env bash
# Quantization accuracy at equal size (issue "Quantization that beats round-to-nearest"), measured
# with the runtime against the unquantized model, on two models:
#   - stories260K (../shared/data), calibrated on 200 stories it generates itself (temperature 1,
#     seeds 100..300; the only TinyStories text we have is the 1882-token evaluation sample, and the
#     grammar of `slmc data synth` is too narrow: GPTQ overfits it), evaluated on the TinyStories
#     sample;
#   - the 5.2M-parameter byte-level model bench/train_wikitext5m.sh trains on the first 90% of
#     WikiText-2 (test split), calibrated on that 90%, evaluated on the last 10%.
# Usage: bench/quant_bench.sh [build-dir] [wikitext-model-dir] [stories|wikitext|cost|all]
# (trains the wikitext model if missing). `cost`: GPTQ's wall time and peak RSS at the 134M Llama
# shape (random weights, 128 x 256 calibration tokens, 2 threads) beside plain RTN.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
WT=${2:-$B/wikitext5m}
PART=${3:-all}
S="$B/compress/cli/slmc"
[ -x "$S" ] || bash scripts/build.sh
D=../shared/data
out="$B/quant_bench"
mkdir -p "$out"
[ "$PART" = stories ] || [ -f "$WT/model/config.json" ] || bench/train_wikitext5m.sh "$S" "$WT"

get() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" "$2" | head -1; }

# bench NAME MODEL CALIB EVAL EVAL_CTX SAMPLES SEQ ARGS...
bench() {
  local name=$1 model=$2 calib=$3 eval=$4 ctx=$5 samples=$6 seq=$7
  shift 7
  "$S" -q quantize --model "$model" --calib "$calib" --samples "$samples" --seq-len "$seq" \
    --eval "$eval" --eval-ctx "$ctx" --json -o "$out/$name.slm" "$@" > "$out/$name.json"
  printf '| %-22s | %10s | %6.3f | %8.4f | %9.6f | %6.2f%% | %8.4f | %6.1f |\n' "$name" \
    "$(get table_bytes "$out/$name.json")" "$(get table_bpw "$out/$name.json")" \
    "$(get table_ppl "$out/$name.json")" "$(get table_kl "$out/$name.json")" \
    "$(awk -v t="$(get table_top1 "$out/$name.json")" 'BEGIN{print 100*t}')" \
    "$(get table_ppl_torch "$out/$name.json")" "$(get seconds_total "$out/$name.json")"
}

header() {
  echo
  echo "### $1"
  echo
  echo "| run                    | bytes      | bpw    | ppl (rt) | KL        | top-1   | ppl (torch) | s |"
  echo "|---|---|---|---|---|---|---|---|"
}

# stories260K: ffn_down has 172 columns, which no block format holds: it stays f32 in every row.
M1=$D/models/stories260K/stories260K.bin
E1=$D/text/tinystories_sample.txt
if [ "$PART" = stories ] || [ "$PART" = all ]; then
"$S" -q export --model "$M1" --format slm --type f32 -o "$out/stories260K-f32.slm" > /dev/null
# selfgen FILE FIRST_SEED LAST_SEED: one 255-token story per seed (temperature 1), unless FILE exists.
selfgen() {
  [ -s "$1" ] && return
  for seed in $(seq "$2" "$3"); do
    "$S" -q --threads 1 generate --model "$out/stories260K-f32.slm" -n 255 --temperature 1.0 --seed "$seed"
    echo
  done > "$1.tmp" 2> /dev/null
  mv "$1.tmp" "$1"
}
selfgen "$out/selfgen.txt" 100 300
C="$M1 $out/selfgen.txt $E1 512 100 256"
header "stories260K ($(basename "$E1"), ffn_down kept f32 in every row, head = tied embedding)"
bench s_f16_ref       $C --format f16 --ignore ffn_down
bench s_q8_0_rtn      $C --method rtn --bits 8 --ignore ffn_down
bench s_q8_0_gptq     $C --method gptq --bits 8 --ignore ffn_down
bench s_q8_0pc_rtn    $C --method rtn --bits 8 --per-channel true --ignore ffn_down
bench s_q4_0_rtn      $C --method rtn --format q4_0 --head-format q4_0 --ignore ffn_down
bench s_q4_0_gptq     $C --method gptq --format q4_0 --head-format q4_0 --ignore ffn_down
bench s_q4_0_gptq_plain $C --method gptq --format q4_0 --head-format q4_0 --ignore ffn_down --asym-calib 0
bench s_q4_0_awq      $C --method awq --format q4_0 --head-format q4_0 --ignore ffn_down
bench s_q4_g64_gptq   $C --method gptq --format q4_g64 --head-format q4_g64 --ignore ffn_down
bench s_q4_0h8_gptq   $C --method gptq --bits 4 --ignore ffn_down
bench s_mix4.5_gptq   $C --method gptq --target-bpw 4.5 --ignore ffn_down
bench s_mix4.5_rtn    $C --method rtn --target-bpw 4.5 --ignore ffn_down

# The TinyStories sample is 1882 tokens: one top-1 flip is 0.053%, and the KL of one run moves by
# ~5% with the calibration set. The same runs evaluated on 60 held-out stories the model generates
# itself (seeds 1000..1059, disjoint from the calibration seeds; model-made text, so easier than
# real text) measure the methods with 8x the tokens.
selfgen "$out/selfgen_eval.txt" 1000 1059
C="$M1 $out/selfgen.txt $out/selfgen_eval.txt 512 100 256"
header "stories260K (60 held-out self-generated stories, ffn_down kept f32 in every row)"
bench sg_q8_0_rtn     $C --method rtn --bits 8 --ignore ffn_down
bench sg_q8_0_gptq    $C --method gptq --bits 8 --ignore ffn_down
bench sg_q4_0_rtn     $C --method rtn --format q4_0 --head-format q4_0 --ignore ffn_down
bench sg_q4_0_gptq    $C --method gptq --format q4_0 --head-format q4_0 --ignore ffn_down
bench sg_q4_0_gptq_plain $C --method gptq --format q4_0 --head-format q4_0 --ignore ffn_down --asym-calib 0
bench sg_q4_0_awq     $C --method awq --format q4_0 --head-format q4_0 --ignore ffn_down
bench sg_q4_g64_gptq  $C --method gptq --format q4_g64 --head-format q4_g64 --ignore ffn_down
bench sg_mix4.5_gptq  $C --method gptq --target-bpw 4.5 --ignore ffn_down
fi
[ "$PART" = stories ] && exit 0

if [ "$PART" = cost ] || [ "$PART" = all ]; then
  echo
  echo "### GPTQ cost, 134M Llama shape (random weights), 128 x 256 calibration tokens, 2 threads"
  echo
  r134="$out/r134-f32.slm"
  [ -f "$r134" ] || "$B/bench/slmc_random_model" --shape 134m --type f32 -o "$r134" 2> /dev/null
  for m in rtn gptq; do
    "$S" -q --threads 2 quantize --model "$r134" --tokenizer "$WT/model/tokenizer.json" \
      --calib "$WT/train.txt" --samples 128 --seq-len 256 --method "$m" --bits 4 --json \
      -o "$out/r134-$m.slm" > "$out/r134-$m.json"
    awk -v m="$m" -v s="$(get seconds_total "$out/r134-$m.json")" \
        -v r="$(get max_rss_bytes "$out/r134-$m.json")" \
        'BEGIN { printf "- %s: %.1f s wall, peak RSS %.2f GB", m, s, r / 1e9 }'
    grep -o '"time: [^"]*"' "$out/r134-$m.json" | sed 's/^"/ (/; s/"$/)/' || true
    echo
  done
fi
[ "$PART" = cost ] && exit 0

M2=$WT/model
C="$M2 $WT/train.txt $WT/eval.txt 256 128 256"
header "wikitext5m ($(basename "$WT")/eval.txt, last 10% of WikiText-2 test, byte-level)"
bench w_q8_0_rtn      $C --method rtn --bits 8
bench w_q8_0_gptq     $C --method gptq --bits 8
bench w_q8_0pc_rtn    $C --method rtn --bits 8 --per-channel true
bench w_q4_0_rtn      $C --method rtn --format q4_0 --head-format q4_0
bench w_q4_0_gptq     $C --method gptq --format q4_0 --head-format q4_0
bench w_q4_0_gptq_plain $C --method gptq --format q4_0 --head-format q4_0 --asym-calib 0
bench w_q4_0_awq      $C --method awq --format q4_0 --head-format q4_0
bench w_q4_g64_rtn    $C --method rtn --format q4_g64 --head-format q4_g64
bench w_q4_g64s_rtn   $C --method rtn --format q4_g64 --head-format q4_g64 --symmetric true
bench w_q4_g64_gptq   $C --method gptq --format q4_g64 --head-format q4_g64
bench w_q4_0h8_gptq   $C --method gptq --bits 4
bench w_mix4.5_gptq   $C --method gptq --target-bpw 4.5
bench w_mix4.5_rtn    $C --method rtn --target-bpw 4.5
