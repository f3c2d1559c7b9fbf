#include "prune/prune_pass.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <set>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "compress/core/timer.h"
#include "compress/core/units.h"
#include "compress/model/host_torch.h"
#include "compress/model/layerwise.h"
#include "compress/model/transformer.h"
#include "prune/masks.h"
#include "prune/sparsegpt.h"
#include "prune/structured.h"
#include "prune/wanda.h"

namespace slmc::prune {

namespace {

bool is_block_linear(const TensorDecl& d) { return d.is_linear && d.name.rfind("blk.", 0) == 0; }

// tr(dW H dW^T) / tr(W H W^T): the output error on the calibration inputs (0 if W H W^T is 0).
double rel_output_error(const torch::Tensor& W, const torch::Tensor& Q, const torch::Tensor& H) {
  const torch::Tensor w = W.to(torch::kFloat64), h = H.to(torch::kFloat64);
  const torch::Tensor d = w - Q.to(torch::kFloat64);
  const double den = (w.mm(h) * w).sum().item<double>();
  return den > 0 ? (d.mm(h) * d).sum().item<double>() / den : 0.0;
}

class PrunePass : public Pass {
 public:
  PrunePass(PruneOptions o, OptionOrigins origins)
      : o_(std::move(o)), origins_(std::move(origins)) {
    const bool structured = !o_.structured.empty();
    if (structured) {
      SLMC_CHECK(
          o_.structured == "heads" || o_.structured == "channels" || o_.structured == "layers",
          at("structured"), ": structured '", o_.structured,
          "' is unknown (heads, channels, layers)");
      SLMC_CHECK(o_.method.empty(), at("method"), ": method '", o_.method,
                 "' is for unstructured pruning; structured ", o_.structured,
                 " chooses units by importance (leave method out)");
      SLMC_CHECK(o_.pattern.empty(), at("pattern"), ": pattern '", o_.pattern,
                 "' is for unstructured pruning, not structured ", o_.structured);
      SLMC_CHECK(o_.importance == "activations" || o_.importance == "weights", at("importance"),
                 ": importance '", o_.importance, "' is unknown (activations, weights)");
      SLMC_CHECK(o_.layer_metric == "cosine" || o_.layer_metric == "loss", at("layer_metric"),
                 ": layer_metric '", o_.layer_metric, "' is unknown (cosine, loss)");
      SLMC_CHECK(o_.sparsity != -1, at("sparsity"), ": structured ", o_.structured,
                 " needs sparsity (the share of units to remove, e.g. 0.25)");
    } else {
      SLMC_CHECK(o_.method == "magnitude" || o_.method == "wanda" || o_.method == "sparsegpt",
                 at("method"), ": method '", o_.method,
                 "' is unknown (magnitude, wanda, sparsegpt; or structured heads|channels|layers)");
      if (!o_.pattern.empty()) {
        parse_pattern();
        if (o_.sparsity != -1)
          SLMC_CHECK(std::fabs(o_.sparsity - nm_.sparsity()) < 1e-9, at("sparsity"), ": sparsity ",
                     o_.sparsity, " contradicts pattern ", o_.pattern, " (", nm_.sparsity(),
                     "); leave one out");
      } else {
        SLMC_CHECK(o_.sparsity != -1, at("sparsity"), ": method ", o_.method,
                   " needs sparsity (e.g. 0.5) or pattern (e.g. 2:4)");
      }
    }
    if (!(o_.sparsity == -1 && !o_.pattern.empty()))
      SLMC_CHECK(std::isfinite(o_.sparsity) && o_.sparsity >= 0 && o_.sparsity < 1, at("sparsity"),
                 ": sparsity must be in [0, 1), got ", o_.sparsity);
    SLMC_CHECK(o_.scope == "layer" || o_.scope == "global", at("scope"), ": scope '", o_.scope,
               "' is unknown (layer, global)");
    SLMC_CHECK(o_.scope == "layer" || o_.method == "magnitude", at("scope"),
               ": scope global applies to method magnitude only (wanda compares within each "
               "output row, sparsegpt within each block)");
    SLMC_CHECK(o_.scope == "layer" || !nm_.any(), at("scope"),
               ": scope global has no meaning with pattern ", o_.pattern);
    SLMC_CHECK(o_.calib_batch >= 1, at("calib_batch"), ": calib_batch must be >= 1, got ",
               o_.calib_batch);
    SLMC_CHECK(o_.moe_min_tokens >= 0, at("moe_min_tokens"), ": moe_min_tokens must be >= 0, got ",
               o_.moe_min_tokens);
    SLMC_CHECK(std::isfinite(o_.damp) && o_.damp > 0 && o_.damp <= 1, at("damp"),
               ": damp must be in (0, 1], got ", o_.damp);
    SLMC_CHECK(o_.block_size >= 1, at("block_size"), ": block_size must be >= 1, got ",
               o_.block_size);
    SLMC_CHECK(o_.multiple >= 1, at("multiple"), ": multiple must be >= 1, got ", o_.multiple);
    try {
      (void)Selector(o_.targets, o_.ignore);  // bad regexes fail before any model is loaded
    } catch (const Error& e) {
      fail(e.what());
    }
  }

