// slmc run RECIPE.yaml: every stage of a recipe, its exports and its gates, with a report.
#include <cstdio>
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "compress/recipe/runner.h"
#include "prune/prune_pass.h"
#include "quantize/quantize_pass.h"

namespace slmc::cli {

void register_builtin_passes() {
  static bool done = false;
  if (done) return;
  done = true;
  quant::register_quantize_pass();
  prune::register_prune_pass();
}

void run_and_print(const RunInput& in, bool json) {
  const RunReport r = run_recipe(in);
  std::printf("%s", json ? (r.json() + "\n").c_str() : r.text().c_str());
  check_gates(r, in.gates);
}

namespace {

struct RunOptions {
  std::string recipe, model, tokenizer, out;
  bool json = false;
};

void run_run(const RunOptions& o) {
  register_builtin_passes();
  const Recipe r = load_recipe(o.recipe);
  RunInput in;
  in.model_path = o.model.empty() ? r.model : o.model;
  SLMC_CHECK(!in.model_path.empty(), o.recipe,
             ": the recipe names no model; add 'model:' or --model");
  in.tokenizer = resolve_tokenizer(in.model_path, o.tokenizer, false);
  for (const Stage& s : r.stages) in.stages.push_back({s.pass.get(), s.where});
  in.calibration = r.calibration;
  in.eval = r.eval;
  in.gates = r.gates;
  in.threads = global_options().threads;
  if (!o.out.empty()) {
    in.exports = {{"slm", o.out, "-o"}};
  } else {
    SLMC_CHECK(!r.exports.empty(), o.recipe, ": the recipe has no export; add 'export:' or -o");
    in.exports = r.exports;
  }
  run_and_print(in, o.json);
}

}  // namespace

void setup_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* sub = app.add_subcommand("run", "run a recipe: its stages, exports and gates");
  sub->add_option("recipe", o->recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  sub->add_option("--model", o->model, "model (overrides the recipe's)");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer (default: the model's own)");
  sub->add_option("-o,--out", o->out, "the .slm to write (replaces the recipe's exports)");
  sub->add_flag("--json", o->json, "one JSON report on stdout");
  on_run(sub, [o] { run_run(*o); });
}

}  // namespace slmc::cli
