#include "export/runtime/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "export/runtime/vec_ops.h"

namespace slmc::runtime {

namespace {

// out = x * rsqrt(mean(x^2) + eps) * w (HF LlamaRMSNorm, fp32)
void rms_norm(const float* x, const float* w, float* out, int64_t n, double eps, Isa isa) {
  const float ms = dot_f32(x, x, n, isa) / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(ms + static_cast<float>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

// Rotate-half RoPE on `n_head` heads of `hd` values at position `pos`.
void rope(float* x, int64_t n_head, int64_t hd, const std::vector<float>& inv_freq, int64_t pos) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[static_cast<size_t>(i)];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int64_t h = 0; h < n_head; ++h) {
      float* v = x + h * hd;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

// The RoPE frequencies exactly as the LibTorch model computes them (fp32), llama3 scaling included.
std::vector<float> inv_freq_for(const ModelSpec& spec, const LayerSpec& l) {
  const int64_t hd = l.head_dim;
  std::vector<float> f(static_cast<size_t>(hd / 2));
  const RopeScaling& rs = spec.rope_scaling;
  for (int64_t i = 0; i < hd / 2; ++i) {
    const float idx = static_cast<float>(2 * i) / static_cast<float>(hd);
    float inv = 1.0f / std::pow(static_cast<float>(l.rope_theta), idx);
    if (rs.type == "llama3") {
      const double old_ctx = static_cast<double>(rs.original_max_position);
      const double low_wavelen = old_ctx / rs.low_freq_factor;
      const double high_wavelen = old_ctx / rs.high_freq_factor;
      const float wavelen = static_cast<float>(2 * M_PI) / inv;
      const float scaled = wavelen > low_wavelen ? inv / static_cast<float>(rs.factor) : inv;
      if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
        const float smooth = static_cast<float>((old_ctx / wavelen - rs.low_freq_factor) /
                                                (rs.high_freq_factor - rs.low_freq_factor));
        inv = (1 - smooth) * scaled / static_cast<float>(rs.factor) + smooth * scaled;
      } else {
        inv = scaled;
      }
    }
    f[static_cast<size_t>(i)] = inv;
  }
  return f;
}

void add_bias(float* y, const float* b, int64_t T, int64_t n) {
  if (!b) return;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[i];
}

}  // namespace

// ---- Model -------------------------------------------------------------------------------------

const float* Model::vector(const std::string& name, int64_t n) {
  const format::SlmTensor* t = file_->find(name);
  SLMC_CHECK(t != nullptr, file_->path(), ": missing tensor ", name);
  SLMC_CHECK(t->shape.size() == 1 && t->shape[0] == n, file_->path(), ": tensor ", name,
             " has shape ", shape_str(t->shape), ", the spec implies [", n, "]");
  if (t->format == codec::Format::kF32) return reinterpret_cast<const float*>(file_->data(*t));
  owned_.push_back(std::make_unique<std::vector<float>>(static_cast<size_t>(n)));
  codec::dequantize_row_ref(t->format, file_->data(*t), n, owned_.back()->data());
  return owned_.back()->data();
}

Matrix Model::matrix(const std::string& name, int64_t rows, int64_t cols) {
  const format::SlmTensor* t = file_->find(name);
  SLMC_CHECK(t != nullptr, file_->path(), ": missing tensor ", name);
  SLMC_CHECK(t->shape.size() == 2 && t->shape[0] == rows && t->shape[1] == cols, file_->path(),
             ": tensor ", name, " has shape ", shape_str(t->shape), ", the spec implies [", rows,
             ", ", cols, "]");
  Matrix m;
  m.format = t->format;
  m.data = file_->data(*t);
  m.rows = rows;
  m.cols = cols;
  m.name = name;
  if (has_packed_layout(m.format)) {
    // Regroup the blocks once for the SIMD kernels (~1.4x faster matrix x vector), then let the
    // kernel drop the file pages we copied from, so resident memory holds one copy.
    uint8_t* dst = packed_.data() + packed_used_;
    packed_used_ += (t->n_bytes + 63) / 64 * 64;
    SLMC_CHECK(packed_used_ <= packed_.size(), "runtime: packed arena overflow at ", name);
    pack_rows(m.format, m.data, rows, cols, dst);
    file_->release(*t);
    m.data = dst;
    m.layout = WeightLayout::kPacked;
  }
  return m;
}

Model::Model(const std::string& path) : file_(std::make_unique<format::SlmFile>(path)) {
  spec_ = ModelSpec::from_json(file_->spec_json(), path);
  SLMC_CHECK(spec_.family == Family::kLlama || spec_.family == Family::kMistral ||
                 spec_.family == Family::kQwen2,
             path, ": the runtime does not run family '", family_name(spec_.family), "' yet");
  if (!file_->tokenizer_kind().empty()) {
    tokenizer_ = load_tokenizer_from_bytes(
        file_->tokenizer_kind(),
        std::string(reinterpret_cast<const char*>(file_->tokenizer_data()), file_->tokenizer_bytes()),
        path);
  }
  // Every tensor present must be one the spec expects (and vice versa, checked below).
  std::vector<TensorDecl> decls = expected_tensors(spec_);
  for (const format::SlmTensor& t : file_->tensors()) {
    const bool known = std::any_of(decls.begin(), decls.end(),
                                   [&](const TensorDecl& d) { return d.name == t.name; });
    SLMC_CHECK(known, path, ": unexpected tensor ", t.name, " for this spec");
  }
  size_t packed_bytes = 0;
  for (const format::SlmTensor& t : file_->tensors())
    if (has_packed_layout(t.format)) packed_bytes += (t.n_bytes + 63) / 64 * 64;
  packed_ = HugeBuffer(packed_bytes);
  const int64_t d = spec_.d_model;
  token_embd_ = matrix(names::kTokenEmbd, spec_.vocab, d);
  output_ = spec_.tied_embeddings ? token_embd_ : matrix(names::kOutput, spec_.vocab, d);
  output_norm_ = vector(names::kOutputNorm, d);
  for (int64_t i = 0; i < spec_.n_layer(); ++i) {
    const LayerSpec& l = spec_.layers[static_cast<size_t>(i)];
    const int64_t q = l.n_head * l.head_dim, kv = l.n_kv_head * l.head_dim;
    LayerWeights w;
    w.attn_norm = vector(names::blk(i, names::kAttnNorm), d);
    w.q = matrix(names::blk(i, names::kAttnQ), q, d);
    w.k = matrix(names::blk(i, names::kAttnK), kv, d);
    w.v = matrix(names::blk(i, names::kAttnV), kv, d);
    w.o = matrix(names::blk(i, names::kAttnOut), d, q);
    if (l.attn_qkv_bias) {
      w.q_bias = vector(names::blk(i, names::kAttnQBias), q);
      w.k_bias = vector(names::blk(i, names::kAttnKBias), kv);
      w.v_bias = vector(names::blk(i, names::kAttnVBias), kv);
    }
    if (l.attn_out_bias) w.o_bias = vector(names::blk(i, names::kAttnOutBias), d);
    w.ffn_norm = vector(names::blk(i, names::kFfnNorm), d);
    w.gate = matrix(names::blk(i, names::kFfnGate), l.ffn_dim, d);
    w.up = matrix(names::blk(i, names::kFfnUp), l.ffn_dim, d);
    w.down = matrix(names::blk(i, names::kFfnDown), d, l.ffn_dim);
    if (l.mlp_bias) {
      w.gate_bias = vector(names::blk(i, names::kFfnGateBias), l.ffn_dim);
      w.up_bias = vector(names::blk(i, names::kFfnUpBias), l.ffn_dim);
      w.down_bias = vector(names::blk(i, names::kFfnDownBias), d);
    }
    w.inv_freq = inv_freq_for(spec_, l);
    layers_.push_back(std::move(w));
  }
}

uint64_t Model::weight_bytes() const {
  uint64_t n = 0;
  for (const format::SlmTensor& t : file_->tensors()) n += t.n_bytes;
  return n;
}

uint64_t Model::bytes_per_token() const {
  uint64_t n = 0;
  for (const format::SlmTensor& t : file_->tensors())
    if (t.name != names::kTokenEmbd || spec_.tied_embeddings) n += t.n_bytes;
  return n;
}

// ---- Session -----------------------------------------------------------------------------------

Session::Session(const Model& model, ThreadPool& pool, int64_t max_ctx, Isa isa, ActPrecision acts)
    : m_(model), pool_(pool), isa_(isa), act_precision_(acts), max_ctx_(max_ctx) {
  const ModelSpec& s = m_.spec();
  SLMC_CHECK(max_ctx > 0 && max_ctx <= s.max_seq, "runtime: context ", max_ctx,
             " must be in [1, max_seq ", s.max_seq, "]");
  for (const LayerSpec& l : s.layers) {
    k_cache_.emplace_back(static_cast<size_t>(max_ctx * l.n_kv_head * l.head_dim) * 4);
    v_cache_.emplace_back(static_cast<size_t>(max_ctx * l.n_kv_head * l.head_dim) * 4);
  }
}

void Session::prepare(const Matrix& w, const float* x, int64_t n, bool same_input) {
  if (same_input && acts_.weight_format == w.format && acts_.weight_layout == w.layout &&
      acts_.T == n && acts_.n == w.cols)
    return;
  prepare_acts(w.format, x, n, w.cols, &acts_, isa_, w.layout, act_precision_);
}

void Session::matmul(const Matrix& w, float* y, int64_t ldy) {
  // Rows split across threads in multiples of 16 (whole cache lines of output).
  pool_.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    gemm_rows(w.format, w.data, acts_, y, ldy, r0, r1, isa_);
  });
}

