// slmc quantize --model M (--recipe R.yaml | --method rtn|gptq|awq --bits B [--group-size G]
//                [--target-bpw X] ...) [--calib DATA] [--eval DATA] -o OUT.slm
// Flags of the method come from QuantizeOptions::visit(), the same declaration recipes bind.
#include <memory>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/pass_command.h"
#include "quantize/quantize_pass.h"

namespace slmc::cli {

namespace {

struct QuantizeCmdOptions {
  PassCommand cmd{"quantize"};
  std::string out;
  quant::QuantizeOptions q;
};

}  // namespace

void setup_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCmdOptions>();
  auto* sub = app.add_subcommand(
      "quantize",
      "post-training quantization into an .slm: rtn, gptq or awq, one format or a mix under "
      "--target-bpw; calibration runs layer by layer");
  sub->add_option("-o,--out", o->out, "the .slm to write (atomically)")->required();
  o->q.visit(o->cmd.setup(sub, "Method (the keys of a recipe's quantize stage)"));
  on_run(sub, [o] {
    ExportSpec e;
    e.path = o->out;
    e.where = "-o";
    o->cmd.outputs = {e};
    o->cmd.run(
        [&](OptionOrigins origins) { return quant::make_quantize_pass(o->q, std::move(origins)); });
  });
}

}  // namespace slmc::cli
