#include "compress/io/token_data.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/io/h5.h"

namespace slmc {

int64_t CalibrationSet::n_tokens() const {
  int64_t n = 0;
  for (const auto& r : rows) n += static_cast<int64_t>(r.size());
  return n;
}

namespace {

void check_ids(const std::vector<int32_t>& ids, int64_t vocab, const std::string& path) {
  for (size_t i = 0; i < ids.size(); ++i)
    SLMC_CHECK(ids[i] >= 0 && ids[i] < vocab, path, ": token id ", ids[i], " at position ", i,
               " is outside the model's vocab [0, ", vocab, ")");
}

std::vector<int32_t> tokenize_text(const std::string& path, const Tokenizer* tok) {
  SLMC_CHECK(tok != nullptr, path, ": text data needs a tokenizer; pass --tokenizer");
  const std::string text = read_file(path);
  SLMC_CHECK(!text.empty(), path, ": empty text file");
  return tok->encode(text);
}

}  // namespace

std::vector<int32_t> load_token_stream(const std::string& path, const Tokenizer* tok,
                                       int64_t vocab) {
  std::vector<int32_t> ids =
      is_hdf5_file(path) ? read_tokens_h5(path).tokens : tokenize_text(path, tok);
  SLMC_CHECK(!ids.empty(), path, ": no tokens");
  check_ids(ids, vocab, path);
  return ids;
}

std::vector<Window> load_eval_windows(const std::string& path, const Tokenizer* tok, int64_t vocab,
                                      int64_t ctx, int32_t bos) {
  if (is_hdf5_file(path)) {
    TokenData d = read_tokens_h5(path);
    check_ids(d.tokens, vocab, path);
    if (d.rows > 0) {
      SLMC_CHECK(d.cols >= 2, path, ": rows of `tokens` need at least 2 tokens, got ", d.cols);
      std::vector<Window> out;
      for (int64_t r = 0; r < d.rows; ++r) {
        const int32_t* row = d.tokens.data() + r * d.cols;
        const int64_t len = std::min(d.cols, ctx + 1);
        Window w;
        w.input.assign(row, row + len - 1);
        w.targets.assign(row + 1, row + len);
        out.push_back(std::move(w));
      }
      return out;
    }
    SLMC_CHECK(!d.tokens.empty(), path, ": dataset `tokens` is empty");
    return bos_windows(d.tokens, ctx, bos);
  }
  return bos_windows(load_token_stream(path, tok, vocab), ctx, bos);
}

CalibrationSet load_calibration(const std::string& path, const Tokenizer* tok,
                                const ModelSpec& spec, int64_t samples, int64_t seq_len,
                                uint64_t seed) {
  SLMC_CHECK(samples >= 1, "calibration: samples must be >= 1, got ", samples);
  SLMC_CHECK(seq_len >= 2, "calibration: seq_len must be >= 2, got ", seq_len);
  SLMC_CHECK(seq_len <= spec.max_seq, "calibration: seq_len ", seq_len,
             " exceeds the model's context ", spec.max_seq);
  const std::vector<int32_t> stream = load_token_stream(path, tok, spec.vocab);
  const int64_t per = seq_len - 1;  // each row is BOS + per tokens
  const int64_t n_windows = static_cast<int64_t>(stream.size()) / per;
  SLMC_CHECK(n_windows >= samples, path, ": calibration data too short: ", stream.size(),
             " tokens make ", n_windows, " windows of ", per,
             " tokens (+ BOS), but samples = ", samples,
             "; give more data or lower samples / seq_len");
  std::vector<int64_t> idx(static_cast<size_t>(n_windows));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(samples));
  std::sort(idx.begin(), idx.end());
  CalibrationSet c;
  c.origin = path;
  for (int64_t w : idx) {
    std::vector<int32_t> row;
    row.reserve(static_cast<size_t>(seq_len));
    row.push_back(static_cast<int32_t>(spec.bos_id));
    row.insert(row.end(), stream.begin() + w * per, stream.begin() + (w + 1) * per);
    c.rows.push_back(std::move(row));
  }
  return c;
}

}  // namespace slmc
