// llama2.c legacy (v0) checkpoints, as written by export.py's legacy_export and read by run.c's
// memory_map_weights: 7 int32 header, then fp32 tensors, each stacked over layers:
//   token_embedding (vocab, dim)            rms_att (L, dim)
//   wq (L, n_heads*hs, dim)                 wk (L, n_kv_heads*hs, dim)
//   wv (L, n_kv_heads*hs, dim)              wo (L, dim, n_heads*hs)
//   rms_ffn (L, dim)                        w1 (L, hidden, dim)   = gate
//   w2 (L, dim, hidden)  = down             w3 (L, hidden, dim)   = up
//   rms_final (dim)                         freq_cis_real, freq_cis_imag (seq_len, hs/2) each
//   [wcls (vocab, dim) when the header's vocab_size is negative]
// with hs = dim / n_heads. The freq_cis tables are unused (run.c skips them too).
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/io/io_internal.h"
#include "compress/io/model_loader.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "llama2.c files are little-endian");

namespace slmc {

namespace io_internal {

Llama2cHeader parse_llama2c_header(const uint8_t* bytes) {
  int32_t v[7];
  std::memcpy(v, bytes, sizeof v);
  Llama2cHeader h;
  h.dim = v[0];
  h.hidden_dim = v[1];
  h.n_layers = v[2];
  h.n_heads = v[3];
  h.n_kv_heads = v[4];
  h.vocab_size = v[5];
  h.seq_len = v[6];
  return h;
}

std::string llama2c_header_str(const Llama2cHeader& h) {
  return str_cat("dim ", h.dim, ", hidden_dim ", h.hidden_dim, ", n_layers ", h.n_layers,
                 ", n_heads ", h.n_heads, ", n_kv_heads ", h.n_kv_heads, ", vocab_size ",
                 h.vocab_size, ", seq_len ", h.seq_len);
}

std::string llama2c_header_problem(const Llama2cHeader& h) {
  const std::pair<const char*, int32_t> fields[] = {
      {"dim", h.dim},         {"hidden_dim", h.hidden_dim}, {"n_layers", h.n_layers},
      {"n_heads", h.n_heads}, {"n_kv_heads", h.n_kv_heads}, {"seq_len", h.seq_len}};
  for (const auto& f : fields)
    if (f.second <= 0) return str_cat(f.first, " must be > 0, got ", f.second);
  if (h.vocab_size == 0 || h.vocab_size == INT32_MIN)
    return str_cat("vocab_size must be non-zero (negative: untied classifier), got ", h.vocab_size);
  if (h.dim % h.n_heads != 0)
    return str_cat("dim ", h.dim, " is not divisible by n_heads ", h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    return str_cat("n_heads ", h.n_heads, " is not a multiple of n_kv_heads ", h.n_kv_heads);
  if ((h.dim / h.n_heads) % 2 != 0)
    return str_cat("head size ", h.dim / h.n_heads, " (dim / n_heads) must be even for RoPE");
  return "";
}

bool llama2c_expected_size(const Llama2cHeader& h, uint64_t* bytes) {
  // Every field is a positive int32, so each product of two fits; the sums and the products
  // with n_layers are checked.
  const uint64_t dim = static_cast<uint64_t>(h.dim);
  const uint64_t hidden = static_cast<uint64_t>(h.hidden_dim);
  const uint64_t layers = static_cast<uint64_t>(h.n_layers);
  const uint64_t hs = dim / static_cast<uint64_t>(h.n_heads);
  const uint64_t q = static_cast<uint64_t>(h.n_heads) * hs;
  const uint64_t kv = static_cast<uint64_t>(h.n_kv_heads) * hs;
  const uint64_t vocab =
      static_cast<uint64_t>(h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size);
  // Each product below is of two positive int32 values, so < 2^62; the sums are checked.
  bool ok = true;
  auto sum = [&ok](std::initializer_list<uint64_t> terms) {
    uint64_t acc = 0;
    for (uint64_t v : terms) ok = ok && add_u64(acc, v, &acc);
    return acc;
  };
  // Per layer: two norms, wq, wk, wv, wo, w1, w2, w3.
  const uint64_t per_layer = sum(
      {dim, dim, q * dim, kv * dim, kv * dim, q * dim, hidden * dim, hidden * dim, hidden * dim});
  uint64_t layer_floats = 0;
  ok = ok && mul_u64(per_layer, layers, &layer_floats);
  const uint64_t embed = vocab * dim;
  const uint64_t freq = static_cast<uint64_t>(h.seq_len) * hs;  // real + imag, hs/2 each
  const uint64_t floats = sum({embed, layer_floats, dim, freq, h.vocab_size < 0 ? embed : 0});
  uint64_t total = 0;
  ok = ok && mul_u64(floats, sizeof(float), &total) && add_u64(total, kLlama2cHeaderBytes, &total);
  if (!ok) return false;
  *bytes = total;
  return true;
}

}  // namespace io_internal

void rope_interleaved_to_half(const float* src, float* dst, int64_t n_head, int64_t head_dim,
                              int64_t cols) {
  const int64_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t t = 0; t < 2; ++t)
      for (int64_t j = 0; j < half; ++j) {
        const int64_t to = h * head_dim + t * half + j;
        const int64_t from = h * head_dim + 2 * j + t;
        std::memcpy(dst + to * cols, src + from * cols, row_bytes);
      }
}

namespace {

// Walks the float section of a validated mapping.
class FloatCursor {
 public:
  explicit FloatCursor(const uint8_t* p) : p_(p) {}
  // Copies `n` floats (the mapping is 4-byte aligned after the 28-byte header, but memcpy keeps
  // that an implementation detail).
  void read(float* out, int64_t n) {
    std::memcpy(out, p_, static_cast<size_t>(n) * sizeof(float));
    p_ += static_cast<size_t>(n) * sizeof(float);
  }
  void skip(int64_t n) { p_ += static_cast<size_t>(n) * sizeof(float); }
  HostTensor tensor(std::vector<int64_t> shape) {
    HostTensor t;
    t.shape = std::move(shape);
    t.data.resize(static_cast<size_t>(t.numel()));
    read(t.data.data(), t.numel());
    return t;
  }

