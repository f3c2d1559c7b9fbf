// A recipe file (ARCHITECTURE "Recipes"): model, data, stages of passes, exports and gates.
// Every error names the recipe file, line and key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "compress/recipe/pass.h"

namespace slmc {

struct DataSpec {
  std::string path;      // text or HDF5 tokens; "" = not given
  int64_t samples = 128; // calibration: sequences
  int64_t seq_len = 256; // tokens per sequence, BOS included
  uint64_t seed = 0;     // which windows are drawn
  std::string where;     // file:line of the mapping

  template <class V>
  void visit(V& v) {
    v("path", path, "text file or HDF5 token file (relative paths: to the recipe)");
    v("samples", samples, "sequences");
    v("seq_len", seq_len, "tokens per sequence, BOS included");
    v("seed", seed, "seed of the window draw");
  }
};

struct ExportSpec {
  std::string format = "slm";  // slm (file), gguf (file) or hf (Hugging Face directory)
  std::string path;
  std::string where;
  template <class V>
  void visit(V& v) {
    v("format", format, "artifact format: slm, gguf, or hf (a Hugging Face directory)");
    v("path", path, "output file (relative paths: to the working directory)");
  }
};

struct Gates {
  double max_kl = -1;            // < 0: no gate
  double max_ppl_increase = -1;  // relative, 0.03 = +3%
  double min_top1 = -1;
  int64_t max_bytes = -1;
  double min_decode_tok_s = -1;  // runtime decode speed of the first .slm export
  std::string where;
  template <class V>
  void visit(V& v) {
    v("max_kl", max_kl, "fail if KL(original || compressed) exceeds this");
    v("max_ppl_increase", max_ppl_increase, "fail if perplexity grows by more than this share");
    v("min_top1", min_top1, "fail if top-1 agreement is below this");
    v("max_bytes", max_bytes, "fail if the exported tensors exceed this many bytes");
    v("min_decode_tok_s", min_decode_tok_s, "fail if the runtime decodes the .slm slower (tokens/s)");
  }
  bool any() const {
    return max_kl >= 0 || max_ppl_increase >= 0 || min_top1 >= 0 || max_bytes >= 0 || min_decode_tok_s >= 0;
  }
};

struct Stage {
  std::string kind;  // registered pass name
  std::string where;
  std::unique_ptr<Pass> pass;
};

struct Recipe {
  std::string file;
  int64_t version = 1;
  std::string model;  // "" = given on the command line
  DataSpec calibration, eval;
  std::vector<Stage> stages;
  std::vector<ExportSpec> exports;
  Gates gates;
};

// Parses and validates a recipe: unknown keys, wrong types, unknown stages and impossible option
// values are errors with file:line and key. Relative data paths are resolved against the recipe's
// folder. Passes must have been registered (register_builtin_passes in the CLI).
Recipe load_recipe(const std::string& path);

}  // namespace slmc
