#!/usr/bin/env bash
# Same-run speed race on the very same GGUF file: llama.cpp's llama-bench against `slmc bench`
# (the runtime reading the GGUF directly), alternated A B A B, at the 134M and 1.1B Llama shapes
# with random weights, Q4_0 and Q4_K, decode (64 tokens from an empty context, as llama-bench's
# tg) and prefill-128 (pp128), 1 and 2 threads. Prints both tools' best-of-rounds tok/s and the
# ratio slmc / llama.cpp. The machine may be shared: say what else ran when quoting it.
# Usage: bench/gguf_speed.sh [build-dir] [rounds (default 2)] [shapes (default "134m 1.1b")]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
ROUNDS=${2:-2}
SHAPES=${3:-"134m 1.1b"}
S="$B/compress/cli/slmc"
BIN=$(bash bench/llama_cpp.sh)
CACHE=${SLMC_CACHE:-$HOME/.cache/slmc}/gguf_speed
mkdir -p "$CACHE"
PY=/usr/bin/python3
# llama-bench's JSON: the mean tok/s of the one test it ran.
lb() { "$BIN/llama-bench" -m "$1" -t "$2" -r 3 "${@:3}" -o json 2> /dev/null |
       $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])'; }
# slmc bench: "decode prefill" tok/s of one run.
sb() { "$S" -q --threads "$2" bench --model "$1" --prompt-len 128 --gen 64 --reps 3 --json |
       $PY -c "import json,sys; j = json.load(sys.stdin); print(j['decode_tok_s'], j['prefill_tok_s'])"; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
printf '%-5s %-5s %-3s | %10s %10s %6s | %10s %10s %6s\n' shape type thr \
  dec_slmc dec_llama ratio pp128_slmc pp128_llama ratio
for shape in $SHAPES; do
  for type in q4_0 q4_k; do
    g="$CACHE/$shape-$type.gguf"
    if [ ! -s "$g" ]; then
      "$B/bench/slmc_random_model" --shape "$shape" --type "$type" -o "$CACHE/$shape-$type.slm"
      "$S" -q export --model "$CACHE/$shape-$type.slm" --format gguf -o "$g" > /dev/null
      rm -f "$CACHE/$shape-$type.slm"
    fi
    for thr in 1 2; do
      sd=(); ld=(); sp=(); lp=()
      for _ in $(seq "$ROUNDS"); do
        read -r a c <<< "$(sb "$g" "$thr")"
        sd+=("$a"); sp+=("$c")
        ld+=("$(lb "$g" "$thr" -p 0 -n 64)"); lp+=("$(lb "$g" "$thr" -p 128 -n 0)")
      done
      a=$(best "${sd[@]}"); b=$(best "${ld[@]}"); c=$(best "${sp[@]}"); d=$(best "${lp[@]}")
      awk -v s="$shape" -v t="$type" -v n="$thr" -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
        'BEGIN { printf "%-5s %-5s %-3s | %10.1f %10.1f %6.2f | %10.1f %10.1f %6.2f\n", s, t, n, a, b, a / b, c, d, c / d }'
    done
  done
done
