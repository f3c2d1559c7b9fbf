#include "quantize/quantize_pass.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>
#include <set>
#include <sstream>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "compress/core/timer.h"
#include "compress/model/hessian.h"
#include "compress/model/host_torch.h"
#include "compress/model/layerwise.h"
#include "compress/model/transformer.h"
#include "compress/recipe/yaml_options.h"
#include "quantize/mixed.h"

namespace slmc::quant {

namespace {

using codec::Format;

const char* fname(Format f) { return codec::format_info(f).name; }

Format parse_format(const std::string& name, const std::string& where, const char* key) {
  Format f;
  SLMC_CHECK(codec::format_from_name(name, &f), where, ": ", key, " '", name,
             "' is not a format (formats: ", codec::format_names(), ")");
  return f;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// The pruned weights of `name` as a bool tensor (undefined if it has no mask).
torch::Tensor pruned_mask(const CompressedModel& m, const std::string& name) {
  auto it = m.masks.find(name);
  return it == m.masks.end() ? torch::Tensor() : bool_tensor(it->second.shape, it->second.pruned);
}

// A tensor the pass will store, and how.
struct Planned {
  std::string name;
  std::vector<int64_t> shape;
  Format format = Format::kF16;
  bool fallback = false;
  std::string note;
  double kl_sens = -1;  // target_bpw: KL of the final logits with only this tensor quantized
  // target_bpw with gptq: the other candidates of exactly the chosen format's bytes (q4_0 and
  // q4_g64 both take 4.5 bits), with their sensitivities. The layer-wise pass quantizes the
  // tensor in each and keeps the one with the least output error on the quantized stream: the
  // allocator decides how many bytes a tensor gets, the real Hessian decides the grid.
  std::vector<std::pair<Format, double>> same_size;
};

std::string bias_of(const std::string& weight) {
  return weight.substr(0, weight.rfind('.')) + ".bias";
}

class QuantizePass : public Pass {
 public:
  QuantizePass(QuantizeOptions o, OptionOrigins origins)
      : o_(std::move(o)), origins_(std::move(origins)) {
    SLMC_CHECK(o_.method == "rtn" || o_.method == "gptq" || o_.method == "awq", at("method"),
               ": method '", o_.method, "' is unknown (rtn, gptq, awq)");
    base_ = resolve_format(o_, origins_.where.count("bits") ? at("bits") : at("group_size"));
    if (o_.head_format != "same") {
      head_ = parse_format(o_.head_format, at("head_format"), "head_format");
    } else {
      head_ = base_;
    }
    SLMC_CHECK(o_.calib_batch >= 1, at("calib_batch"), ": calib_batch must be >= 1, got ",
               o_.calib_batch);
    SLMC_CHECK(o_.sens_samples >= 1, at("sens_samples"), ": sens_samples must be >= 1, got ",
               o_.sens_samples);
    SLMC_CHECK(o_.moe_min_tokens >= 0, at("moe_min_tokens"), ": moe_min_tokens must be >= 0, got ",
               o_.moe_min_tokens);
    for (const auto& [key, on] : {std::pair<const char*, bool>{"symmetric", o_.symmetric},
                                  std::pair<const char*, bool>{"per_channel", o_.per_channel}})
      SLMC_CHECK(!on || o_.method == "rtn", at(key), ": ", key,
                 " applies to method rtn only (gptq and awq choose their own grids), got method ",
                 o_.method);
    SLMC_CHECK(o_.target_bpw >= 0 && std::isfinite(o_.target_bpw), at("target_bpw"),
               ": target_bpw must be >= 0, got ", o_.target_bpw);
    if (o_.target_bpw > 0) {
      for (const std::string& n : split_commas(o_.mix_formats))
        mix_.push_back(parse_format(n, at("mix_formats"), "mix_formats"));
      SLMC_CHECK(!mix_.empty(), at("mix_formats"), ": mix_formats lists no format");
      double lo = 1e9, hi = 0;
      for (Format f : mix_) {
        lo = std::min(lo, codec::format_info(f).bits_per_weight());
        hi = std::max(hi, codec::format_info(f).bits_per_weight());
      }
      SLMC_CHECK(o_.target_bpw >= lo && o_.target_bpw <= hi, at("target_bpw"), ": target_bpw ",
                 o_.target_bpw, " is outside what mix_formats can reach [", lo, ", ", hi, "]");
    }
    try {
      (void)Selector(o_.targets, o_.ignore);  // bad regexes fail before any model is loaded
    } catch (const Error& e) {
      fail(e.what());
    }
    try {
      o_.gptq.validate();
      o_.awq.validate();
    } catch (const Error& e) {
      fail(at("quantize"), ": ", e.what());
    }
  }

  std::string name() const override { return "quantize"; }

  // The rtn grid rule for tensors stored in `f` (formats without a grid have none).
  GridRule rule_for(Format f) const {
    GridRule r;
    if (codec::has_grid(f)) {
      r.symmetric = o_.symmetric;
      r.per_channel = o_.per_channel;
    }
    return r;
  }

  std::string resolved_options() const override {
    OptionPrinter p;
    QuantizeOptions copy = o_;
    copy.visit(p);
    return p.os.str();
  }

  bool needs_calibration() const override { return o_.method != "rtn" || o_.target_bpw > 0; }

  ModelSpec output_spec(const ModelSpec& in) const override {
    (void)plan(in);
    return in;
  }
  bool packs_tensors() const override { return true; }

  PassReport run(CompressedModel& m, PassContext& ctx) override;

  std::string at(const std::string& key) const { return origins_.at(key); }
  const QuantizeOptions& options() const { return o_; }

 private:

  bool is_head(const ModelSpec& spec, const std::string& name) const {
    return name == names::kOutput || (spec.tied_embeddings && name == names::kTokenEmbd);
  }

  friend class QuantizeMethod;
  std::vector<Planned> plan(const ModelSpec& spec) const;
  void allocate_mixed(const CompressedModel& m, const CalibrationSet& cal,
                      std::vector<Planned>& plan, PassReport& rep) const;
  void quantize_layerwise(CompressedModel& m, const CalibrationSet& cal,
                          std::map<std::string, Planned*>& plan, PassReport& rep);
  void store(CompressedModel& m, const Planned& p, QuantResult r, PassReport& rep) const;

  QuantizeOptions o_;
  OptionOrigins origins_;
  Format base_ = Format::kQ4_0;
  Format head_ = Format::kQ8_0;
  std::vector<Format> mix_;
};

std::vector<Planned> QuantizePass::plan(const ModelSpec& spec) const {
  std::vector<TensorDecl> matrices;
  std::vector<std::string> candidates;
  // Linears and the embedding table; the MoE router stays f32 (routing is too sensitive, and it
  // is n_expert rows).
  for (const TensorDecl& d : expected_tensors(spec))
    if (d.shape.size() == 2 && (d.is_linear || d.name == names::kTokenEmbd)) {
      matrices.push_back(d);
      candidates.push_back(d.name);
    }
  const Selector sel(o_.targets, o_.ignore);
  sel.check_all_match(candidates);
  const bool strict = origins_.given.count("group_size") || origins_.given.count("format");
  std::vector<Planned> out;
  for (const TensorDecl& d : matrices) {
    if (!sel.selected(d.name)) continue;
    Planned p;
    p.name = d.name;
    p.shape = d.shape;
    const bool head = is_head(spec, d.name) && o_.target_bpw == 0 &&
                      codec::format_info(base_).bits_per_weight() < 8;
    p.format = head ? head_ : base_;
    const int64_t cols = d.shape[1];
    if (!codec::row_fits(p.format, cols)) {
      const codec::FormatInfo& fi = codec::format_info(p.format);
      if (strict && !head) {
        const std::string key = origins_.given.count("format") ? "format" : "group_size";
        fail(at(key), ": ", key == "format" ? "format " + std::string(fi.name) : "group_size " + std::to_string(o_.group_size),
             " does not divide the ", cols, " columns of ", d.name, " (", fi.name,
             " needs rows of a multiple of ", fi.block_size,
             "); ignore that tensor or leave group_size out to get the documented fallback");
      }
      p.format = fallback_format(p.format, cols);
      p.fallback = true;
      p.note = str_cat(cols, " columns do not fit ", fi.name, " (groups of ", fi.block_size,
                       "): ", fname(p.format));
    }
    out.push_back(std::move(p));
  }
  SLMC_CHECK(!out.empty(), at("targets"), ": targets ", o_.targets.str(), " minus ignore ",
             o_.ignore.str(), " select no tensor of the model");
  return out;
}

// r.dist compares with the weights the method was given (for AWQ: the scaled weights).
void QuantizePass::store(CompressedModel& m, const Planned& p, QuantResult r, PassReport& rep) const {
  TensorReport t;
  t.name = p.name;
  t.shape = p.shape;
  t.format = fname(r.packed.format);
  t.fallback = p.fallback;
  t.note = p.note;
  t.n_weights = shape_numel(p.shape);
  t.bytes_before = static_cast<uint64_t>(t.n_weights) * 4;
  t.bytes_after = r.packed.bytes.size();
  const std::vector<float> deq = to_vector(r.dequant);
  t.count_zeros(deq);
  t.dist = r.dist;
  if (r.rel_output_error >= 0) t.extra["out_err"] = r.rel_output_error;
  if (p.kl_sens >= 0) t.extra["kl_sens"] = p.kl_sens;
  // Pruned weights must decode to exactly zero (every grid of today's formats holds 0; a format
  // whose grid cannot would be refused here, naming the tensor).
  auto mask = m.masks.find(p.name);
  if (mask != m.masks.end()) {
    int64_t lost = 0;
    for (size_t k = 0; k < deq.size(); ++k) lost += mask->second.pruned[k] && deq[k] != 0.0f;
    SLMC_CHECK(lost == 0, at("format"), ": ", p.name, " is pruned (", mask->second.n_pruned(),
               " weights), but ", lost, " of them are not exactly zero in ", t.format,
               "; store it in a format that holds an exact zero (q8_0, q4_0, q4_g64, q4_g128, "
               "f16) or quantize before pruning");
    t.note += str_cat(t.note.empty() ? "" : "; ", "pruned ", mask->second.pattern(),
                      ": zeros kept");
  }
  rep.tensors.push_back(std::move(t));
  m.set_packed(p.name, std::move(r.packed), deq);
}

// Sensitivity of every planned tensor to every candidate format: KL(original || model with only
// that tensor quantized to that format) on the first sens_samples calibration rows. The KLs are
// nearly additive for small perturbations, which the allocator relies on. The tensor is
// quantized the way the method will store it: rtn (and awq, whose scale search needs the
// layer-by-layer pass) round to nearest; gptq runs GPTQ on the tensor's Hessian from the
// unquantized model on every calibration row (plain GPTQ: asym_calib needs the quantized stream).
// GPTQ lowers some tensors' errors far more than others' (and q4_g64's less than q4_0's), so
// round-to-nearest sensitivities misjudge what a GPTQ mix will get.
void QuantizePass::allocate_mixed(const CompressedModel& m, const CalibrationSet& cal,
                                  std::vector<Planned>& plan, PassReport& rep) const {
  torch::NoGradGuard ng;
  Transformer tf(m.model.spec, m.model.tensors);
  const int64_t n = std::min<int64_t>(o_.sens_samples, static_cast<int64_t>(cal.rows.size()));
  const torch::Tensor tokens = calibration_tokens(cal, n);
  const torch::Tensor ref = torch::log_softmax(tf.forward(tokens), -1);
  const torch::Tensor ref_p = ref.exp();
  // Tensors with one candidate at most (their columns divide no group, so only a float format or
  // nothing fits) have no choice: they are stored in it (or f16) outside the budget and reported,
  // so one odd tensor cannot make a budget infeasible.
  std::vector<TensorChoices> choices;
  std::vector<size_t> chosen_index;  // plan index of each entry of `choices`
  int64_t total_weights = 0, steps = 0, forced_weights = 0;
  std::vector<std::vector<Format>> cands(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    for (Format f : mix_)
      if (codec::row_fits(f, plan[i].shape[1])) cands[i].push_back(f);
    if (cands[i].size() > 1) steps += static_cast<int64_t>(cands[i].size());
  }

  // gptq: one H = sum x x^T per input group (q/k/v share one, gate/up another, an expert's its
  // own), for the tensors that have a choice, over every calibration row of the unquantized
  // model. Memory: up to n_layer x (3 d^2 + ffn^2) floats for a dense model.
  const bool gptq = o_.method == "gptq";
  struct GroupH {
    torch::Tensor H;
    int64_t rows = 0;
  };
  std::map<std::string, GroupH> group_h;       // by "blk.i/<group>" or "head"
  std::map<std::string, std::string> hook_of;  // the one linear that feeds a group's H -> its key
  std::map<std::string, std::string> key_of;   // planned tensor with a choice -> its group's key
  std::set<std::string> expert_keys;
  if (gptq) {
    std::set<std::string> choosing;  // untied embeddings are looked up: no group, so rtn
    for (size_t i = 0; i < plan.size(); ++i)
      if (cands[i].size() > 1) choosing.insert(plan[i].name);
    auto add_group = [&](const std::string& key, const std::vector<std::string>& members) {
      for (const std::string& mem : members)
        if (choosing.count(mem)) {
          key_of[mem] = key;
          hook_of[members.front()] = key;  // the members share the input
        }
    };
    for (int64_t l = 0; l < m.model.spec.n_layer(); ++l)
      for (const LinearGroup& g : linear_groups(m.model.spec, l)) {
        const std::string key = str_cat("blk.", l, "/", g.name);
        if (g.expert >= 0) expert_keys.insert(key);
        add_group(key, g.members);
      }
    add_group("head", {m.model.spec.tied_embeddings ? names::kTokenEmbd : names::kOutput});
    tf.set_linear_hook(
        [&](const std::string& name, const torch::Tensor& input, const torch::Tensor&) {
          auto k = hook_of.find(name);
          if (k == hook_of.end()) return;
          const torch::Tensor x = input.reshape({-1, input.size(-1)});
          GroupH& g = group_h[k->second];
          add_outer(g.H, x, x);
          g.rows += x.size(0);
        });
    const int64_t N = static_cast<int64_t>(cal.rows.size());
    const torch::Tensor all = calibration_tokens(cal, N);
    for (int64_t c = 0; c < N; c += o_.calib_batch)
      (void)tf.forward(all.narrow(0, c, std::min(o_.calib_batch, N - c)));
    tf.set_linear_hook(nullptr);
  }
  Progress progress("sensitivity", steps, "trial");
  int64_t done = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    Planned& p = plan[i];
    if (cands[i].size() <= 1) {
      p.format = cands[i].empty() ? Format::kF16 : cands[i][0];
      p.fallback = true;
      p.note = str_cat(p.shape[1], " columns leave no choice among mix_formats: ", fname(p.format),
                       ", outside the budget");
      forced_weights += shape_numel(p.shape);
      continue;
    }
    torch::Tensor& param = tf.params().at(p.name);
    const torch::Tensor orig = param.clone();
    TensorChoices tc;
    tc.name = p.name;
    tc.n_weights = shape_numel(p.shape);
    total_weights += tc.n_weights;
    // The layer-wise pass stores with rtn an untied embedding (looked up) and an expert routed
    // fewer than moe_min_tokens calibration tokens: measure those with rtn too.
    torch::Tensor H;
    if (key_of.count(p.name)) {
      const std::string& key = key_of.at(p.name);
      auto g = group_h.find(key);
      const int64_t min_rows = expert_keys.count(key) ? std::max<int64_t>(1, o_.moe_min_tokens) : 1;
      if (g != group_h.end() && g->second.rows >= min_rows) H = g->second.H;
    }
    for (Format f : cands[i]) {
      const QuantResult r = H.defined() && codec::has_grid(f)
                                ? gptq_quantize(orig, H, f, o_.gptq, pruned_mask(m, p.name))
                                : rtn_quantize(orig, f, {}, {}, rule_for(f));
      param.copy_(r.dequant);
      const torch::Tensor lp = torch::log_softmax(tf.forward(tokens), -1);
      const double kl = (ref_p * (ref - lp)).sum(-1).mean().item<double>();
      tc.options.push_back({f, static_cast<uint64_t>(r.packed.bytes.size()), std::max(0.0, kl)});
      progress.update(++done, p.name);
    }
    param.copy_(orig);
    choices.push_back(std::move(tc));
    chosen_index.push_back(i);
  }
  SLMC_CHECK(!choices.empty(), at("mix_formats"), ": no target fits any of mix_formats ",
             o_.mix_formats);
  const uint64_t budget =
      static_cast<uint64_t>(std::floor(o_.target_bpw * static_cast<double>(total_weights) / 8.0));
  Allocation a;
  try {
    a = allocate_formats(choices, budget);
  } catch (const Error& e) {
    fail(at("target_bpw"), ": target_bpw ", o_.target_bpw, ": ", e.what());
  }
  for (size_t k = 0; k < choices.size(); ++k) {
    Planned& p = plan[chosen_index[k]];
    const FormatCost& c = choices[k].options[a.choice[k]];
    p.format = c.format;
    p.fallback = false;
    p.note.clear();
    p.kl_sens = c.error;
    if (gptq && codec::has_grid(c.format))
      for (const FormatCost& o : choices[k].options)
        if (o.format != c.format && o.bytes == c.bytes && codec::has_grid(o.format))
          p.same_size.emplace_back(o.format, o.error);
  }
  if (forced_weights > 0)
    rep.notes.push_back(str_cat(forced_weights, " weights have no choice among mix_formats and are "
                                "stored outside the budget"));
  progress.finish(str_cat(plan.size(), " tensors"));
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "target_bpw %.3f: budget %llu bytes, allocated %llu bytes = %.4f bits/weight "
                "(%.2f%% of the budget), summed sensitivity KL %.5g",
                o_.target_bpw, static_cast<unsigned long long>(budget),
                static_cast<unsigned long long>(a.bytes), a.bits_per_weight,
                budget ? 100.0 * static_cast<double>(a.bytes) / static_cast<double>(budget) : 0.0,
                a.error);
  rep.notes.push_back(buf);
}

// The methods' side of the layer-wise walk (compress/model/layerwise.h): every planned linear's
// input group collects H (and, for GPTQ asym_calib, D from the second stream; for AWQ a subsample
// of its inputs), then each stage's linears are quantized in place.
class QuantizeMethod : public LayerwiseMethod {
 public:
  QuantizeMethod(const QuantizePass& pass, CompressedModel& m, const CalibrationSet& cal,
                 std::map<std::string, Planned*>& plan, PassReport& rep)
      : pass_(pass), o_(pass.o_), m_(m), plan_(plan), rep_(rep),
        awq_(o_.method == "awq"),
        asym_(o_.method == "gptq" && o_.gptq.asym_calib > 0),
        stride_(awq_ ? std::max<int64_t>(1, cal.n_tokens() / o_.awq.max_tokens) : 0) {}