void Session::attention(int64_t layer, int64_t n) {
  const LayerSpec& l = m_.spec().layers[static_cast<size_t>(layer)];
  const int64_t H = l.n_head, KV = l.n_kv_head, hd = l.head_dim, group = H / KV;
  const int64_t q_dim = H * hd, kv_dim = KV * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* kc = reinterpret_cast<const float*>(k_cache_[static_cast<size_t>(layer)].data());
  const float* vc = reinterpret_cast<const float*>(v_cache_[static_cast<size_t>(layer)].data());
  const int64_t span = pos_ + n;  // keys visible to the last token
  att_.resize(static_cast<size_t>(pool_.size() * span));
  // One task per (token, head).
  pool_.run([&](int tid, int nt) {
    float* scores = att_.data() + tid * span;
    for (int64_t task = tid; task < n * H; task += nt) {
      const int64_t t = task / H, h = task % H, g = h / group;
      const int64_t p = pos_ + t;
      const int64_t lo = l.window > 0 ? std::max<int64_t>(0, p - l.window + 1) : 0;
      attend(q_.data() + t * q_dim + h * hd, kc + g * hd, vc + g * hd, kv_dim, hd, lo, p, scale,
             scores, h_.data() + t * q_dim + h * hd, isa_);
    }
  });
}

