#include "compress/core/tensor_names.h"

#include <set>

#include "compress/core/error.h"

namespace slmc {

std::string names::blk(int64_t layer, const char* suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

std::vector<TensorDecl> expected_tensors(const ModelSpec& spec) {
  const int64_t d = spec.d_model;
  std::vector<TensorDecl> out;
  out.push_back({names::kTokenEmbd, {spec.vocab, d}, false});
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    const LayerSpec& l = spec.layers[static_cast<size_t>(i)];
    const int64_t q = l.n_head * l.head_dim, kv = l.n_kv_head * l.head_dim;
    auto add = [&](const char* suffix, std::vector<int64_t> shape, bool linear) {
      out.push_back({names::blk(i, suffix), std::move(shape), linear});
    };
    add(names::kAttnNorm, {d}, false);
    add(names::kAttnQ, {q, d}, true);
    add(names::kAttnK, {kv, d}, true);
    add(names::kAttnV, {kv, d}, true);
    if (l.attn_qkv_bias) {
      add(names::kAttnQBias, {q}, false);
      add(names::kAttnKBias, {kv}, false);
      add(names::kAttnVBias, {kv}, false);
    }
    add(names::kAttnOut, {d, q}, true);
    if (l.attn_out_bias) add(names::kAttnOutBias, {d}, false);
    add(names::kFfnNorm, {d}, false);
    add(names::kFfnGate, {l.ffn_dim, d}, true);
    add(names::kFfnUp, {l.ffn_dim, d}, true);
    add(names::kFfnDown, {d, l.ffn_dim}, true);
    if (l.mlp_bias) {
      add(names::kFfnGateBias, {l.ffn_dim}, false);
      add(names::kFfnUpBias, {l.ffn_dim}, false);
      add(names::kFfnDownBias, {d}, false);
    }
  }
  out.push_back({names::kOutputNorm, {d}, false});
  if (!spec.tied_embeddings) out.push_back({names::kOutput, {spec.vocab, d}, true});
  return out;
}

void check_tensors(const ModelSpec& spec, const TensorMap& tensors, const std::string& origin) {
  std::set<std::string> expected;
  for (const TensorDecl& t : expected_tensors(spec)) {
    expected.insert(t.name);
    auto it = tensors.find(t.name);
    SLMC_CHECK(it != tensors.end(), origin, ": missing tensor ", t.name, " (expected shape ",
               shape_str(t.shape), ")");
    SLMC_CHECK(it->second.shape == t.shape, origin, ": tensor ", t.name, " has shape ",
               it->second.shape_str(), ", the config implies ", shape_str(t.shape));
    SLMC_CHECK(static_cast<int64_t>(it->second.data.size()) == it->second.numel(), origin,
               ": tensor ", t.name, " holds ", it->second.data.size(), " values for shape ",
               it->second.shape_str());
  }
  for (const auto& kv : tensors)
    SLMC_CHECK(expected.count(kv.first), origin, ": unexpected tensor ", kv.first, " ",
               kv.second.shape_str(), " for this config");
}

}  // namespace slmc
