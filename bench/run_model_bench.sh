#!/usr/bin/env bash
# Decode and prefill speed of the runtime at real Llama shapes with random weights, beside the
# memory roofline measured in the same run, for comparison with llama.cpp's llama-bench numbers
# (issue "Reference CPU runtime"). Usage: bench/run_model_bench.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
[ -x "$B/compress/cli/slmc" ] || bash scripts/build.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# llama.cpp reference (llama-bench, this machine, random weights, pure types): decode / prefill-128 tok/s
declare -A REF=([134m,q4_0,2]="468 1838" [134m,q8_0,2]="225 1902" [134m,q4_0,1]="233 1115"
                [1.1b,q4_0,2]="41.4 187" [1.1b,q4_0,1]="23.7 104")
# Prefill twice: with the default precise activations (two int8 planes per block, matching
# LibTorch) and with SLMC_ACTS=int8 (one plane, llama.cpp's own q8 activation precision).
printf '%-6s %-5s %-3s | %9s %9s %6s | %9s %9s %6s | %9s %6s | %7s %7s\n' shape type thr decode llama.cpp ratio \
  prefill llama.cpp ratio pre_int8 ratio dec_GB/s roof_GB/s
for cfg in "134m q4_0 2" "134m q8_0 2" "134m q4_0 1" "1.1b q4_0 2" "1.1b q4_0 1"; do
  read -r shape type thr <<<"$cfg"
  f="$tmp/$shape-$type.slm"
  [ -f "$f" ] || "$B/bench/slmc_random_model" --shape "$shape" --type "$type" -o "$f"
  gen=64; [ "$shape" = "1.1b" ] && gen=32
  j=$("$B/compress/cli/slmc" --threads "$thr" -q bench --model "$f" --prompt-len 128 --gen "$gen" --reps 3 --json)
  get() { echo "$j" | sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }
  p8=$(SLMC_ACTS=int8 "$B/compress/cli/slmc" --threads "$thr" -q bench --model "$f" --prompt-len 128 \
       --gen 1 --reps 3 --json | sed -n 's/.*"prefill_tok_s": \([0-9.e+-]*\).*/\1/p')
  read -r rdec rpre <<<"${REF[$shape,$type,$thr]}"
  awk -v s="$shape" -v t="$type" -v n="$thr" -v d="$(get decode_tok_s)" -v rd="$rdec" \
      -v p="$(get prefill_tok_s)" -v rp="$rpre" -v p8="$p8" -v g="$(get decode_gb_s)" -v r="$(get roofline_gb_s)" \
      'BEGIN { printf "%-6s %-5s %-3s | %9.1f %9s %6.2f | %9.1f %9s %6.2f | %9.1f %6.2f | %7.1f %7.1f\n", s, t, n, d, rd, d / rd, p, rp, p / rp, p8, p8 / rp, g, r }'
done
