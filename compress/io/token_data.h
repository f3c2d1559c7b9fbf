// DATA arguments as tokens: calibration sequences, evaluation windows and plain streams, from a
// text file (tokenized with the model's tokenizer) or an HDF5 token file. What every command and
// the recipe runner read calibration and evaluation data with.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compress/core/model_spec.h"
#include "compress/core/windows.h"
#include "compress/tokenizer/tokenizer.h"

namespace slmc {

// Calibration sequences: samples x seq_len token ids, each row starting with BOS.
struct CalibrationSet {
  std::vector<std::vector<int32_t>> rows;
  std::string origin;  // the file they came from
  int64_t n_tokens() const;
};

// A token stream from DATA (HDF5 1-D or 2-D flattened, or text tokenized with `tok`, which is
// then required), every id checked against `vocab`. Throws naming the file.
std::vector<int32_t> load_token_stream(const std::string& path, const Tokenizer* tok,
                                       int64_t vocab);

// DATA for evaluation: 1-D streams and text are cut into BOS-led windows of `ctx` (windows.h);
// each row of a 2-D dataset is one sequence evaluated as given (row[t] predicts row[t+1]), cut to
// at most ctx. Every id is checked against `vocab`.
std::vector<Window> load_eval_windows(const std::string& path, const Tokenizer* tok, int64_t vocab,
                                      int64_t ctx, int32_t bos);

// Calibration sequences from DATA: `samples` non-overlapping windows of BOS + (seq_len - 1)
// stream tokens, drawn with `seed` and kept in stream order. Throws naming the file when it is too
// short or holds ids outside the vocab, and for samples < 1, seq_len < 2 or seq_len beyond the
// model's context.
CalibrationSet load_calibration(const std::string& path, const Tokenizer* tok,
                                const ModelSpec& spec, int64_t samples, int64_t seq_len,
                                uint64_t seed);

}  // namespace slmc
