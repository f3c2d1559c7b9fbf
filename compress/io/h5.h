// HDF5 token and logit files.
//  tokens file: dataset `tokens` (integer), 1-D (a stream) or 2-D (rows = sequences);
//               attributes `tokenizer` (string) and `bos_id` (int) on `tokens` (read from the
//               root group too), both optional on read. Written as int32.
//  logits file: dataset `logits` float32 [n_positions, vocab] (any float type on read), dataset
//               `tokens` int32 [n_positions] (the target token at each position), root attribute
//               `vocab`.
// HDF5 (serial build) is not thread-safe: use these from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slmc {

struct TokenData {
  std::vector<int32_t> tokens;  // row-major
  int64_t rows = 0;             // 0 for a 1-D stream
  int64_t cols = 0;             // row length for 2-D
  std::string tokenizer;        // informational
  int64_t bos_id = -1;          // -1 if absent
};

// Throws slmc::Error naming the file if it is not HDF5, has no `tokens`, or `tokens` is not a
// non-empty integer dataset of rank 1 or 2 whose values fit int32.
TokenData read_tokens_h5(const std::string& path);
void write_tokens_h5(const std::string& path, const TokenData& data);  // atomic

// True if `path` is a regular file with the HDF5 signature (at offset 0 or after a user block).
bool is_hdf5_file(const std::string& path);

// Streams logits out row by row: positions are appended in order, then commit() renames the
// temporary file into place. Destroying without commit() removes the temporary file.
class LogitWriter {
 public:
  LogitWriter(const std::string& path, int64_t vocab);
  ~LogitWriter();
  // `logits` is [n, vocab] row-major, `targets` is [n].
  void append(const float* logits, const int32_t* targets, int64_t n);
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class LogitReader {
 public:
  explicit LogitReader(const std::string& path);
  ~LogitReader();
  int64_t n_positions() const;
  int64_t vocab() const;
  // Reads rows [begin, begin + n) into out ([n, vocab]) and their targets into targets ([n]).
  void read(int64_t begin, int64_t n, float* out, int32_t* targets) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slmc
