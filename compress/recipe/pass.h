// Passes (ARCHITECTURE "Core types", STYLE 4 and 13): a compression method is a registered pass
// with options declared once by visit(). Every pass reads and writes the same in-memory model
// (CompressedModel: fp32 tensors, the codec bytes of tensors already quantized, and the sparsity
// masks of pruned tensors), states the ModelSpec it produces from the one it is given before
// anything runs (so a recipe is validated stage by stage up front), and returns a report.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/io/token_data.h"
#include "compress/recipe/yaml_options.h"
#include "compress/tokenizer/tokenizer.h"
#include "quantize/codec/formats.h"

namespace slmc {

// Which weights of one matrix are pruned: they are exactly zero (+0 or -0) in the fp32 tensor
// and in whatever a later pass stores it as, and every later pass keeps them so (GPTQ pins them
// to the zero code, RTN and AWQ round zero to zero on every grid with an integral zero point; the
// quantize pass checks the decoded bytes and refuses a format that cannot hold them). `n`:`m`
// records the pattern the mask was chosen under, so a format that stores only the kept weights
// (2:4 with the pattern per group of 4) can be picked by a later stage without rescanning.
struct SparsityMask {
  std::vector<int64_t> shape;   // (rows, cols), the tensor's
  std::vector<uint8_t> pruned;  // rows * cols, row-major; 1 = pruned (bool-compatible bytes)
  int64_t n = 0;                // N:M: at most n kept weights in every m consecutive weights
  int64_t m = 0;                //      of a row (groups start at column 0); 0:0 = unstructured

  int64_t n_pruned() const;
  std::string pattern() const;  // "unstructured" or "2:4"
};

// The model passes work on. `model.tensors` always holds fp32 values; a tensor that a pass stored
// in a codec format also has its exact bytes in `packed`, and its fp32 entry holds the values
// those bytes decode to, so later passes and the LibTorch model see the quantized model.
struct CompressedModel {
  LoadedModel model;
  std::map<std::string, codec::QTensor> packed;
  std::map<std::string, SparsityMask> masks;   // pruned tensors (unstructured or N:M)
  std::shared_ptr<const Tokenizer> tokenizer;  // may be null

  // Stores `q` for tensor `name` and replaces its fp32 values with `dequant` (numel must match).
  void set_packed(const std::string& name, codec::QTensor q, std::vector<float> dequant);
  // Records `mask` for tensor `name` (shape must match), merged with an earlier mask of the
  // tensor (a weight once pruned stays pruned; the pattern is kept only if both agree), and
  // zeroes the pruned fp32 values.
  void add_mask(const std::string& name, SparsityMask mask);
  // Throws slmc::Error naming the tensor when a pruned weight is not exactly zero in the fp32
  // values or in the decoded packed bytes: the invariant every pass keeps.
  void check_masks() const;
};

struct PassContext {
  const CalibrationSet* calibration = nullptr;  // null when the command was given none
  int threads = 0;                              // 0 = all cores
};

// One tensor's line in a pass report.
struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;  // after the pass
  std::string format;        // what it is stored as after the pass
  bool fallback = false;     // the requested format could not hold it
  std::string note;          // why it fell back, or method remarks
  int64_t n_weights = 0;
  int64_t n_zero = 0;        // weights exactly zero after the pass (stored values)
  uint64_t bytes_before = 0;
  uint64_t bytes_after = 0;
  codec::Distortion dist;    // against the weights before the pass (same shape only)
  std::map<std::string, double> extra;  // method figures: "out_err" (GPTQ/AWQ), "awq_ratio", ...

  // n_zero from the stored fp32 values.
  void count_zeros(const std::vector<float>& values);
  double sparsity() const { return n_weights ? static_cast<double>(n_zero) / static_cast<double>(n_weights) : 0.0; }
};