  bool asym() const { return asym_; }
  double method_seconds = 0;  // the method's own work (searches and solves)

  std::optional<GroupRequest> request(int64_t layer, const LinearGroup& g) const override {
    bool any = false;
    for (const std::string& mem : g.members) any = any || plan_.count(mem);
    // A head the walk already stored (never, today: only an untied embedding is stored before).
    if (!any || (layer < 0 && m_.packed.count(g.members[0]))) return std::nullopt;
    GroupRequest rq;
    // asym_calib leaves a tied head alone: its target would fit the logits, but the same table
    // is the embedding every layer was calibrated on (wikitext5m q4_0 at asym_calib 0.5: KL
    // 0.00115 with the tied head included, 0.00099 without).
    rq.pair = asym_ && !(layer < 0 && m_.model.spec.tied_embeddings);
    rq.sample_stride = stride_;
    return rq;
  }

  // Untied embeddings are looked up, not multiplied: round to nearest before calibration so the
  // layers see the quantized embedding.
  void before_walk(Transformer& tf) override {
    if (m_.model.spec.tied_embeddings || !plan_.count(names::kTokenEmbd)) return;
    Planned& p = *plan_.at(names::kTokenEmbd);
    torch::Tensor& W = tf.params().at(names::kTokenEmbd);
    QuantResult r = rtn_quantize(W, p.format);
    W.copy_(r.dequant);
    p.note = p.note.empty() ? "embedding: rtn" : p.note + "; embedding: rtn";
    pass_.store(m_, p, std::move(r), rep_);
  }

