#include "prune/structured.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "compress/model/hessian.h"
#include "compress/model/layerwise.h"
#include "prune/masks.h"

namespace slmc::prune {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::char_traits<char>::length(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Indices along an axis of extent units * width that survive removing `removed` units.
std::vector<int64_t> kept_indices(int64_t units, int64_t width,
                                  const std::vector<int64_t>& removed) {
  std::vector<char> gone(static_cast<size_t>(units), 0);
  for (int64_t u : removed) gone[static_cast<size_t>(u)] = 1;
  std::vector<int64_t> keep;
  for (int64_t u = 0; u < units; ++u)
    if (!gone[static_cast<size_t>(u)])
      for (int64_t k = 0; k < width; ++k) keep.push_back(u * width + k);
  return keep;
}

// Keeps rows (axis 0) or columns (axis 1) `keep` of a row-major (rows, cols) buffer.
template <class T>
std::vector<T> take(const std::vector<T>& v, int64_t rows, int64_t cols, int axis,
                    const std::vector<int64_t>& keep) {
  std::vector<T> out;
  out.reserve(keep.size() * static_cast<size_t>(axis == 0 ? cols : rows));
  if (axis == 0) {
    for (int64_t r : keep) out.insert(out.end(), v.begin() + r * cols, v.begin() + (r + 1) * cols);
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c : keep) out.push_back(v[static_cast<size_t>(r * cols + c)]);
  }
  return out;
}

}  // namespace

int64_t removed_units(int64_t count, double sparsity) {
  SLMC_CHECK(sparsity >= 0 && sparsity < 1, "sparsity must be in [0, 1), got ", sparsity);
  return static_cast<int64_t>(std::floor(static_cast<double>(count) * sparsity + 0.5));
}

int64_t kept_units(const UnitSet& set, double sparsity, int64_t multiple,
                   const std::string& where) {
  SLMC_CHECK(multiple >= 1, where, ": multiple must be >= 1, got ", multiple);
  int64_t kept = set.count - removed_units(set.count, sparsity);
  if (set.kind == UnitKind::kChannels && multiple > 1 && set.count >= multiple) {
    const int64_t down = kept / multiple * multiple, up = down + multiple;
    kept = kept - down <= up - kept ? down : up;
    kept = std::max(kept, multiple);
    kept = std::min(kept, set.count);
  }
  SLMC_CHECK(kept >= 1, where, ": sparsity ", sparsity, " would remove every unit of ", set.name(),
             " (", set.count, " ", set.kind == UnitKind::kHeads ? "KV head groups" : "channels",
             "); a layer must keep at least one");
  return kept;
}

ModelSpec spec_with_units(const ModelSpec& spec, const UnitSet& set, int64_t kept) {
  ModelSpec s = spec;
  LayerSpec& l = s.layers.at(static_cast<size_t>(set.layer));
  if (set.kind == UnitKind::kHeads) {
    const int64_t per_group = l.n_head / l.n_kv_head;
    l.n_kv_head = kept;
    l.n_head = kept * per_group;
  } else {
    l.ffn_dim = kept;
  }
  return s;
}

torch::Tensor importance_from_activations(const UnitSet& set, const torch::Tensor& consumer,
                                          const torch::Tensor& H) {
  const UnitSlice& c = set.consumer();
  const int64_t width = c.width;
  SLMC_CHECK(consumer.dim() == 2 && consumer.size(1) == set.count * width && H.dim() == 2 &&
                 H.size(0) == consumer.size(1) && H.size(1) == consumer.size(1),
             set.name(), ": consumer ", c.tensor, " and its H do not have ", set.count * width,
             " input columns");
  const torch::Tensor W = consumer.to(torch::kFloat64), h = H.to(torch::kFloat64);
  if (width == 1) return h.diagonal() * (W * W).sum(0);
  torch::Tensor out = torch::empty({set.count}, torch::kFloat64);
  for (int64_t u = 0; u < set.count; ++u) {
    const torch::Tensor wj = W.narrow(1, u * width, width);
    const torch::Tensor hj = h.narrow(0, u * width, width).narrow(1, u * width, width);
    out[u] = (wj.mm(hj) * wj).sum();
  }
  return out;
}

