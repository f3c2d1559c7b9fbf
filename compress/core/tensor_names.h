// Canonical tensor names (GGUF spelling: `blk.{i}.attn_q.weight`) and the declarative table of
// the tensors a ModelSpec implies. Loaders map a family's own names onto these; exporters map back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"
#include "compress/core/tensor.h"

namespace slmc {
namespace names {
inline constexpr const char* kTokenEmbd = "token_embd.weight";   // (vocab, d_model)
inline constexpr const char* kOutputNorm = "output_norm.weight"; // (d_model)
inline constexpr const char* kOutput = "output.weight";          // (vocab, d_model); absent if tied

// Per-block suffixes; full name is blk(i, suffix).
inline constexpr const char* kAttnNorm = "attn_norm.weight";     // (d_model)
inline constexpr const char* kAttnQ = "attn_q.weight";           // (n_head * head_dim, d_model)
inline constexpr const char* kAttnK = "attn_k.weight";           // (n_kv_head * head_dim, d_model)
inline constexpr const char* kAttnV = "attn_v.weight";           // (n_kv_head * head_dim, d_model)
inline constexpr const char* kAttnOut = "attn_output.weight";    // (d_model, n_head * head_dim)
inline constexpr const char* kAttnQBias = "attn_q.bias";
inline constexpr const char* kAttnKBias = "attn_k.bias";
inline constexpr const char* kAttnVBias = "attn_v.bias";
inline constexpr const char* kAttnOutBias = "attn_output.bias";
inline constexpr const char* kFfnNorm = "ffn_norm.weight";       // (d_model)
inline constexpr const char* kFfnGate = "ffn_gate.weight";       // (ffn_dim, d_model)
inline constexpr const char* kFfnUp = "ffn_up.weight";           // (ffn_dim, d_model)
inline constexpr const char* kFfnDown = "ffn_down.weight";       // (d_model, ffn_dim)
inline constexpr const char* kFfnGateBias = "ffn_gate.bias";
inline constexpr const char* kFfnUpBias = "ffn_up.bias";
inline constexpr const char* kFfnDownBias = "ffn_down.bias";

std::string blk(int64_t layer, const char* suffix);  // "blk.3.attn_q.weight"
}  // namespace names

struct TensorDecl {
  std::string name;
  std::vector<int64_t> shape;
  bool is_linear = false;  // a 2-D weight applied as x @ W^T: what quantizers and pruners target
};

// Every tensor `spec` requires, in a fixed order (embedding, blocks, final norm, head).
std::vector<TensorDecl> expected_tensors(const ModelSpec& spec);

// Checks that `tensors` holds exactly the expected set with the expected shapes.
// `origin` (a path) goes into the error message.
void check_tensors(const ModelSpec& spec, const TensorMap& tensors, const std::string& origin);

}  // namespace slmc
