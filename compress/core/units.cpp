#include "compress/core/units.h"

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"

namespace slmc {

const char* unit_kind_name(UnitKind k) { return k == UnitKind::kHeads ? "heads" : "channels"; }

bool unit_kind_from_name(const std::string& name, UnitKind* out) {
  for (UnitKind k : {UnitKind::kHeads, UnitKind::kChannels})
    if (name == unit_kind_name(k)) {
      *out = k;
      return true;
    }
  return false;
}

const UnitSlice& UnitSet::consumer() const {
  for (const UnitSlice& s : slices)
    if (s.consumer) return s;
  fail("unit set ", name(), " has no consumer");
}

const UnitSlice* UnitSet::find(const std::string& tensor) const {
  for (const UnitSlice& s : slices)
    if (s.tensor == tensor) return &s;
  return nullptr;
}

std::string UnitSet::name() const {
  return str_cat("blk.", layer, expert >= 0 ? str_cat(" expert.", expert) : std::string(), " ",
                 unit_kind_name(kind));
}

std::vector<UnitSet> unit_sets(const ModelSpec& spec, int64_t layer) {
  SLMC_CHECK(layer >= 0 && layer < spec.n_layer(), "unit_sets: layer ", layer, " outside [0, ",
             spec.n_layer(), ")");
  const LayerSpec& l = spec.layers[static_cast<size_t>(layer)];
  auto b = [&](const char* s) { return names::blk(layer, s); };
  std::vector<UnitSet> out;

  UnitSet heads;
  heads.kind = UnitKind::kHeads;
  heads.layer = layer;
  heads.count = l.n_kv_head;
  const int64_t q = (l.n_head / l.n_kv_head) * l.head_dim, kv = l.head_dim;
  heads.slices.push_back({b(names::kAttnQ), 0, q, false});
  heads.slices.push_back({b(names::kAttnK), 0, kv, false});
  heads.slices.push_back({b(names::kAttnV), 0, kv, false});
  if (l.attn_qkv_bias) {
    heads.slices.push_back({b(names::kAttnQBias), 0, q, false});
    heads.slices.push_back({b(names::kAttnKBias), 0, kv, false});
    heads.slices.push_back({b(names::kAttnVBias), 0, kv, false});
  }
  heads.slices.push_back({b(names::kAttnOut), 1, q, true});
  out.push_back(std::move(heads));

  auto channels = [&](int64_t e, const std::string& gate, const std::string& up,
                      const std::string& down) {
    UnitSet c;
    c.kind = UnitKind::kChannels;
    c.layer = layer;
    c.expert = e;
    c.count = l.ffn_dim;
    c.slices.push_back({gate, 0, 1, false});
    c.slices.push_back({up, 0, 1, false});
    if (l.mlp_bias) {
      c.slices.push_back({b(names::kFfnGateBias), 0, 1, false});
      c.slices.push_back({b(names::kFfnUpBias), 0, 1, false});
    }
    c.slices.push_back({down, 1, 1, true});
    out.push_back(std::move(c));
  };
  if (l.is_moe()) {
    for (int64_t e = 0; e < l.n_expert; ++e)
      channels(e, names::expert(layer, e, names::kFfnGate), names::expert(layer, e, names::kFfnUp),
               names::expert(layer, e, names::kFfnDown));
  } else {
    channels(-1, b(names::kFfnGate), b(names::kFfnUp), b(names::kFfnDown));
  }
  return out;
}

bool feeds_one_to_one(const UnitSet& set, const std::string& producer) {
  const UnitSlice* p = set.find(producer);
  return p != nullptr && p->axis == 0 && !p->consumer && p->width == set.consumer().width;
}

}  // namespace slmc
