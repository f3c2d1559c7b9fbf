// ModelSpec: everything about a decoder-only transformer's architecture, per layer, with nothing
// about its weights. Family-specific knowledge lives here and in the canonical tensor table
// (tensor_names.h), so loaders, passes, exporters and the runtime all read it from one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slmc {

// What a model file may declare, checked by ModelSpec::validate() and by every reader before it
// allocates anything from a count or a size in the file (compress/io/README.md lists them).
// Real checkpoints are far inside them (Gemma 3's 262,144-token vocab, Llama 3.1 405B's 126
// layers and 53,248-wide MLP, DeepSeek-V3's 256 experts).
struct SpecLimits {
  static constexpr int64_t kMaxLayers = 4096;
  static constexpr int64_t kMaxVocab = int64_t{1} << 24;
  // d_model, head_dim, ffn_dim, n_head x head_dim, n_kv_head x head_dim.
  static constexpr int64_t kMaxDim = int64_t{1} << 20;
  static constexpr int64_t kMaxExperts = 4096;        // per layer
  static constexpr int64_t kMaxSeq = int64_t{1} << 30;  // max_seq, original_max_position
  static constexpr int64_t kMaxTensors = int64_t{1} << 20;  // min_tensor_count()
  static constexpr double kMaxParams = 1e15;           // n_params(), so it cannot overflow
};

enum class Family { kLlama, kMistral, kQwen2, kPhi3, kGemma3, kOpenELM, kMixtral };

// Persisted names (HF `model_type` spelling) never change.
const char* family_name(Family f);
bool family_from_name(const std::string& name, Family* out);

enum class Activation { kSilu, kGeluTanh };  // gated: act(gate(x)) * up(x)
const char* activation_name(Activation a);
bool activation_from_name(const std::string& name, Activation* out);

struct RopeScaling {
  std::string type = "none";  // "none" | "linear" (inv_freq / factor) | "llama3"
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
  bool rope_scaled = true;   // ModelSpec::rope_scaling applies (gemma3 local layers: false)
  // RMSNorm over head_dim on every query and key head after the projection, before RoPE
  // (gemma3, openelm); weights attn_q_norm / attn_k_norm of shape (head_dim).
  bool qk_norm = false;
  // RMSNorm on the attention output and on the MLP output before each residual add (gemma3:
  // post_attention_norm, post_ffw_norm).
  bool post_norms = false;
  double attn_scale = 0;     // softmax scale of q.k; 0 = 1/sqrt(head_dim) (gemma3: query_pre_attn_scalar^-0.5)
  // Mixture of experts (mixtral): n_expert experts of width ffn_dim, a router
  // (ffn_gate_inp: n_expert x d_model), the top n_expert_used per token with softmax weights
  // renormalised over the chosen ones. 0 = a dense MLP.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;

  bool is_moe() const { return n_expert > 0; }
  double softmax_scale() const;  // attn_scale, or 1/sqrt(head_dim)
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
  // Token embeddings are multiplied by this (as fp32) before the first layer (gemma3: sqrt(d_model)).
  // The tied head uses the unscaled table.
  double embed_scale = 1.0;
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  std::vector<LayerSpec> layers;

  int64_t n_layer() const { return static_cast<int64_t>(layers.size()); }

  // Throws slmc::Error naming the first inconsistent field and its value. Also enforces
  // SpecLimits, so a validated spec is safe to build tables from (expected_tensors, hf rules).
  void validate() const;

  // A lower bound on the number of weight tensors of this spec in any layout, fused or not: the
  // embedding and final norm, and per layer two norms, the attention input (q/k/v, maybe fused)
  // and output, and per expert (or the one dense MLP) gate/up (maybe fused) and down. Readers
  // compare it with the tensors a file can hold before building a table from the spec. Never
  // overflows for a spec within SpecLimits' layer and expert counts.
  int64_t min_tensor_count() const;

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
