#include "distill/distill_pass.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "compress/core/error.h"
#include "compress/io/token_data.h"
#include "compress/recipe/pass.h"
#include "compress/recipe/yaml_options.h"
#include "distill/distill.h"
#include "distill/student.h"

namespace slmc::distill {

namespace {

namespace fs = std::filesystem;

struct DistillStageOptions {
  std::string data, val_data;
  DistillOptions d;
  template <class V>
  void visit(V& v) {
    v("data", data, "training text or HDF5 tokens (relative paths: to the recipe)");
    v("val_data", val_data, "held-out text or HDF5 tokens (default: the data's tail, val_fraction)");
    d.visit(v);
  }
};

std::string resolve_relative(const std::string& recipe, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(recipe).parent_path() / p).lexically_normal().string();
}

// A temporary folder removed when it goes out of scope.
struct TempFolder {
  fs::path path;
  TempFolder() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("slmc_distill_stage_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

class DistillPass : public Pass {
 public:
  DistillPass(DistillStageOptions o, OptionOrigins origins)
      : o_(std::move(o)), origins_(std::move(origins)) {}
  std::string name() const override { return "distill"; }
  std::string resolved_options() const override {
    OptionPrinter p;
    DistillStageOptions copy = o_;
    copy.visit(p);
    return p.os.str();
  }
  bool needs_calibration() const override { return false; }
  bool rewrites_weights() const override { return true; }

  ModelSpec output_spec(const ModelSpec& in) const override {
    ModelSpec out = in;
    if (o_.d.keep_layers.empty()) return out;
    const std::vector<int64_t> keep = parse_keep_layers(o_.d.keep_layers, in.n_layer());
    out.layers.clear();
    for (int64_t l : keep) out.layers.push_back(in.layers[static_cast<size_t>(l)]);
    return out;
  }

  PassReport run(CompressedModel& m, PassContext& ctx) override {
    (void)ctx;
    const auto t0 = std::chrono::steady_clock::now();
    SLMC_CHECK(m.tokenizer != nullptr, origins_.at("data"),
               ": the distill stage needs the model's tokenizer for its data");
    const Tokenizer* tok = m.tokenizer.get();
    std::vector<int32_t> train = load_token_stream(o_.data, tok, tok->vocab_size());
    std::vector<int32_t> val;
    if (!o_.val_data.empty()) {
      val = load_token_stream(o_.val_data, tok, tok->vocab_size());
    } else {  // the tail of the data, as `slmc distill` without --val-data
      const auto n_val = static_cast<size_t>(static_cast<double>(train.size()) * o_.d.val_fraction);
      val.assign(train.end() - static_cast<std::ptrdiff_t>(n_val), train.end());
      train.resize(train.size() - n_val);
    }
    TempFolder tmp;
    const std::string teacher = (tmp.path / "teacher").string();
    const std::string student = (tmp.path / "student").string();
    save_hf_model(teacher, m.model.spec, m.model.tensors);
    DistillInputs in;
    in.teacher = teacher;
    in.tokenizer = tok;
    in.train_tokens = std::move(train);
    in.val_tokens = std::move(val);
    in.out = student;
    const DistillResult r = run_distill(o_.d, in);

    PassReport rep;
    rep.pass = name();
    rep.options = resolved_options();
    const std::string origin = m.model.path, format = m.model.format;
    LoadedModel s = load_model(student);
    s.path = origin;
    s.format = format;
    m.model = std::move(s);
    m.masks.clear();
    rep.notes.push_back(str_cat("student: ", r.student_origin, ", ", r.student_params,
                                " parameters (teacher ", r.teacher_params, ")"));
    rep.notes.push_back(str_cat("trained on ", r.train.tokens_seen, " tokens in ", r.train.seconds,
                                " s; final loss ", r.train.final_train_loss));
    if (!std::isnan(r.train.val_nll))
      rep.notes.push_back(str_cat("held-out perplexity ", std::exp(r.train.val_nll)));
    rep.peak_rss_bytes = peak_rss_bytes();
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

 private:
  DistillStageOptions o_;
  OptionOrigins origins_;
};

}  // namespace

void register_distill_pass() {
  register_pass("distill", "distill a student made from the model (keep_layers) on `data`",
                [](const std::string& file, const YAML::Node& node) -> std::unique_ptr<Pass> {
                  DistillStageOptions o;
                  YamlBinder b(file, node, "distill");
                  o.visit(b);
                  b.reject_unknown();
                  OptionOrigins origins = OptionOrigins::from_yaml("distill", file, node);
                  SLMC_CHECK(!o.data.empty(), origins.at("data"),
                             ": the distill stage needs 'data' (training text or tokens)");
                  for (const auto& [key, value] :
                       {std::pair<const char*, bool>{"student", !o.d.student.empty()},
                        {"widths", !o.d.widths.empty()},
                        {"teacher_cache", !o.d.teacher_cache.empty()},
                        {"vocab_map", !o.d.vocab_map.empty()}})
                    SLMC_CHECK(!value, origins.at(key), ": key '", key,
                               "' is not supported in a recipe stage (use slmc distill)");
                  SLMC_CHECK(!o.d.keep_layers.empty(), origins.at("keep_layers"),
                             ": the distill stage needs keep_layers (e.g. every_other)");
                  o.data = resolve_relative(file, o.data);
                  o.val_data = resolve_relative(file, o.val_data);
                  for (const auto& [key, path] :
                       {std::pair<const char*, const std::string*>{"data", &o.data},
                        {"val_data", &o.val_data}})
                    SLMC_CHECK(path->empty() || fs::exists(*path), origins.at(key), ": ", key, " ",
                               *path, " does not exist");
                  o.d.validate(origins.stage);
                  return std::make_unique<DistillPass>(std::move(o), std::move(origins));
                });
}

}  // namespace slmc::distill
