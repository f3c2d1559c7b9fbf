#include "compress/model/layerwise.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <set>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/timer.h"
#include "compress/model/hessian.h"

namespace slmc {

namespace {

using ChunkFn = std::function<torch::Tensor(const torch::Tensor&)>;

}  // namespace

torch::Tensor calibration_tokens(const CalibrationSet& cal, int64_t n) {
  SLMC_CHECK(n >= 1 && n <= static_cast<int64_t>(cal.rows.size()), cal.origin, ": ", n,
             " calibration rows asked for, ", cal.rows.size(), " given");
  const int64_t T = static_cast<int64_t>(cal.rows[0].size());
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(n * T));
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int32_t>& row = cal.rows[static_cast<size_t>(i)];
    SLMC_CHECK(static_cast<int64_t>(row.size()) == T, cal.origin,
               ": calibration rows differ in length");
    ids.insert(ids.end(), row.begin(), row.end());
  }
  return torch::tensor(ids, torch::kInt64).view({n, T});
}

std::string expert_coverage_note(const ModelSpec& spec, const LayerStage& stage,
                                 const StageStats& stats, int64_t min_rows,
                                 const std::string& what_below) {
  if (stage.layer < 0) return "";
  const LayerSpec& l = spec.layers[static_cast<size_t>(stage.layer)];
  if (!l.is_moe()) return "";
  std::vector<int64_t> count(static_cast<size_t>(l.n_expert), -1);
  for (const LinearGroup& g : stage.groups) {
    if (g.expert < 0 || count[static_cast<size_t>(g.expert)] >= 0) continue;
    auto st = stats.find(g.name);
    count[static_cast<size_t>(g.expert)] = st == stats.end() ? 0 : st->second.rows;
  }
  std::string counts, low;
  bool any = false;
  for (int64_t e = 0; e < l.n_expert; ++e) {
    const int64_t n = count[static_cast<size_t>(e)];
    counts += str_cat(e ? ", " : "", n < 0 ? std::string("-") : std::to_string(n));
    if (n < 0) continue;
    any = true;
    if (n < min_rows) low += str_cat(low.empty() ? "" : ", ", "expert ", e, " (", n, ")");
  }
  if (!any) return "";
  return str_cat("blk.", stage.layer, " calibration tokens per expert (top-", l.n_expert_used,
                 " of ", l.n_expert, "): [", counts, "]",
                 low.empty() ? std::string() : "; " + what_below + low);
}

