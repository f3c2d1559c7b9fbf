// slmc quantize --model M (--recipe R.yaml | --method rtn|gptq|awq --bits B [--group-size G]
//                [--target-bpw X] ...) [--calib DATA] [--eval DATA] -o OUT.slm
// Flags of the method come from QuantizeOptions::visit(), the same declaration recipes bind.
#include <cstdio>
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/option_flags.h"
#include "compress/cli/common.h"
#include "compress/core/error.h"
#include "quantize/quantize_pass.h"

namespace slmc::cli {

namespace {

struct QuantizeCmdOptions {
  std::string model, recipe, tokenizer, calib, eval, out;
  int64_t samples = 128, seq_len = 256, eval_ctx = 512;
  uint64_t seed = 0;
  bool json = false;
  quant::QuantizeOptions q;
  std::unique_ptr<CliBinder> binder;
  CLI::App* sub = nullptr;
};

void run_quantize(QuantizeCmdOptions& o) {
  register_builtin_passes();
  RunInput in;
  in.model_path = o.model;
  Recipe recipe;
  std::unique_ptr<Pass> flag_pass;
  const std::set<std::string> given = o.binder->given();
  if (!o.recipe.empty()) {
    SLMC_CHECK(given.empty(), "give either --recipe or method flags (", CliBinder::flag(given.begin()->c_str()),
               " was given with --recipe ", o.recipe, ")");
    recipe = load_recipe(o.recipe);
    for (const Stage& s : recipe.stages) {
      SLMC_CHECK(s.kind == "quantize", s.where, ": slmc quantize runs quantize stages only; use "
                 "`slmc run ", o.recipe, "` for '", s.kind, "'");
      in.stages.push_back({s.pass.get(), s.where});
    }
    in.calibration = recipe.calibration;
    in.eval = recipe.eval;
    in.gates = recipe.gates;
    if (in.model_path.empty()) in.model_path = recipe.model;
  } else {
    flag_pass = quant::make_quantize_pass(
        o.q, OptionOrigins::from_flags("quantize", o.binder->where(), given));
    in.stages.push_back({flag_pass.get(), "slmc quantize"});
  }
  SLMC_CHECK(!in.model_path.empty(), "no model: give --model (the recipe names none)");
  in.tokenizer = resolve_tokenizer(in.model_path, o.tokenizer, false);
  in.threads = global_options().threads;
  ExportSpec out;
  out.path = o.out;
  out.where = "-o";
  in.exports.push_back(out);
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

void setup_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCmdOptions>();
  auto* sub = app.add_subcommand(
      "quantize",
      "post-training quantization into an .slm: rtn, gptq or awq, one format or a mix under "
      "--target-bpw; calibration runs layer by layer");
  o->sub = sub;
  sub->add_option("--model", o->model, "HF directory, llama2.c .bin or .slm");
  sub->add_option("--recipe", o->recipe, "YAML recipe whose stages are quantize passes")
      ->check(CLI::ExistingFile);
  sub->add_option("--tokenizer", o->tokenizer, "tokenizer (default: the model's own)");
  sub->add_option("--calib", o->calib, "calibration DATA: text or HDF5 tokens");
  sub->add_option("--samples", o->samples, "calibration sequences")->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--seq-len", o->seq_len, "tokens per calibration sequence, BOS included")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("--seed", o->seed, "seed of the calibration window draw")->capture_default_str();
  sub->add_option("--eval", o->eval,
                  "DATA for the final table: perplexity, KL and top-1 vs the unquantized model, "
                  "measured with the runtime");
  sub->add_option("--eval-ctx", o->eval_ctx, "evaluation window, BOS included")
      ->capture_default_str()->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  sub->add_option("-o,--out", o->out, "the .slm to write (atomically)")->required();
  sub->add_flag("--json", o->json, "one JSON report on stdout");
  o->binder = std::make_unique<CliBinder>(sub, "Method (the keys of a recipe's quantize stage)");
  o->q.visit(*o->binder);
  on_run(sub, [o] { run_quantize(*o); });
}

}  // namespace slmc::cli
