// slmc run RECIPE.yaml: every stage of a recipe, its exports and its gates, with a report.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "compress/recipe/runner.h"
#include "distill/distill_pass.h"
#include "prune/prune_pass.h"
#include "quantize/quantize_pass.h"

namespace slmc::cli {

void register_builtin_passes() {
  static bool done = false;
  if (done) return;
  done = true;
  quant::register_quantize_pass();
  prune::register_prune_pass();
  distill::register_distill_pass();
}

void run_and_print(const RunInput& in, bool json) {
  const RunReport r = run_recipe(in);
  std::printf("%s", json ? (r.json() + "\n").c_str() : r.text().c_str());
  check_gates(r, in.gates);
}

namespace {

struct RunOptions {
  std::string recipe, model, tokenizer, out, out_dir, from;
  bool json = false, dry_run = false, no_cache = false;
};

// --from: a stage's number (1-based) or the kind of its first stage of that kind.
int stage_index(const std::string& from, const Recipe& r) {
  for (size_t i = 0; i < r.stages.size(); ++i)
    if (r.stages[i].kind == from || std::to_string(i + 1) == from) return static_cast<int>(i);
  std::string known;
  for (size_t i = 0; i < r.stages.size(); ++i)
    known += str_cat(i ? ", " : "", i + 1, " ", r.stages[i].kind);
  fail("--from ", quoted_excerpt(from), ": no such stage in ", r.file, " (stages: ", known, ")");
}

// Where manifest.json and the report go: --out-dir, else the first export's folder.
std::string output_dir(const RunOptions& o, const RunInput& in) {
  if (!o.out_dir.empty()) return o.out_dir;
  const std::string parent = std::filesystem::path(in.exports.front().path).parent_path().string();
  return parent.empty() ? "." : parent;
}

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
  in.recipe_file = o.recipe;
  const std::string dir = output_dir(o, in);
  if (!o.no_cache) in.cache_dir = (std::filesystem::path(dir) / ".cache").string();
  if (!o.from.empty()) in.from_stage = stage_index(o.from, r);
  if (o.dry_run) {
    // Everything plan_run checks, on the model's spec, and nothing written.
    const LoadedModel m = load_model(in.model_path);
    std::printf("%s", plan_text(plan_run(m.spec, in), in).c_str());
    return;
  }
  const RunReport rep = run_recipe(in);
  std::printf("%s", o.json ? (rep.json() + "\n").c_str() : rep.text().c_str());
  write_run_outputs(rep, in, dir);
  std::fprintf(stderr, "wrote %s/manifest.json and %s/report.{md,html}\n", dir.c_str(), dir.c_str());
  check_gates(rep, in.gates);
}

}  // namespace

void setup_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* sub = app.add_subcommand("run", "run a recipe: its stages, exports and gates");
  sub->add_option("recipe", o->recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  sub->add_option("--model", o->model, "model (overrides the recipe's)");
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer (default: the model's own)");
  sub->add_option("-o,--out", o->out, "the .slm to write (replaces the recipe's exports)");
  sub->add_option("--out-dir", o->out_dir,
                  "folder for manifest.json and report.{md,html} (default: the first export's)");
  sub->add_option("--from", o->from,
                  "rerun from this stage (its number, or its kind) even when it is cached");
  sub->add_flag("--dry-run", o->dry_run,
                "print the resolved plan (each stage's input and output) after validating "
                "everything; run nothing");
  sub->add_flag("--no-cache", o->no_cache, "neither read nor write the stage cache");
  sub->add_flag("--json", o->json, "one JSON report on stdout");
  on_run(sub, [o] { run_run(*o); });
}

}  // namespace slmc::cli