  void compress(const LayerStage& stage, StageStats& stats, Transformer& tf) override;

 private:
  // D (GPTQ asym_calib, dense groups): (Xf - X)^T X, the unquantized stream's inputs against the
  // quantized stream's.
  void quantize_one(Transformer& tf, const std::string& name, const torch::Tensor& H,
                    const torch::Tensor& D, const torch::Tensor& X, bool allow_clip,
                    bool rtn_fallback);

  const QuantizePass& pass_;
  const QuantizeOptions& o_;
  CompressedModel& m_;
  std::map<std::string, Planned*>& plan_;
  PassReport& rep_;
  const bool awq_, asym_;
  const int64_t stride_;
  std::set<int64_t> covered_;  // MoE blocks whose coverage was reported
};

void QuantizeMethod::quantize_one(Transformer& tf, const std::string& name, const torch::Tensor& H,
                                  const torch::Tensor& D, const torch::Tensor& X, bool allow_clip,
                                  bool rtn_fallback) {
  Planned& p = *plan_.at(name);
  torch::Tensor& W = tf.params().at(name);
  const torch::Tensor pinned = pruned_mask(m_, name);
  QuantResult r;
  // A method's error names the tensor.
  try {
    if (!codec::has_grid(p.format) || rtn_fallback) {
      r = rtn_quantize(W, p.format, H);
    } else if (awq_) {
      torch::Tensor clip;
      if (o_.awq.clip && allow_clip && X.defined()) clip = awq_search_clip(W, X, p.format, o_.awq);
      r = rtn_quantize(W, p.format, H, clip);
    } else {
      // asym_calib: GPTQ on the least-squares target, whose output error on the quantized stream
      // is the asymmetric objective up to a constant.
      const torch::Tensor target =
          D.defined() ? gptq_asym_target(W, H, D, o_.gptq.asym_calib, o_.gptq.damp) : W;
      r = gptq_quantize(target, H, p.format, o_.gptq, pinned);
      if (!p.same_size.empty()) {
        double best = r.rel_output_error;  // against the target, on this H
        std::string tried = str_cat(fname(p.format), " ", best);
        for (const auto& [f, kl] : p.same_size) {
          QuantResult alt = gptq_quantize(target, H, f, o_.gptq, pinned);
          const double e = alt.rel_output_error;
          tried += str_cat(", ", fname(f), " ", e);
          if (e < best) {
            best = e;
            r = std::move(alt);
            p.format = f;
            p.kl_sens = kl;
          }
        }
        p.note += str_cat(p.note.empty() ? "" : "; ", "same-size formats by output error: ", tried);
      }
      // Reported against the original weights, like every other method.
      if (D.defined()) {
        r.dist = distortion(W, r.dequant);
        r.rel_output_error = rel_output_error(W, r.dequant, H);
      }
    }
  } catch (const Error& e) {
    fail(name, ": ", e.what());
  }
  W.copy_(r.dequant);
  pass_.store(m_, p, std::move(r), rep_);
}

void QuantizeMethod::compress(const LayerStage& stage, StageStats& stats, Transformer& tf) {
  const ScopedSeconds timer{method_seconds};
  auto& params = tf.params();
  const int64_t i = stage.layer;
  const std::vector<LinearGroup>& groups = stage.groups;
  const int64_t min_rows = std::max<int64_t>(1, o_.moe_min_tokens);  // no token: always rtn
  // MoE coverage: the calibration tokens routed to each expert (an expert's groups all see the
  // same tokens); experts below moe_min_tokens, or with none, are quantized with rtn.
  if (!covered_.count(i)) {
    const std::string note = expert_coverage_note(
        m_.model.spec, stage, stats, min_rows,
        str_cat("below moe_min_tokens ", o_.moe_min_tokens, ", quantized with rtn: "));
    if (!note.empty()) {
      covered_.insert(i);
      rep_.notes.push_back(note);
    }
  }
  auto rows_of = [&](const LinearGroup& g) -> int64_t {
    auto st = stats.find(g.name);
    return st == stats.end() ? 0 : st->second.rows;
  };
  std::set<std::string> starved;  // expert groups quantized with rtn for lack of tokens
  for (const LinearGroup& g : groups)
    if (g.expert >= 0 && rows_of(g) < min_rows) starved.insert(g.name);
  // AWQ searches and folds every group's scales first (the attn_out fold rescales attn_v's
  // rows, the ffn_out fold ffn_up's), then every linear is quantized once, as AutoAWQ does.
  std::map<std::string, torch::Tensor> group_H, group_D, group_X;
  for (const LinearGroup& g : groups) {
    auto st = stats.find(g.name);
    if (st == stats.end() || starved.count(g.name)) continue;
    torch::Tensor H = st->second.H;
    torch::Tensor Xs;
    if (awq_) {
      Xs = torch::cat(st->second.samples, 0);
      st->second.samples.clear();
      // Fold scales only where the producer of the input can absorb them exactly
      // (linear_groups leaves prev_norm/prev_linear empty where it cannot).
      if (!g.prev_norm.empty() || !g.prev_linear.empty()) {
        std::vector<torch::Tensor> Ws;
        std::vector<Format> fs;
        for (const std::string& n : g.members) {
          Ws.push_back(params.at(n));
          fs.push_back(plan_.count(n) ? plan_.at(n)->format : Format::kF32);
        }
        const AwqScaleResult sr = awq_search_scales(Ws, Xs, fs, o_.awq);
        const torch::Tensor& s = sr.scales;
        if (!g.prev_norm.empty()) {
          params.at(g.prev_norm).div_(s);
        } else {
          params.at(g.prev_linear).div_(s.unsqueeze(1));
          auto b = params.find(bias_of(g.prev_linear));
          if (b != params.end()) b->second.div_(s);
        }
        for (const std::string& n : g.members) params.at(n).mul_(s.unsqueeze(0));
        Xs = Xs / s.unsqueeze(0);
        H = H / s.unsqueeze(1) / s.unsqueeze(0);
        for (const std::string& n : g.members) {
          if (plan_.count(n))
            plan_.at(n)->note += str_cat(plan_.at(n)->note.empty() ? "" : "; ", "awq alpha ",
                                         sr.best_ratio, ", group err x",
                                         sr.loss_plain > 0 ? sr.loss_best / sr.loss_plain : 1.0);
        }
      }
    }
    group_H[g.name] = H;
    group_D[g.name] = st->second.D;
    group_X[g.name] = Xs;
  }
  for (const LinearGroup& g : groups) {
    const bool fallback = starved.count(g.name) > 0;
    if (!fallback && !group_H.count(g.name)) continue;
    const int64_t rows = rows_of(g);
    for (const std::string& n : g.members) {
      if (!plan_.count(n)) continue;
      if (fallback)
        plan_.at(n)->note += str_cat(plan_.at(n)->note.empty() ? "" : "; ", "expert ", g.expert,
                                     " routed ", rows, " calibration tokens (< moe_min_tokens ",
                                     o_.moe_min_tokens, "): rtn");
      // AutoAWQ does not clip q and k: attention logits are too sensitive to it.
      const bool clip_ok = n != names::blk(i, names::kAttnQ) && n != names::blk(i, names::kAttnK);
      // A starved expert's H (if any) still weighs the reported output error.
      const torch::Tensor H = fallback ? (stats.count(g.name) ? stats.at(g.name).H : torch::Tensor())
                                       : group_H[g.name];
      quantize_one(tf, n, H, fallback ? torch::Tensor() : group_D[g.name],
                   fallback ? torch::Tensor() : group_X[g.name], clip_ok, fallback);
    }
  }
}

void QuantizePass::quantize_layerwise(CompressedModel& m, const CalibrationSet& cal,
                                      std::map<std::string, Planned*>& plan, PassReport& rep) {
  torch::NoGradGuard ng;
  Transformer tf(m.model.spec, m.model.tensors);
  QuantizeMethod method(*this, m, cal, plan, rep);
  LayerwiseOptions lo;
  lo.batch = o_.calib_batch;
  lo.sequential = o_.method == "gptq" && o_.gptq.true_sequential;
  lo.second_stream = method.asym();
  lo.label = str_cat("quantize ", o_.method);
  const LayerwiseTimes t = run_layerwise(tf, cal, method, lo);
  // Where the time goes: forwards that collect H, the method's own work (searches and solves),
  // and forwards through each layer once it is quantized.
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "time: %.1f s forwards collecting H, %.1f s %s, %.1f s forwards through the "
                "quantized layers",
                t.collect, method.method_seconds, o_.method.c_str(), t.propagate);
  rep.notes.push_back(buf);