torch::Tensor importance_from_weights(const UnitSet& set,
                                      const std::map<std::string, torch::Tensor>& params) {
  // Column (consumer) or row (producer) block norms per unit.
  auto block_norms = [&](const UnitSlice& s) {
    const torch::Tensor W = params.at(s.tensor).to(torch::kFloat64);
    const torch::Tensor sq = s.axis == 0 ? (W * W).sum(1) : (W * W).sum(0);
    return sq.view({set.count, s.width}).sum(1).sqrt();
  };
  torch::Tensor imp = block_norms(set.consumer());
  for (const UnitSlice& s : set.slices) {
    if (s.consumer || !ends_with(s.tensor, ".weight")) continue;
    // The value path: attention's output is linear in attn_v's rows; q and k only weigh it.
    if (set.kind == UnitKind::kHeads && !ends_with(s.tensor, names::kAttnV)) continue;
    imp = imp * block_norms(s);
  }
  return imp;
}

std::vector<int64_t> least_important(const torch::Tensor& importance, int64_t n_remove) {
  SLMC_CHECK(torch::isfinite(importance).all().item<bool>(),
             "structured pruning: unit importance is not finite");
  const torch::Tensor order =
      std::get<1>(torch::sort(importance.to(torch::kFloat64), /*stable=*/true, 0, false));
  std::vector<int64_t> out(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + n_remove);
  std::sort(out.begin(), out.end());
  return out;
}

torch::Tensor removed_columns(const UnitSet& set, const std::vector<int64_t>& removed) {
  const int64_t width = set.consumer().width;
  torch::Tensor cols = torch::zeros({set.count * width}, torch::kBool);
  for (int64_t u : removed) cols.narrow(0, u * width, width).fill_(true);
  return cols;
}

torch::Tensor reconstruct_consumer(const torch::Tensor& W, const torch::Tensor& H,
                                   const torch::Tensor& removed_cols, double damp) {
  torch::NoGradGuard ng;
  const torch::Tensor R = removed_cols.nonzero().squeeze(1);
  const torch::Tensor K = removed_cols.logical_not().nonzero().squeeze(1);
  torch::Tensor out = W.to(torch::kFloat32).clone();
  if (R.numel() == 0) return out;
  out.index_fill_(1, R, 0.0f);
  if (K.numel() == 0) return out;
  torch::Tensor h = H.to(torch::kFloat64, false, true);
  h.diagonal().masked_fill_(h.diagonal() == 0, 1.0);
  const torch::Tensor hkk = h.index_select(0, K).index_select(1, K);
  const torch::Tensor hkr = h.index_select(0, K).index_select(1, R);
  const torch::Tensor L =
      factor_damped(hkk, damp, "structured reconstruction", [](const torch::Tensor& a) {
        auto [l, info] = torch::linalg_cholesky_ex(a);
        return info.item<int64_t>() == 0 ? l : torch::Tensor();
      });
  const torch::Tensor wr = W.to(torch::kFloat64).index_select(1, R);          // (d, |R|)
  const torch::Tensor z = torch::cholesky_solve(hkr.matmul(wr.t()), L);       // (|K|, d)
  const torch::Tensor wk = W.to(torch::kFloat64).index_select(1, K) + z.t();  // (d, |K|)
  SLMC_CHECK(torch::isfinite(wk).all().item<bool>(), "structured reconstruction: not finite");
  out.index_copy_(1, K, wk.to(torch::kFloat32));
  return out;
}

void remove_units(TensorMap& tensors, std::map<std::string, SparsityMask>& masks,
                  const UnitSet& set, const std::vector<int64_t>& removed) {
  if (removed.empty()) return;
  for (const UnitSlice& s : set.slices) {
    HostTensor& t = tensors.at(s.tensor);
    const std::vector<int64_t> keep = kept_indices(set.count, s.width, removed);
    const int64_t rows = t.shape[0], cols = t.shape.size() == 2 ? t.shape[1] : 1;
    SLMC_CHECK((s.axis == 0 ? rows : cols) == set.count * s.width, s.tensor, " ", t.shape_str(),
               " does not hold ", set.count, " units of ", s.width);
    t.data = take(t.data, rows, cols, s.axis, keep);
    t.shape[static_cast<size_t>(s.axis)] = static_cast<int64_t>(keep.size());
    auto m = masks.find(s.tensor);
    if (m != masks.end()) {
      m->second.pruned = take(m->second.pruned, rows, cols, s.axis, keep);
      m->second.shape = t.shape;
      if (s.axis == 1) m->second.n = m->second.m = 0;  // column groups no longer line up
    }
  }
}