  std::string name() const override { return "prune"; }
  std::string resolved_options() const override {
    OptionPrinter p;
    PruneOptions copy = o_;
    copy.visit(p);
    return p.os.str();
  }
  bool needs_calibration() const override {
    if (o_.structured == "layers") return true;
    if (!o_.structured.empty()) return o_.importance == "activations";
    return o_.method != "magnitude";
  }
  bool rewrites_weights() const override { return true; }
  ModelSpec output_spec(const ModelSpec& in) const override;
  PassReport run(CompressedModel& m, PassContext& ctx) override;

 private:
  std::string at(const std::string& key) const { return origins_.at(key); }
  void parse_pattern();
  std::string what() const;  // "wanda 2:4", "structured heads", ...

  // Unstructured: the selected block linears, checked against the pattern.
  std::vector<std::string> targets(const ModelSpec& spec) const;
  // Structured heads/channels: the unit sets to cut and how many units each keeps.
  std::vector<std::pair<UnitSet, int64_t>> unit_plan(const ModelSpec& spec) const;
  // Structured layers: candidate blocks and how many to remove.
  std::pair<std::vector<int64_t>, int64_t> layer_plan(const ModelSpec& spec) const;

  void run_magnitude(CompressedModel& m, PassReport& rep) const;
  void run_calibrated(CompressedModel& m, const CalibrationSet& cal, PassReport& rep) const;
  void run_units(CompressedModel& m, const PassContext& ctx, PassReport& rep) const;
  void run_layers(CompressedModel& m, const CalibrationSet& cal, PassReport& rep) const;

  // Stores a pruned tensor: new values, its mask, and its report line.
  void store_mask(CompressedModel& m, const std::string& name, const torch::Tensor& original,
                  const torch::Tensor& pruned, const torch::Tensor& mask, std::string note,
                  PassReport& rep) const;

