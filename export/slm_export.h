// `.slm` export: a loaded model, round-to-nearest in one codec format, into the container the
// runtime mmaps (export/format/slm_format.h). The policy is in export/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "quantize/codec/formats.h"

namespace slmc {

// What happened to one tensor. Error statistics compare the fp32 weights with what the stored
// bytes dequantize to; they are computed for every format but F32 (f16/bf16 round too).
struct TensorExport {
  std::string name;
  std::vector<int64_t> shape;
  codec::Format format = codec::Format::kF32;
  // The requested type could not hold a row (columns not a multiple of its block size), so the
  // tensor was stored as F16 instead; `note` says why.
  bool fallback = false;
  std::string note;
  int64_t n_weights = 0;
  uint64_t bytes = 0;    // stored bytes
  bool lossy = false;    // format != F32: the statistics below mean something
  double rel_l2 = 0;     // ||w - q||_2 / ||w||_2 (0 if w is all zero)
  double max_abs = 0;    // max |w - q|
  double zero_frac = 0;  // share of weights with w != 0 whose stored value is exactly 0
};

struct ExportReport {
  std::string path;                          // the file written
  std::string container = "slm";             // "slm", or "gguf (<architecture>)"
  codec::Format type = codec::Format::kF32;  // the requested type for matrices
  std::string tokenizer_kind;                // "" if none embedded
  uint64_t tokenizer_bytes = 0;
  std::vector<TensorExport> tensors;  // in file order (expected_tensors order)
  int64_t n_weights = 0;              // all tensors
  uint64_t tensor_bytes = 0;          // stored tensor bytes (no container overhead)
  uint64_t file_bytes = 0;            // the whole .slm file
  double bits_per_weight = 0;         // 8 * tensor_bytes / n_weights
  int n_fallback = 0;                 // tensors stored in another format than `type`
  double seconds = 0;                 // quantize + write
};

// The format export_slm stores tensor `decl` in for requested `type` (see export/README.md):
// 2-D linear weights, token_embd and output get `type`; 1-D tensors stay F32; a matrix whose
// column count `type` cannot hold falls back to F16. `*fallback` is set when it fell back.
codec::Format slm_tensor_format(const TensorDecl& decl, codec::Format type, bool* fallback);

// How an exporter picks each tensor's format for a requested `type` (slm_tensor_format,
// gguf_tensor_format); sets `*fallback` when the tensor cannot take `type`.
using TensorFormatRule =
    std::function<codec::Format(const TensorDecl& decl, codec::Format type, bool* fallback)>;

class Progress;
// The quantization step every exporter shares: each expected tensor of `m` in the format `rule`
// picks (or, from `packed`, a pass's bytes as they are), round to nearest with the codec's
// scalar reference on `n_threads` threads, with per-tensor error statistics. Fills `bytes` (one
// buffer per tensor, expected_tensors order) and returns the report without path or file size.
// Creates `*progress` (shown on stderr) for the caller to finish. Throws slmc::Error on tensors
// that do not match the spec or non-finite weights.
ExportReport quantize_for_export(const LoadedModel& m, codec::Format type,
                                 const TensorFormatRule& rule, int n_threads,
                                 const std::map<std::string, codec::QTensor>* packed,
                                 std::unique_ptr<Progress>* progress,
                                 std::vector<std::vector<uint8_t>>* bytes);

// Quantizes `m` with the codec's scalar reference (round to nearest) and writes `out`
// atomically, embedding the spec and `tok` (nullable: no tokenizer). Runs on `n_threads`
// threads (0 = all cores) and shows progress on stderr. Throws slmc::Error on bad input
// (tensors that do not match the spec, non-finite weights, an unwritable path).
// `packed` (optional): tensors a pass already stored in a codec format; their bytes are written as
// they are (checked against the shape), and `type` applies to the others.
ExportReport export_slm(const LoadedModel& m, codec::Format type, const Tokenizer* tok,
                        const std::string& out, int n_threads = 0,
                        const std::map<std::string, codec::QTensor>* packed = nullptr);

// The report as an aligned text table with a totals line, and as JSON.
std::string export_report_table(const ExportReport& r);
std::string export_report_json(const ExportReport& r);

}  // namespace slmc
