#!/usr/bin/env bash
# Runs the libFuzzer harnesses of a -DSLMC_FUZZ=ON build (tests/fuzz/README.md).
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS [JOBS] [HARNESS...]
#
# For each harness (default: every fuzz_* executable in BUILD_DIR/tests/fuzz): first every file
# of tests/fuzz/regressions/<harness>/ is run once (past findings must stay fixed), then the
# fuzzer runs for SECONDS of wall time on its corpus, BUILD_DIR/fuzz/corpus/<harness> (seeded
# by slmc_fuzz_seeds and the regressions; it grows across runs), with its dictionary
# tests/fuzz/dict/<harness>.dict when there is one. JOBS harnesses run at a time (default 2).
# Limits: 2048 MB RSS, 10 s per input; a crash, sanitizer report, leak, out-of-memory or timeout
# fails the run and the input is kept in BUILD_DIR/fuzz/artifacts/<harness>/.
# Prints one line per harness: CPU seconds, executions, coverage (cov, ft), corpus size, result.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:?usage: run_fuzzers.sh BUILD_DIR SECONDS [JOBS] [HARNESS...]}" && pwd)"
seconds="${2:?seconds per harness}"
jobs="${3:-2}"
shift $(( $# < 3 ? $# : 3 ))
work="$build/fuzz"
mkdir -p "$work/corpus" "$work/artifacts" "$work/logs"

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for exe in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$exe" ] && harnesses+=("$(basename "$exe")")
  done
fi
[ ${#harnesses[@]} -gt 0 ] || { echo "run_fuzzers: no fuzz_* harness in $build/tests/fuzz" >&2; exit 1; }

# Seeds: regenerated every run (cheap; one directory per run, so runs may overlap), added to the
# corpora that persist between runs.
seeds="$work/seeds.$$"
rm -rf "$seeds"
trap 'rm -rf "$seeds"' EXIT
"$build/tests/fuzz/slmc_fuzz_seeds" "$seeds" "$here/../../../shared/data" >&2

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=0:handle_abort=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
export HDF5_USE_FILE_LOCKING=FALSE

run_one() {
  local name="$1" exe="$build/tests/fuzz/$1"
  local corpus="$work/corpus/$name" art="$work/artifacts/$name" log="$work/logs/$name.log"
  mkdir -p "$corpus" "$art"
  [ -d "$seeds/${name#fuzz_}" ] && cp -n "$seeds/${name#fuzz_}"/* "$corpus"/ 2>/dev/null || true
  local opts=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "-artifact_prefix=$art/")
  [ -f "$here/dict/$name.dict" ] && opts+=("-dict=$here/dict/$name.dict")
  local asan="$ASAN_OPTIONS" lib="" replay_opts=()
  case "$name" in
    fuzz_h5_tokens)
      # libhdf5 asks malloc for sizes it reads from the file (2.8 PB from one corrupt header) and
      # handles a NULL return: allocations over 2 GB fail (return NULL) as they would under a 2 GB
      # limit, and only memory really used counts (-rss_limit_mb still holds).
      opts+=(-malloc_limit_mb=2147483647)
      asan="$asan:allocator_may_return_null=1:max_allocation_size_mb=2048"
      # Debian's libhdf5 1.10.8 has memory errors of its own on malformed files (README): the
      # fuzzer keeps going after a crash (-fork), and every crash is replayed and counted as the
      # library's when its first frame outside the sanitizer and libFuzzer runtime is in libhdf5.
      replay_opts=("${opts[@]}")
      opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=0)
      lib=libhdf5 ;;
  esac
  local ASAN_OPTIONS="$asan"
  export ASAN_OPTIONS
  local status=ok
  : >"$log"
  if [ -d "$here/regressions/$name" ] && [ -n "$(ls -A "$here/regressions/$name")" ]; then
    "$exe" "${opts[@]}" "$here/regressions/$name"/* >>"$log" 2>&1 || status="REGRESSION"
    cp -n "$here/regressions/$name"/* "$corpus"/ 2>/dev/null || true
  fi
  local cpu
  if [ "$status" = ok ]; then
    TIMEFORMAT='%U %S'
    cpu=$( { time "$exe" "${opts[@]}" -max_total_time="$seconds" "$corpus" >>"$log" 2>&1; } 2>&1 ) \
      || status="FAILED"
    # `time` prints "user sys" on success; on failure its output follows the error status.
    cpu=$(echo "$cpu" | tail -1 | awk '{printf "%.0f", $1 + $2}')
  else
    cpu=0
  fi
  local stats
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  local execs cov ft corp
  execs=$(echo "$stats" | sed -n 's/^#\([0-9]*\).*/\1/p')
  cov=$(echo "$stats" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$stats" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(ls "$corpus" | wc -l)
  if [ -n "$lib" ]; then
    mkdir -p "$art/$lib"
    local a frame
    # In fork mode libFuzzer exits non-zero when a child crashed, even with -ignore_crashes: when
    # it left crash inputs, they decide (each replayed below); with none, the failure stands.
    if [ "$status" = FAILED ] && [ -n "$(find "$art" -maxdepth 1 -type f)" ]; then status=ok; fi
    for a in $(find "$art" -maxdepth 1 -type f); do
      frame=$("$exe" "${replay_opts[@]}" "$a" 2>&1 | grep -E '^ +#[0-9]+ 0x' |
              grep -v -E ' in (__interceptor_|__asan|__sanitizer|__ubsan|__lsan|fuzzer::|malloc|calloc|realloc|free|operator new|operator delete)|/libc\.so|\(/.*/fuzz_[a-z0-9_]+\+0x' |
              head -1 || true)
      if echo "$frame" | grep -q "$lib"; then
        mv "$a" "$art/$lib/"
      else
        status="FAILED"
      fi
    done
  fi
  local found libfound=0
  found=$(find "$art" -maxdepth 1 -type f | wc -l)
  [ -n "$lib" ] && libfound=$(find "$art/$lib" -type f | wc -l)
  [ "$found" -gt 0 ] && [ "$status" = ok ] && status="FAILED"
  printf '%-28s cpu_s %6s  execs %10s  cov %6s  ft %7s  corpus %6s  artifacts %3s  %s%s\n' \
    "$name" "${cpu:-0}" "${execs:-0}" "${cov:-?}" "${ft:-?}" "$corp" "$found" "$status" \
    "$([ "$libfound" -gt 0 ] && echo "  ($libfound inside $lib, kept in $art/$lib)")"
  if [ "$status" != ok ]; then
    echo "  log: $log" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|uncaught exception|deadly signal' "$log" | head -20 >&2 || true
    return 1
  fi
}
export -f run_one
export build work here seeds seconds

failed=0
printf '%s\n' "${harnesses[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} || failed=1
if [ "$failed" -ne 0 ]; then
  echo "run_fuzzers: a harness failed; inputs are in $work/artifacts (add each, minimized with" \
       "-minimize_crash=1, to tests/fuzz/regressions/<harness>/ once fixed)" >&2
  exit 1
fi
