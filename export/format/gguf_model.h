// A decoder model in GGUF terms: which llama.cpp architecture a ModelSpec is, its metadata keys,
// its tensors (names, fused and stacked tensors, RoPE row order) and its tokenizer, in both
// directions. One table of what llama.cpp expects (src/llama-arch.cpp, src/models/*.cpp,
// convert_hf_to_gguf.py of node-llama-cpp 3.22.1's release), shared by the exporter
// (export/gguf_export.h), the loader (compress/io) and the runtime. Torch-free.
//
// Architectures: llama (llama, mistral, mixtral with experts; uniform layers), deci (llama-style
// layers whose head counts or FFN widths differ: structurally pruned models), qwen2, phi3, gemma3,
// openelm (per-layer head counts and FFN widths natively). llama and deci use llama.cpp's
// interleaved RoPE (LLAMA_ROPE_TYPE_NORM), so q/k rows are permuted on the way out and back
// (slmc holds HF's rotate-half order); the others rotate halves as HF does.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/gguf.h"

namespace slmc::format {

struct GgufArch {
  std::string name;               // general.architecture
  bool rope_interleaved = false;  // llama.cpp rotates pairs (2j, 2j+1): q/k rows permuted
};

// The llama.cpp architecture for `spec`; throws slmc::Error naming the feature llama.cpp cannot
// run (a per-layer head_dim, a softmax scale llama.cpp fixes otherwise, sliding windows where the
// architecture has none, ...), so an export fails before writing anything.
GgufArch gguf_arch_for(const ModelSpec& spec);

// One GGUF tensor: the rows of the canonical tensors `parts`, concatenated in order (a fused
// q/k/v or gate/up, a stack of experts). Every row of every format is self-contained, so the
// same rule moves quantized bytes and fp32 values alike.
struct GgufTensorPlan {
  std::string name;                // GGUF name ("blk.0.attn_qkv.weight")
  std::vector<std::string> parts;  // canonical names
  std::vector<int64_t> part_rows;  // rows of each part
  int64_t cols = 0;                // row width (ne[0])
  std::vector<int64_t> shape;      // row-major GGUF shape (3-D for expert stacks)
  // > 0: the rows are heads of `rope_head_dim` in rotate-half order, stored interleaved.
  int64_t rope_head_dim = 0;
  bool matrix = false;  // a 2-D weight the export's --type applies to (not norms, biases, router)
};
std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelSpec& spec, const GgufArch& arch);

// Source row (in the canonical rotate-half order) of stored row `r` of a q/k projection whose
// heads are `head_dim` rows: the llama arch's permute() of convert_hf_to_gguf.py.
int64_t gguf_rope_source_row(int64_t r, int64_t head_dim);

// Extra fp32 tensors llama.cpp needs that slmc computes (llama3 RoPE: rope_freqs.weight).
struct GgufExtraTensor {
  std::string name;
  std::vector<float> data;
};
std::vector<GgufExtraTensor> gguf_extra_tensors(const ModelSpec& spec, const GgufArch& arch);

// Where each canonical tensor of `spec` lives in GGUF file `f`: rows [row0, row0 + rows) of
// `tensor` (rows of `cols` values in `format`), RoPE-permuted when rope_head_dim > 0.
struct GgufSource {
  const GgufTensor* tensor = nullptr;
  codec::Format format = codec::Format::kF32;
  int64_t row0 = 0, rows = 0, cols = 0;
  int64_t rope_head_dim = 0;
  std::vector<int64_t> shape;  // the canonical shape
};
// Checks that the file holds exactly the tensors `spec` implies (plus rope_freqs.weight) with
// their shapes; throws naming the file and tensor otherwise.
std::map<std::string, GgufSource> gguf_sources(const GgufFile& f, const ModelSpec& spec);
// Copies the source's rows, in slmc's canonical order, to `dst` (rows * row_bytes bytes).
void gguf_read_rows(const GgufFile& f, const GgufSource& s, uint8_t* dst);
// The architecture named by the file's general.architecture.
GgufArch gguf_file_arch(const GgufFile& f);

// The model's metadata (general.* and <arch>.*).
void add_gguf_model_kv(const ModelSpec& spec, const GgufArch& arch, GgufWriter& w);
// The ModelSpec a GGUF file describes (its architecture's keys, tensor shapes for what keys do
// not say: vocab, tied head, biases). Throws naming the file and key for what slmc cannot run.
ModelSpec gguf_model_spec(const GgufFile& f);

// The tokenizer as tokenizer.ggml.* keys for a model of `vocab` ids: SentencePiece and llama2.c
// vocabularies as "llama" (pieces, scores, types), slmc's byte tokenizer as "gpt2" over GPT-2's
// byte alphabet with no merges (one token per byte, as slmc encodes), Hugging Face tokenizer.json
// files as convert_hf_to_gguf.py writes them: byte-level BPE as "gpt2" (merges, token types, the
// tokenizer.ggml.pre llama.cpp implements for the file's pre-tokenizer regex: llama-bpe, qwen2,
// gpt-2), SentencePiece-style BPE with byte fallback as "llama" (scores from merge ranks). A
// tokenizer.json is checked first: the vocabulary read back must encode probe texts and every
// added token as the file does; otherwise (or for a regex llama.cpp has no pre-tokenizer for)
// this throws naming the file. A vocabulary smaller than the embedding is padded with unused
// "[PAD<i>]" tokens (as convert_hf_to_gguf.py does); a larger one is an error.
void add_gguf_tokenizer_kv(const Tokenizer& tok, int64_t vocab, GgufWriter& w);
// The tokenizer a GGUF file carries: slmc's byte tokenizer, SentencePiece BPE rebuilt from a
// "llama" vocabulary, or a Hugging Face tokenizer (kind "hf") rebuilt from a "gpt2" vocabulary
// whose tokenizer.ggml.pre slmc implements (the ids equal those of the tokenizer.json it came
// from); throws naming the file and key for vocabularies slmc cannot encode with.
std::unique_ptr<Tokenizer> gguf_tokenizer(const GgufFile& f);

}  // namespace slmc::format
