// Weight formats: the single definition of quantized bytes. One table gives every format's name,
// persisted id, block geometry, bits per weight and scalar reference codec. Block layouts of F16,
// Q8_0 and Q4_0 are byte-identical to ggml's (ggml-common.h), so GGUF writers can copy them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace slmc::codec {

// Persisted ids: ggml's type ids where ggml has the format; ours from 100. Never renumber.
enum class Format : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kBF16 = 30,
  kQ4_G64 = 100,   // int4, groups of 64, fp16 scale and zero point (GPTQ/AWQ outputs)
  kQ4_G128 = 101,  // int4, groups of 128, fp16 scale and zero point
};

// ggml block_q8_0: 32 weights, x = d * qs[i].
struct BlockQ8_0 {
  uint16_t d;      // fp16 scale = max|x| / 127
  int8_t qs[32];   // codes in [-127, 127]
};
static_assert(sizeof(BlockQ8_0) == 34, "ggml block_q8_0 is 34 bytes");

// ggml block_q4_0: 32 weights, x = d * (q - 8); qs[j] holds weight j in its low nibble and weight
// j + 16 in its high nibble.
struct BlockQ4_0 {
  uint16_t d;      // fp16 scale = (value of largest magnitude) / -8
  uint8_t qs[16];  // nibbles, see above
};
static_assert(sizeof(BlockQ4_0) == 18, "ggml block_q4_0 is 18 bytes");

// Asymmetric int4 with a group of G weights: x = d * (q - z). qs[j] holds weight j in its low nibble
// and weight j + G/2 in its high nibble (the Q4_0 arrangement, widened).
template <int G>
struct BlockQ4G {
  uint16_t d;         // fp16 scale = (max - min) / 15
  uint16_t z;         // fp16 zero point in code units, in [0, 15] (integral for RTN)
  uint8_t qs[G / 2];  // nibbles
};
using BlockQ4G64 = BlockQ4G<64>;
using BlockQ4G128 = BlockQ4G<128>;
static_assert(sizeof(BlockQ4G64) == 36, "q4_g64 block is 36 bytes (4.5 bits per weight)");
static_assert(sizeof(BlockQ4G128) == 68, "q4_g128 block is 68 bytes (4.25 bits per weight)");

struct FormatInfo {
  Format id;
  const char* name;       // persisted and user-facing: "f32", "q4_0", ...
  int block_size;         // weights per block (1 for plain floats)
  int block_bytes;        // bytes per block
  bool quantized;         // lossy integer codes
  const char* about;      // one line for --help and docs
  double bits_per_weight() const { return 8.0 * block_bytes / block_size; }
};

// All formats, in table order.
const std::vector<FormatInfo>& all_formats();
// Throws slmc::Error for an id not in the table (e.g. read from an untrusted file).
const FormatInfo& format_info(Format f);
bool format_from_id(uint32_t id, Format* out);
bool format_from_name(const std::string& name, Format* out);  // case-insensitive
std::string format_names();                                    // "f32, f16, bf16, q8_0, ..."

// Whether a row of `n_cols` weights can be stored in `f` (n_cols a multiple of the block size).
bool row_fits(Format f, int64_t n_cols);
// Bytes of one row; throws slmc::Error if the row does not fit.
size_t row_bytes(Format f, int64_t n_cols);

// Scalar reference codecs: deterministic, the oracle for every SIMD path. `n` must be a
// multiple of the block size (throws slmc::Error otherwise).
void quantize_row_ref(Format f, const float* x, int64_t n, void* out);
void dequantize_row_ref(Format f, const void* in, int64_t n, float* y);

// Whole 2-D tensor (rows x cols) into a new byte buffer.
std::vector<uint8_t> quantize_ref(Format f, const float* x, int64_t rows, int64_t cols);
// Whole 2-D tensor back to fp32 (rows x cols values).
std::vector<float> dequantize_ref(Format f, const uint8_t* bytes, int64_t rows, int64_t cols);

// ---- Grids: one weight at a time, for methods that choose codes themselves (GPTQ, AWQ) ----
//
// A block's grid: x ~= d * (q - z), with an integer code q in [qmin, qmax]. d and z are exactly
// what the stored block will hold (fp16-rounded), so values computed from a grid are exactly what
// the runtime dequantizes.
struct Grid {
  float d = 0;
  float z = 0;
  int qmin = 0;
  int qmax = 0;
  int code(float x) const;      // clamp(round(x / d + z), qmin, qmax); qmin..qmax midpoint if d == 0
  float value(int q) const { return d * (static_cast<float>(q) - z); }
  float round(float x) const { return value(code(x)); }  // x snapped onto the grid
};

// Whether `f` is a block format with integer codes (q8_0, q4_0, q4_g64, q4_g128).
bool has_grid(Format f);
// The grid round-to-nearest picks for one block of block_size weights: q8_0 max|x|/127, q4_0 the
// value of largest magnitude / -8 (ggml), q4_g* min/max with an integral zero point, or with
// `symmetric` zero point 8 and q4_0's scale (q8_0 and q4_0 are symmetric anyway). `scale` shrinks
// the range (clipping search: 1 = the full range). `n` > 0 takes the range of n weights instead
// of one block (one grid for a whole row: per-channel). Throws for formats without a grid.
Grid choose_grid(Format f, const float* x, float scale = 1.0f, bool symmetric = false,
                 int64_t n = 0);
// Packs one row of n weights: codes[i] for every weight (in the grid's range) and grids[b] for
// every block. quantize_row_ref(x) == pack_row(codes of choose_grid, ...) up to ggml's rounding.
void pack_row(Format f, const int* codes, const Grid* grids, int64_t n, void* out);

// ---- Quantized tensors and distortion ----

// A tensor in a codec format: what a pass produced and an exporter writes byte for byte.
struct QTensor {
  Format format = Format::kF32;
  std::vector<int64_t> shape;  // (rows, cols) for matrices; rows of cols weights
  std::vector<uint8_t> bytes;  // rows * row_bytes(format, cols)
};

// Distortion of `q` against the original `w` (STYLE 6): every lossy pass reports it per tensor.
struct Distortion {
  int64_t n = 0;
  double rel_l2 = 0;     // ||w - q||_2 / ||w||_2 (0 if w is all zero)
  double max_abs = 0;    // max |w - q|
  double zero_frac = 0;  // share of weights with w != 0 whose stored value is exactly 0
  double snr_db = 0;     // 10 log10(||w||^2 / ||w - q||^2); 0 if w is zero, inf if exact
};
Distortion measure_distortion(const float* w, const float* q, int64_t n);

}  // namespace slmc::codec
