// slmc prune --model M (--recipe R.yaml | --method magnitude|wanda|sparsegpt (--sparsity S |
//            --pattern N:M) | --structured heads|channels|layers --sparsity S) [--calib DATA]
//            [--eval DATA] (-o OUT.slm | --save-hf DIR)
// Flags of the method come from PruneOptions::visit(), the same declaration recipes bind.
#include <cstdio>
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/cli/option_flags.h"
#include "compress/core/error.h"
#include "prune/prune_pass.h"

namespace slmc::cli {

namespace {

struct PruneCmdOptions {
  std::string model, recipe, tokenizer, calib, eval, out, hf_out;
  int64_t samples = 128, seq_len = 256, eval_ctx = 512;
  uint64_t seed = 0;
  bool json = false;
  prune::PruneOptions p;
  std::unique_ptr<CliBinder> binder;
  CLI::App* sub = nullptr;
};

void run_prune(PruneCmdOptions& o) {
  register_builtin_passes();
  RunInput in;
  in.model_path = o.model;
  Recipe recipe;
  std::unique_ptr<Pass> flag_pass;
  const std::set<std::string> given = o.binder->given();
  if (!o.recipe.empty()) {
    SLMC_CHECK(given.empty(), "give either --recipe or method flags (",
               CliBinder::flag(given.begin()->c_str()), " was given with --recipe ", o.recipe, ")");
    recipe = load_recipe(o.recipe);
    for (const Stage& s : recipe.stages) {
      SLMC_CHECK(s.kind == "prune", s.where, ": slmc prune runs prune stages only; use `slmc run ",
                 o.recipe, "` for '", s.kind, "'");
      in.stages.push_back({s.pass.get(), s.where});
    }
    in.calibration = recipe.calibration;
    in.eval = recipe.eval;
    in.gates = recipe.gates;
    if (in.model_path.empty()) in.model_path = recipe.model;
  } else {
    flag_pass = prune::make_prune_pass(o.p, OptionOrigins::from_flags("prune", o.binder->where(), given));
    in.stages.push_back({flag_pass.get(), "slmc prune"});
  }
  SLMC_CHECK(!in.model_path.empty(), "no model: give --model (the recipe names none)");
  SLMC_CHECK(!o.out.empty() || !o.hf_out.empty(),
             "no output: give -o OUT.slm and/or --save-hf DIR");
  in.tokenizer = resolve_tokenizer(in.model_path, o.tokenizer, false);
  in.threads = global_options().threads;
  if (!o.out.empty()) {
    ExportSpec e;
    e.path = o.out;
    e.where = "-o";
    in.exports.push_back(e);
  }
  if (!o.hf_out.empty()) {
    ExportSpec e;
    e.format = "hf";
    e.path = o.hf_out;
    e.where = "--save-hf";
    in.exports.push_back(e);
  }
  // Command-line data flags override the recipe's (DataSpec defaults equal the flags' defaults).
  if (!o.calib.empty()) in.calibration.path = o.calib;
  if (o.sub->count("--samples")) in.calibration.samples = o.samples;
  if (o.sub->count("--seq-len")) in.calibration.seq_len = o.seq_len;
  if (o.sub->count("--seed")) in.calibration.seed = o.seed;
  if (!o.eval.empty()) in.eval.path = o.eval;
  if (o.sub->count("--eval-ctx") || in.eval.where.empty()) in.eval.seq_len = o.eval_ctx;
  run_and_print(in, o.json);
}

}  // namespace

void setup_prune(CLI::App& app) {
  auto o = std::make_shared<PruneCmdOptions>();
  auto* sub = app.add_subcommand(
      "prune",
      "pruning: magnitude, wanda or sparsegpt (unstructured or N:M, kept exactly zero by later "
      "passes), or structured heads, channels or layers (physically removed); calibration runs "
      "layer by layer");
  o->sub = sub;
  sub->add_option("--model", o->model, "HF directory, llama2.c .bin or .slm");
  sub->add_option("--recipe", o->recipe, "YAML recipe whose stages are prune passes")
      ->check(CLI::ExistingFile);
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer (default: the model's own)");
  sub->add_option("--calib", o->calib, "calibration DATA: text or HDF5 tokens");
  sub->add_option("--samples", o->samples, "calibration sequences")->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--seq-len", o->seq_len, "tokens per calibration sequence, BOS included")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--seed", o->seed, "seed of the calibration window draw")->capture_default_str();
  sub->add_option("--eval", o->eval,
                  "DATA for the final table: parameters, bytes, perplexity, KL and top-1 vs the "
                  "dense model, measured with the runtime");
  sub->add_option("--eval-ctx", o->eval_ctx, "evaluation window, BOS included")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("-o,--out", o->out, "the .slm to write (atomically)");
  sub->add_option("--save-hf", o->hf_out, "also (or only) write a Hugging Face directory");
  sub->add_flag("--json", o->json, "one JSON report on stdout");
  o->binder = std::make_unique<CliBinder>(sub, "Method (the keys of a recipe's prune stage)");
  o->p.visit(*o->binder);
  on_run(sub, [o] { run_prune(*o); });
}

}  // namespace slmc::cli
