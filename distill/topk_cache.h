// The offline teacher: its top-k logits per position of every training window, in HDF5, so a
// student can be distilled without loading or running the teacher. Torch-free.
//
// File layout (version 1):
//   root attributes  format "slmc-topk-cache", version 1, teacher_hash, tokenizer_hash,
//                    data_hash (strings: what the cache was made from), vocab, k, ctx, n_windows,
//                    bos_id (int64), temperature (float64: the T of rest_lse)
//   values   [n_windows * ctx, k]  float16 (or float32): the teacher's logits at temperature 1,
//                                  each row in descending order
//   indices  [n_windows * ctx, k]  uint16 when vocab <= 65536, else int32: their token ids
//   rest_lse [n_windows * ctx]     float32: log sum_{i not kept} exp(z_i / T); -inf when k = vocab
// Row w * ctx + t is position t of training window w, the window starting at stream offset
// w * ctx (WindowSampler's shuffled windows, compress/model/train_state.h). Chunks hold one window.
// The loss correction for the truncated distribution is documented in distill/losses.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slmc::distill {

struct TopKCacheHeader {
  std::string teacher_hash, tokenizer_hash, data_hash;
  int64_t vocab = 0, k = 0, ctx = 0, n_windows = 0, bos_id = 0;
  double temperature = 1;
  bool f16 = true;  // value storage (write side; the reader reports what it found)
};

// Limits a reader accepts (a crafted header cannot make it allocate more than one window of
// kMaxWindowValues values at a time).
inline constexpr int64_t kMaxCacheVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxCacheK = 65536;
inline constexpr int64_t kMaxWindowValues = int64_t{1} << 26;

// Checks a header's fields against each other and the limits; throws slmc::Error naming `path`
// and the field. Used by the reader on untrusted files and by the writer on its arguments.
void validate_header(const TopKCacheHeader& h, const std::string& path);

// One window: ctx rows of k entries.
struct TopKWindow {
  std::vector<float> values;     // ctx * k, raw logits
  std::vector<int32_t> indices;  // ctx * k, each in [0, vocab), distinct within a row
  std::vector<float> rest_lse;   // ctx, finite or -inf
};

// Writes windows in order 0..n_windows-1 into a temporary file; commit() renames it into place.
// Destroyed without commit(), the temporary file is removed.
class TopKCacheWriter {
 public:
  TopKCacheWriter(const std::string& path, const TopKCacheHeader& header);
  ~TopKCacheWriter();
  void append(const TopKWindow& w);
  void commit();
  int64_t windows_written() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class TopKCacheReader {
 public:
  // Opens and validates the header and dataset shapes; throws slmc::Error naming the file.
  explicit TopKCacheReader(const std::string& path);
  ~TopKCacheReader();
  const TopKCacheHeader& header() const;
  // Reads and validates window `w` (ids in range and distinct per row, finite values, rest
  // finite or -inf); throws naming the file, the window and the row.
  TopKWindow read(int64_t w) const;
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slmc::distill
