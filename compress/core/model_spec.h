// ModelSpec: everything about a decoder-only transformer's architecture, per layer, with nothing
// about its weights. Family-specific knowledge lives here and in the canonical tensor table
// (tensor_names.h), so loaders, passes, exporters and the runtime all read it from one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slmc {

enum class Family { kLlama, kMistral, kQwen2, kPhi3, kGemma3, kOpenELM, kMixtral };

// Persisted names (HF `model_type` spelling) never change.
const char* family_name(Family f);
bool family_from_name(const std::string& name, Family* out);

enum class Activation { kSilu, kGeluTanh };  // gated: act(gate(x)) * up(x)
const char* activation_name(Activation a);
bool activation_from_name(const std::string& name, Activation* out);

struct RopeScaling {
  std::string type = "none";  // "none" | "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct LayerSpec {
  int64_t n_head = 0;
  int64_t n_kv_head = 0;     // GQA: n_head % n_kv_head == 0
  int64_t head_dim = 0;      // q/k/v per-head width (may differ from d_model / n_head)
  int64_t ffn_dim = 0;       // gated MLP hidden width
  bool attn_qkv_bias = false;  // qwen2: biases on q, k, v
  bool attn_out_bias = false;
  bool mlp_bias = false;
  int64_t window = 0;        // sliding-window attention span in tokens; 0 = full causal
  double rope_theta = 10000.0;
};

struct ModelSpec {
  Family family = Family::kLlama;
  int64_t vocab = 0;
  int64_t d_model = 0;
  int64_t max_seq = 2048;        // context the model was trained for
  double norm_eps = 1e-5;        // RMSNorm epsilon
  bool tied_embeddings = false;  // output head shares token_embd
  Activation act = Activation::kSilu;
  RopeScaling rope_scaling;
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  std::vector<LayerSpec> layers;

  int64_t n_layer() const { return static_cast<int64_t>(layers.size()); }

  // Throws slmc::Error naming the first inconsistent field and its value.
  void validate() const;

  // Parameter count of the weights this spec implies (tied head counted once).
  int64_t n_params() const;

  // Stable JSON form (stored in .slm files and printed by `inspect --json`).
  std::string to_json() const;
  static ModelSpec from_json(const std::string& json, const std::string& origin);
};

// A uniform spec (every layer alike): the shape the trainer and tests build.
ModelSpec make_uniform_spec(Family family, int64_t vocab, int64_t d_model, int64_t n_layer,
                            int64_t n_head, int64_t n_kv_head, int64_t ffn_dim, int64_t max_seq,
                            double rope_theta = 10000.0);

}  // namespace slmc