std::vector<double> block_importance(const Transformer& tf, const CalibrationSet& cal,
                                     const std::string& metric, int64_t batch) {
  torch::NoGradGuard ng;
  SLMC_CHECK(metric == "cosine" || metric == "loss", "block_importance: metric '", metric,
             "' is unknown (cosine, loss)");
  const ModelSpec& spec = tf.spec();
  const int64_t N = static_cast<int64_t>(cal.rows.size()), L = spec.n_layer();
  const torch::Tensor tokens = calibration_tokens(cal, N);
  std::vector<double> out(static_cast<size_t>(L), 0.0);
  if (metric == "cosine") {
    Progress bar("block influence", L, "layer");
    torch::Tensor X = torch::empty({N, tokens.size(1), spec.d_model}, torch::kFloat32);
    for (int64_t c = 0; c < N; c += batch)
      X.narrow(0, c, std::min(batch, N - c))
          .copy_(tf.embed(tokens.narrow(0, c, std::min(batch, N - c))));
    for (int64_t i = 0; i < L; ++i) {
      double cos_sum = 0;
      int64_t n = 0;
      for (int64_t c = 0; c < N; c += batch) {
        const int64_t b = std::min(batch, N - c);
        const torch::Tensor in = X.narrow(0, c, b);
        const torch::Tensor y = tf.layer(i, in);
        cos_sum +=
            torch::cosine_similarity(in.to(torch::kFloat64), y.to(torch::kFloat64), -1, 1e-12)
                .sum()
                .item<double>();
        n += b * in.size(1);
        in.copy_(y);
      }
      out[static_cast<size_t>(i)] = 1.0 - cos_sum / static_cast<double>(n);
      bar.update(i + 1);
    }
    bar.finish();
    return out;
  }
  // loss: mean next-token NLL on the calibration rows with block `skip` left out (-1: none).
  auto nll = [&](int64_t skip) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t c = 0; c < N; c += batch) {
      const int64_t b = std::min(batch, N - c);
      const torch::Tensor t = tokens.narrow(0, c, b);
      torch::Tensor x = tf.embed(t);
      for (int64_t i = 0; i < L; ++i)
        if (i != skip) x = tf.layer(i, x);
      const torch::Tensor logits = tf.head(x).narrow(1, 0, t.size(1) - 1);
      const torch::Tensor lp = torch::log_softmax(logits.to(torch::kFloat64), -1);
      sum -= lp.gather(-1, t.narrow(1, 1, t.size(1) - 1).unsqueeze(-1)).sum().item<double>();
      n += b * (t.size(1) - 1);
    }
    return sum / static_cast<double>(n);
  };
  Progress bar("block loss effect", L + 1, "forward");
  const double full = nll(-1);
  bar.update(1);
  for (int64_t i = 0; i < L; ++i) {
    out[static_cast<size_t>(i)] = nll(i) - full;
    bar.update(i + 2);
  }
  bar.finish(str_cat("calibration NLL ", full));
  return out;
}

void remove_layers(LoadedModel& m, std::map<std::string, SparsityMask>& masks,
                   const std::vector<int64_t>& removed) {
  const int64_t L = m.spec.n_layer();
  std::vector<int64_t> new_index(static_cast<size_t>(L), -1);
  std::vector<LayerSpec> layers;
  for (int64_t i = 0, j = 0; i < L; ++i) {
    if (std::binary_search(removed.begin(), removed.end(), i)) continue;
    new_index[static_cast<size_t>(i)] = j++;
    layers.push_back(m.spec.layers[static_cast<size_t>(i)]);
  }
  SLMC_CHECK(!layers.empty(), "remove_layers: every layer would be removed");
  // "blk.12.attn_q.weight" -> (12, "attn_q.weight"); -1 for tensors outside the blocks.
  auto split = [](const std::string& name, std::string* rest) -> int64_t {
    if (name.rfind("blk.", 0) != 0) return -1;
    const size_t dot = name.find('.', 4);
    *rest = name.substr(dot + 1);
    return std::stoll(name.substr(4, dot - 4));
  };
  TensorMap tensors;
  std::map<std::string, SparsityMask> new_masks;
  for (auto& [name, t] : m.tensors) {
    std::string rest;
    const int64_t i = split(name, &rest);
    std::string to = name;
    if (i >= 0) {
      const int64_t j = new_index[static_cast<size_t>(i)];
      if (j < 0) continue;
      to = names::blk(j, rest.c_str());
    }
    auto mk = masks.find(name);
    if (mk != masks.end()) new_masks[to] = std::move(mk->second);
    tensors[to] = std::move(t);
  }
  m.tensors = std::move(tensors);
  masks = std::move(new_masks);
  m.spec.layers = std::move(layers);
}

}  // namespace slmc::prune
