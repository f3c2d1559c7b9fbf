// The `quantize` pass: selects tensors (targets/ignore), plans a codec format for each (one format,
// fallbacks, or a mix under a bits-per-weight budget), and quantizes them with RTN, GPTQ or AWQ.
// GPTQ and AWQ calibrate layer by layer with compress/model/layerwise.h: the calibration batch runs
// through layer i, its linears are quantized, and the quantized layer's outputs feed layer i+1,
// so peak memory holds one layer's activations whatever the depth. Pruned weights (the model's
// sparsity masks) stay exactly zero. Policy and defaults: quantize/README.md.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "compress/recipe/pass.h"
#include "compress/recipe/selector.h"
#include "quantize/awq.h"
#include "quantize/gptq.h"

namespace slmc::quant {

struct QuantizeOptions {
  std::string method = "rtn";  // rtn | gptq | awq
  int64_t bits = 4;            // 4 or 8
  int64_t group_size = 0;      // 0 = the format's own (32 for q4_0/q8_0), with fallbacks
  std::string format;          // a codec format name; overrides bits/group_size
  double target_bpw = 0;       // > 0: mixed precision under this bits-per-weight budget
  std::string mix_formats = "q4_g128,q4_0,q4_g64,q8_0,f16";
  std::string head_format = "q8_0";  // the output head (tied: the embedding) when bits < 8
  PatternList targets;         // empty = every matrix (linears, token_embd, output)
  PatternList ignore;
  int64_t calib_batch = 4;     // calibration sequences per forward chunk
  int64_t sens_samples = 8;    // target_bpw: calibration sequences the sensitivity uses
  int64_t moe_min_tokens = 128;  // MoE: experts routed fewer calibration tokens fall back to rtn
  // rtn only: symmetric int4 grids for q4_g64/q4_g128 (zero point 8), and one grid per output
  // channel (row) instead of per block: with bits 8, per-channel int8 stored as q8_0.
  bool symmetric = false;
  bool per_channel = false;
  GptqOptions gptq;
  AwqOptions awq;

  template <class V>
  void visit(V& v) {
    v("method", method, "rtn | gptq | awq");
    v("bits", bits, "4 or 8 (with group_size: 8 -> q8_0; 4 -> q4_0 (32), q4_g64, q4_g128)");
    v("group_size", group_size, "weights per scale: 32, 64, 128; 0 = the format's, with fallbacks");
    v("format", format, "codec format for every target (overrides bits/group_size)");
    v("target_bpw", target_bpw, "mixed precision: average bits per weight over the targets");
    v("mix_formats", mix_formats, "target_bpw: candidate formats, comma separated");
    v("head_format", head_format, "format of the output head when bits < 8; 'same' = bits'");
    v("targets", targets, "tensors to quantize (names, suffixes like ffn_down, re:regex)");
    v("ignore", ignore, "tensors to leave as they are");
    v("calib_batch", calib_batch, "calibration sequences per forward chunk (memory)");
    v("sens_samples", sens_samples, "target_bpw: calibration sequences for sensitivities");
    v("moe_min_tokens", moe_min_tokens,
      "MoE: an expert routed fewer calibration tokens is quantized with rtn (reported)");
    v("symmetric", symmetric, "rtn: symmetric int4 grids for q4_g64/q4_g128 (zero point 8)");
    v("per_channel", per_channel,
      "rtn: one scale per output channel shared by the row's blocks (bits 8: per-channel int8)");
    gptq.visit(v);
    awq.visit(v);
  }
};

// Resolves bits/group_size/format; throws naming `where` for combinations no format holds.
codec::Format resolve_format(const QuantizeOptions& o, const std::string& where);

// The format tried next when `f` cannot hold rows of `cols` weights (q4_g128 -> q4_g64 -> q4_0
// -> f16; q8_0 -> f16); f16 holds any row.
codec::Format fallback_format(codec::Format f, int64_t cols);

// `origins` says where each option key came from (recipe file:line or --flag) and which keys the
// user set (explicit group sizes are held to the tensors, defaults fall back).
std::unique_ptr<Pass> make_quantize_pass(QuantizeOptions o, OptionOrigins origins);

// Registers "quantize" with the pass registry (from a recipe mapping).
void register_quantize_pass();

}  // namespace slmc::quant
