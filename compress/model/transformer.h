// The LibTorch decoder built from a ModelSpec: RMSNorm, RoPE (rotate-half convention, linear and
// llama3 scaling, per-layer base), GQA attention with optional sliding window, q/k norms and
// post-sublayer norms (gemma3, openelm), gated MLP or a top-k mixture of experts (mixtral), fp32,
// batched, KV cache.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"
#include "compress/core/tensor.h"

namespace slmc {

// Per-layer key/value cache for generation. k[i], v[i]: (batch, n_kv_head, capacity, head_dim).
struct KVCache {
  std::vector<torch::Tensor> k, v;
  int64_t len = 0;       // positions filled
  int64_t capacity = 0;
};

// Called for every linear layer with its canonical weight name ("blk.0.attn_q.weight"), the input
// (..., in_features) and the output (..., out_features). Calibration passes record from it. An
// expert's linears see only the tokens routed to it (and are not called when none is).
using LinearHook = std::function<void(const std::string& weight_name, const torch::Tensor& input,
                                      const torch::Tensor& output)>;

class Transformer {
 public:
  // Copies `tensors` (canonical names; check_tensors() must pass) into fp32 torch tensors.
  Transformer(ModelSpec spec, const TensorMap& tensors);
  // Random init for training from scratch: N(0, 0.02) linears/embeddings, ones for norms, zero
  // biases; output projections scaled by 1/sqrt(2 n_layer) as in GPT-2.
  static Transformer random_init(ModelSpec spec, uint64_t seed);

  // tokens: (batch, seq) int64. Positions continue from cache->len when a cache is given (and
  // the cache is advanced). Returns logits (batch, seq, vocab) float32.
  torch::Tensor forward(const torch::Tensor& tokens, KVCache* cache = nullptr) const;

  KVCache new_cache(int64_t batch, int64_t capacity) const;

  // The pieces of forward(), for passes that walk the model layer by layer (calibration):
  // forward = head(layer(n-1, ... layer(0, embed(tokens)))). embed checks the ids against the
  // vocab. layer() reads positions from cache->len (0 without a cache) and writes its keys and
  // values there, but does not advance cache->len (forward does, after the last layer).
  torch::Tensor embed(const torch::Tensor& tokens) const;                  // (B, T, d_model)
  torch::Tensor layer(int64_t i, const torch::Tensor& x, KVCache* cache = nullptr) const;
  torch::Tensor head(const torch::Tensor& x) const;                        // final norm + output

  void set_linear_hook(LinearHook hook) { hook_ = std::move(hook); }

  const ModelSpec& spec() const { return spec_; }
  // Canonical name -> parameter (requires_grad can be set on these for training).
  std::map<std::string, torch::Tensor>& params() { return params_; }
  const std::map<std::string, torch::Tensor>& params() const { return params_; }
  std::vector<torch::Tensor> params_list() const;
  // Copies parameters back to host tensors (for writers).
  TensorMap to_host() const;

 private:
  torch::Tensor linear(const std::string& name, const torch::Tensor& x, const char* bias) const;
  torch::Tensor mlp(int64_t layer, const torch::Tensor& h) const;  // dense gated MLP or experts
  const torch::Tensor& p(const std::string& name) const;

  ModelSpec spec_;
  std::map<std::string, torch::Tensor> params_;
  std::vector<torch::Tensor> inv_freq_;  // per layer, (head_dim / 2)
  LinearHook hook_;
};

// Threads for LibTorch and OpenMP/BLAS; n <= 0 means all cores.
void set_num_threads(int n);

}  // namespace slmc
