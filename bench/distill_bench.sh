#!/usr/bin/env bash
# Distillation acceptance benchmark (issue 15):
#   bench/distill_bench.sh [SLMC] [WORK_DIR] [PART...]
# PART: quality (default), offline, parallel, threads, or all.
#
# Teacher: the 5.2M-parameter byte-level WikiText-2 model of bench/train_wikitext5m.sh (6 layers,
# d_model 256), $TEACHER_DIR/model, trained on $TEACHER_DIR/train.txt; every perplexity here is on
# $TEACHER_DIR/eval.txt (never trained on), windows of 256. Student: 3 layers of the same width.
#   quality   (a) teacher layers 0,2,4 + KL, (b) random init + KL, (c) teacher layers + CE only,
#             (d) random init + CE only; the same token budget each (STEPS x BATCH x CTX)
#   offline   writes the top-k cache (K, f16) once, then (a) from the cache: perplexity, cache size,
#             time of the cache and of a run without the teacher
#   parallel  training tokens/s of one process (2 threads) beside --nproc 2 (1 thread each),
#             alternated A B A B
#   threads   tokens/s with OMP_WAIT_POLICY=PASSIVE and ACTIVE, as the machine is and with a
#             busy-loop competitor per core (also at nice 10), alternated
# Environment: STEPS (300), BATCH (16), TEMP (1), KL_CE (0: extra CE weight in the KD runs),
# TEACHER_DIR (/work/wt/wikitext5m, else build/wikitext5m), K (64), TPUT_STEPS (20).
# Results: WORK_DIR/results.tsv (one line per run) and a Markdown table on stdout.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
slmc="${1:-$here/../build/compress/cli/slmc}"
work="${2:-$here/../build/distill_bench}"
shift $(( $# > 2 ? 2 : $# )) || true
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(quality)
[[ " ${parts[*]} " == *" all "* ]] && parts=(quality offline parallel threads)

tdir="${TEACHER_DIR:-}"
if [[ -z "$tdir" ]]; then
  for c in /work/wt/wikitext5m "$here/../build/wikitext5m"; do [[ -f "$c/model/config.json" ]] && { tdir="$c"; break; }; done
fi
[[ -n "$tdir" && -f "$tdir/model/config.json" ]] || { echo "distill_bench.sh: no teacher; run bench/train_wikitext5m.sh first or set TEACHER_DIR" >&2; exit 2; }
teacher="$tdir/model"; train="$tdir/train.txt"; eval="$tdir/eval.txt"
steps="${STEPS:-300}"; batch="${BATCH:-16}"; ctx=256; temp="${TEMP:-1}"; kl_ce="${KL_CE:-0}"; k="${K:-64}"
tput_steps="${TPUT_STEPS:-20}"
mkdir -p "$work"
results="$work/results.tsv"
touch "$results"

cat > "$work/student3.yaml" <<EOF
# (b), (d): the student's shape, randomly initialised: 3 layers of the teacher's width.
family: llama
n_layer: 3
d_model: 256
n_head: 8
ffn_dim: 768
tied_embeddings: true
EOF

load() { awk '{print $1}' /proc/loadavg; }
common=(--data "$train" --val-data "$eval" --ctx "$ctx" --batch "$batch" --steps "$steps" --lr 1e-3
        --warmup 20 --eval-every 0 --checkpoint-every 0 --seed 1)

# run NAME ARGS...: one distillation run, its report's perplexity, tokens, wall time and load.
run() {
  local name="$1"; shift
  local out="$work/$name" t0 t1 l0 l1
  rm -rf "$out"
  l0=$(load); t0=$(date +%s.%N)
  nice -n 10 "$slmc" distill --teacher "$teacher" "${common[@]}" "$@" -o "$out" >"$work/$name.log" 2>&1 \
    || { echo "run $name failed:" >&2; tail -5 "$work/$name.log" >&2; exit 1; }
  t1=$(date +%s.%N); l1=$(load)
  python3 - "$out/distill_report.json" "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$l0" "$l1" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], "%.4f" % r["val_ppl"], str(r["tokens_seen"]), "%.0f" % float(sys.argv[3]),
                 "%.0f" % r["tokens_per_s"], sys.argv[4] + "/" + sys.argv[5], r["student"]]))
EOF
  tail -1 "$results" >&2
}

