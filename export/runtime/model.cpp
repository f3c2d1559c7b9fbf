#include "export/runtime/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

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

// cs[2i], cs[2i + 1] = cos, sin of the RoPE angle of frequency i at position `pos`.
void rope_table(const std::vector<float>& inv_freq, int64_t pos, float* cs) {
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];
    cs[2 * i] = std::cos(angle);
    cs[2 * i + 1] = std::sin(angle);
  }
}

// Rotate-half RoPE on `n_head` heads of `hd` values with the table `cs` of their position.
// (Heads outer, frequencies inner: contiguous, so the compiler vectorizes it; every element gets
// the same operations as in any other order.)
void rope(float* x, int64_t n_head, int64_t hd, const float* cs) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    float* v = x + h * hd;
    for (int64_t i = 0; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

// The RoPE frequencies exactly as the LibTorch model computes them (fp32), llama3 and linear
// scaling included. A layer with rope_scaled == false (gemma3's local layers) gets plain RoPE with
// its own theta.
std::vector<float> inv_freq_for(const ModelSpec& spec, const LayerSpec& l) {
  const int64_t hd = l.head_dim;
  std::vector<float> f(static_cast<size_t>(hd / 2));
  const RopeScaling& rs = spec.rope_scaling;
  const std::string type = l.rope_scaled ? rs.type : "none";
  for (int64_t i = 0; i < hd / 2; ++i) {
    const float idx = static_cast<float>(2 * i) / static_cast<float>(hd);
    float inv = 1.0f / std::pow(static_cast<float>(l.rope_theta), idx);
    if (type == "linear") {
      inv = inv / static_cast<float>(rs.factor);
    } else if (type == "llama3") {
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

// RMSNorm of each of the `rows` consecutive vectors of n values in place (qk_norm: one per head;
// post_norms: one per token). rms_norm reads all of x before it writes out, so in place is safe.
void rms_norm_rows(float* x, const float* w, int64_t rows, int64_t n, double eps, Isa isa) {
  if (!w) return;
  for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * n, w, x + r * n, n, eps, isa);
}

float activation(Activation act, float g) {
  return act == Activation::kSilu
             ? g / (1.0f + std::exp(-g))
             : 0.5f * g * (1.0f + std::tanh(0.7978845608f * (g + 0.044715f * g * g * g)));
}

}  // namespace

// ---- Model -------------------------------------------------------------------------------------

const Model::TensorView& Model::view(const std::string& name) const {
  auto it = views_.find(name);
  SLMC_CHECK(it != views_.end(), path_, ": missing tensor ", name);
  return it->second;
}

const float* Model::vector(const std::string& name, int64_t n) {
  const TensorView& t = view(name);
  SLMC_CHECK(t.shape.size() == 1 && t.shape[0] == n, path_, ": tensor ", name, " has shape ",
             shape_str(t.shape), ", the spec implies [", n, "]");
  if (t.format == codec::Format::kF32) return reinterpret_cast<const float*>(t.data);
  owned_.push_back(std::make_unique<std::vector<float>>(static_cast<size_t>(n)));
  codec::dequantize_row_ref(t.format, t.data, n, owned_.back()->data());
  return owned_.back()->data();
}

Matrix Model::matrix(const std::string& name, int64_t rows, int64_t cols) {
  const TensorView& t = view(name);
  SLMC_CHECK(t.shape.size() == 2 && t.shape[0] == rows && t.shape[1] == cols, path_, ": tensor ",
             name, " has shape ", shape_str(t.shape), ", the spec implies [", rows, ", ", cols,
             "]");
  Matrix m;
  m.format = t.format;
  m.data = t.data;
  m.rows = rows;
  m.cols = cols;
  m.name = name;
  if (has_packed_layout(m.format)) {
    // Regroup the blocks once for the SIMD kernels (~1.4x faster matrix x vector), then let the
    // kernel drop the file pages we copied from, so resident memory holds one copy.
    uint8_t* dst = packed_.data() + packed_used_;
    packed_used_ += (t.n_bytes + 63) / 64 * 64;
    SLMC_CHECK(packed_used_ <= packed_.size(), "runtime: packed arena overflow at ", name);
    pack_rows(m.format, m.data, rows, cols, dst);
    if (t.slm != nullptr) slm_->release(*t.slm);
    m.data = dst;
    m.layout = WeightLayout::kPacked;
  }
  return m;
}

// The tensors of a GGUF file in slmc's names and order (export/format/gguf_model.h): views into
// the mapping where a tensor is stored as a contiguous run of rows, else (q/k rows permuted for
// llama.cpp's interleaved RoPE) a copy in slmc's row order.
void Model::open_gguf(const std::string& path) {
  gguf_ = std::make_unique<format::GgufFile>(path);
  spec_ = format::gguf_model_spec(*gguf_);
  tokenizer_ = format::gguf_tokenizer(*gguf_);
  file_bytes_ = gguf_->file_bytes();
  for (const auto& [name, src] : format::gguf_sources(*gguf_, spec_)) {
    TensorView v;
    v.format = src.format;
    v.shape = src.shape;
    const size_t rb = src.cols == 1 ? 4 : codec::row_bytes(src.format, src.cols);
    v.n_bytes = rb * static_cast<uint64_t>(src.rows);
    if (src.rope_head_dim == 0) {
      v.data = gguf_->data(*src.tensor) + static_cast<size_t>(src.row0) * rb;
    } else {
      owned_bytes_.push_back(std::make_unique<std::vector<uint8_t>>(v.n_bytes));
      format::gguf_read_rows(*gguf_, src, owned_bytes_.back()->data());
      v.data = owned_bytes_.back()->data();
    }
    views_[name] = v;
  }
}

void Model::open_slm(const std::string& path) {
  slm_ = std::make_unique<format::SlmFile>(path);
  // Every family ModelSpec can express runs: the forward below implements every spec feature.
  spec_ = ModelSpec::from_json(slm_->spec_json(), path);
  if (!slm_->tokenizer_kind().empty()) {
    tokenizer_ = load_tokenizer_from_bytes(
        slm_->tokenizer_kind(),
        std::string(reinterpret_cast<const char*>(slm_->tokenizer_data()), slm_->tokenizer_bytes()),
        path);
  }
  file_bytes_ = slm_->file_bytes();
  // Every tensor present must be one the spec expects (and vice versa, checked below).
  std::set<std::string> known;
  for (const TensorDecl& d : expected_tensors(spec_)) known.insert(d.name);
  for (const format::SlmTensor& t : slm_->tensors()) {
    SLMC_CHECK(known.count(t.name), path, ": unexpected tensor ", t.name, " for this spec");
    format::check_finite(*slm_, t);  // NaN/Inf
    views_[t.name] = TensorView{t.format, t.shape, slm_->data(t), t.n_bytes, &t};
  }
}

Model::Model(const std::string& path) : path_(path) {
  if (format::is_gguf_file(path))
    open_gguf(path);
  else
    open_slm(path);
  size_t packed_bytes = 0;
  for (const auto& [name, t] : views_)
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
    if (l.qk_norm) {
      w.q_norm = vector(names::blk(i, names::kAttnQNorm), l.head_dim);
      w.k_norm = vector(names::blk(i, names::kAttnKNorm), l.head_dim);
    }
    if (l.post_norms) {
      w.attn_post_norm = vector(names::blk(i, names::kAttnPostNorm), d);
      w.ffn_post_norm = vector(names::blk(i, names::kFfnPostNorm), d);
    }
    w.ffn_norm = vector(names::blk(i, names::kFfnNorm), d);
    if (l.is_moe()) {
      w.router = matrix(names::blk(i, names::kFfnRouter), l.n_expert, d);
      for (int64_t e = 0; e < l.n_expert; ++e) {
        ExpertWeights ew;
        ew.gate = matrix(names::expert(i, e, names::kFfnGate), l.ffn_dim, d);
        ew.up = matrix(names::expert(i, e, names::kFfnUp), l.ffn_dim, d);
        ew.down = matrix(names::expert(i, e, names::kFfnDown), d, l.ffn_dim);
        w.experts.push_back(std::move(ew));
      }
    } else {
      w.gate = matrix(names::blk(i, names::kFfnGate), l.ffn_dim, d);
      w.up = matrix(names::blk(i, names::kFfnUp), l.ffn_dim, d);
      w.down = matrix(names::blk(i, names::kFfnDown), d, l.ffn_dim);
    }
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
  for (const auto& [name, t] : views_) n += t.n_bytes;
  return n;
}

std::map<std::string, uint64_t> Model::bytes_by_format() const {
  std::map<std::string, uint64_t> out;
  for (const auto& [name, t] : views_) out[codec::format_info(t.format).name] += t.n_bytes;
  return out;
}

uint64_t Model::bytes_per_token() const {
  uint64_t n = 0;
  for (const auto& [name, t] : views_)
    if (name != names::kTokenEmbd || spec_.tied_embeddings) n += t.n_bytes;
  // An MoE layer's experts share one shape and export format, so a token reads n_expert_used /
  // n_expert of their bytes.
  for (int64_t i = 0; i < spec_.n_layer(); ++i) {
    const LayerSpec& l = spec_.layers[static_cast<size_t>(i)];
    if (!l.is_moe()) continue;
    uint64_t experts = 0;
    for (int64_t e = 0; e < l.n_expert; ++e)
      for (const char* s : {names::kFfnGate, names::kFfnUp, names::kFfnDown})
        experts += view(names::expert(i, e, s)).n_bytes;  // present: checked at load
    n -= experts - experts * static_cast<uint64_t>(l.n_expert_used) / static_cast<uint64_t>(l.n_expert);
  }
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
  // Layers with the same RoPE frequencies share one cos / sin table per forward.
  const std::vector<LayerWeights>& lw = m_.layers();
  for (size_t i = 0; i < lw.size(); ++i) {
    size_t g = i;
    for (size_t j = 0; j < i && g == i; ++j)
      if (lw[j].inv_freq == lw[i].inv_freq) g = j;
    rope_group_.push_back(static_cast<int64_t>(g));
  }
  rope_cs_.resize(lw.size());
}

void Session::prepare(const Matrix& w, const float* x, int64_t n, bool same_input) {
  if (same_input && acts_.weight_format == w.format && acts_.weight_layout == w.layout &&
      acts_.T == n && acts_.n == w.cols)
    return;
  prepare_acts(w.format, x, n, w.cols, &acts_, isa_, w.layout, act_precision_, &pool_);
}

int64_t Session::row_chunk(int64_t rows, int64_t tokens) const {
  // Four chunks per thread (eight for a prefill, whose chunks are long): a thread that starts
  // late (waking up) or runs slow (a busy core) leaves its share to the others, at one
  // shared-counter update per chunk.
  const int64_t chunks_per_thread = tokens >= kAmxMinTokens ? 8 : 4;
  const int64_t parts = chunks_per_thread * pool_.size();
  const int64_t per = (rows + parts - 1) / parts;
  return std::max<int64_t>(16, (per + 15) / 16 * 16);
}

void Session::matmul(const Matrix& w, float* y, int64_t ldy) {
  const GroupOut out{&w, y, ldy};
  const Acts* acts = &acts_;
  matmul_group(&out, 1, &acts);
}

void Session::prepare_group(const GroupOut* outs, int count, const float* x, int64_t n,
                            const Acts** acts) {
  SLMC_CHECK(count >= 1 && count <= 3, "runtime: matmul group of ", count);
  for (int i = 0; i < count; ++i) {
    const Matrix& w = *outs[i].w;
    acts[i] = nullptr;
    for (int j = 0; j < i && acts[i] == nullptr; ++j) {
      const Matrix& o = *outs[j].w;
      if (o.format == w.format && o.layout == w.layout && o.cols == w.cols) acts[i] = acts[j];
    }
    if (acts[i] != nullptr) continue;
    Acts* a = i == 0 ? &acts_ : &group_acts_[i - 1];
    prepare_acts(w.format, x, n, w.cols, a, isa_, w.layout, act_precision_, &pool_);
    acts[i] = a;
  }
}

void Session::matmul_group(const GroupOut* outs, int count, const Acts* const* acts) {
  int64_t total = 0;
  for (int i = 0; i < count; ++i) total += outs[i].w->rows;
  pool_.parallel_for_dynamic(total, row_chunk(total, acts[0]->T), [&](int64_t b, int64_t e) {
    int64_t off = 0;
    for (int i = 0; i < count; ++i) {
      const Matrix& w = *outs[i].w;
      const int64_t lo = std::max(b, off), hi = std::min(e, off + w.rows);
      if (lo < hi)
        gemm_rows(w.format, w.data, *acts[i], outs[i].y, outs[i].ldy, lo - off, hi - off, isa_);
      off += w.rows;
    }
  });
}

void Session::attention(int64_t layer, int64_t n) {
  const LayerSpec& l = m_.spec().layers[static_cast<size_t>(layer)];
  const int64_t H = l.n_head, KV = l.n_kv_head, hd = l.head_dim, group = H / KV;
  const int64_t q_dim = H * hd;
  // The LibTorch model multiplies the fp32 scores by this double, i.e. by its float rounding.
  const float scale = static_cast<float>(l.softmax_scale());
  const float* kc = reinterpret_cast<const float*>(k_cache_[static_cast<size_t>(layer)].data());
  const float* vc = reinterpret_cast<const float*>(v_cache_[static_cast<size_t>(layer)].data());
  const int64_t span = pos_ + n;  // keys visible to the last token
  // The cache is head-major (forward()): one head's keys (and values) are contiguous.
  const int64_t head_stride = max_ctx_ * hd;
  att_.resize(static_cast<size_t>(2 * pool_.size() * span));
  // One task per token and pair of heads (attend2 interleaves the two; an odd last head alone).
  const int64_t pairs = (H + 1) / 2;
  pool_.run([&](int tid, int nt) {
    float* scores = att_.data() + 2 * tid * span;
    for (int64_t task = tid; task < n * pairs; task += nt) {
      const int64_t t = task / pairs, h = 2 * (task % pairs), g = h / group;
      const int64_t p = pos_ + t;
      const int64_t lo = l.window > 0 ? std::max<int64_t>(0, p - l.window + 1) : 0;
      const float* q = q_.data() + t * q_dim + h * hd;
      float* out = h_.data() + t * q_dim + h * hd;
      if (h + 1 < H) {
        const int64_t g1 = (h + 1) / group;
        attend2(q, q + hd, kc + g * head_stride, kc + g1 * head_stride, vc + g * head_stride,
                vc + g1 * head_stride, hd, hd, lo, p, scale, scores, scores + span, out, out + hd,
                isa_);
      } else {
        attend(q, kc + g * head_stride, vc + g * head_stride, hd, hd, lo, p, scale, scores, out,
               isa_);
      }
    }
  });
}

void Session::mlp(const Matrix& gate, const Matrix& up, const Matrix& down, const float* gate_bias,
                  const float* up_bias, const float* down_bias, int64_t ffn_dim, const float* in,
                  int64_t rows, float* out) {
  const ModelSpec& s = m_.spec();
  SLMC_CHECK(gate.rows == ffn_dim && up.rows == ffn_dim, "runtime: ", gate.name, " / ", up.name,
             " do not have ", ffn_dim, " rows");
  const GroupOut outs[2] = {{&gate, gate_.data(), ffn_dim}, {&up, up_.data(), ffn_dim}};
  const Acts* acts[2];
  prepare_group(outs, 2, in, rows, acts);
  // One dispatch: each chunk of ffn rows runs gate and up, then the biases and the activation of
  // its own columns (the same operations, in the same order per element, as one pass after).
  float* g = gate_.data();
  float* u = up_.data();
  const Activation act = s.act;
  // Chunks of ffn rows (each a gate row and an up row), as many per thread as any matmul's.
  pool_.parallel_for_dynamic(ffn_dim, row_chunk(ffn_dim, rows), [&](int64_t r0, int64_t r1) {
    gemm_rows(gate.format, gate.data, *acts[0], g, ffn_dim, r0, r1, isa_);
    gemm_rows(up.format, up.data, *acts[1], u, ffn_dim, r0, r1, isa_);
    for (int64_t t = 0; t < rows; ++t) {
      float* gt = g + t * ffn_dim;
      float* ut = u + t * ffn_dim;
      if (act == Activation::kSilu) {  // the same operations, SiLU vectorized (silu_mul)
        if (gate_bias)
          for (int64_t j = r0; j < r1; ++j) gt[j] += gate_bias[j];
        if (up_bias)
          for (int64_t j = r0; j < r1; ++j) ut[j] += up_bias[j];
        silu_mul(gt + r0, ut + r0, r1 - r0, isa_);
        continue;
      }
      for (int64_t j = r0; j < r1; ++j) {
        const float gv = gate_bias ? gt[j] + gate_bias[j] : gt[j];
        const float uv = up_bias ? ut[j] + up_bias[j] : ut[j];
        gt[j] = activation(act, gv) * uv;
      }
    }
  });
  prepare(down, gate_.data(), rows, false);
  matmul(down, out, s.d_model);
  add_bias(out, down_bias, rows, s.d_model);
}

// Mixtral's sparse MoE block (HF MixtralSparseMoeBlock) per token t of h_:
//   p = softmax(router . h_t) in fp32; the n_expert_used largest p (equal p: the lower expert
//   index first, as torch.topk on CPU returns them); weight_e = p_e / (sum of the chosen p, added
//   in that descending order, as HF sums topk's sorted output); out_t = sum over the chosen e, in
//   increasing e, of weight_e * down_e(act(gate_e h_t) * up_e h_t), starting from 0 (HF's
//   index_add_ over experts in increasing order).
// Tokens are grouped by expert: the rows routed to expert e are gathered into one batch and run
// through its three matrices together, so a forward streams every used expert once.
void Session::moe(int64_t layer, int64_t n) {
  const ModelSpec& s = m_.spec();
  const LayerSpec& l = s.layers[static_cast<size_t>(layer)];
  const LayerWeights& w = m_.layers()[static_cast<size_t>(layer)];
  const int64_t d = s.d_model, E = l.n_expert, K = l.n_expert_used;
  router_.resize(static_cast<size_t>(n * E));
  prepare(w.router, h_.data(), n, false);
  matmul(w.router, router_.data(), E);

  routed_.resize(static_cast<size_t>(E));
  for (auto& r : routed_) r.clear();
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<int64_t> chosen(static_cast<size_t>(K));
  std::vector<char> taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    const float* logit = router_.data() + t * E;
    float mx = -INFINITY;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, logit[e]);
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      p[static_cast<size_t>(e)] = std::exp(logit[e] - mx);
      sum += p[static_cast<size_t>(e)];
    }
    for (int64_t e = 0; e < E; ++e) p[static_cast<size_t>(e)] /= sum;
    // Top K by repeated arg-max: a strict > keeps the lowest index among equal values.
    std::fill(taken.begin(), taken.end(), 0);
    float chosen_sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (!taken[static_cast<size_t>(e)] &&
            (best < 0 || p[static_cast<size_t>(e)] > p[static_cast<size_t>(best)]))
          best = e;
      taken[static_cast<size_t>(best)] = 1;
      chosen[static_cast<size_t>(k)] = best;
      chosen_sum += p[static_cast<size_t>(best)];
    }
    // routed_ gets tokens in increasing t per expert, whatever order the experts were chosen in.
    for (int64_t k = 0; k < K; ++k) {
      const int64_t e = chosen[static_cast<size_t>(k)];
      routed_[static_cast<size_t>(e)].emplace_back(t, p[static_cast<size_t>(e)] / chosen_sum);
    }
  }

  std::fill(q_.begin(), q_.begin() + n * d, 0.0f);
  for (int64_t e = 0; e < E; ++e) {
    const auto& rows = routed_[static_cast<size_t>(e)];
    if (rows.empty()) continue;  // an expert no token chose is not read at all
    const int64_t m = static_cast<int64_t>(rows.size());
    moe_in_.resize(static_cast<size_t>(m * d));
    moe_out_.resize(static_cast<size_t>(m * d));
    for (int64_t r = 0; r < m; ++r)
      std::memcpy(moe_in_.data() + r * d, h_.data() + rows[static_cast<size_t>(r)].first * d,
                  static_cast<size_t>(d) * sizeof(float));
    const ExpertWeights& ew = w.experts[static_cast<size_t>(e)];
    mlp(ew.gate, ew.up, ew.down, nullptr, nullptr, nullptr, l.ffn_dim, moe_in_.data(), m,
        moe_out_.data());
    for (int64_t r = 0; r < m; ++r) {
      const float wt = rows[static_cast<size_t>(r)].second;
      const float* y = moe_out_.data() + r * d;
      float* acc = q_.data() + rows[static_cast<size_t>(r)].first * d;
      for (int64_t j = 0; j < d; ++j) acc[j] += y[j] * wt;
    }
  }
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
  // Layers may differ in heads, head_dim and ffn_dim (openelm): every buffer takes the largest.
  int64_t max_q = 0, max_kv = 0, max_ffn = 0;
  for (const LayerSpec& l : s.layers) {
    max_q = std::max(max_q, l.n_head * l.head_dim);
    max_kv = std::max(max_kv, l.n_kv_head * l.head_dim);
    max_ffn = std::max(max_ffn, l.ffn_dim);
  }
  x_.resize(static_cast<size_t>(n * d));
  h_.resize(static_cast<size_t>(n * std::max(d, max_q)));       // norm output, attention output
  q_.resize(static_cast<size_t>(n * std::max(d, max_q)));       // queries, then (n, d) scratch
  k_.resize(static_cast<size_t>(n * max_kv));
  v_.resize(static_cast<size_t>(n * max_kv));
  gate_.resize(static_cast<size_t>(n * max_ffn));
  up_.resize(static_cast<size_t>(n * max_ffn));

  const Matrix& embd = m_.token_embd();
  for (int64_t t = 0; t < n; ++t)
    dequantize_row(embd.format, embd.data, d, tokens[t], x_.data() + t * d, embd.layout);
  if (s.embed_scale != 1.0) {
    // HF multiplies by the scale as a tensor of the embedding's dtype (fp32 here).
    const float scale = static_cast<float>(s.embed_scale);
    for (int64_t j = 0; j < n * d; ++j) x_[static_cast<size_t>(j)] *= scale;
  }

  for (int64_t i = 0; i < s.n_layer(); ++i) {
    const LayerSpec& l = s.layers[static_cast<size_t>(i)];
    const LayerWeights& w = m_.layers()[static_cast<size_t>(i)];
    const int64_t q_dim = l.n_head * l.head_dim, kv_dim = l.n_kv_head * l.head_dim;

    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, w.attn_norm, h_.data() + t * d, d, s.norm_eps, isa_);
    {
      const GroupOut qkv[3] = {
          {&w.q, q_.data(), q_dim}, {&w.k, k_.data(), kv_dim}, {&w.v, v_.data(), kv_dim}};
      const Acts* acts[3];
      prepare_group(qkv, 3, h_.data(), n, acts);
      matmul_group(qkv, 3, acts);
    }
    add_bias(q_.data(), w.q_bias, n, q_dim);
    add_bias(k_.data(), w.k_bias, n, kv_dim);
    add_bias(v_.data(), w.v_bias, n, kv_dim);
    // qk_norm: every head of every token, after the projection and bias, before RoPE.
    rms_norm_rows(q_.data(), w.q_norm, n * l.n_head, l.head_dim, s.norm_eps, isa_);
    rms_norm_rows(k_.data(), w.k_norm, n * l.n_kv_head, l.head_dim, s.norm_eps, isa_);
    float* kc = reinterpret_cast<float*>(k_cache_[static_cast<size_t>(i)].data());
    float* vc = reinterpret_cast<float*>(v_cache_[static_cast<size_t>(i)].data());
    // The cos / sin of every token's position, computed once per forward for each distinct
    // set of frequencies (usually one for all layers) and shared by q and k.
    const size_t rg = static_cast<size_t>(rope_group_[static_cast<size_t>(i)]);
    const int64_t half = l.head_dim / 2;
    if (rg == static_cast<size_t>(i)) {
      rope_cs_[rg].resize(static_cast<size_t>(n * 2 * half));
      for (int64_t t = 0; t < n; ++t)
        rope_table(w.inv_freq, pos_ + t, rope_cs_[rg].data() + t * 2 * half);
    }
    for (int64_t t = 0; t < n; ++t) {
      const float* cs = rope_cs_[rg].data() + t * 2 * half;
      rope(q_.data() + t * q_dim, l.n_head, l.head_dim, cs);
      rope(k_.data() + t * kv_dim, l.n_kv_head, l.head_dim, cs);
      // Head-major cache: (n_kv_head, max_ctx, head_dim).
      const int64_t hd = l.head_dim;
      for (int64_t g = 0; g < l.n_kv_head; ++g) {
        const int64_t at = (g * max_ctx_ + pos_ + t) * hd;
        std::memcpy(kc + at, k_.data() + t * kv_dim + g * hd, static_cast<size_t>(hd) * 4);
        std::memcpy(vc + at, v_.data() + t * kv_dim + g * hd, static_cast<size_t>(hd) * 4);
      }
    }
    attention(i, n);  // -> h_ (n, q_dim)
    prepare(w.o, h_.data(), n, false);
    matmul(w.o, q_.data(), d);  // q_ reused as (n, d) scratch
    add_bias(q_.data(), w.o_bias, n, d);
    rms_norm_rows(q_.data(), w.attn_post_norm, n, d, s.norm_eps, isa_);
    for (int64_t j = 0; j < n * d; ++j) x_[static_cast<size_t>(j)] += q_[static_cast<size_t>(j)];

    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, w.ffn_norm, h_.data() + t * d, d, s.norm_eps, isa_);
    if (l.is_moe())
      moe(i, n);  // -> q_ (n, d)
    else
      mlp(w.gate, w.up, w.down, w.gate_bias, w.up_bias, w.down_bias, l.ffn_dim, h_.data(), n,
          q_.data());
    rms_norm_rows(q_.data(), w.ffn_post_norm, n, d, s.norm_eps, isa_);
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