  PruneOptions o_;
  OptionOrigins origins_;
  NmPattern nm_;
};

void PrunePass::parse_pattern() {
  const size_t colon = o_.pattern.find(':');
  long long n = -1, m = -1;
  char tail = 0;
  const bool ok = colon != std::string::npos &&
                  std::sscanf(o_.pattern.c_str(), "%lld:%lld%c", &n, &m, &tail) == 2;
  SLMC_CHECK(ok, at("pattern"), ": pattern '", o_.pattern, "' is not N:M (e.g. 2:4)");
  SLMC_CHECK(m >= 2 && m <= 1024 && n >= 1 && n < m, at("pattern"), ": pattern ", o_.pattern,
             " needs 1 <= N < M <= 1024 (N kept weights of every M), got N ", n, ", M ", m);
  nm_ = {n, m};
}

std::string PrunePass::what() const {
  if (!o_.structured.empty()) return "structured " + o_.structured;
  return nm_.any() ? str_cat(o_.method, " ", o_.pattern)
                   : str_cat(o_.method, " ", o_.sparsity, o_.scope == "global" ? " global" : "");
}

std::vector<std::string> PrunePass::targets(const ModelSpec& spec) const {
  std::vector<std::string> candidates;
  std::map<std::string, int64_t> cols;
  for (const TensorDecl& d : expected_tensors(spec))
    if (is_block_linear(d)) {
      candidates.push_back(d.name);
      cols[d.name] = d.shape[1];
    }
  const Selector sel(o_.targets, o_.ignore);
  sel.check_all_match(candidates);
  std::vector<std::string> out;
  for (const std::string& n : candidates) {
    if (!sel.selected(n)) continue;
    if (nm_.any()) {
      SLMC_CHECK(cols[n] % nm_.m == 0, at("pattern"), ": pattern ", o_.pattern, ": M ", nm_.m,
                 " does not divide the ", cols[n], " columns of ", n,
                 "; ignore that tensor or use another M");
      SLMC_CHECK(o_.method != "sparsegpt" || o_.block_size % nm_.m == 0, at("block_size"),
                 ": block_size ", o_.block_size, " is not a multiple of the pattern's M ", nm_.m);
    }
    out.push_back(n);
  }
  SLMC_CHECK(!out.empty(), at("targets"), ": targets ", o_.targets.str(), " minus ignore ",
             o_.ignore.str(), " select no linear of the model's blocks");
  return out;
}

std::vector<std::pair<UnitSet, int64_t>> PrunePass::unit_plan(const ModelSpec& spec) const {
  UnitKind kind;
  (void)unit_kind_from_name(o_.structured, &kind);
  std::vector<std::string> candidates;
  for (const TensorDecl& d : expected_tensors(spec))
    if (is_block_linear(d)) candidates.push_back(d.name);
  const Selector sel(o_.targets, o_.ignore);
  sel.check_all_match(candidates);
  std::set<std::string> covered;  // linears some selected set spans
  std::vector<std::pair<UnitSet, int64_t>> out;
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    int64_t layer_kept = -1;  // experts of one layer must keep the same width
    for (UnitSet& set : unit_sets(spec, i)) {
      if (set.kind != kind) continue;
      std::vector<std::string> in, out_of;
      for (const UnitSlice& s : set.slices) {
        if (s.tensor.size() < 7 || s.tensor.compare(s.tensor.size() - 7, 7, ".weight") != 0)
          continue;  // biases follow their weights
        (sel.selected(s.tensor) ? in : out_of).push_back(s.tensor);
      }
      if (in.empty()) continue;
      SLMC_CHECK(out_of.empty(), at("targets"), ": structured ", o_.structured, " of ", set.name(),
                 " spans ", in.front(), " and ", out_of.front(),
                 ", but targets/ignore select only the first; select every tensor of the unit");
      for (const std::string& t : in) covered.insert(t);
      const int64_t kept = kept_units(set, o_.sparsity, o_.multiple, at("sparsity"));
      SLMC_CHECK(layer_kept < 0 || layer_kept == kept, at("targets"), ": the experts of blk.", i,
                 " must be pruned alike (one ffn width per layer)");
      layer_kept = kept;
      out.emplace_back(std::move(set), kept);
    }
  }
  if (out.empty()) {
    // Targets that select tensors, none of them in a unit of this kind: name one.
    for (const std::string& n : candidates)
      SLMC_CHECK(!sel.selected(n) || covered.count(n), at("targets"), ": structured ",
                 o_.structured, ": targets select ", n, ", which belongs to no ",
                 kind == UnitKind::kHeads ? "head" : "channel",
                 " unit (compress/core/units.h: heads span attn_q, attn_k, attn_v rows and "
                 "attn_output columns; channels span ffn_gate, ffn_up rows and ffn_down columns)");
    fail(at("targets"), ": targets ", o_.targets.str(), " minus ignore ", o_.ignore.str(),
         " select no complete ", o_.structured, " unit");
  }
  return out;
}

std::pair<std::vector<int64_t>, int64_t> PrunePass::layer_plan(const ModelSpec& spec) const {
  std::vector<std::string> candidates;
  for (const TensorDecl& d : expected_tensors(spec))
    if (is_block_linear(d)) candidates.push_back(d.name);
  const Selector sel(o_.targets, o_.ignore);
  sel.check_all_match(candidates);
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    const std::string prefix = str_cat("blk.", i, ".");
    int64_t in = 0, all = 0;
    std::string missing;
    for (const std::string& n : candidates)
      if (n.compare(0, prefix.size(), prefix) == 0) {
        ++all;
        if (sel.selected(n))
          ++in;
        else if (missing.empty())
          missing = n;
      }
    if (in == 0) continue;
    SLMC_CHECK(in == all, at("targets"), ": structured layers: targets select part of blk.", i,
               " but not ", missing, "; a block is removed whole");
    layers.push_back(i);
  }
  const int64_t n_remove = removed_units(spec.n_layer(), o_.sparsity);
  SLMC_CHECK(n_remove < spec.n_layer(), at("sparsity"), ": sparsity ", o_.sparsity,
             " would remove every one of the ", spec.n_layer(),
             " layers; a model keeps at least one");
  SLMC_CHECK(n_remove <= static_cast<int64_t>(layers.size()), at("sparsity"), ": sparsity ",
             o_.sparsity, " removes ", n_remove, " of ", spec.n_layer(),
             " layers, but targets select only ", layers.size());
  // The measured choice must not change the resulting spec: the candidate blocks must be alike.
  auto layer_json = [&](int64_t i) {
    ModelSpec one = spec;
    one.layers = {spec.layers[static_cast<size_t>(i)]};
    return one.to_json();
  };
  for (int64_t i : layers)
    SLMC_CHECK(layer_json(i) == layer_json(layers.front()), at("structured"),
               ": structured layers needs blocks alike (blk.", i, " differs from blk.",
               layers.front(),
               " in heads, widths, window or RoPE), so that which ones go does "
               "not change the model's shape; select alike blocks with targets");
  return {layers, n_remove};
}

