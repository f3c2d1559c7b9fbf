#include "compress/core/tensor_names.h"

#include <set>

#include "compress/core/error.h"
#include "compress/core/units.h"

namespace slmc {

std::string names::blk(int64_t layer, const char* suffix) {
  return "blk." + std::to_string(layer) + "." + suffix;
}

std::string names::expert(int64_t layer, int64_t e, const char* suffix) {
  return "blk." + std::to_string(layer) + ".expert." + std::to_string(e) + "." + suffix;
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
    if (l.qk_norm) {
      add(names::kAttnQNorm, {l.head_dim}, false);
      add(names::kAttnKNorm, {l.head_dim}, false);
    }
    add(names::kAttnOut, {d, q}, true);
    if (l.attn_out_bias) add(names::kAttnOutBias, {d}, false);
    if (l.post_norms) add(names::kAttnPostNorm, {d}, false);
    add(names::kFfnNorm, {d}, false);
    if (l.is_moe()) {
      add(names::kFfnRouter, {l.n_expert, d}, false);
      for (int64_t e = 0; e < l.n_expert; ++e) {
        out.push_back({names::expert(i, e, names::kFfnGate), {l.ffn_dim, d}, true});
        out.push_back({names::expert(i, e, names::kFfnUp), {l.ffn_dim, d}, true});
        out.push_back({names::expert(i, e, names::kFfnDown), {d, l.ffn_dim}, true});
      }
    } else {
      add(names::kFfnGate, {l.ffn_dim, d}, true);
      add(names::kFfnUp, {l.ffn_dim, d}, true);
      add(names::kFfnDown, {d, l.ffn_dim}, true);
    }
    if (l.post_norms) add(names::kFfnPostNorm, {d}, false);
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

std::vector<LinearGroup> linear_groups(const ModelSpec& spec, int64_t i) {
  SLMC_CHECK(i >= 0 && i < spec.n_layer(), "linear_groups: layer ", i, " outside [0, ",
             spec.n_layer(), ")");
  const LayerSpec& l = spec.layers[static_cast<size_t>(i)];
  auto b = [&](const char* s) { return names::blk(i, s); };
  // A producer's rows can absorb the consumer's input scales exactly only when they feed its
  // columns one to one (units.h): attn_v's rows feed attn_output's columns so only without GQA
  // sharing (every value head serves one query head); ffn_up's rows always feed ffn_down's.
  const std::vector<UnitSet> units = unit_sets(spec, i);
  auto fold = [&](const std::string& producer) {
    for (const UnitSet& u : units)
      if (u.expert < 0 && feeds_one_to_one(u, producer)) return producer;
    return std::string();
  };
  std::vector<LinearGroup> g;
  g.push_back({"attn_in", {b(names::kAttnQ), b(names::kAttnK), b(names::kAttnV)}, b(names::kAttnNorm), "", -1, 0});
  g.push_back({"attn_out", {b(names::kAttnOut)}, "", fold(b(names::kAttnV)), -1, 1});
  if (!l.is_moe()) {
    g.push_back({"ffn_in", {b(names::kFfnGate), b(names::kFfnUp)}, b(names::kFfnNorm), "", -1, 2});
    g.push_back({"ffn_out", {b(names::kFfnDown)}, "", fold(b(names::kFfnUp)), -1, 3});
  } else {
    // ffn_norm also feeds the router and every other expert: nothing to fold into.
    for (int64_t e = 0; e < l.n_expert; ++e) {
      const std::string p = "expert." + std::to_string(e) + ".";
      g.push_back({p + "ffn_in",
                   {names::expert(i, e, names::kFfnGate), names::expert(i, e, names::kFfnUp)},
                   "", "", e, 2});
      const std::string up = names::expert(i, e, names::kFfnUp);
      const bool one_to_one = feeds_one_to_one(units[static_cast<size_t>(1 + e)], up);
      g.push_back({p + "ffn_out", {names::expert(i, e, names::kFfnDown)}, "",
                   one_to_one ? up : std::string(), e, 3});
    }
  }
  return g;
}

LinearGroup head_group(const ModelSpec& spec) {
  LinearGroup g;
  g.name = "head";
  g.members = {spec.tied_embeddings ? names::kTokenEmbd : names::kOutput};
  if (!spec.tied_embeddings) g.prev_norm = names::kOutputNorm;
  return g;
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
