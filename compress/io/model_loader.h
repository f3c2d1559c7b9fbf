// Loading any checkpoint into ModelSpec + canonical tensors.
#pragma once

#include <string>

#include "compress/core/model_spec.h"
#include "compress/core/tensor.h"

namespace slmc {

struct LoadedModel {
  ModelSpec spec;
  TensorMap tensors;       // canonical names, fp32, HF rotate-half RoPE convention
  std::string path;        // what was loaded
  std::string format;      // "hf" | "llama2c"
  std::map<std::string, int64_t> bytes_by_dtype;  // on-disk bytes per storage dtype ("F32", ...)
};

// Detects the format from the path's contents: a directory with config.json (Hugging Face,
// model.safetensors or sharded via model.safetensors.index.json), or a llama2.c legacy `.bin`.
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
// model.safetensors (HF tensor names). The directory is created if needed.
void save_hf_model(const std::string& dir, const ModelSpec& spec, const TensorMap& tensors,
                   DType dtype = DType::kF32);

}  // namespace slmc