ModelSpec PrunePass::output_spec(const ModelSpec& in) const {
  if (o_.structured.empty()) {
    (void)targets(in);
    return in;
  }
  if (o_.structured == "layers") {
    const auto [layers, n_remove] = layer_plan(in);
    ModelSpec out = in;
    out.layers.resize(static_cast<size_t>(in.n_layer() - n_remove));
    return out;
  }
  ModelSpec out = in;
  for (const auto& [set, kept] : unit_plan(in)) out = spec_with_units(out, set, kept);
  return out;
}

void PrunePass::store_mask(CompressedModel& m, const std::string& name,
                           const torch::Tensor& original, const torch::Tensor& pruned,
                           const torch::Tensor& mask, std::string note, PassReport& rep) const {
  HostTensor& t = m.model.tensors.at(name);
  t.data = to_vector(pruned);
  SparsityMask sm;
  sm.shape = t.shape;
  sm.pruned = bool_bytes(mask);
  sm.n = nm_.n;
  sm.m = nm_.m;
  m.add_mask(name, std::move(sm));
  TensorReport r;
  r.name = name;
  r.shape = t.shape;
  r.format = "f32";
  r.note = std::move(note);
  r.n_weights = t.numel();
  r.bytes_before = r.bytes_after = static_cast<uint64_t>(t.numel()) * 4;
  const std::vector<float> before = to_vector(original);
  r.dist = codec::measure_distortion(before.data(), t.data.data(), t.numel());
  r.count_zeros(t.data);
  rep.tensors.push_back(std::move(r));
}

