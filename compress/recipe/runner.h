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
#include "compress/report/report.h"
#include "export/slm_export.h"

namespace slmc {

// A gate the run's outputs failed: `slmc` exits 3 on it (bad input is 2). The message names the
// gates' recipe line, each failed gate, its threshold and the measured value.
class GateFailure : public Error {
 public:
  using Error::Error;
};

// One gate, checked: "max_kl" with its limit and what was measured.
struct GateResult {
  std::string name;
  double limit = 0, value = 0;
  bool passed = true;
  std::string message;  // "max_kl 0.01: KL 0.0213"
};

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
  int threads = 0;          // 0 = all cores
  std::string recipe_file;  // hashed into the manifest ("" = flags, no recipe)
  // Stage cache (stage_cache.h): "" = none. Stages whose entry exists are read back instead of
  // run; `from_stage` >= 0 reruns that stage and every later one even when cached.
  std::string cache_dir;
  int from_stage = -1;
};

// One stage of the plan: the spec it is given and the spec it leaves.
struct StagePlan {
  std::string pass, where;
  ModelSpec in, out;
};

// Validates the whole run against the model's spec without running anything (see above).
// Throws slmc::Error naming the stage's where and the key.
std::vector<StagePlan> plan_run(const ModelSpec& spec, const RunInput& in);

// The stage-cache key of every stage (stage_cache.h), empty without in.cache_dir: chained from
// the model's hash through each pass's name and resolved options, the calibration data's hash
// and draw for stages that use it, and the slmc version.
std::vector<std::string> stage_keys(const RunInput& in);
std::string stage_cache_dir(const RunInput& in, const std::string& key);

// The resolved plan for --dry-run: each stage's input and output shape, options and whether it
// is cached; the exports and the gates.
std::string plan_text(const std::vector<StagePlan>& plan, const RunInput& in);

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

// The output of a stage before the last, measured in memory (LibTorch) against the original: a
// point of the report's accuracy-per-byte plot.
struct StagePoint {
  std::string label;  // "1. distill"
  double bytes = 0;   // packed tensors' bytes + 4 per fp32 weight
  int64_t params = 0;
  double sparsity = 0;
  EvalResult eval;
};

struct RunReport {
  std::string model;
  int64_t params_original = 0, params_compressed = 0;
  uint64_t bytes_original = 0;  // fp32 bytes of the original's tensors
  std::vector<StagePlan> plan;
  std::vector<PassReport> passes;
  std::vector<bool> cached;          // per pass: read back from the stage cache
  std::vector<ExportReport> slm;     // one per .slm export
  std::vector<ExportReport> gguf;    // one per .gguf export
  std::vector<std::string> hf_dirs;  // HF directories written
  std::vector<std::string> notes;    // e.g. a tokenizer that could not be written beside
  bool has_eval = false;
  RunEval eval;
  std::vector<StagePoint> stage_points;  // with eval data: every stage but the last
  double decode_tok_s = 0;  // runtime decode speed of the first .slm (0 = not measured)
  std::vector<GateResult> gates;           // every gate the recipe set, in declaration order
  std::vector<std::string> gate_failures;  // messages of the failed ones: "max_kl 0.01: KL 0.0213"
  double seconds = 0;
  int64_t max_rss_bytes = 0;

  std::string text() const;  // human tables (stdout)
  std::string json() const;  // one JSON object, with flat table_* copies for scripts
};

// Runs everything and returns the report; does not throw for failed gates (see check_gates).
RunReport run_recipe(const RunInput& in);

// Checks every gate set in `g` against the report's measurements; fills report.gates and
// report.gate_failures (run_recipe calls it).
void evaluate_gates(RunReport& report, const Gates& g);

// Throws GateFailure naming the gates' recipe line when report.gate_failures is not empty.
void check_gates(const RunReport& report, const Gates& gates);

// Decode speed of an .slm in the runtime, tokens/s: `gen` tokens from an empty context, one at
// a time (as `slmc bench`'s tg), the median of `reps` runs after a warm-up.
double measure_decode_tok_s(const std::string& slm, int threads, int64_t gen = 32, int reps = 3);

// The version written into manifests and stage-cache keys (CMake's PROJECT_VERSION).
const char* slmc_version();

// sha256 of a file's bytes, or of a directory: of the lines "<relative path> <sha256>\n" of its
// regular files, sorted by path. Throws slmc::Error naming the path if it cannot be read.
std::string sha256_path(const std::string& path);

// manifest.json: sha256 of the recipe, the model, the data and every artifact; the slmc version;
// per-stage options, metrics and seconds; the accuracy and gates. Keys named "seconds",
// "decode_tok_s" and "peak_rss_bytes" hold the only values that differ between two runs of the
// same inputs.
std::string manifest_json(const RunReport& r, const RunInput& in);

// The runner's report as compress/report's: the original and every artifact on the
// accuracy-per-byte plane, per-tensor formats, bits and errors of the final model, the gates.
report::RunReport to_report(const RunReport& r, const RunInput& in);

// Writes DIR/manifest.json and the report (report.md, report.html, plots), each atomically.
void write_run_outputs(const RunReport& r, const RunInput& in, const std::string& dir);

// Writes a Hugging Face directory of `m` (save_hf_model) with its tokenizer file beside it when
// the tokenizer kind has one; returns a note when it does not ("" otherwise).
std::string save_hf_directory(const std::string& dir, const LoadedModel& m, const Tokenizer* tok);

}  // namespace slmc
