#include "distill/distill.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/fnv1a.h"
#include "compress/core/progress.h"
#include "compress/recipe/yaml_options.h"
#include "distill/kd_loss.h"
#include "distill/losses.h"
#include "distill/student.h"
#include "distill/topk_cache.h"

namespace slmc::distill {

void DistillOptions::validate(const std::string& o) const {
  for (const auto& w : {std::make_pair("kl", kl), std::make_pair("reverse_kl", reverse_kl),
                        std::make_pair("ce", ce), std::make_pair("hidden", hidden)})
    SLMC_CHECK(std::isfinite(w.second) && w.second >= 0, o, ": loss weight ", w.first, " ",
               w.second, " must be >= 0");
  SLMC_CHECK(kl + reverse_kl + ce + hidden > 0, o,
             ": every loss weight is 0 (kl, reverse_kl, ce, hidden): nothing to minimise");
  SLMC_CHECK(hidden_loss == "mse" || hidden_loss == "cosine", o, ": hidden_loss '", hidden_loss,
             "' must be mse or cosine");
  SLMC_CHECK(std::isfinite(temperature) && temperature > 0 && temperature <= 100, o,
             ": temperature ", temperature, " must be in (0, 100]");
  SLMC_CHECK(top_k >= 1 && top_k <= kMaxCacheK, o, ": top_k ", top_k, " must be in [1, ",
             kMaxCacheK, "]");
  SLMC_CHECK(cache_dtype == "f16" || cache_dtype == "f32", o, ": cache_dtype '", cache_dtype,
             "' must be f16 or f32");
  SLMC_CHECK(val_fraction >= 0 && val_fraction < 1, o, ": val_fraction ", val_fraction,
             " must be in [0, 1)");
  TrainOptions t = train;
  SLMC_CHECK(t.ctx == 0 || t.ctx >= 2, o, ": ctx ", t.ctx, " must be 0 (the teacher's) or >= 2");
  if (t.ctx == 0) t.ctx = 2;
  t.validate(o);
}

void check_world(const DistillOptions& o, int world) {
  SLMC_CHECK(world >= 1, "--world-size ", world, " must be >= 1");
  SLMC_CHECK(o.train.batch % world == 0, "distill: world size ", world,
             " does not divide the global batch ", o.train.batch);
  const int64_t per_rank = o.train.batch / world;
  SLMC_CHECK(o.train.micro_batch == 0 || per_rank % o.train.micro_batch == 0,
             "distill: micro_batch ", o.train.micro_batch, " does not divide the per-rank batch ",
             per_rank, " (batch ", o.train.batch, " / world size ", world, ")");
}

int64_t resolve_ctx(const DistillOptions& o, int64_t teacher_max_seq) {
  const int64_t ctx = o.train.ctx > 0 ? o.train.ctx : std::min<int64_t>(teacher_max_seq, 2048);
  SLMC_CHECK(ctx <= teacher_max_seq, "distill: ctx ", ctx, " exceeds the teacher's max_seq ",
             teacher_max_seq);
  return ctx;
}

std::string teacher_hash(const LoadedModel& m) {
  Fnv1a64 h;
  for (const auto& kv : m.tensors) {
    h.add(kv.first);
    for (int64_t d : kv.second.shape) h.add_pod(d);
    h.add(kv.second.data.data(), kv.second.data.size() * sizeof(float));
  }
  return h.hex();
}

std::string tokenizer_hash(const Tokenizer& t) {
  Fnv1a64 h;
  h.add(t.kind()).add_pod(t.vocab_size()).add_pod(t.bos_id()).add_pod(t.eos_id());
  for (int64_t i = 0; i < t.vocab_size(); ++i) h.add(t.piece(static_cast<int32_t>(i)));
  return h.hex();
}

std::string data_hash(const std::vector<int32_t>& tokens, int64_t ctx, int32_t bos) {
  Fnv1a64 h;
  h.add_pod(ctx).add_pod(bos).add(fnv1a64_tokens(tokens));
  return h.hex();
}

namespace {

// The tokenizer file a model directory carries (what `slmc train` writes).
void write_tokenizer_file(const std::string& dir, const Tokenizer& tok) {
  const std::string kind = tok.kind();
  if (kind == "byte" && tok.blob().empty()) {
    write_byte_tokenizer_json(dir + "/tokenizer.json");
    return;
  }
  SLMC_CHECK(!tok.blob().empty(), "tokenizer ", tok.source(), " (", kind,
             ") has no file contents to copy beside the student");
  const std::string name = kind == "sentencepiece" ? "tokenizer.model"
                           : kind == "llama2c"     ? "tokenizer.bin"
                                                   : "tokenizer.json";
  write_file_atomically(dir + "/" + name, tok.blob());
}

std::string join(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

DistillResult run_distill(const DistillOptions& o, const DistillInputs& in) {
  o.validate("distill");
  SLMC_CHECK(in.tokenizer != nullptr, "distill: no tokenizer for the data");
  const int rank = in.comm ? in.comm->rank() : 0;
  const bool from_teacher = !o.keep_layers.empty() || !o.widths.empty();
  SLMC_CHECK(from_teacher != !o.student.empty(), "distill: give the student either as --student ",
             "(a model directory or a shape YAML) or made from the teacher with --keep-layers / ",
             "--widths, not ", from_teacher ? "both" : "neither");
  const bool offline = !o.teacher_cache.empty();
  SLMC_CHECK(offline || !in.teacher.empty(), "distill: give --teacher (or --teacher-cache)");
  SLMC_CHECK(!from_teacher || !in.teacher.empty(), "distill: --keep-layers / --widths copy the ",
             "teacher's weights: give --teacher (with --teacher-cache it is not run, only read)");

  DistillResult res;
  std::optional<LoadedModel> teacher;
  if (!in.teacher.empty()) teacher = load_model(in.teacher);
  std::unique_ptr<TopKCacheReader> cache;
  if (offline) cache = std::make_unique<TopKCacheReader>(o.teacher_cache);
  const int64_t teacher_vocab = teacher ? teacher->spec.vocab : cache->header().vocab;
  const int64_t ctx = resolve_ctx(o, teacher ? teacher->spec.max_seq : cache->header().ctx);
  const int32_t bos = in.tokenizer->bos_id();
  if (teacher) res.teacher_params = teacher->spec.n_params();

  // The student.
  LoadedModel student;
  std::vector<int64_t> keep;
  if (from_teacher) {
    const int64_t n = teacher->spec.n_layer();
    if (!o.keep_layers.empty()) keep = parse_keep_layers(o.keep_layers, n);
    std::vector<LayerWidths> widths;
    if (!o.widths.empty()) widths = parse_widths_report(read_file(o.widths), o.widths, n);
    student = student_from_teacher(*teacher, keep, widths);
    if (keep.empty())
      for (int64_t l = 0; l < n; ++l) keep.push_back(l);
    res.student_origin = "teacher layers " + join(keep) + (o.widths.empty() ? "" : " with widths from " + o.widths);
  } else if (in.student_shape) {
    student.spec = *in.student_shape;
    student.spec.max_seq = ctx;
    student.spec.validate();
    res.student_origin = o.student + " (random init, seed " + std::to_string(o.train.seed) + ")";
  } else {
    student = load_model(o.student);
    res.student_origin = o.student;
  }
  SLMC_CHECK(ctx <= student.spec.max_seq, "distill: ctx ", ctx, " exceeds the student's max_seq ",
             student.spec.max_seq, " (", res.student_origin, ")");
  hf_config_json(student.spec);  // the student must be writable before hours of training

  std::vector<int32_t> vmap;
  if (!o.vocab_map.empty()) {
    vmap = parse_vocab_map(read_file(o.vocab_map), o.vocab_map, student.spec.vocab, teacher_vocab);
  } else {
    SLMC_CHECK(student.spec.vocab == teacher_vocab, "distill: the teacher's vocabulary (",
               teacher_vocab, " tokens) and the student's (", student.spec.vocab, ", ",
               res.student_origin, ") differ: give --vocab-map");
    if (in.student_tokenizer != nullptr)
      SLMC_CHECK(tokenizer_hash(*in.student_tokenizer) == tokenizer_hash(*in.tokenizer),
                 "distill: the student's tokenizer ", in.student_tokenizer->source(),
                 " differs from the teacher's ", in.tokenizer->source(),
                 " (same size, other tokens): give --vocab-map");
  }
  for (const std::vector<int32_t>* ids : {&in.train_tokens, &in.val_tokens})
    for (int32_t id : *ids)
      SLMC_CHECK(id >= 0 && id < student.spec.vocab, "distill: data token id ", id,
                 " is outside the student's vocabulary [0, ", student.spec.vocab, ")");

  if (cache) {
    const TopKCacheHeader& h = cache->header();
    const std::string& c = o.teacher_cache;
    if (teacher)
      SLMC_CHECK(h.teacher_hash == teacher_hash(*teacher), c, ": made from another teacher ",
                 "(teacher hash ", h.teacher_hash, ", ", in.teacher, " has ", teacher_hash(*teacher),
                 ")");
    const std::string th = tokenizer_hash(*in.tokenizer);
    SLMC_CHECK(h.tokenizer_hash == th, c, ": made with another tokenizer (tokenizer hash ",
               h.tokenizer_hash, ", this run's ", th, ")");
    SLMC_CHECK(h.ctx == ctx, c, ": made with ctx ", h.ctx, ", this run's ctx is ", ctx);
    const std::string dh = data_hash(in.train_tokens, ctx, bos);
    SLMC_CHECK(h.data_hash == dh, c, ": made from other training data (data hash ", h.data_hash,
               ", this run's ", dh, ")");
    SLMC_CHECK(h.temperature == o.temperature, c, ": made at temperature ", h.temperature,
               ", this run distills at ", o.temperature, " (the rest bucket depends on it)");
    SLMC_CHECK(h.vocab == student.spec.vocab, c, ": vocab ", h.vocab, ", the student has ",
               student.spec.vocab);
  }

  // Models. A cached teacher is never run: only its hash was needed.
  // Cross-entropy alone needs the teacher for nothing but (maybe) the student's initial weights.
  const bool teacher_terms = o.kl > 0 || o.reverse_kl > 0 || o.hidden > 0;
  std::optional<Transformer> teacher_model;
  if (!offline && teacher_terms) teacher_model.emplace(teacher->spec, teacher->tensors);
  teacher.reset();
  Transformer model = in.student_shape ? Transformer::random_init(student.spec, o.train.seed)
                                       : Transformer(student.spec, student.tensors);
  student.tensors.clear();
  const int64_t teacher_layers =
      teacher_model ? teacher_model->spec().n_layer() : model.spec().n_layer();
  DistillLoss loss(o, teacher_model ? &*teacher_model : nullptr, cache.get(), model.spec(), vmap,
                   matched_layers(model.spec().n_layer(), teacher_layers, keep), ctx,
                   o.train.seed);

  TrainOptions topt = o.train;
  topt.ctx = ctx;
  OptionPrinter printed;
  printed.indent = "";
  DistillOptions(o).visit(printed);
  TrainSetup setup;
  setup.loss = &loss;
  setup.order = WindowSampler::Order::kShuffledWindows;
  setup.comm = in.comm;
  if (topt.checkpoint_every > 0 || in.resume) setup.checkpoint = in.out + "/checkpoint.safetensors";
  setup.resume = in.resume;
  setup.label = "distill";
  setup.fingerprint = printed.os.str() + "resolved ctx: " + std::to_string(ctx) +
                      "\nteacher: " + in.teacher + "\nstudent: " + res.student_origin +
                      "\ntokenizer: " + tokenizer_hash(*in.tokenizer) +
                      "\ntrain data: " + fnv1a64_tokens(in.train_tokens) +
                      "\nheld-out data: " + fnv1a64_tokens(in.val_tokens) + "\n";
  if (setup.resume) check_resumable(setup.checkpoint, setup.fingerprint);
  if (rank == 0) {
    std::error_code ec;
    std::filesystem::create_directories(in.out, ec);
    SLMC_CHECK(std::filesystem::is_directory(in.out, ec), in.out,
               ": cannot create the output directory");
    std::fprintf(stderr,
                 "distill: student %s (%.3f M params, %lld layers) from %s (%s), ctx %lld, "
                 "%lld train tokens, %lld held-out\n",
                 res.student_origin.c_str(), static_cast<double>(model.spec().n_params()) / 1e6,
                 static_cast<long long>(model.spec().n_layer()),
                 offline ? o.teacher_cache.c_str() : in.teacher.c_str(),
                 !teacher_terms ? "not run: cross-entropy only" : offline ? "top-k cache" : "online",
                 static_cast<long long>(ctx),
                 static_cast<long long>(in.train_tokens.size()),
                 static_cast<long long>(in.val_tokens.size()));
  }
  res.train = train(model, in.train_tokens, in.val_tokens, topt, bos, setup);
  res.student = model.spec();
  res.student_params = model.spec().n_params();

  nlohmann::json j;
  j["student"] = res.student_origin;
  j["student_params"] = res.student_params;
  j["teacher"] = offline ? o.teacher_cache : in.teacher;
  j["teacher_params"] = res.teacher_params;
  j["offline"] = offline;
  j["world_size"] = in.comm ? in.comm->world() : 1;
  j["threads"] = at::get_num_threads();
  j["steps"] = topt.steps;
  j["tokens_seen"] = res.train.tokens_seen;
  j["seconds"] = res.train.seconds;
  res.tokens_per_s = static_cast<double>(res.train.steps_run * topt.batch * topt.ctx) /
                     std::max(1e-9, res.train.seconds);
  j["tokens_per_s"] = res.tokens_per_s;
  j["resumed_from"] = res.train.resumed_from;
  j["final_train_loss"] = res.train.final_train_loss;
  if (!std::isnan(res.train.val_nll)) {
    j["val_nll"] = res.train.val_nll;
    j["val_ppl"] = std::exp(res.train.val_nll);
  }
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& e : res.train.history) hist.push_back({e.first, e.second});
  j["history"] = hist;
  j["options"] = printed.os.str();
  res.report_json = j.dump(2);
  if (rank == 0) {
    save_hf_model(in.out, model.spec(), model.to_host(), DType::kF32);
    write_tokenizer_file(in.out, *in.tokenizer);
    write_file_atomically(in.out + "/distill_report.json", res.report_json + "\n");
  }
  return res;
}

CacheResult write_topk_cache(const DistillOptions& o, const std::string& teacher_path,
                             const Tokenizer& tok, const std::vector<int32_t>& train_tokens,
                             const std::string& path) {
  o.validate("distill");
  const LoadedModel teacher = load_model(teacher_path);
  const int64_t ctx = resolve_ctx(o, teacher.spec.max_seq);
  SLMC_CHECK(o.top_k <= teacher.spec.vocab, "distill: top_k ", o.top_k, " exceeds the vocabulary ",
             teacher.spec.vocab);
  SLMC_CHECK(static_cast<int64_t>(train_tokens.size()) >= ctx, "distill: the training data has ",
             train_tokens.size(), " tokens, fewer than one window of ", ctx);
  TopKCacheHeader h;
  h.teacher_hash = teacher_hash(teacher);
  h.tokenizer_hash = tokenizer_hash(tok);
  h.data_hash = data_hash(train_tokens, ctx, tok.bos_id());
  h.vocab = teacher.spec.vocab;
  h.k = o.top_k;
  h.ctx = ctx;
  h.n_windows = static_cast<int64_t>(train_tokens.size()) / ctx;
  h.bos_id = tok.bos_id();
  h.temperature = o.temperature;
  h.f16 = o.cache_dtype == "f16";
  Transformer model(teacher.spec, teacher.tensors);
  TopKCacheWriter writer(path, h);
  torch::NoGradGuard no_grad;
  Progress bar("cache", h.n_windows, "window");
  constexpr int64_t kBatch = 8;
  std::vector<int64_t> offsets;
  for (int64_t w0 = 0; w0 < h.n_windows; w0 += kBatch) {
    const int64_t n = std::min(kBatch, h.n_windows - w0);
    offsets.clear();
    for (int64_t w = w0; w < w0 + n; ++w) offsets.push_back(w * ctx);
    const Batch b = make_batch(train_tokens, offsets.data(), n, ctx, tok.bos_id());
    const TopK t = top_k(model.forward(b.inputs).view({-1, h.vocab}), h.k, h.temperature);
    const float* v = t.values.data_ptr<float>();
    const int64_t* idx = t.indices.data_ptr<int64_t>();
    const float* rest = t.rest_lse.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      TopKWindow win;
      win.values.assign(v + r * ctx * h.k, v + (r + 1) * ctx * h.k);
      win.indices.assign(idx + r * ctx * h.k, idx + (r + 1) * ctx * h.k);
      win.rest_lse.assign(rest + r * ctx, rest + (r + 1) * ctx);
      writer.append(win);
    }
    bar.update(w0 + n);
  }
  writer.commit();
  CacheResult r;
  r.windows = h.n_windows;
  r.positions = h.n_windows * ctx;
  r.seconds = bar.elapsed_s();
  std::error_code ec;
  r.bytes = std::filesystem::file_size(path, ec);
  bar.finish(with_commas(r.bytes) + " bytes");
  return r;
}

}  // namespace slmc::distill