void PrunePass::run_magnitude(CompressedModel& m, PassReport& rep) const {
  const std::vector<std::string> names = targets(m.model.spec);
  std::vector<torch::Tensor> W, scores;
  for (const std::string& n : names) {
    W.push_back(to_torch(m.model.tensors.at(n)));
    scores.push_back(W.back().abs());
  }
  std::vector<torch::Tensor> masks;
  if (o_.scope == "global") {
    masks = mask_global(scores, o_.sparsity);
  } else {
    for (const torch::Tensor& s : scores)
      masks.push_back(nm_.any() ? mask_nm(s, nm_) : mask_per_tensor(s, o_.sparsity));
  }
  for (size_t k = 0; k < names.size(); ++k)
    store_mask(m, names[k], W[k], W[k].masked_fill(masks[k], 0.0f), masks[k], what(), rep);
}

// Wanda and SparseGPT on the layer-wise walk: each block's target linears are pruned from their
// inputs on the pruned stream (the reference's order: every linear of a block from one pass).
class CalibratedMethod : public LayerwiseMethod {
 public:
  using Prune = std::function<void(const std::string& name, const GroupStats* stats, bool starved,
                                   Transformer& tf)>;
  CalibratedMethod(std::set<std::string> targets, bool hessian, int64_t min_rows,
                   std::vector<std::string>& notes, Prune prune)
      : targets_(std::move(targets)),
        hessian_(hessian),
        min_rows_(min_rows),
        notes_(notes),
        prune_(std::move(prune)) {}

  std::optional<GroupRequest> request(int64_t layer, const LinearGroup& g) const override {
    if (layer < 0) return std::nullopt;  // the head is never pruned
    for (const std::string& mem : g.members)
      if (targets_.count(mem)) {
        GroupRequest rq;
        rq.hessian = hessian_;
        rq.col_sq = !hessian_;
        return rq;
      }
    return std::nullopt;
  }

  void compress(const LayerStage& stage, StageStats& stats, Transformer& tf) override {
    const std::string note = expert_coverage_note(tf.spec(), stage, stats, min_rows_,
                                                  "below moe_min_tokens, pruned by magnitude: ");
    if (!note.empty()) notes_.push_back(note);
    for (const LinearGroup& g : stage.groups) {
      auto st = stats.find(g.name);
      const GroupStats* s = st == stats.end() ? nullptr : &st->second;
      const bool starved = g.expert >= 0 && (s == nullptr || s->rows < min_rows_);
      for (const std::string& n : g.members)
        if (targets_.count(n)) prune_(n, s, starved, tf);
    }
  }

 private:
  std::set<std::string> targets_;
  bool hessian_;
  int64_t min_rows_;
  std::vector<std::string>& notes_;
  Prune prune_;
};