LayerwiseTimes run_layerwise(Transformer& tf, const CalibrationSet& cal, LayerwiseMethod& method,
                             const LayerwiseOptions& o) {
  torch::NoGradGuard ng;
  SLMC_CHECK(o.batch >= 1, "layer-wise calibration: batch must be >= 1, got ", o.batch);
  SLMC_CHECK(!cal.rows.empty(), cal.origin, ": no calibration rows");
  const ModelSpec& spec = tf.spec();
  auto& params = tf.params();
  const int64_t N = static_cast<int64_t>(cal.rows.size());
  const int64_t T = static_cast<int64_t>(cal.rows[0].size());
  const torch::Tensor tokens = calibration_tokens(cal, N);
  const int64_t B = o.batch;
  LayerwiseTimes times;

  // dst[c:c+b] = fn(src[c:c+b]) in chunks of B calibration sequences (in place if dst is src).
  auto by_chunks = [&](torch::Tensor& dst, const torch::Tensor& src, const ChunkFn& fn) {
    for (int64_t c = 0; c < N; c += B) {
      const int64_t b = std::min(B, N - c);
      dst.narrow(0, c, b).copy_(fn(src.narrow(0, c, b)));
    }
  };
  auto embed = [&](const torch::Tensor& t) { return tf.embed(t); };
  auto layer_fn = [&](int64_t i) -> ChunkFn {
    return [&tf, i](const torch::Tensor& x) { return tf.layer(i, x); };
  };

  // The second stream (the uncompressed model's, from the uncompressed embedding) and the current
  // block's weights before compression, swapped in (tensor handles, no copies) whenever it runs.
  torch::Tensor Xf;
  if (o.second_stream) {
    Xf = torch::empty({N, T, spec.d_model}, torch::kFloat32);
    by_chunks(Xf, tokens, embed);
  }
  std::map<std::string, torch::Tensor> before;
  auto swap_before = [&] {
    for (auto& kv : before) std::swap(params.at(kv.first), kv.second);
  };

  method.before_walk(tf);
  torch::Tensor X = torch::empty({N, T, spec.d_model}, torch::kFloat32);
  by_chunks(X, tokens, embed);

  // Collects the requested stats of `requests` (group name -> request) over every chunk.
  // `advance`: the second stream's pass is its last through this block, so its outputs replace
  // Xf (one forward fewer than propagating Xf afterwards); returns whether that happened.
  auto collect = [&](StageStats& stats, const std::map<std::string, std::string>& group_of,
                     const std::map<std::string, GroupRequest>& requests, int64_t layer,
                     bool advance, const ChunkFn& run_chunk) {
    const ScopedSeconds timer{times.collect};
    bool paired = false;
    for (const auto& kv : requests) paired = paired || kv.second.pair;
    paired = paired && o.second_stream;
    std::set<std::string> seen;  // groups done for the current chunk (q, k, v share an input)
    std::map<std::string, torch::Tensor> fp_in;  // the chunk's inputs on the second stream
    bool fp_pass = false;
    tf.set_linear_hook([&](const std::string& name, const torch::Tensor& input,
                           const torch::Tensor&) {
      auto g = group_of.find(name);
      if (g == group_of.end() || seen.count(g->second)) return;
      seen.insert(g->second);
      const GroupRequest& rq = requests.at(g->second);
      const torch::Tensor x = input.reshape({-1, input.size(-1)});
      if (fp_pass) {
        if (rq.pair) fp_in[g->second] = x.clone();
        return;
      }
      if (!torch::isfinite(x).all().item<bool>())
        fail(cal.origin, ": non-finite activation at the input of ", name,
             layer >= 0 ? str_cat(" (layer ", layer, ")") : std::string(),
             " during calibration; the model or the data produce NaN/Inf");
      GroupStats& s = stats[g->second];
      if (rq.hessian) add_outer(s.H, x, x);
      s.rows += x.size(0);
      auto f = fp_in.find(g->second);
      if (f != fp_in.end()) add_outer(s.D, f->second - x, x);
      if (rq.col_sq) {
        const torch::Tensor sq = x.pow(2).sum(0);
        s.col_sq = s.col_sq.defined() ? s.col_sq + sq : sq;
      }
      if (rq.sample_stride > 0)
        s.samples.push_back(
            x.index({torch::indexing::Slice(0, torch::indexing::None, rq.sample_stride)}).clone());
    });
    for (int64_t c = 0; c < N; c += B) {
      const int64_t b = std::min(B, N - c);
      fp_in.clear();
      if (paired) {
        seen.clear();
        fp_pass = true;
        swap_before();
        const torch::Tensor out = run_chunk(Xf.narrow(0, c, b));
        if (advance) Xf.narrow(0, c, b).copy_(out);
        swap_before();
        fp_pass = false;
      }
      seen.clear();
      (void)run_chunk(X.narrow(0, c, b));
    }
    tf.set_linear_hook(nullptr);
    return advance && paired;
  };

  // Runs one stage: requests, collection, compression. Returns whether Xf advanced.
  auto run_stage = [&](int64_t layer, const std::vector<LinearGroup>& groups, bool advance,
                       const ChunkFn& run_chunk) {
    LayerStage stage;
    stage.layer = layer;
    std::map<std::string, std::string> group_of;  // member linear -> group
    std::map<std::string, GroupRequest> requests;
    for (const LinearGroup& g : groups) {
      std::optional<GroupRequest> rq = method.request(layer, g);
      if (!rq) continue;
      if (g.expert >= 0) rq->pair = false;  // routed tokens differ between the streams
      requests[g.name] = *rq;
      for (const std::string& mem : g.members) group_of[mem] = g.name;
      stage.groups.push_back(g);
    }
    if (stage.groups.empty()) return false;
    StageStats stats;
    const bool advanced = collect(stats, group_of, requests, layer, advance, run_chunk);
    const ScopedSeconds timer{times.compress};
    method.compress(stage, stats, tf);
    return advanced;
  };

  Progress progress(o.label, spec.n_layer() + (o.head ? 1 : 0), "layer");
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    before.clear();
    if (o.second_stream) {
      const std::string prefix = str_cat("blk.", i, ".");
      for (const auto& kv : params)
        if (kv.first.compare(0, prefix.size(), prefix) == 0) before[kv.first] = kv.second.clone();
    }
    std::vector<std::vector<LinearGroup>> stages;
    const std::vector<LinearGroup> all = linear_groups(spec, i);
    if (!o.sequential) {
      stages.push_back(all);
    } else {
      for (int order = 0; order <= 3; ++order) {
        std::vector<LinearGroup> st;
        for (const LinearGroup& g : all)
          if (g.order == order) st.push_back(g);
        if (!st.empty()) stages.push_back(std::move(st));
      }
    }
    bool xf_advanced = false;
    for (const std::vector<LinearGroup>& groups : stages)
      xf_advanced = run_stage(i, groups, stages.size() == 1, layer_fn(i)) || xf_advanced;
    // The compressed block's outputs are the next block's inputs.
    const ScopedSeconds timer{times.propagate};
    by_chunks(X, X, layer_fn(i));
    if (o.second_stream && !xf_advanced) {
      swap_before();
      by_chunks(Xf, Xf, layer_fn(i));
      swap_before();
    }
    before.clear();
    progress.update(i + 1, str_cat("layer ", i));
  }
  if (o.head) {
    (void)run_stage(-1, {head_group(spec)}, false,
                    [&](const torch::Tensor& x) { return tf.head(x); });
    progress.update(spec.n_layer() + 1);
  }
  progress.finish(str_cat(N, " x ", T, " calibration tokens"));
  return times;
}

}  // namespace slmc
