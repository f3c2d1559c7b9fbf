// GGUF export: a loaded model -> a .gguf file llama.cpp runs unchanged (export/format/gguf_model.h
// says which architecture, keys, tensors and tokenizer). The tensor policy is export_slm's
// (round to nearest with the codec's reference, 1-D tensors f32, tensors a pass packed written
// byte for byte) with one difference: a matrix whose rows a K-quant cannot hold (not a multiple
// of 256) falls back to q8_0 when it can (llama.cpp's llama-quantize falls back too), else f16.
#pragma once

#include <map>
#include <string>

#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/slm_export.h"
#include "quantize/codec/formats.h"

namespace slmc {

// The format export_gguf stores `decl` in for requested `type`.
codec::Format gguf_tensor_format(const TensorDecl& decl, codec::Format type, bool* fallback);

// Writes `m` as GGUF v3 to `out` (atomically): metadata for its llama.cpp architecture, the
// tokenizer `tok` (required: llama.cpp reads the vocabulary from the file), every tensor in
// llama.cpp's names and layout (q/k rows interleaved for llama/deci, fused q/k/v of openelm,
// gate/up of phi3, stacked experts). Checks everything (architecture, tokenizer, formats) before
// writing anything; throws slmc::Error naming the problem. `packed` as in export_slm.
ExportReport export_gguf(const LoadedModel& m, codec::Format type, const Tokenizer* tok,
                         const std::string& out, int n_threads = 0,
                         const std::map<std::string, codec::QTensor>* packed = nullptr);

}  // namespace slmc