void PrunePass::run_calibrated(CompressedModel& m, const CalibrationSet& cal,
                               PassReport& rep) const {
  const std::vector<std::string> names = targets(m.model.spec);
  Transformer tf(m.model.spec, m.model.tensors);
  const bool sparsegpt = o_.method == "sparsegpt";
  double method_seconds = 0;
  auto prune_one = [&](const std::string& name, const GroupStats* s, bool starved,
                       Transformer& model) {
    const ScopedSeconds timer{method_seconds};
    torch::Tensor& W = model.params().at(name);
    const torch::Tensor original = W.clone();
    torch::Tensor mask, pruned;
    std::string note = what();
    double out_err = -1, loss = -1;
    try {
      if (starved) {
        const torch::Tensor score = W.abs();
        mask = nm_.any() ? mask_nm(score, nm_) : mask_per_tensor(score, o_.sparsity);
        pruned = W.masked_fill(mask, 0.0f);
        note += str_cat("; expert routed ", s ? s->rows : 0, " calibration tokens (< ",
                        o_.moe_min_tokens, "): magnitude");
      } else if (sparsegpt) {
        SparseGptOptions so;
        so.sparsity = nm_.any() ? 0.0 : o_.sparsity;
        so.pattern = nm_;
        so.block_size = o_.block_size;
        so.damp = o_.damp;
        const SparseGptResult r = sparsegpt_prune(W, s->H, so);
        mask = r.mask;
        pruned = r.weights;
        loss = r.loss;
        out_err = rel_output_error(original, pruned, s->H);
      } else {
        mask = wanda_mask(W, s->col_sq, o_.sparsity, nm_);
        pruned = W.masked_fill(mask, 0.0f);
      }
    } catch (const Error& e) {
      fail(name, ": ", e.what());
    }
    W.copy_(pruned);
    store_mask(m, name, original, pruned, mask, note, rep);
    if (out_err >= 0) rep.tensors.back().extra["out_err"] = out_err;
    if (loss >= 0) rep.tensors.back().extra["obs_loss"] = loss;
  };
  CalibratedMethod method(std::set<std::string>(names.begin(), names.end()), sparsegpt,
                          std::max<int64_t>(1, o_.moe_min_tokens), rep.notes, prune_one);
  LayerwiseOptions lo;
  lo.batch = o_.calib_batch;
  lo.head = false;
  lo.label = str_cat("prune ", o_.method);
  const LayerwiseTimes t = run_layerwise(tf, cal, method, lo);
  rep.notes.push_back(str_cat("time: ", t.collect, " s forwards collecting ",
                              sparsegpt ? "H" : "input norms", ", ", method_seconds, " s ",
                              o_.method, ", ", t.propagate,
                              " s forwards through the pruned layers"));
  for (const std::string& n : names)
    SLMC_CHECK(m.masks.count(n), "prune: ", n, " was a target but was not pruned");
}

// Structured heads/channels: units are chosen block by block; a chosen unit's consumer columns
// are zeroed (and the kept ones refit) in place, so the next blocks are calibrated on the pruned
// stream; the units are removed physically at the end.
class UnitMethod : public LayerwiseMethod {
 public:
  using Choose = std::function<void(const UnitSet& set, int64_t kept, const GroupStats* stats,
                                    std::map<std::string, torch::Tensor>& params)>;
  UnitMethod(const std::vector<std::pair<UnitSet, int64_t>>& plan, Choose choose)
      : choose_(std::move(choose)) {
    for (const auto& p : plan) by_consumer_[p.first.consumer().tensor] = &p;
  }
  std::optional<GroupRequest> request(int64_t layer, const LinearGroup& g) const override {
    if (layer < 0) return std::nullopt;
    for (const std::string& mem : g.members)
      if (by_consumer_.count(mem)) return GroupRequest{};
    return std::nullopt;
  }
  void compress(const LayerStage& stage, StageStats& stats, Transformer& tf) override {
    for (const LinearGroup& g : stage.groups) {
      auto st = stats.find(g.name);
      for (const std::string& mem : g.members) {
        auto p = by_consumer_.find(mem);
        if (p == by_consumer_.end()) continue;
        choose_(p->second->first, p->second->second, st == stats.end() ? nullptr : &st->second,
                tf.params());
      }
    }
  }

 private:
  std::map<std::string, const std::pair<UnitSet, int64_t>*> by_consumer_;
  Choose choose_;
};

