#include "compress/cli/pass_command.h"

#include "compress/cli/commands.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"

namespace slmc::cli {

CliBinder& PassCommand::setup(CLI::App* s, const std::string& method_group) {
  sub = s;
  sub->add_option("--model", model, "HF directory, llama2.c .bin or .slm");
  sub->add_option("--recipe", recipe, "YAML recipe whose stages are " + kind + " passes")
      ->check(CLI::ExistingFile);
  sub->add_option("--tokenizer", tokenizer, "tokenizer (default: the model's own)");
  sub->add_option("--calib", calib, "calibration DATA: text or HDF5 tokens");
  sub->add_option("--samples", samples, "calibration sequences")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--seq-len", seq_len, "tokens per calibration sequence, BOS included")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--seed", seed, "seed of the calibration window draw")->capture_default_str();
  sub->add_option("--eval", eval,
                  "DATA for the final table: parameters, bytes, perplexity, KL and top-1 vs the "
                  "original model, measured with the runtime");
  sub->add_option("--eval-ctx", eval_ctx, "evaluation window, BOS included")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_flag("--json", json, "one JSON report on stdout");
  binder = std::make_unique<CliBinder>(sub, method_group);
  return *binder;
}

void PassCommand::run(const std::function<std::unique_ptr<Pass>(OptionOrigins)>& make) {
  register_builtin_passes();
  RunInput in;
  in.model_path = model;
  Recipe r;
  std::unique_ptr<Pass> flag_pass;
  const std::set<std::string> given = binder->given();
  if (!recipe.empty()) {
    SLMC_CHECK(given.empty(), "give either --recipe or method flags (",
               CliBinder::flag(given.begin()->c_str()), " was given with --recipe ", recipe, ")");
    r = load_recipe(recipe);
    for (const Stage& s : r.stages) {
      SLMC_CHECK(s.kind == kind, s.where, ": slmc ", kind, " runs ", kind,
                 " stages only; use `slmc run ", recipe, "` for '", s.kind, "'");
      in.stages.push_back({s.pass.get(), s.where});
    }
    in.calibration = r.calibration;
    in.eval = r.eval;
    in.gates = r.gates;
    if (in.model_path.empty()) in.model_path = r.model;
  } else {
    flag_pass = make(OptionOrigins::from_flags(kind, binder->where(), given));
    in.stages.push_back({flag_pass.get(), "slmc " + kind});
  }
  SLMC_CHECK(!in.model_path.empty(), "no model: give --model (the recipe names none)");
  in.tokenizer = resolve_tokenizer(in.model_path, tokenizer, false);
  in.threads = global_options().threads;
  in.exports = outputs;
  // Command-line data flags override the recipe's (DataSpec defaults equal the flags' defaults).
  if (!calib.empty()) in.calibration.path = calib;
  if (sub->count("--samples")) in.calibration.samples = samples;
  if (sub->count("--seq-len")) in.calibration.seq_len = seq_len;
  if (sub->count("--seed")) in.calibration.seed = seed;
  if (!eval.empty()) in.eval.path = eval;
  if (sub->count("--eval-ctx") || in.eval.where.empty()) in.eval.seq_len = eval_ctx;
  run_and_print(in, json);
}

}  // namespace slmc::cli
