// slmc: distill, prune and quantize small language models. Exit codes: 0 success, 2 bad input
// (the message names the file, key or value), 3 a recipe gate failed (the message names the gate,
// its threshold and the measured value), 1 an internal error.
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>

#include "compress/cli/commands.h"
#include "compress/cli/omp_env.h"
#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/model/transformer.h"
#include "compress/recipe/runner.h"

namespace slmc::cli {
GlobalOptions& global_options() {
  static GlobalOptions g;
  return g;
}
void apply_global_options() {
  slmc::set_num_threads(global_options().threads);
  slmc::Progress::set_enabled(!global_options().quiet);
}
}  // namespace slmc::cli

namespace {
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
}  // namespace

int main(int argc, char** argv) {
  using namespace slmc::cli;
  ensure_omp_wait_policy(argc, argv);
  CLI::App app{"slmc: make small language models smaller and faster"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("slmc ") + slmc::slmc_version());
  auto& g = global_options();
  app.add_option("--threads", g.threads, "threads for compute (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("-q,--quiet", g.quiet, "no progress bars (summaries still print)");
  setup_inspect(app);
  setup_eval(app);
  setup_generate(app);
  setup_data(app);
  setup_train(app);
  setup_demo(app);
  setup_export(app);
  setup_bench(app);
  setup_quantize(app);
  setup_run(app);
  setup_prune(app);
  setup_distill(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const slmc::GateFailure& e) {
    std::fprintf(stderr, "slmc: %s\n", e.what());
    return 3;
  } catch (const slmc::Error& e) {
    std::fprintf(stderr, "slmc: error: %s\n", e.what());
    return 2;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "slmc: error: %s\n", first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "slmc: internal error: %s\n", first_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
