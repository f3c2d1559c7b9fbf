// One file per subcommand: each defines its options struct, `setup_x(CLI::App&)` that declares the
// flags once, and `run_x(const XOptions&)` that does the work. main.cpp only dispatches and turns
// errors into exit codes.
#pragma once

#include <CLI/CLI.hpp>

#include "compress/recipe/runner.h"

namespace slmc::cli {

void setup_inspect(CLI::App& app);
void setup_eval(CLI::App& app);
void setup_generate(CLI::App& app);
void setup_data(CLI::App& app);
void setup_train(CLI::App& app);
void setup_demo(CLI::App& app);
void setup_export(CLI::App& app);
void setup_bench(CLI::App& app);
void setup_quantize(CLI::App& app);
void setup_run(CLI::App& app);
void setup_distill(CLI::App& app);
void setup_prune(CLI::App& app);

// Registers every built-in pass with the registry (call before recipes are parsed).
void register_builtin_passes();
// Runs `in` with the recipe runner, prints its report (text, or one JSON object), and throws
// slmc::Error naming the gate when a gate failed. Shared by quantize, prune and run.
void run_and_print(const RunInput& in, bool json);

// Global flags, applied before any subcommand runs.
struct GlobalOptions {
  int threads = 0;  // 0 = all cores
  bool quiet = false;
};
GlobalOptions& global_options();
void apply_global_options();  // threads, progress bars

// Runs `fn` when subcommand `sub` is chosen, after the global options took effect.
template <typename F>
void on_run(CLI::App* sub, F fn) {
  sub->callback([fn] {
    apply_global_options();
    fn();
  });
}

}  // namespace slmc::cli
