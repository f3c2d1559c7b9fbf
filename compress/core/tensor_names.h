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
// Family extras (ModelSpec/LayerSpec flags say which are present).
inline constexpr const char* kAttnQNorm = "attn_q_norm.weight";  // (head_dim), LayerSpec::qk_norm
inline constexpr const char* kAttnKNorm = "attn_k_norm.weight";  // (head_dim)
inline constexpr const char* kAttnPostNorm = "post_attention_norm.weight";  // (d_model), post_norms
inline constexpr const char* kFfnPostNorm = "post_ffw_norm.weight";         // (d_model)
inline constexpr const char* kFfnRouter = "ffn_gate_inp.weight";  // (n_expert, d_model), MoE router
// Experts: expert(i, j, kFfnGate) = "blk.3.expert.5.ffn_gate.weight", so a selector `ffn_gate`
// (trailing components) reaches every expert's gate and `re:blk\.3\.expert\.5\..*` one expert.

std::string blk(int64_t layer, const char* suffix);  // "blk.3.attn_q.weight"
std::string expert(int64_t layer, int64_t e, const char* suffix);  // "blk.3.expert.5.ffn_up.weight"
}  // namespace names

struct TensorDecl {
  std::string name;
  std::vector<int64_t> shape;
  bool is_linear = false;  // a 2-D weight applied as x @ W^T: what quantizers and pruners target
};

// Every tensor `spec` requires, in a fixed order (embedding, blocks, final norm, head).
// Norm weights are stored as the factor that multiplies the normalised activations (families
// whose checkpoints store 1 + w, such as gemma3, are converted by their loader). The MoE router is
// 2-D but not a linear that quantizers target (is_linear false): it stays f32.
std::vector<TensorDecl> expected_tensors(const ModelSpec& spec);

// Linears of block `layer` that read the same input, and what produces that input: the
// calibration unit of GPTQ/AWQ (one Hessian per group) and the folding rule of AWQ. Family
// knowledge, so every pass gets it from here.
struct LinearGroup {
  std::string name;                  // "attn_in", "ffn_in", "expert.3.ffn_in", ...
  std::vector<std::string> members;  // full canonical weight names
  std::string prev_norm;             // RMSNorm weight that produces the input ("" if none/unsafe)
  std::string prev_linear;           // linear whose output rows produce the input ("" if none)
  int64_t expert = -1;               // MoE expert index, -1 for dense linears
  // Dataflow order in the block: attn_in 0, attn_out 1, ffn_in 2, ffn_out 3. A group's input
  // depends on the outputs of lower orders only (sequential calibration walks them in turn).
  int order = 0;
};
std::vector<LinearGroup> linear_groups(const ModelSpec& spec, int64_t layer);
// The output head as a group of its own ("head"): output.weight, or token_embd.weight when tied,
// fed by output_norm; prev_norm is set only when untied (a tied head's columns are also the
// embedding, so nothing may be folded into them).
LinearGroup head_group(const ModelSpec& spec);

// Checks that `tensors` holds exactly the expected set with the expected shapes.
// `origin` (a path) goes into the error message.
void check_tensors(const ModelSpec& spec, const TensorMap& tensors, const std::string& origin);

}  // namespace slmc
