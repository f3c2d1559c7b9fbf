#!/usr/bin/env bash
# The whole test suite: install, build, run every ctest test (GoogleTest, the SentencePiece oracle,
# PyTorch goldens, CLI end-to-end), then the sanitizer job: the deployable part (core, tokenizer,
# codec, .slm format, runtime) built without LibTorch under ASan + UBSan, and its tests; then the
# fuzz job: every libFuzzer harness of tests/fuzz for SLMC_FUZZ_SECONDS (default 10) each.
# Reads ../shared/data when present (CI has it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# ctest runs two tests at a time, each with two OpenMP threads: spinning idle threads would steal
# the cores from the other test (LibTorch calls ran 10-20x slower), so they sleep instead.
export OMP_WAIT_POLICY=PASSIVE
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"

echo "== sanitizer job (ASan + UBSan, -DSLMC_WITH_TORCH=OFF) ==" >&2
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSLMC_WITH_TORCH=OFF \
  -DSLMC_SANITIZE=ON >&2
cmake --build build-asan -j"$(nproc)" >&2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" "$@"

echo "== fuzz job (libFuzzer + ASan + UBSan on the torch-free parsers, tests/fuzz) ==" >&2
# Each harness for a short fixed budget, two at a time; a finding fails CI and its input is kept
# in build-fuzz/fuzz/artifacts/. bench/fuzz.sh runs the same harnesses for hours.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DSLMC_FUZZ=ON >&2
cmake --build build-fuzz -j"$(nproc)" >&2
bash tests/fuzz/run_fuzzers.sh build-fuzz "${SLMC_FUZZ_SECONDS:-10}" "$(nproc)"
