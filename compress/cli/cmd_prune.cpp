// slmc prune --model M (--recipe R.yaml | --method magnitude|wanda|sparsegpt (--sparsity S |
//            --pattern N:M) | --structured heads|channels|layers --sparsity S) [--calib DATA]
//            [--eval DATA] (-o OUT.slm | --save-hf DIR)
// Flags of the method come from PruneOptions::visit(), the same declaration recipes bind.
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/pass_command.h"
#include "compress/core/error.h"
#include "prune/prune_pass.h"

namespace slmc::cli {

namespace {

struct PruneCmdOptions {
  PassCommand cmd{"prune"};
  std::string out, hf_out;
  prune::PruneOptions p;
};

}  // namespace

void setup_prune(CLI::App& app) {
  auto o = std::make_shared<PruneCmdOptions>();
  auto* sub = app.add_subcommand(
      "prune",
      "pruning: magnitude, wanda or sparsegpt (unstructured or N:M, kept exactly zero by later "
      "passes), or structured heads, channels or layers (physically removed); calibration runs "
      "layer by layer");
  sub->add_option("-o,--out", o->out, "the .slm to write (atomically)");
  sub->add_option("--save-hf", o->hf_out, "also (or only) write a Hugging Face directory");
  o->p.visit(o->cmd.setup(sub, "Method (the keys of a recipe's prune stage)"));
  on_run(sub, [o] {
    SLMC_CHECK(!o->out.empty() || !o->hf_out.empty(),
               "no output: give -o OUT.slm and/or --save-hf DIR");
    o->cmd.outputs.clear();
    if (!o->out.empty()) o->cmd.outputs.push_back({"slm", o->out, "-o"});
    if (!o->hf_out.empty()) o->cmd.outputs.push_back({"hf", o->hf_out, "--save-hf"});
    o->cmd.run(
        [&](OptionOrigins origins) { return prune::make_prune_pass(o->p, std::move(origins)); });
  });
}

}  // namespace slmc::cli