void Session::forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) {
  const ModelSpec& s = m_.spec();
  SLMC_CHECK(n > 0, "runtime: forward of 0 tokens");
  SLMC_CHECK(pos_ + n <= max_ctx_, "runtime: ", pos_ + n, " positions exceed the context ",
             max_ctx_);
  for (int64_t t = 0; t < n; ++t)
    SLMC_CHECK(tokens[t] >= 0 && tokens[t] < s.vocab, "token id ", tokens[t],
               " is outside the vocab [0, ", s.vocab, ")");
  const int64_t d = s.d_model;
  int64_t max_q = 0, max_ffn = 0;
  for (const LayerSpec& l : s.layers) {
    max_q = std::max(max_q, l.n_head * l.head_dim);
    max_ffn = std::max(max_ffn, l.ffn_dim);
  }
  x_.resize(static_cast<size_t>(n * d));
  h_.resize(static_cast<size_t>(n * std::max(d, max_q)));
  q_.resize(static_cast<size_t>(n * max_q));
  k_.resize(static_cast<size_t>(n * max_q));
  v_.resize(static_cast<size_t>(n * max_q));
  gate_.resize(static_cast<size_t>(n * max_ffn));
  up_.resize(static_cast<size_t>(n * max_ffn));

  const Matrix& embd = m_.token_embd();
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(embd.format, embd.data, d, tokens[t], x_.data() + t * d, embd.layout);

  for (int64_t i = 0; i < s.n_layer(); ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const LayerWeights& w = m_.layers()[static_cast<size_t>(i)];
    const int64_t q_dim = l.n_head * l.head_dim, kv_dim = l.n_kv_head * l.head_dim;

    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, w.attn_norm, h_.data() + t * d, d, s.norm_eps, isa_);
    prepare(w.q, h_.data(), n, false);
    matmul(w.q, q_.data(), q_dim);
    prepare(w.k, h_.data(), n, true);
    matmul(w.k, k_.data(), kv_dim);
    prepare(w.v, h_.data(), n, true);
    matmul(w.v, v_.data(), kv_dim);
    add_bias(q_.data(), w.q_bias, n, q_dim);
    add_bias(k_.data(), w.k_bias, n, kv_dim);
    add_bias(v_.data(), w.v_bias, n, kv_dim);
    float* kc = reinterpret_cast<float*>(k_cache_[static_cast<size_t>(i)].data());
    float* vc = reinterpret_cast<float*>(v_cache_[static_cast<size_t>(i)].data());
    for (int64_t t = 0; t < n; ++t) {
      rope(q_.data() + t * q_dim, l.n_head, l.head_dim, w.inv_freq, pos_ + t);
      rope(k_.data() + t * kv_dim, l.n_kv_head, l.head_dim, w.inv_freq, pos_ + t);
      std::memcpy(kc + (pos_ + t) * kv_dim, k_.data() + t * kv_dim, static_cast<size_t>(kv_dim) * 4);
      std::memcpy(vc + (pos_ + t) * kv_dim, v_.data() + t * kv_dim, static_cast<size_t>(kv_dim) * 4);
    }
    attention(i, n);  // -> h_ (n, q_dim)
    prepare(w.o, h_.data(), n, false);
    matmul(w.o, q_.data(), d);  // q_ reused as (n, d) scratch
    add_bias(q_.data(), w.o_bias, n, d);
    for (int64_t j = 0; j < n * d; ++j) x_[static_cast<size_t>(j)] += q_[static_cast<size_t>(j)];

    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, w.ffn_norm, h_.data() + t * d, d, s.norm_eps, isa_);
    prepare(w.gate, h_.data(), n, false);
    matmul(w.gate, gate_.data(), l.ffn_dim);
    prepare(w.up, h_.data(), n, true);
    matmul(w.up, up_.data(), l.ffn_dim);
    add_bias(gate_.data(), w.gate_bias, n, l.ffn_dim);
    add_bias(up_.data(), w.up_bias, n, l.ffn_dim);
    for (int64_t j = 0; j < n * l.ffn_dim; ++j) {
      const float g = gate_[static_cast<size_t>(j)];
      const float a = s.act == Activation::kSilu
                          ? g / (1.0f + std::exp(-g))
                          : 0.5f * g * (1.0f + std::tanh(0.7978845608f * (g + 0.044715f * g * g * g)));
      gate_[static_cast<size_t>(j)] = a * up_[static_cast<size_t>(j)];
    }
    prepare(w.down, gate_.data(), n, false);
    matmul(w.down, q_.data(), d);
    add_bias(q_.data(), w.down_bias, n, d);
    for (int64_t j = 0; j < n * d; ++j) x_[static_cast<size_t>(j)] += q_[static_cast<size_t>(j)];
  }
  pos_ += n;

  const int64_t first = all_logits ? 0 : n - 1, rows = n - first;
  for (int64_t t = first; t < n; ++t)
    rms_norm(x_.data() + t * d, m_.output_norm(), h_.data() + (t - first) * d, d, s.norm_eps, isa_);
  prepare(m_.output(), h_.data(), rows, false);
  matmul(m_.output(), logits, s.vocab);
}

}  // namespace slmc::runtime
