// Passes (ARCHITECTURE "Core types", STYLE 4 and 13): a compression method is a registered pass
// with options declared once by visit(). Every pass reads and writes the same in-memory model,
// validates its options against the model before touching it, and returns a report.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "quantize/codec/formats.h"

namespace slmc {

// The model passes work on. `model.tensors` always holds fp32 values; a tensor that a pass stored
// in a codec format also has its exact bytes in `packed`, and its fp32 entry holds the values
// those bytes decode to, so later passes and the LibTorch model see the quantized model.
struct CompressedModel {
  LoadedModel model;
  std::map<std::string, codec::QTensor> packed;
  std::shared_ptr<const Tokenizer> tokenizer;  // may be null

  // Stores `q` for tensor `name` and replaces its fp32 values with `dequant` (numel must match).
  void set_packed(const std::string& name, codec::QTensor q, std::vector<float> dequant);
};

// Calibration sequences: samples x seq_len token ids, each row starting with BOS.
struct CalibrationSet {
  std::vector<std::vector<int32_t>> rows;
  std::string origin;  // the file they came from
  int64_t n_tokens() const;
};

struct PassContext {
  const CalibrationSet* calibration = nullptr;  // null when the command was given none
  int threads = 0;                              // 0 = all cores
};

// One tensor's line in a pass report.
struct TensorReport {
  std::string name;
  std::vector<int64_t> shape;
  std::string format;        // what it is stored as after the pass
  bool fallback = false;     // the requested format could not hold it
  std::string note;          // why it fell back, or method remarks
  int64_t n_weights = 0;
  uint64_t bytes_before = 0;
  uint64_t bytes_after = 0;
  codec::Distortion dist;    // against the weights before the pass
  std::map<std::string, double> extra;  // method figures: "out_err" (GPTQ/AWQ), "awq_ratio", ...
};

struct PassReport {
  std::string pass;     // registered name
  std::string options;  // resolved options, YAML
  std::vector<TensorReport> tensors;
  std::vector<std::string> notes;  // coverage warnings, fallbacks, defaults applied
  double seconds = 0;
  int64_t peak_rss_bytes = 0;      // of the process, when the pass finished

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
  // Checks the options against the model without changing it; throws slmc::Error naming the
  // recipe file:line and key for impossible values.
  virtual void validate(const CompressedModel& m) const = 0;
  virtual PassReport run(CompressedModel& m, PassContext& ctx) = 0;
};

// A pass is built from its recipe mapping (`file` for error messages). Unknown keys, wrong types
// and impossible values throw with file:line and key.
using PassFactory = std::function<std::unique_ptr<Pass>(const std::string& file, const YAML::Node&)>;

void register_pass(const std::string& name, const std::string& about, PassFactory factory);
// Throws naming `where` and the registered names if `name` is unknown.
std::unique_ptr<Pass> make_pass(const std::string& name, const std::string& file,
                                const YAML::Node& options, const std::string& where);
std::vector<std::pair<std::string, std::string>> registered_passes();  // (name, about)

// Peak resident set size of this process (VmHWM), bytes; 0 if unknown.
int64_t peak_rss_bytes();

}  // namespace slmc