struct PassReport {
  std::string pass;     // registered name
  std::string options;  // resolved options, YAML
  std::vector<TensorReport> tensors;
  std::vector<std::string> notes;  // coverage warnings, fallbacks, defaults applied
  double seconds = 0;
  int64_t peak_rss_bytes = 0;      // of the process, when the pass finished
  // Filled by run_pass: the whole model before and after (parameters of the spec, and exactly
  // zero weights over every 2-D tensor).
  int64_t params_before = 0, params_after = 0;
  int64_t model_zero = 0, model_matrix_weights = 0;

  std::string table() const;  // aligned text table with a totals line
  std::string json() const;   // machine summary
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  // Resolved options as YAML lines (the same visit() that bound them).
  virtual std::string resolved_options() const = 0;
  // Whether run() needs ctx.calibration.
  virtual bool needs_calibration() const = 0;
  // The spec of the model this pass produces from a model of spec `in`, without running: checks
  // the options against `in` and throws slmc::Error naming the recipe file:line (or flag) and key
  // for values that do not fit. A recipe runner chains these before any work starts.
  virtual ModelSpec output_spec(const ModelSpec& in) const = 0;
  // Whether the pass stores tensors in codec formats (quantize), and whether it rewrites fp32
  // weights or shapes and so cannot follow a pass that stores them (prune, distill).
  virtual bool packs_tensors() const { return false; }
  virtual bool rewrites_weights() const { return false; }
  virtual PassReport run(CompressedModel& m, PassContext& ctx) = 0;
};

// ctx.calibration, checked against the model's vocab; throws naming `where` ("what needs
// calibration data") when there is none, and the data's file for an id outside the vocab.
const CalibrationSet& require_calibration(const PassContext& ctx, const ModelSpec& spec,
                                          const std::string& where, const std::string& what);

// Runs `p` on `m` and holds it to its contract: the model's spec afterwards equals
// p.output_spec() of the spec before, every tensor matches the spec, and every pruned weight is
// still exactly zero. Fills the report's whole-model figures.
PassReport run_pass(Pass& p, CompressedModel& m, PassContext& ctx);

// Where a pass's option keys came from, for error messages: "file:line: key 'bits'" for a recipe
// stage, "--bits" for a flag; `given`: the keys the user set (explicit values may be held to
// stricter rules than defaults).
struct OptionOrigins {
  std::string pass;                            // "quantize", the last resort
  std::string stage;                           // "r.yaml:5" (the stage mapping), "" on the CLI
  std::map<std::string, std::string> where;
  std::set<std::string> given;

  std::string at(const std::string& key) const;  // where[key], else stage, else pass
  static OptionOrigins from_yaml(const std::string& pass, const std::string& file,
                                 const YAML::Node& node);
  static OptionOrigins from_flags(const std::string& pass, std::map<std::string, std::string> where,
                                  std::set<std::string> given);
};

// A pass is built from its recipe mapping (`file` for error messages). Unknown keys, wrong types
// and impossible values throw with file:line and key.
using PassFactory = std::function<std::unique_ptr<Pass>(const std::string& file, const YAML::Node&)>;

void register_pass(const std::string& name, const std::string& about, PassFactory factory);

// Registers a pass whose options are a struct with visit(): the recipe mapping binds it (unknown
// keys rejected), and `make(options, origins)` builds the pass.
template <class Options, class Make>
void register_options_pass(const std::string& name, const std::string& about, Make make) {
  register_pass(name, about, [name, make](const std::string& file, const YAML::Node& node) {
    Options o;
    YamlBinder b(file, node, name);
    o.visit(b);
    b.reject_unknown();
    return make(std::move(o), OptionOrigins::from_yaml(name, file, node));
  });
}

// Throws naming `where` and the registered names if `name` is unknown.
std::unique_ptr<Pass> make_pass(const std::string& name, const std::string& file,
                                const YAML::Node& options, const std::string& where);
std::vector<std::pair<std::string, std::string>> registered_passes();  // (name, about)

// Peak resident set size of this process (VmHWM), bytes; 0 if unknown.
int64_t peak_rss_bytes();

}  // namespace slmc
