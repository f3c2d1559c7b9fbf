#include "quantize/quantize_pass.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <sstream>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "compress/model/transformer.h"
#include "compress/recipe/yaml_options.h"
#include "quantize/mixed.h"

namespace slmc::quant {

namespace {

// Adds the seconds of its own lifetime to `acc`.
struct ScopedSeconds {
  double& acc;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~ScopedSeconds() {
    acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

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

torch::Tensor to_torch(const HostTensor& t) {
  return torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// acc += a^T b, from zeros when acc is empty: the sums x^T x (H) and (xf - x)^T x (D).
void add_outer(torch::Tensor& acc, const torch::Tensor& a, const torch::Tensor& b) {
  if (!acc.defined()) acc = torch::zeros({a.size(1), b.size(1)}, torch::kFloat32);
  acc.addmm_(a.t(), b);
}

// The first `n` calibration rows as a (n, T) int64 tensor; every row must have the same length.
torch::Tensor calibration_tokens(const CalibrationSet& cal, int64_t n) {
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
  QuantizePass(QuantizeOptions o, std::map<std::string, std::string> where,
               std::set<std::string> explicit_keys)
      : o_(std::move(o)), where_(std::move(where)), explicit_(std::move(explicit_keys)) {
    SLMC_CHECK(o_.method == "rtn" || o_.method == "gptq" || o_.method == "awq", at("method"),
               ": method '", o_.method, "' is unknown (rtn, gptq, awq)");
    base_ = resolve_format(o_, where_.count("bits") ? at("bits") : at("group_size"));
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

  void validate(const CompressedModel& m) const override { (void)plan(m); }

  PassReport run(CompressedModel& m, PassContext& ctx) override;

 private:
  std::string at(const std::string& key) const {
    auto it = where_.find(key);
    if (it != where_.end()) return it->second;
    auto q = where_.find("quantize");
    return q != where_.end() ? q->second : "quantize";
  }

  bool is_head(const ModelSpec& spec, const std::string& name) const {
    return name == names::kOutput || (spec.tied_embeddings && name == names::kTokenEmbd);
  }

  std::vector<Planned> plan(const CompressedModel& m) const;
  void allocate_mixed(const CompressedModel& m, const CalibrationSet& cal,
                      std::vector<Planned>& plan, PassReport& rep) const;
  void quantize_layerwise(CompressedModel& m, const CalibrationSet& cal,
                          std::map<std::string, Planned*>& plan, PassReport& rep);
  void store(CompressedModel& m, const Planned& p, QuantResult r, PassReport& rep) const;

  QuantizeOptions o_;
  std::map<std::string, std::string> where_;
  std::set<std::string> explicit_;
  Format base_ = Format::kQ4_0;
  Format head_ = Format::kQ8_0;
  std::vector<Format> mix_;
};

std::vector<Planned> QuantizePass::plan(const CompressedModel& m) const {
  const ModelSpec& spec = m.model.spec;
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
  const bool strict = explicit_.count("group_size") || explicit_.count("format");
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
        const std::string key = explicit_.count("format") ? "format" : "group_size";
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
             o_.ignore.str(), " select no tensor of ", m.model.path);
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
  t.dist = r.dist;
  if (r.rel_output_error >= 0) t.extra["out_err"] = r.rel_output_error;
  if (p.kl_sens >= 0) t.extra["kl_sens"] = p.kl_sens;
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
                                ? gptq_quantize(orig, H, f, o_.gptq)
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

void QuantizePass::quantize_layerwise(CompressedModel& m, const CalibrationSet& cal,
                                      std::map<std::string, Planned*>& plan, PassReport& rep) {
  torch::NoGradGuard ng;
  const ModelSpec& spec = m.model.spec;
  Transformer tf(spec, m.model.tensors);
  auto& params = tf.params();
  const bool awq = o_.method == "awq";
  const int64_t N = static_cast<int64_t>(cal.rows.size());
  const int64_t T = static_cast<int64_t>(cal.rows[0].size());
  const torch::Tensor tokens = calibration_tokens(cal, N);
  const int64_t B = o_.calib_batch;
  // Where the time goes (reported as a note): forwards that collect H, the method's own work
  // (searches and solves), and forwards through each layer once it is quantized.
  double t_collect = 0, t_method = 0, t_propagate = 0;

  // D (GPTQ asym_calib, dense groups): (Xf - X)^T X, the unquantized stream's inputs against the
  // quantized stream's.
  auto quantize_one = [&](const std::string& name, const torch::Tensor& H, const torch::Tensor& D,
                          const torch::Tensor& X, bool allow_clip, bool rtn_fallback) {
    const ScopedSeconds timer{t_method};
    Planned& p = *plan.at(name);
    torch::Tensor& W = params.at(name);
    QuantResult r;
    // A method's error names the tensor.
    try {
      if (!codec::has_grid(p.format) || rtn_fallback) {
        r = rtn_quantize(W, p.format, H);
      } else if (awq) {
        torch::Tensor clip;
        if (o_.awq.clip && allow_clip && X.defined())
          clip = awq_search_clip(W, X, p.format, o_.awq);
        r = rtn_quantize(W, p.format, H, clip);
      } else {
        // asym_calib: GPTQ on the least-squares target, whose output error on the quantized stream
        // is the asymmetric objective up to a constant.
        const torch::Tensor target =
            D.defined() ? gptq_asym_target(W, H, D, o_.gptq.asym_calib, o_.gptq.damp) : W;
        r = gptq_quantize(target, H, p.format, o_.gptq);
        if (!p.same_size.empty()) {
          double best = r.rel_output_error;  // against the target, on this H
          std::string tried = str_cat(fname(p.format), " ", best);
          for (const auto& [f, kl] : p.same_size) {
            QuantResult alt = gptq_quantize(target, H, f, o_.gptq);
            const double e = alt.rel_output_error;
            tried += str_cat(", ", fname(f), " ", e);
            if (e < best) {
              best = e;
              r = std::move(alt);
              p.format = f;
              p.kl_sens = kl;
            }
          }
          p.note +=
              str_cat(p.note.empty() ? "" : "; ", "same-size formats by output error: ", tried);
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
    store(m, p, std::move(r), rep);
  };

  // dst[c:c+b] = fn(src[c:c+b]) in chunks of B calibration sequences (in place if dst is src).
  auto by_chunks = [&](torch::Tensor& dst, const torch::Tensor& src,
                       const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
    for (int64_t c = 0; c < N; c += B) {
      const int64_t b = std::min(B, N - c);
      dst.narrow(0, c, b).copy_(fn(src.narrow(0, c, b)));
    }
  };
  auto embed = [&](const torch::Tensor& t) { return tf.embed(t); };
  auto layer_fn = [&](int64_t i) {
    return [&tf, i](const torch::Tensor& x) { return tf.layer(i, x); };
  };

  // GPTQ asym_calib: the unquantized model's stream beside the quantized one (from the
  // unquantized embedding), and the current layer's original weights, swapped in (tensor
  // handles, no copies) whenever that stream runs.
  const bool asym = !awq && o_.method == "gptq" && o_.gptq.asym_calib > 0;
  torch::Tensor Xf;
  if (asym) {
    Xf = torch::empty({N, T, spec.d_model}, torch::kFloat32);
    by_chunks(Xf, tokens, embed);
  }
  std::map<std::string, torch::Tensor> fp_layer;
  auto swap_fp = [&] {
    for (auto& kv : fp_layer) std::swap(params.at(kv.first), kv.second);
  };

  // Untied embeddings are looked up, not multiplied: round to nearest before calibration so the
  // layers see the quantized embedding.
  if (!spec.tied_embeddings && plan.count(names::kTokenEmbd)) {
    Planned& p = *plan.at(names::kTokenEmbd);
    torch::Tensor& W = params.at(names::kTokenEmbd);
    QuantResult r = rtn_quantize(W, p.format);
    W.copy_(r.dequant);
    p.note = p.note.empty() ? "embedding: rtn" : p.note + "; embedding: rtn";
    store(m, p, std::move(r), rep);
  }

  torch::Tensor X = torch::empty({N, T, spec.d_model}, torch::kFloat32);
  by_chunks(X, tokens, embed);

  // Collects, per input group, H = sum x x^T and (AWQ) an even subsample of the inputs.
  struct Stats {
    torch::Tensor H;
    torch::Tensor D;  // asym_calib: (Xf - X)^T X
    std::vector<torch::Tensor> samples;
    int64_t rows = 0;  // calibration tokens seen (an expert sees only those routed to it)
  };
  const int64_t total_rows = N * T;
  const int64_t stride = awq ? std::max<int64_t>(1, total_rows / o_.awq.max_tokens) : 1;
  // `dense`: the groups whose inputs pair token by token between the two streams (asym_calib).
  // `advance`: the unquantized stream's pass is its last through this layer, so its outputs
  // replace Xf (one forward fewer than propagating Xf afterwards); returns whether that happened.
  auto collect = [&](std::map<std::string, Stats>& stats,
                     const std::map<std::string, std::string>& group_of,
                     const std::set<std::string>& dense, int64_t layer, bool advance,
                     const std::function<torch::Tensor(const torch::Tensor&)>& run_chunks) {
    const ScopedSeconds timer{t_collect};
    std::set<std::string> seen;  // groups done for the current chunk (q, k, v share an input)
    std::map<std::string, torch::Tensor> fp_in;  // asym_calib: the chunk's unquantized inputs
    bool fp_pass = false;
    tf.set_linear_hook([&](const std::string& name, const torch::Tensor& input, const torch::Tensor&) {
      auto g = group_of.find(name);
      if (g == group_of.end() || seen.count(g->second)) return;
      seen.insert(g->second);
      const torch::Tensor x = input.reshape({-1, input.size(-1)});
      if (fp_pass) {
        if (dense.count(g->second)) fp_in[g->second] = x.clone();
        return;
      }
      if (!torch::isfinite(x).all().item<bool>())
        fail(cal.origin, ": non-finite activation at the input of ", name,
             layer >= 0 ? str_cat(" (layer ", layer, ")") : std::string(),
             " during calibration; the model or the data produce NaN/Inf");
      Stats& s = stats[g->second];
      add_outer(s.H, x, x);
      s.rows += x.size(0);
      auto f = fp_in.find(g->second);
      if (f != fp_in.end()) add_outer(s.D, f->second - x, x);
      if (awq) s.samples.push_back(x.index({torch::indexing::Slice(0, torch::indexing::None, stride)}).clone());
    });
    for (int64_t c = 0; c < N; c += B) {
      const int64_t b = std::min(B, N - c);
      fp_in.clear();
      if (asym && !dense.empty()) {
        seen.clear();
        fp_pass = true;
        swap_fp();
        const torch::Tensor out = run_chunks(Xf.narrow(0, c, b));
        if (advance) Xf.narrow(0, c, b).copy_(out);
        swap_fp();
        fp_pass = false;
      }
      seen.clear();
      (void)run_chunks(X.narrow(0, c, b));
    }
    tf.set_linear_hook(nullptr);
    return advance && asym && !dense.empty();
  };

  Progress progress(str_cat("quantize ", o_.method), spec.n_layer() + 1, "layer");
  for (int64_t i = 0; i < spec.n_layer(); ++i) {
    fp_layer.clear();
    if (asym) {
      const std::string prefix = str_cat("blk.", i, ".");
      for (const auto& kv : plan)
        if (kv.first.compare(0, prefix.size(), prefix) == 0)
          fp_layer[kv.first] = params.at(kv.first).clone();
    }
    // Stages: GPTQ with true_sequential calibrates attn_in, attn_out, ffn_in, ffn_out in turn,
    // each through the already-quantized groups before it (the experts of one stage are
    // independent of each other); AWQ and plain GPTQ take every group from one pass.
    std::vector<std::vector<LinearGroup>> stages;
    {
      const std::vector<LinearGroup> all = linear_groups(spec, i);
      if (awq || !o_.gptq.true_sequential) {
        stages.push_back(all);
      } else {
        for (int order = 0; order <= 3; ++order) {
          std::vector<LinearGroup> st;
          for (const LinearGroup& g : all)
            if (g.order == order) st.push_back(g);
          if (!st.empty()) stages.push_back(std::move(st));
        }
      }
    }
    bool coverage_reported = false;
    bool xf_advanced = false;  // asym_calib: collect already moved Xf past this layer
    for (const std::vector<LinearGroup>& groups : stages) {
      std::map<std::string, std::string> group_of;
      std::set<std::string> dense;
      for (const LinearGroup& g : groups)
        for (const std::string& mem : g.members)
          if (plan.count(mem)) {
            group_of[mem] = g.name;
            if (asym && g.expert < 0) dense.insert(g.name);
          }
      if (group_of.empty()) continue;
      std::map<std::string, Stats> stats;
      xf_advanced |= collect(stats, group_of, dense, i, stages.size() == 1, layer_fn(i));
      // MoE coverage: the calibration tokens routed to each expert (an expert's groups all see
      // the same tokens); experts below moe_min_tokens, or with none, are quantized with rtn.
      const LayerSpec& l = spec.layers[static_cast<size_t>(i)];
      std::set<std::string> hooked;
      for (const auto& kv : group_of) hooked.insert(kv.second);
      const int64_t min_rows = std::max<int64_t>(1, o_.moe_min_tokens);  // no token: always rtn
      auto rows_of = [&](const LinearGroup& g) -> int64_t {
        auto st = stats.find(g.name);
        return st == stats.end() ? 0 : st->second.rows;
      };
      if (l.is_moe() && !coverage_reported) {
        std::vector<int64_t> count(static_cast<size_t>(l.n_expert), -1);
        for (const LinearGroup& g : groups)
          if (g.expert >= 0 && hooked.count(g.name) && count[static_cast<size_t>(g.expert)] < 0)
            count[static_cast<size_t>(g.expert)] = rows_of(g);
        std::string counts, low;
        bool any = false;
        for (int64_t e = 0; e < l.n_expert; ++e) {
          const int64_t n = count[static_cast<size_t>(e)];
          counts += str_cat(e ? ", " : "", n < 0 ? std::string("-") : std::to_string(n));
          if (n < 0) continue;
          any = true;
          if (n < min_rows)
            low += str_cat(low.empty() ? "" : ", ", "expert ", e, " (", n, ")");
        }
        if (any) {
          coverage_reported = true;
          rep.notes.push_back(str_cat("blk.", i, " calibration tokens per expert (top-", l.n_expert_used,
                                      " of ", l.n_expert, "): [", counts, "]",
                                      low.empty() ? std::string()
                                                  : str_cat("; below moe_min_tokens ", o_.moe_min_tokens,
                                                            ", quantized with rtn: ", low)));
        }
      }
      std::set<std::string> starved;  // expert groups quantized with rtn for lack of tokens
      for (const LinearGroup& g : groups)
        if (g.expert >= 0 && hooked.count(g.name) && rows_of(g) < min_rows)
          starved.insert(g.name);
      // AWQ searches and folds every group's scales first (the attn_out fold rescales attn_v's
      // rows, the ffn_out fold ffn_up's), then every linear is quantized once, as AutoAWQ does.
      std::map<std::string, torch::Tensor> group_H, group_D, group_X;
      for (const LinearGroup& g : groups) {
        auto st = stats.find(g.name);
        if (st == stats.end() || starved.count(g.name)) continue;
        torch::Tensor H = st->second.H;
        torch::Tensor Xs;
        if (awq) {
          Xs = torch::cat(st->second.samples, 0);
          st->second.samples.clear();
          // Fold scales only where the producer of the input can absorb them exactly
          // (linear_groups leaves prev_norm/prev_linear empty where it cannot).
          if (!g.prev_norm.empty() || !g.prev_linear.empty()) {
            const ScopedSeconds timer{t_method};
            std::vector<torch::Tensor> Ws;
            std::vector<Format> fs;
            for (const std::string& n : g.members) {
              Ws.push_back(params.at(n));
              fs.push_back(plan.count(n) ? plan.at(n)->format : Format::kF32);
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
              if (plan.count(n))
                plan.at(n)->note += str_cat(plan.at(n)->note.empty() ? "" : "; ", "awq alpha ",
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
        const int64_t rows = stats.count(g.name) ? stats.at(g.name).rows : 0;
        for (const std::string& n : g.members) {
          if (!plan.count(n)) continue;
          if (fallback)
            plan.at(n)->note += str_cat(plan.at(n)->note.empty() ? "" : "; ", "expert ", g.expert,
                                        " routed ", rows, " calibration tokens (< moe_min_tokens ",
                                        o_.moe_min_tokens, "): rtn");
          // AutoAWQ does not clip q and k: attention logits are too sensitive to it.
          const bool clip_ok = n != names::blk(i, names::kAttnQ) && n != names::blk(i, names::kAttnK);
          // A starved expert's H (if any) still weighs the reported output error.
          const torch::Tensor H = fallback ? (stats.count(g.name) ? stats.at(g.name).H : torch::Tensor())
                                           : group_H[g.name];
          quantize_one(n, H, fallback ? torch::Tensor() : group_D[g.name],
                       fallback ? torch::Tensor() : group_X[g.name], clip_ok, fallback);
        }
      }
    }
    // The quantized layer's outputs are the next layer's inputs.
    const ScopedSeconds timer{t_propagate};
    by_chunks(X, X, layer_fn(i));
    if (asym && !xf_advanced) {
      swap_fp();
      by_chunks(Xf, Xf, layer_fn(i));
      swap_fp();
    }
    fp_layer.clear();
    progress.update(i + 1, str_cat("layer ", i));
  }

  const std::string head = spec.tied_embeddings ? names::kTokenEmbd : names::kOutput;
  if (plan.count(head) && !m.packed.count(head)) {
    std::map<std::string, Stats> stats;
    // asym_calib leaves a tied head alone: its target would fit the logits, but the same table
    // is the embedding every layer was calibrated on (wikitext5m q4_0 at asym_calib 0.5: KL
    // 0.00115 with the tied head included, 0.00099 without).
    const std::set<std::string> dense =
        asym && !spec.tied_embeddings ? std::set<std::string>{"head"} : std::set<std::string>{};
    (void)collect(stats, {{head, "head"}}, dense, -1, false,
                  [&](const torch::Tensor& x) { return tf.head(x); });
    torch::Tensor H = stats.at("head").H;
    torch::Tensor Xs;
    if (awq) {
      Xs = torch::cat(stats.at("head").samples, 0);
      // A tied head is also the embedding: scaling its columns would change the lookups.
      if (!spec.tied_embeddings) {
        const AwqScaleResult sr =
            awq_search_scales({params.at(head)}, Xs, {plan.at(head)->format}, o_.awq);
        params.at(names::kOutputNorm).div_(sr.scales);
        params.at(head).mul_(sr.scales.unsqueeze(0));
        Xs = Xs / sr.scales.unsqueeze(0);
        H = H / sr.scales.unsqueeze(1) / sr.scales.unsqueeze(0);
      }
    }
    quantize_one(head, H, stats.at("head").D, Xs, true, false);
  }
  progress.update(spec.n_layer() + 1);
  progress.finish(str_cat(rep.tensors.size(), " tensors, ", N, " x ", T, " calibration tokens"));
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "time: %.1f s forwards collecting H, %.1f s %s, %.1f s forwards through the "
                "quantized layers",
                t_collect, t_method, o_.method.c_str(), t_propagate);
  rep.notes.push_back(buf);

  // AWQ changed norms and unquantized linears: the model keeps those exact fp32 values.
  for (auto& kv : m.model.tensors)
    if (!m.packed.count(kv.first)) kv.second.data = to_vector(params.at(kv.first));
}

PassReport QuantizePass::run(CompressedModel& m, PassContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  PassReport rep;
  rep.pass = name();
  rep.options = resolved_options();
  std::vector<Planned> planned = plan(m);
  if (needs_calibration()) {
    SLMC_CHECK(ctx.calibration != nullptr && !ctx.calibration->rows.empty(), at("method"),
               ": ", o_.target_bpw > 0 ? "target_bpw" : "method " + o_.method,
               " needs calibration data (--calib DATA or data.calibration in the recipe)");
    for (const auto& r : ctx.calibration->rows)
      for (int32_t id : r)
        SLMC_CHECK(id >= 0 && id < m.model.spec.vocab, ctx.calibration->origin, ": token id ", id,
                   " is outside the model's vocab [0, ", m.model.spec.vocab, ")");
  }
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

std::unique_ptr<Pass> make_quantize_pass(QuantizeOptions o, std::map<std::string, std::string> where,
                                         std::set<std::string> explicit_keys) {
  return std::make_unique<QuantizePass>(std::move(o), std::move(where), std::move(explicit_keys));
}

void register_quantize_pass() {
  register_pass("quantize", "post-training quantization: rtn, gptq, awq, target_bpw mixes",
                [](const std::string& file, const YAML::Node& node) {
                  QuantizeOptions o;
                  YamlBinder b(file, node, "quantize");
                  o.visit(b);
                  b.reject_unknown();
                  std::map<std::string, std::string> where;
                  std::set<std::string> keys;
                  where["quantize"] = yaml_where(file, node);
                  for (const auto& kv : node) {
                    const std::string k = kv.first.as<std::string>();
                    where[k] = yaml_where(file, kv.second) + ": key '" + k + "'";
                    keys.insert(k);
                  }
                  return make_quantize_pass(std::move(o), std::move(where), std::move(keys));
                });
}

}  // namespace slmc::quant
