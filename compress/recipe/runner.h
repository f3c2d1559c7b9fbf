// The recipe runner: a model through stages of registered passes, into artifacts, measured
// against the original and held to gates. `slmc quantize`, `slmc prune` and `slmc run` are thin
// front ends over it: they parse flags or a recipe into a RunInput and print the RunReport.
//
// Before any work starts, plan_run() chains every stage's output_spec() from the model's spec
// (a stage that does not fit the shape the previous stage leaves is an error naming its recipe
// line), checks the stage order (nothing rewrites weights after a stage that stored them
// quantized), and that calibration data is there when a stage needs it. Then the passes run,
// every artifact is written atomically, and with evaluation data the compressed model is
// compared with the original in memory (compress/eval/compare.h): the runtime on the .slm and
// LibTorch on the same artifact.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compress/eval/evaluate.h"
#include "compress/recipe/recipe.h"
#include "export/slm_export.h"

namespace slmc {

struct RunStage {
  Pass* pass = nullptr;
  std::string where;  // recipe file:line of the stage, or the command ("slmc prune")
};

struct RunInput {
  std::string model_path;
  std::shared_ptr<const Tokenizer> tokenizer;  // may be null (then only HDF5 data works)
  std::vector<RunStage> stages;                // in order
  DataSpec calibration;                        // path "" = none
  DataSpec eval;                               // path "" = no accuracy table
  std::vector<ExportSpec> exports;             // .slm files and HF directories, at least one
  Gates gates;
  int threads = 0;  // 0 = all cores
};

// One stage of the plan: the spec it is given and the spec it leaves.
struct StagePlan {
  std::string pass, where;
  ModelSpec in, out;
};

// Validates the whole run against the model's spec without running anything (see above).
// Throws slmc::Error naming the stage's where and the key.
std::vector<StagePlan> plan_run(const ModelSpec& spec, const RunInput& in);

// Accuracy of the compressed model against the original on the evaluation data.
struct RunEval {
  std::string data;
  int64_t tokens = 0, ctx = 0;
  double ppl_original = 0;  // LibTorch, fp32 original
  EvalResult compressed;    // the runtime on the .slm (LibTorch in memory if no .slm)
  std::string backend;      // "runtime" or "torch"
  bool has_torch_artifact = false;
  EvalResult torch_artifact;  // LibTorch on the same .slm, dequantized
  double ppl_agreement = 0;   // |runtime ppl - LibTorch ppl| / LibTorch ppl
};

struct RunReport {
  std::string model;
  int64_t params_original = 0, params_compressed = 0;
  uint64_t bytes_original = 0;  // fp32 bytes of the original's tensors
  std::vector<StagePlan> plan;
  std::vector<PassReport> passes;
  std::vector<ExportReport> slm;     // one per .slm export
  std::vector<std::string> hf_dirs;  // HF directories written
  std::vector<std::string> notes;    // e.g. a tokenizer that could not be written beside
  bool has_eval = false;
  RunEval eval;
  std::vector<std::string> gate_failures;  // "max_kl 0.01: KL is 0.02"
  double seconds = 0;
  int64_t max_rss_bytes = 0;

  std::string text() const;  // human tables (stdout)
  std::string json() const;  // one JSON object, with flat table_* copies for scripts
};

// Runs everything and returns the report; does not throw for failed gates (see check_gates).
RunReport run_recipe(const RunInput& in);

// Throws slmc::Error naming the gates' recipe line when report.gate_failures is not empty.
void check_gates(const RunReport& report, const Gates& gates);

// Writes a Hugging Face directory of `m` (save_hf_model) with its tokenizer file beside it when
// the tokenizer kind has one; returns a note when it does not ("" otherwise).
std::string save_hf_directory(const std::string& dir, const LoadedModel& m, const Tokenizer* tok);

}  // namespace slmc