  // AWQ changed norms and unquantized linears: the model keeps those exact fp32 values.
  for (auto& kv : m.model.tensors)
    if (!m.packed.count(kv.first)) kv.second.data = to_vector(tf.params().at(kv.first));
}

PassReport QuantizePass::run(CompressedModel& m, PassContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  PassReport rep;
  rep.pass = name();
  rep.options = resolved_options();
  std::vector<Planned> planned = plan(m.model.spec);
  if (needs_calibration())
    (void)require_calibration(ctx, m.model.spec, at("method"),
                              o_.target_bpw > 0 ? "target_bpw" : "method " + o_.method);
  if (o_.target_bpw > 0) allocate_mixed(m, *ctx.calibration, planned, rep);
  for (const Planned& p : planned)
    if (p.fallback) rep.notes.push_back(p.name + ": " + p.note);

  if (o_.method == "rtn") {
    Progress progress("quantize rtn", static_cast<int64_t>(planned.size()), "tensor");
    int64_t done = 0;
    for (const Planned& p : planned) {
      const torch::Tensor W = to_torch(m.model.tensors.at(p.name));
      store(m, p, rtn_quantize(W, p.format, {}, {}, rule_for(p.format)), rep);
      progress.update(++done, p.name);
    }
    progress.finish();
  } else {
    std::map<std::string, Planned*> by_name;
    for (Planned& p : planned) by_name[p.name] = &p;
    quantize_layerwise(m, *ctx.calibration, by_name, rep);
  }
  // Never silently skip a tensor (an expert no token reached included).
  for (const Planned& p : planned)
    SLMC_CHECK(m.packed.count(p.name), "quantize: ", p.name, " was planned as ", fname(p.format),
               " but not quantized");
  // Report in model order.
  std::map<std::string, size_t> order;
  for (size_t i = 0; i < planned.size(); ++i) order[planned[i].name] = i;
  std::sort(rep.tensors.begin(), rep.tensors.end(), [&](const TensorReport& a, const TensorReport& b) {
    return order[a.name] < order[b.name];
  });
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rep.peak_rss_bytes = peak_rss_bytes();
  return rep;
}

}  // namespace

