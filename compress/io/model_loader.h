// Loading any checkpoint into ModelSpec + canonical tensors.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "compress/core/model_spec.h"
#include "compress/core/tensor.h"

namespace slmc {

struct LoadedModel {
  ModelSpec spec;
  TensorMap tensors;   // canonical names, fp32, HF rotate-half RoPE convention
  std::string path;    // what was loaded
  std::string format;  // "hf" | "llama2c" | "slm"
  // On-disk bytes per storage dtype ("F32", ...; for .slm the codec format name, "q8_0", ...).
  std::map<std::string, int64_t> bytes_by_dtype;
};

// Detects the format from the path's contents: a directory with config.json (Hugging Face,
// model.safetensors or sharded via model.safetensors.index.json), an `.slm` file (by its magic;
// every tensor dequantized to fp32), or a llama2.c legacy `.bin`.
// Throws slmc::Error naming the file and the problem.
LoadedModel load_model(const std::string& path);

// Hugging Face directory.
LoadedModel load_hf_model(const std::string& dir);
// HF config.json text -> ModelSpec (model_type llama, mistral, qwen2). `origin` names the file.
ModelSpec parse_hf_config(const std::string& json_text, const std::string& origin);

// llama2.c legacy checkpoint: 7 int32 header then fp32 weights. Converts the interleaved (Meta)
// RoPE convention of wq/wk to the rotate-half convention the decoder uses.
LoadedModel load_llama2c(const std::string& path);

// Writes a Hugging Face-style directory: config.json (model_type from spec.family) and
// model.safetensors (HF tensor names), each written atomically. The directory is created if
// needed. Throws slmc::Error if the spec cannot be expressed as an HF config (family other than
// llama/mistral/qwen2, layers that differ, biases or windows the family does not have).
void save_hf_model(const std::string& dir, const ModelSpec& spec, const TensorMap& tensors,
                   DType dtype = DType::kF32);

// The config.json text save_hf_model writes (parse_hf_config of it gives back `spec`).
std::string hf_config_json(const ModelSpec& spec, DType dtype = DType::kF32);

// Reorders the rows of a q or k projection (n_head * head_dim, cols) from the interleaved (Meta,
// llama2.c) RoPE convention, pairs (2j, 2j+1) in each head, to the rotate-half (HF) convention,
// pairs (j, j + head_dim/2): dst row h*head_dim + t*head_dim/2 + j = src row h*head_dim + 2j + t.
// Same as `permute` in transformers' convert_llama_weights_to_hf.py. src and dst must not alias.
void rope_interleaved_to_half(const float* src, float* dst, int64_t n_head, int64_t head_dim,
                              int64_t cols);

}  // namespace slmc
