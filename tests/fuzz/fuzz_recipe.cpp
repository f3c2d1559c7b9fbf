// YAML recipes (load_recipe): one document, scalar unique keys, data/stages/export/gates, every
// option type of the visit() binder (integers, finite numbers, booleans, strings, target/ignore
// selectors with PCRE2 regexes). The real passes link LibTorch, so stand-ins with the same kinds
// of options are registered under their names.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "compress/recipe/recipe.h"
#include "compress/recipe/selector.h"
#include "compress/recipe/yaml_options.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

struct StandInOptions {
  std::string method = "rtn";
  int64_t bits = 4;
  int64_t group_size = 32;
  uint64_t seed = 0;
  double damp = 0.01;
  float ratio = 0.5f;
  bool act_order = true;
  slmc::PatternList targets, ignore;
  template <class V>
  void visit(V& v) {
    v("method", method, "");
    v("bits", bits, "");
    v("group_size", group_size, "");
    v("seed", seed, "");
    v("damp", damp, "");
    v("ratio", ratio, "");
    v("act_order", act_order, "");
    v("targets", targets, "");
    v("ignore", ignore, "");
  }
};

class StandIn final : public slmc::Pass {
 public:
  StandIn(std::string name, const std::string& file, const YAML::Node& node) : name_(std::move(name)) {
    slmc::bind_yaml(file, node, name_, o_);
    const slmc::Selector sel(o_.targets, o_.ignore);
    for (const char* n : {"token_embd.weight", "blk.0.attn_q.weight", "blk.12.ffn_down.weight",
                          "blk.3.expert.5.ffn_up.weight", "output.weight"})
      (void)sel.selected(n);
  }
  std::string name() const override { return name_; }
  std::string resolved_options() const override {
    slmc::OptionPrinter p;
    const_cast<StandInOptions&>(o_).visit(p);
    return p.os.str();
  }
  bool needs_calibration() const override { return false; }
  slmc::ModelSpec output_spec(const slmc::ModelSpec& in) const override { return in; }
  slmc::PassReport run(slmc::CompressedModel&, slmc::PassContext&) override { return {}; }

 private:
  std::string name_;
  StandInOptions o_;
};

bool register_stand_ins() {
  for (const char* name : {"quantize", "prune", "distill"})
    slmc::register_pass(name, "fuzz stand-in", [name](const std::string& file, const YAML::Node& n) {
      return std::make_unique<StandIn>(name, file, n);
    });
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool registered = register_stand_ins();
  (void)registered;
  static slmc::fuzz::MemFile file("fuzz_recipe");
  const std::string& path = file.write(data, size);
  slmc::fuzz::expect_ok_or_error([&] {
    const slmc::Recipe r = slmc::load_recipe(path);
    for (const slmc::Stage& s : r.stages) (void)s.pass->resolved_options();
  });
  return 0;
}
