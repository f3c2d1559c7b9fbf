// Weight formats: the single definition of quantized bytes. One table gives every format's name,
// persisted id, block geometry, bits per weight and scalar reference codec. Block layouts of F16,
// BF16, Q8_0, Q4_0 and the K-quants (Q4_K, Q5_K, Q6_K, Q8_K) are byte-identical to ggml's
// (ggml-common.h), and their reference quantizers are ggml's own (kquants.cpp), so GGUF files carry
// them unchanged.
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
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
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

// ---- ggml's K-quants: super-blocks of 256 weights (QK_K) with quantized sub-block scales ----

// ggml block_q4_K: 8 sub-blocks of 32, x = d * sc[j] * q - dmin * m[j], q in [0, 15].
struct BlockQ4_K {
  uint16_t d;          // fp16 super-block scale of the sub-block scales
  uint16_t dmin;       // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];  // 8 six-bit scales sc[j] and 8 six-bit mins m[j] (get_scale_min_k4)
  uint8_t qs[128];     // nibbles: byte 32 c + l holds weight 64 c + l (low) and 64 c + 32 + l (high)
};
static_assert(sizeof(BlockQ4_K) == 144, "ggml block_q4_K is 144 bytes (4.5 bits per weight)");

// ggml block_q5_K: as Q4_K with a fifth bit per weight, q in [0, 31].
struct BlockQ5_K {
  uint16_t d;          // fp16 super-block scale of the sub-block scales
  uint16_t dmin;       // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];  // as in BlockQ4_K
  uint8_t qh[32];      // bit 2c of qh[l]: high bit of weight 64 c + l; bit 2c+1: of 64 c + 32 + l
  uint8_t qs[128];     // low nibbles, arranged as BlockQ4_K::qs
};
static_assert(sizeof(BlockQ5_K) == 176, "ggml block_q5_K is 176 bytes (5.5 bits per weight)");

// ggml block_q6_K: 16 sub-blocks of 16, x = d * scales[j] * (q - 32), q in [0, 63].
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits: per half h (128 weights), ql[64h + l] holds weights l (low)
                      // and 64 + l (high), ql[64h + 32 + l] weights 32 + l and 96 + l
  uint8_t qh[64];     // high 2 bits: qh[32h + l] bits 0-1, 2-3, 4-5, 6-7 for weights l, 32 + l,
                      // 64 + l, 96 + l of half h
  int8_t scales[16];  // signed 8-bit sub-block scales
  uint16_t d;         // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210, "ggml block_q6_K is 210 bytes (6.5625 bits per weight)");

// ggml block_q8_K: the activation side of ggml's K-quant dot products, x = d * qs[i].
struct BlockQ8_K {
  float d;            // fp32 scale = (value of largest magnitude) / -127
  int8_t qs[256];     // codes in [-128, 127]
  int16_t bsums[16];  // sum of each 16 consecutive codes
};
static_assert(sizeof(BlockQ8_K) == 292, "ggml block_q8_K is 292 bytes");

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
  // Weights that share one Grid (a sub-block): the block size, except for the K-quants, whose
  // super-block holds 8 grids of 32 (Q4_K, Q5_K) or 16 of 16 (Q6_K). 0 for formats with no grid.
  int grid_size = 0;
  double bits_per_weight() const { return 8.0 * block_bytes / block_size; }
  int grids_per_block() const { return grid_size ? block_size / grid_size : 0; }
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
// For the K-quants these are ggml's quantize_row_qX_K_ref (llama-quantize without an imatrix).
void quantize_row_ref(Format f, const float* x, int64_t n, void* out);
void dequantize_row_ref(Format f, const void* in, int64_t n, float* y);

