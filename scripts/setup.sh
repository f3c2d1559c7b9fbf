#!/usr/bin/env bash
# Installs slmc's build, run and test dependencies from Debian 12's packages (idempotent).
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-openmp        # LibTorch; OpenBLAS instead of the reference BLAS (~18x)
  libeigen3-dev libhdf5-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libsentencepiece-dev                     # test oracle only (never linked beside LibTorch)
  libpcre2-dev                             # tokenizer.json split patterns (\p{L}, lookahead) and recipe selectors
  libutf8proc-dev                          # Unicode normalization (NFC/NFKC) for tokenizer.json
  libgloo-dev                              # c10d ProcessGroupGloo for data-parallel distillation
  clang-14 libclang-rt-14-dev libfuzzer-14-dev  # libFuzzer harnesses (tests/fuzz, -DSLMC_FUZZ=ON)
  python3-torch python3-numpy python3-h5py # PyTorch goldens for tests; the product needs no Python
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