Format resolve_format(const QuantizeOptions& o, const std::string& where) {
  if (!o.format.empty()) {
    Format f = parse_format(o.format, where, "format");
    SLMC_CHECK(o.group_size == 0 || o.group_size == codec::format_info(f).block_size, where,
               ": group_size ", o.group_size, " contradicts format ", o.format, " (groups of ",
               codec::format_info(f).block_size, ")");
    return f;
  }
  if (o.bits == 8) {
    SLMC_CHECK(o.group_size == 0 || o.group_size == 32, where, ": bits 8 is stored as q8_0, whose "
               "group is 32; group_size ", o.group_size, " is not available");
    return Format::kQ8_0;
  }
  if (o.bits == 4) {
    if (o.group_size == 0 || o.group_size == 32) return Format::kQ4_0;
    if (o.group_size == 64) return Format::kQ4_G64;
    if (o.group_size == 128) return Format::kQ4_G128;
    fail(where, ": group_size ", o.group_size,
         " is not available for 4 bits (32: q4_0, 64: q4_g64, 128: q4_g128)");
  }
  fail(where, ": bits ", o.bits,
       ": no format supports it (8: q8_0; 4: q4_0, q4_g64, q4_g128 by group_size)");
}

Format fallback_format(Format f, int64_t cols) {
  static const std::vector<Format> chain4 = {Format::kQ4_G128, Format::kQ4_G64, Format::kQ4_0};
  auto it = std::find(chain4.begin(), chain4.end(), f);
  if (it != chain4.end())
    for (; it != chain4.end(); ++it)
      if (codec::row_fits(*it, cols)) return *it;
  if (codec::row_fits(f, cols)) return f;
  return Format::kF16;
}

std::unique_ptr<Pass> make_quantize_pass(QuantizeOptions o, OptionOrigins origins) {
  return std::make_unique<QuantizePass>(std::move(o), std::move(origins));
}

void register_quantize_pass() {
  register_options_pass<QuantizeOptions>(
      "quantize", "post-training quantization: rtn, gptq, awq, target_bpw mixes",
      [](QuantizeOptions o, OptionOrigins origins) {
        return make_quantize_pass(std::move(o), std::move(origins));
      });
}

}  // namespace slmc::quant