if [[ " ${parts[*]} " == *" quality "* ]]; then
  if ! grep -q "^teacher	" "$results"; then
    t0=$(date +%s.%N)
    ppl=$(nice -n 10 "$slmc" -q eval --model "$teacher" --data "$eval" --ctx "$ctx" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')
    printf "teacher\t%s\t-\t%.0f\t-\t%s\t%s\n" "$ppl" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$(load)" "6 layers, trained by bench/train_wikitext5m.sh" >>"$results"
  fi
  kd=(--kl 1 --ce "$kl_ce" --temperature "$temp")
  ce=(--kl 0 --ce 1)
  run a_teacher_init_kd --keep-layers every_other "${kd[@]}"
  run b_random_init_kd --student "$work/student3.yaml" "${kd[@]}"
  run c_teacher_init_ce --keep-layers every_other "${ce[@]}"
  run d_random_init_ce --student "$work/student3.yaml" "${ce[@]}"
fi

if [[ " ${parts[*]} " == *" offline "* ]]; then
  cache="$work/topk$k.h5"
  t0=$(date +%s.%N)
  nice -n 10 "$slmc" distill --teacher "$teacher" "${common[@]}" --temperature "$temp" --top-k "$k" \
    --write-cache "$cache" --json >"$work/cache.json" 2>"$work/cache.log"
  printf "cache_top%s\t-\t%s\t%.0f\t-\t%s\t%s bytes\n" "$k" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["positions"])' "$work/cache.json")" \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$(load)" "$(stat -c %s "$cache")" >>"$results"
  tail -1 "$results" >&2
  run a_offline_top$k --keep-layers every_other --kl 1 --ce "$kl_ce" --temperature "$temp" --teacher-cache "$cache"
fi

# tput NAME ENV GLOBAL_FLAGS [DISTILL_FLAGS]: tokens/s of a short run (TPUT_STEPS steps, no eval).
tput() {
  local name="$1" envs="$2" global="$3" extra="${4:-}"
  local out="$work/tput_$name"
  rm -rf "$out"
  # shellcheck disable=SC2086
  env $envs nice -n 10 "$slmc" $global distill --teacher "$teacher" --data "$train" --val-data "$eval" \
    --ctx "$ctx" --batch "$batch" --steps "$tput_steps" --eval-every 0 --checkpoint-every 0 --warmup 2 \
    --keep-layers every_other $extra -o "$out" --json 2>"$work/tput_$name.log" >"$out.json" \
    || { echo "throughput run $name failed" >&2; tail -3 "$work/tput_$name.log" >&2; exit 1; }
  printf "tput_%s\t-\t%s\t-\t%s\t%s\t%s\n" "$name" "$((tput_steps * batch * ctx))" \
    "$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["tokens_per_s"])' "$out.json")" \
    "$(load)" "$envs $global $extra" >>"$results"
  tail -1 "$results" >&2
}

if [[ " ${parts[*]} " == *" parallel "* ]]; then
  for rep in 1 2; do
    tput "1proc_r$rep" OMP_WAIT_POLICY=PASSIVE "--threads 2"
    tput "2proc_r$rep" OMP_WAIT_POLICY=PASSIVE "--threads 1" "--nproc 2"
  done
fi

if [[ " ${parts[*]} " == *" threads "* ]]; then
  # One busy loop per core, at the bench's own nice level: a machine as busy again as it is.
  busy() { for _ in $(seq "$(nproc)"); do nice -n 10 bash -c 'while :; do :; done' & done; }
  for rep in 1 2; do
    tput "passive_shared_r$rep" OMP_WAIT_POLICY=PASSIVE "--threads 2"
    tput "active_shared_r$rep" OMP_WAIT_POLICY=ACTIVE "--threads 2"
    busy; pids=$(jobs -p)
    tput "passive_busy_r$rep" OMP_WAIT_POLICY=PASSIVE "--threads 2"
    tput "active_busy_r$rep" OMP_WAIT_POLICY=ACTIVE "--threads 2"
    kill $pids 2>/dev/null || true; wait $pids 2>/dev/null || true
  done
fi

echo "| run | held-out ppl | tokens | wall s | train tok/s | load (start/end) | student |"
echo "|---|---|---|---|---|---|---|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$results"
python3 - "$results" <<'EOF'
import sys
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()}
def ppl(n):
    return float(rows[n][1]) if n in rows and rows[n][1] != "-" else None
t, a, b, c, d = (ppl(n) for n in ("teacher", "a_teacher_init_kd", "b_random_init_kd", "c_teacher_init_ce", "d_random_init_ce"))
if None not in (t, a, b, c, d):
    gap = (d - a) / (d - t)
    print("\n(a) lowest of the four: %s; (a) closes %.0f%% of the gap between (d) %.3f and the teacher %.3f (bar: 50%%)"
          % ("yes" if a < min(b, c, d) else "NO", 100 * gap, d, t))
for n in rows:
    if n.startswith("a_offline_top") and a is not None:
        print("offline %s: ppl %.4f vs online %.4f: %+.2f%% (bar: within 2%%)" % (n, ppl(n), a, 100 * (ppl(n) / a - 1)))
EOF