// ggml's importance-weighted quantizer (quantize_qX_K with quant_weights: llama-quantize with an
// imatrix): `weights` holds n non-negative importances (an imatrix row, or diag(H)). K-quants
// only (is_k_quant; not Q8_K); throws otherwise.
void quantize_row_weighted_ref(Format f, const float* x, const float* weights, int64_t n, void* out);
bool is_k_quant(Format f);  // Q4_K, Q5_K, Q6_K, Q8_K

// Whole 2-D tensor (rows x cols) into a new byte buffer.
std::vector<uint8_t> quantize_ref(Format f, const float* x, int64_t rows, int64_t cols);
// Whole 2-D tensor back to fp32 (rows x cols values).
std::vector<float> dequantize_ref(Format f, const uint8_t* bytes, int64_t rows, int64_t cols);

// ---- Grids: one weight at a time, for methods that choose codes themselves (GPTQ, AWQ) ----
//
// A block's grid: x ~= d * (q - z), with an integer code q in [qmin, qmax]. d and z are exactly
// what the stored block will hold (fp16-rounded), so values computed from a grid are exactly what
// the runtime dequantizes.
//
// K-quants: x ~= d * q - m (z = 0) for Q4_K / Q5_K, whose d = d_super * sc and m = dmin * mc come
// from 6-bit codes and the super-block's fp16 scales (kept in the fields below so pack_row can
// store them); Q6_K has d = d_super * sc (sc a signed byte) and z = 32. The float products are
// ggml's dequantization's, so value(q) is exactly what dequantize_row_ref gives.
struct Grid {
  float d = 0;
  float z = 0;
  int qmin = 0;
  int qmax = 0;
  float m = 0;           // offset subtracted after scaling (K-quant mins; 0 elsewhere)
  uint16_t kd = 0;       // K-quants: fp16 bits of the super-block's d
  uint16_t kdmin = 0;    // Q4_K / Q5_K: fp16 bits of the super-block's dmin
  int ksc = 0;           // K-quants: the sub-block's scale code (6-bit, or int8 for Q6_K)
  int kmin = 0;          // Q4_K / Q5_K: the sub-block's min code (6-bit)
  // clamp(round((x + m) / d + z), qmin, qmax); clamp(round(z)) if d == 0
  int code(float x) const;
  float value(int q) const { return d * (static_cast<float>(q) - z) - m; }
  float round(float x) const { return value(code(x)); }  // x snapped onto the grid
};

// Whether `f` is a block format with integer codes (q8_0, q4_0, q4_g64, q4_g128, q4_k, q5_k,
// q6_k): what GPTQ can choose codes for. choose_grid works for those with one grid per block
// (not the K-quants); choose_grids for all of them.
bool has_grid(Format f);
// The grid round-to-nearest picks for one block of block_size weights: q8_0 max|x|/127, q4_0 the
// value of largest magnitude / -8 (ggml), q4_g* min/max with an integral zero point, or with
// `symmetric` zero point 8 and q4_0's scale (q8_0 and q4_0 are symmetric anyway). `scale` shrinks
// the range (clipping search: 1 = the full range). `n` > 0 takes the range of n weights instead
// of one block (one grid for a whole row: per-channel). Throws for formats without a grid.
Grid choose_grid(Format f, const float* x, float scale = 1.0f, bool symmetric = false,
                 int64_t n = 0);
// The grids of one whole block (block_size weights at x) into grids[0 .. grids_per_block):
// choose_grid for formats with one grid per block; for the K-quants, the sub-block grids ggml's
// quantizer picks: quantize_row_ref's (weights null) or quantize_row_weighted_ref's. Codes from
// Grid::code of these grids pack into the bytes those quantizers write (up to sub-blocks whose
// scale is 0, where every code decodes to the same value).
void choose_grids(Format f, const float* x, const float* weights, Grid* grids);
// Packs one row of n weights: codes[i] for every weight (in the grid's range) and grids[g] for
// every grid (n / grid_size of them). quantize_row_ref(x) == pack_row(codes of choose_grids, ...)
// up to ggml's rounding. K-quant grids of one block must share their super-block scales.
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