void PrunePass::run_units(CompressedModel& m, const PassContext& ctx, PassReport& rep) const {
  const ModelSpec before = m.model.spec;
  const std::vector<std::pair<UnitSet, int64_t>> plan = unit_plan(before);
  for (const auto& [set, kept] : plan)
    for (const UnitSlice& s : set.slices)
      SLMC_CHECK(!m.packed.count(s.tensor), at("structured"), ": ", s.tensor,
                 " is already quantized; prune before quantize");
  const int64_t min_rows = std::max<int64_t>(1, o_.moe_min_tokens);
  std::map<std::string, std::vector<int64_t>> removed;  // by set name
  auto choose = [&](const UnitSet& set, int64_t kept, const GroupStats* s,
                    std::map<std::string, torch::Tensor>& params) {
    const std::string& consumer = set.consumer().tensor;
    const bool calibrated = s != nullptr && s->rows >= (set.expert >= 0 ? min_rows : 1);
    const torch::Tensor imp = calibrated
                                  ? importance_from_activations(set, params.at(consumer), s->H)
                                  : importance_from_weights(set, params);
    const std::vector<int64_t> gone = least_important(imp, set.count - kept);
    removed[set.name()] = gone;
    const torch::Tensor cols = removed_columns(set, gone);
    torch::Tensor& W = params.at(consumer);
    // A sparse consumer keeps its zeros: a dense refit would fill them, so it is only cut.
    const bool refit = calibrated && o_.reconstruct && !m.masks.count(consumer);
    W.copy_(refit ? reconstruct_consumer(W, s->H, cols, o_.damp)
                  : W.masked_fill(cols.unsqueeze(0), 0.0f));
    std::string list;
    for (int64_t u : gone) list += str_cat(list.empty() ? "" : ", ", u);
    rep.notes.push_back(str_cat(set.name(), ": kept ", kept, " of ", set.count, ", removed [", list,
                                "] by ", calibrated ? "activations" : "weights",
                                refit                          ? ", consumer refit"
                                : calibrated && o_.reconstruct ? ", no refit (sparse consumer)"
                                                               : "",
                                s != nullptr && !calibrated
                                    ? str_cat(" (expert routed ", s->rows, " calibration tokens)")
                                    : std::string()));
  };
  if (o_.importance == "activations") {
    // Units chosen block by block on the pruned stream; consumers copied back at the end.
    Transformer tf(before, m.model.tensors);
    UnitMethod method(plan, choose);
    LayerwiseOptions lo;
    lo.batch = o_.calib_batch;
    lo.head = false;
    lo.label = str_cat("prune ", o_.structured);
    (void)run_layerwise(tf, *ctx.calibration, method, lo);
    for (const auto& [set, kept] : plan) {
      const std::string& consumer = set.consumer().tensor;
      m.model.tensors.at(consumer).data = to_vector(tf.params().at(consumer));
    }
  } else {
    // From the weights alone: views over the host tensors (no copy of the model), written in place.
    Progress bar(str_cat("prune ", o_.structured), static_cast<int64_t>(plan.size()), "set");
    int64_t done = 0;
    for (const auto& [set, kept] : plan) {
      std::map<std::string, torch::Tensor> views;
      for (const UnitSlice& sl : set.slices) {
        HostTensor& t = m.model.tensors.at(sl.tensor);
        views[sl.tensor] = torch::from_blob(t.data.data(), t.shape, torch::kFloat32);
      }
      choose(set, kept, nullptr, views);
      bar.update(++done, set.name());
    }
    bar.finish();
  }
  std::map<std::string, std::vector<int64_t>> before_shapes;
  for (const auto& [set, kept] : plan)
    for (const UnitSlice& s : set.slices)
      before_shapes[s.tensor] = m.model.tensors.at(s.tensor).shape;
  ModelSpec out = before;
  for (const auto& [set, kept] : plan) {
    remove_units(m.model.tensors, m.masks, set, removed.at(set.name()));
    out = spec_with_units(out, set, kept);
  }
  m.model.spec = out;
  for (const auto& [name, shape] : before_shapes) {
    const HostTensor& t = m.model.tensors.at(name);
    TensorReport r;
    r.name = name;
    r.shape = t.shape;
    r.format = "f32";
    r.note = str_cat("was ", shape_str(shape));
    r.n_weights = t.numel();
    r.bytes_before = static_cast<uint64_t>(shape_numel(shape)) * 4;
    r.bytes_after = static_cast<uint64_t>(t.numel()) * 4;
    r.count_zeros(t.data);
    rep.tensors.push_back(std::move(r));
  }
}

