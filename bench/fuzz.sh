#!/usr/bin/env bash
# Long fuzzing runs (issue 18's acceptance: each harness >= 1 CPU-hour with no crash, sanitizer
# report, out-of-memory at 2 GB or timeout at 10 s).
#
#   bench/fuzz.sh [CPU_SECONDS_PER_HARNESS] [JOBS] [HARNESS...]     (defaults: 3600, 2, all)
#
# Builds the -DSLMC_FUZZ=ON tree in ./build-fuzz (clang-14) if needed, then runs each harness in
# chunks of wall time (tests/fuzz/run_fuzzers.sh, corpus kept between chunks) under `nice -n 19`
# until it has used CPU_SECONDS of CPU (user + system, measured by the shell's `time`, not wall
# time: on a shared machine the two differ). Prints a line per chunk and a final table: CPU
# seconds, executions, coverage (cov = edges, ft = features), corpus size, findings. Any finding
# stops that harness and is listed with its input under build-fuzz/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-3600}"
jobs="${2:-2}"
shift $(( $# < 2 ? $# : 2 ))
chunk="${SLMC_FUZZ_CHUNK:-900}"  # wall seconds per chunk

if [ ! -x build-fuzz/tests/fuzz/slmc_fuzz_seeds ]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DSLMC_FUZZ=ON >&2
fi
nice -n 19 cmake --build build-fuzz -j"$jobs" >&2

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for exe in build-fuzz/tests/fuzz/fuzz_*; do [ -x "$exe" ] && harnesses+=("$(basename "$exe")"); done
fi

results=build-fuzz/fuzz/bench
mkdir -p "$results"
long_one() {
  local name="$1" cpu=0 line status=ok
  : >"$results/$name.chunks"
  while [ "$cpu" -lt "$target" ]; do
    if ! line=$(nice -n 19 bash tests/fuzz/run_fuzzers.sh build-fuzz "$chunk" 1 "$name"); then
      status=FINDING
    fi
    echo "$line" >>"$results/$name.chunks"
    echo "$line" >&2
    cpu=$(( cpu + $(echo "$line" | awk '{print $3}') ))
    [ "$status" = ok ] || break
  done
  local last
  last=$(tail -1 "$results/$name.chunks")
  local execs
  execs=$(awk '{s += $5} END {print s}' "$results/$name.chunks")
  printf '%-28s cpu_s %7d  execs %11d  %s  %s\n' "$name" "$cpu" "$execs" \
    "$(echo "$last" | awk '{print "cov", $7, " ft", $9, " corpus", $11, " artifacts", $13}')" "$status" \
    >"$results/$name.summary"
}
export -f long_one
export target chunk results

printf '%s\n' "${harnesses[@]}" | xargs -P "$jobs" -I{} bash -c 'long_one "$@"' _ {} || true
echo "== fuzz bench: ${target} CPU-s per harness target, chunks of ${chunk} s wall, $(nproc) cores ==" 
cat "$results"/*.summary
! grep -q FINDING "$results"/*.summary
