// slmc run RECIPE.yaml: every stage of a recipe, its export and its gates, with a report.
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/pipeline.h"
#include "compress/core/error.h"

namespace slmc::cli {

namespace {

struct RunOptions {
  std::string recipe, model, out;
  bool json = false;
};

void run_run(const RunOptions& o) {
  register_builtin_passes();
  const Recipe r = load_recipe(o.recipe);
  PipelineInput in;
  in.model_path = o.model.empty() ? r.model : o.model;
  SLMC_CHECK(!in.model_path.empty(), o.recipe, ": the recipe names no model; add 'model:' or --model");
  for (const Stage& s : r.stages) in.passes.push_back(s.pass.get());
  in.calibration = r.calibration;
  in.eval = r.eval;
  in.gates = r.gates;
  in.json = o.json;
  if (!o.out.empty()) {
    in.out = o.out;
  } else {
    SLMC_CHECK(r.exports.size() == 1, o.recipe, ": give exactly one export (or -o); found ",
               r.exports.size());
    in.out = r.exports[0].path;
  }
  run_pipeline(in);
}

}  // namespace

void setup_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* sub = app.add_subcommand("run", "run a recipe: its stages, export and gates");
  sub->add_option("recipe", o->recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  sub->add_option("--model", o->model, "model (overrides the recipe's)");
  sub->add_option("-o,--out", o->out, "the .slm to write (overrides the recipe's export)");
  sub->add_flag("--json", o->json, "one JSON report on stdout");
  on_run(sub, [o] { run_run(*o); });
}

}  // namespace slmc::cli