void PrunePass::run_layers(CompressedModel& m, const CalibrationSet& cal, PassReport& rep) const {
  const auto [candidates, n_remove] = layer_plan(m.model.spec);
  std::vector<double> score;
  {
    const Transformer tf(m.model.spec, m.model.tensors);
    score = block_importance(tf, cal, o_.layer_metric, o_.calib_batch);
  }
  std::vector<int64_t> order = candidates;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return score[static_cast<size_t>(a)] < score[static_cast<size_t>(b)];
  });
  std::vector<int64_t> removed(order.begin(), order.begin() + n_remove);
  std::sort(removed.begin(), removed.end());
  std::string scores, gone, kept;
  for (int64_t i = 0; i < m.model.spec.n_layer(); ++i) {
    scores += str_cat(i ? ", " : "", i, ": ", score[static_cast<size_t>(i)]);
    const bool out = std::binary_search(removed.begin(), removed.end(), i);
    (out ? gone : kept) += str_cat((out ? gone : kept).empty() ? "" : ", ", i);
  }
  rep.notes.push_back(str_cat(
      "block ",
      o_.layer_metric == "cosine" ? "influence (1 - cos)" : "loss effect (NLL without it - NLL)",
      " on the calibration data: ", scores));
  rep.notes.push_back(str_cat("removed layers [", gone, "]; kept layers [", kept,
                              "] (renumbered from 0 in that order)"));
  const int64_t L = m.model.spec.n_layer();
  std::map<std::string, int64_t> sizes;
  for (const auto& [name, t] : m.model.tensors)
    if (name.rfind("blk.", 0) == 0) sizes[name] = t.numel();
  remove_layers(m.model, m.masks, removed);
  TensorReport r;
  r.name = str_cat("blk.* (", L, " -> ", m.model.spec.n_layer(), " layers)");
  r.format = "f32";
  r.note = str_cat("kept layers [", kept, "]");
  int64_t before = 0, after = 0;
  for (const auto& kv : sizes) before += kv.second;
  for (const auto& [name, t] : m.model.tensors)
    if (name.rfind("blk.", 0) == 0) {
      after += t.numel();
      r.count_zeros(t.data);
    }
  r.n_weights = after;
  r.n_zero = 0;
  for (const auto& [name, t] : m.model.tensors)
    if (name.rfind("blk.", 0) == 0)
      for (float v : t.data) r.n_zero += v == 0.0f;
  r.bytes_before = static_cast<uint64_t>(before) * 4;
  r.bytes_after = static_cast<uint64_t>(after) * 4;
  rep.tensors.push_back(std::move(r));
}

PassReport PrunePass::run(CompressedModel& m, PassContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard ng;
  PassReport rep;
  rep.pass = name();
  rep.options = resolved_options();
  (void)output_spec(m.model.spec);
  if (needs_calibration())
    (void)require_calibration(ctx, m.model.spec,
                              at(o_.structured.empty() ? "method" : "structured"), what());
  if (o_.structured.empty()) {
    for (const std::string& n : targets(m.model.spec))
      SLMC_CHECK(!m.packed.count(n), at("method"), ": ", n,
                 " is already quantized; prune before quantize");
    if (o_.method == "magnitude")
      run_magnitude(m, rep);
    else
      run_calibrated(m, *ctx.calibration, rep);
  } else if (o_.structured == "layers") {
    for (const auto& kv : m.packed)
      SLMC_CHECK(kv.first.rfind("blk.", 0) != 0, at("structured"), ": ", kv.first,
                 " is already quantized; prune before quantize");
    run_layers(m, *ctx.calibration, rep);
  } else {
    run_units(m, ctx, rep);
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rep.peak_rss_bytes = peak_rss_bytes();
  return rep;
}

}  // namespace

std::unique_ptr<Pass> make_prune_pass(PruneOptions o, OptionOrigins origins) {
  return std::make_unique<PrunePass>(std::move(o), std::move(origins));
}

void register_prune_pass() {
  register_options_pass<PruneOptions>(
      "prune",
      "pruning: magnitude, wanda, sparsegpt (unstructured, N:M); structured heads, "
      "channels, layers",
      [](PruneOptions o, OptionOrigins origins) {
        return make_prune_pass(std::move(o), std::move(origins));
      });
}

}  // namespace slmc::prune