 private:
  const uint8_t* p_;
};

}  // namespace

LoadedModel load_llama2c(const std::string& path) {
  using namespace io_internal;
  MappedFile file(path);
  SLMC_CHECK(file.size() >= kLlama2cHeaderBytes, path,
             ": truncated llama2.c checkpoint: ", file.size(), " bytes, the header alone is ",
             kLlama2cHeaderBytes);
  const Llama2cHeader h = parse_llama2c_header(file.data());
  const std::string problem = llama2c_header_problem(h);
  SLMC_CHECK(problem.empty(), path, ": bad llama2.c header (", llama2c_header_str(h),
             "): ", problem);
  uint64_t expected = 0;
  SLMC_CHECK(llama2c_expected_size(h, &expected), path, ": llama2.c header (",
             llama2c_header_str(h), ") implies a size beyond 2^64 bytes");
  SLMC_CHECK(expected == file.size(), path, ": llama2.c header (", llama2c_header_str(h),
             ") implies ", expected, " bytes, the file has ", file.size());

  const int64_t dim = h.dim, hidden = h.hidden_dim, n_layer = h.n_layers;
  const int64_t n_head = h.n_heads, n_kv = h.n_kv_heads;
  const int64_t hs = dim / n_head, q = n_head * hs, kv = n_kv * hs;
  const bool tied = h.vocab_size > 0;
  const int64_t vocab = tied ? h.vocab_size : -static_cast<int64_t>(h.vocab_size);

  LoadedModel m;
  m.path = path;
  m.format = "llama2c";
  ModelSpec& s = m.spec;
  s.family = Family::kLlama;
  s.vocab = vocab;
  s.d_model = dim;
  s.max_seq = h.seq_len;
  s.norm_eps = 1e-5;  // llama2.c's rmsnorm
  s.tied_embeddings = tied;
  s.bos_id = 1;
  s.eos_id = 2;
  LayerSpec layer;
  layer.n_head = n_head;
  layer.n_kv_head = n_kv;
  layer.head_dim = hs;
  layer.ffn_dim = hidden;
  layer.rope_theta = 10000.0;
  s.layers.assign(static_cast<size_t>(n_layer), layer);
  try {
    s.validate();
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }

  TensorMap& t = m.tensors;
  FloatCursor c(file.data() + kLlama2cHeaderBytes);
  t[names::kTokenEmbd] = c.tensor({vocab, dim});
  auto per_layer = [&](const char* suffix, std::vector<int64_t> shape) {
    for (int64_t i = 0; i < n_layer; ++i) t[names::blk(i, suffix)] = c.tensor(shape);
  };
  // wq and wk leave the file interleaved and enter the map in rotate-half order.
  auto per_layer_rope = [&](const char* suffix, int64_t heads) {
    std::vector<float> rows(static_cast<size_t>(heads * hs * dim));
    for (int64_t i = 0; i < n_layer; ++i) {
      c.read(rows.data(), heads * hs * dim);
      HostTensor w;
      w.shape = {heads * hs, dim};
      w.data.resize(rows.size());
      rope_interleaved_to_half(rows.data(), w.data.data(), heads, hs, dim);
      t[names::blk(i, suffix)] = std::move(w);
    }
  };
  per_layer(names::kAttnNorm, {dim});
  per_layer_rope(names::kAttnQ, n_head);
  per_layer_rope(names::kAttnK, n_kv);
  per_layer(names::kAttnV, {kv, dim});
  per_layer(names::kAttnOut, {dim, q});
  per_layer(names::kFfnNorm, {dim});
  per_layer(names::kFfnGate, {hidden, dim});  // w1
  per_layer(names::kFfnDown, {dim, hidden});  // w2
  per_layer(names::kFfnUp, {hidden, dim});    // w3
  t[names::kOutputNorm] = c.tensor({dim});
  c.skip(static_cast<int64_t>(h.seq_len) * hs);  // freq_cis_real + freq_cis_imag
  if (!tied) t[names::kOutput] = c.tensor({vocab, dim});

  int64_t bytes = 0;
  for (const auto& kv_pair : t) {
    bytes += kv_pair.second.numel() * static_cast<int64_t>(sizeof(float));
    const int64_t bad = first_non_finite(kv_pair.second.data.data(), kv_pair.second.numel());
    SLMC_CHECK(bad < 0, path, ": tensor ", kv_pair.first, " holds ",
               bad < 0 ? 0.0f : kv_pair.second.data[static_cast<size_t>(bad)], " at flat index ",
               bad, "; weights must be finite");
  }
  m.bytes_by_dtype["F32"] = bytes;
  check_tensors(m.spec, m.tensors, path);
  return m;
}

}  // namespace slmc
