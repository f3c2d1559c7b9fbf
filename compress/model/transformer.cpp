#include "compress/model/transformer.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <thread>

#include "compress/core/error.h"
#include "compress/core/tensor_names.h"

namespace slmc {

namespace {

// HF `_compute_default_rope_parameters` and, for rope_type llama3, `_compute_llama3_parameters`.
torch::Tensor rope_inv_freq(const ModelSpec& spec, const LayerSpec& l) {
  const int64_t hd = l.head_dim;
  auto idx = torch::arange(0, hd, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(hd);
  auto inv_freq = 1.0 / torch::pow(torch::full({}, l.rope_theta, torch::kFloat32), idx);
  const RopeScaling& rs = spec.rope_scaling;
  if (!l.rope_scaled) return inv_freq;
  if (rs.type == "linear") return inv_freq / rs.factor;  // _compute_linear_scaling_rope_parameters
  if (rs.type == "llama3") {
    const double old_ctx = static_cast<double>(rs.original_max_position);
    const double low_wavelen = old_ctx / rs.low_freq_factor;
    const double high_wavelen = old_ctx / rs.high_freq_factor;
    auto wavelen = 2 * M_PI / inv_freq;
    auto scaled = torch::where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq);
    auto smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// x: (B, H, T, hd); cos/sin: (T, hd). Rotate-half convention (HF).
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

}  // namespace

void set_num_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

Transformer::Transformer(ModelSpec spec, const TensorMap& tensors) : spec_(std::move(spec)) {
  spec_.validate();
  check_tensors(spec_, tensors, "model");
  for (const auto& kv : tensors) {
    const HostTensor& t = kv.second;
    params_[kv.first] =
        torch::from_blob(const_cast<float*>(t.data.data()), t.shape, torch::kFloat32).clone();
  }
  for (const LayerSpec& l : spec_.layers) inv_freq_.push_back(rope_inv_freq(spec_, l));
}

Transformer Transformer::random_init(ModelSpec spec, uint64_t seed) {
  spec.validate();
  torch::manual_seed(seed);
  const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(spec.n_layer()));
  TensorMap host;
  for (const TensorDecl& d : expected_tensors(spec)) {
    torch::Tensor t;
    const bool is_norm = d.name.find("norm") != std::string::npos;
    const bool is_bias = d.name.size() > 5 && d.name.compare(d.name.size() - 5, 5, ".bias") == 0;
    if (is_norm) {
      t = torch::ones(d.shape);
    } else if (is_bias) {
      t = torch::zeros(d.shape);
    } else {
      const bool residual_out = d.name.find(names::kAttnOut) != std::string::npos ||
                                d.name.find(names::kFfnDown) != std::string::npos;
      t = torch::randn(d.shape) * (residual_out ? out_std : 0.02);
    }
    HostTensor h;
    h.shape = d.shape;
    h.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    host[d.name] = std::move(h);
  }
  return Transformer(std::move(spec), host);
}

const torch::Tensor& Transformer::p(const std::string& name) const {
  auto it = params_.find(name);
  SLMC_CHECK(it != params_.end(), "model has no tensor ", name);
  return it->second;
}

torch::Tensor Transformer::linear(const std::string& name, const torch::Tensor& x,
                                  const char* bias) const {
  const std::string bias_name = bias ? name.substr(0, name.rfind('.')) + ".bias" : std::string();
  auto y = bias ? torch::linear(x, p(name), p(bias_name)) : torch::linear(x, p(name));
  if (hook_) hook_(name, x, y);
  return y;
}

KVCache Transformer::new_cache(int64_t batch, int64_t capacity) const {
  KVCache c;
  c.capacity = capacity;
  for (const LayerSpec& l : spec_.layers) {
    c.k.push_back(torch::zeros({batch, l.n_kv_head, capacity, l.head_dim}));
    c.v.push_back(torch::zeros({batch, l.n_kv_head, capacity, l.head_dim}));
  }
  return c;
}

torch::Tensor Transformer::embed(const torch::Tensor& tokens) const {
  SLMC_CHECK(tokens.dim() == 2, "forward: tokens must be (batch, seq), got ", tokens.dim(), " dims");
  SLMC_CHECK(tokens.size(1) > 0, "forward: empty sequence");
  const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
  SLMC_CHECK(lo >= 0 && hi < spec_.vocab, "token id ", lo < 0 ? lo : hi, " is outside the vocab [0, ",
             spec_.vocab, ")");
  auto x = torch::embedding(p(names::kTokenEmbd), tokens);  // (B, T, D)
  // gemma3: embed * embed_scale, the scale rounded to the weights' dtype (fp32) first.
  if (spec_.embed_scale != 1.0) x = x * static_cast<float>(spec_.embed_scale);
  return x;
}

torch::Tensor Transformer::mlp(int64_t i, const torch::Tensor& h) const {
  const LayerSpec& l = spec_.layers[static_cast<size_t>(i)];
  auto act = [&](const torch::Tensor& g) {
    return spec_.act == Activation::kSilu ? torch::silu(g) : torch::gelu(g, /*approximate=*/"tanh");
  };
  if (!l.is_moe()) {
    const char* mb = l.mlp_bias ? "bias" : nullptr;
    auto gate = act(linear(names::blk(i, names::kFfnGate), h, mb));
    auto up = linear(names::blk(i, names::kFfnUp), h, mb);
    return linear(names::blk(i, names::kFfnDown), gate * up, mb);
  }
  // Mixture of experts (modeling_mixtral.py): softmax over the router logits in fp32, the top
  // n_expert_used renormalised to sum 1, each expert run on the tokens routed to it, the
  // weighted outputs added in expert order.
  const int64_t D = h.size(-1);
  auto flat = h.reshape({-1, D});
  auto probs = torch::softmax(linear(names::blk(i, names::kFfnRouter), flat, nullptr), -1);
  auto top = probs.topk(l.n_expert_used, -1);
  auto top_w = std::get<0>(top), top_i = std::get<1>(top);
  top_w = top_w / top_w.sum(-1, /*keepdim=*/true);
  auto out = torch::zeros_like(flat);
  for (int64_t e = 0; e < l.n_expert; ++e) {
    auto chosen = top_i == e;                                      // (N, k)
    auto rows = chosen.any(-1).nonzero().squeeze(1);               // tokens routed to e
    if (rows.numel() == 0) continue;
    auto w = (top_w * chosen).sum(-1).index_select(0, rows).unsqueeze(1);
    auto x = flat.index_select(0, rows);
    auto y = linear(names::expert(i, e, names::kFfnDown),
                    act(linear(names::expert(i, e, names::kFfnGate), x, nullptr)) *
                        linear(names::expert(i, e, names::kFfnUp), x, nullptr),
                    nullptr);
    out.index_add_(0, rows, y * w);
  }
  return out.view(h.sizes());
}

torch::Tensor Transformer::layer(int64_t i, const torch::Tensor& x_in, KVCache* cache) const {
  SLMC_CHECK(i >= 0 && i < spec_.n_layer(), "layer index ", i, " outside [0, ", spec_.n_layer(), ")");
  const int64_t B = x_in.size(0), T = x_in.size(1);
  const int64_t start = cache ? cache->len : 0;
  if (cache)
    SLMC_CHECK(start + T <= cache->capacity, "KV cache full: ", start + T, " positions > capacity ",
               cache->capacity);
  const int64_t S = start + T;  // keys visible after this step
  auto pos = torch::arange(start, S, torch::kInt64).to(torch::kFloat32);
  // Key positions j and query positions i (absolute): causal, plus the sliding window if any.
  auto qpos = torch::arange(start, S, torch::kInt64).unsqueeze(1);  // (T, 1)
  auto kpos = torch::arange(0, S, torch::kInt64).unsqueeze(0);      // (1, S)
  auto causal = kpos <= qpos;                                        // (T, S)

  const LayerSpec& l = spec_.layers[static_cast<size_t>(i)];
  const int64_t H = l.n_head, KV = l.n_kv_head, hd = l.head_dim;
  const char* qkv_bias = l.attn_qkv_bias ? "bias" : nullptr;
  torch::Tensor x = x_in;

  auto h = rms_norm(x, p(names::blk(i, names::kAttnNorm)), spec_.norm_eps);
  auto q = linear(names::blk(i, names::kAttnQ), h, qkv_bias).view({B, T, H, hd}).transpose(1, 2);
  auto k = linear(names::blk(i, names::kAttnK), h, qkv_bias).view({B, T, KV, hd}).transpose(1, 2);
  auto v = linear(names::blk(i, names::kAttnV), h, qkv_bias).view({B, T, KV, hd}).transpose(1, 2);
  if (l.qk_norm) {  // per head, over head_dim, before RoPE (gemma3, openelm)
    q = rms_norm(q, p(names::blk(i, names::kAttnQNorm)), spec_.norm_eps);
    k = rms_norm(k, p(names::blk(i, names::kAttnKNorm)), spec_.norm_eps);
  }

  auto freqs = torch::outer(pos, inv_freq_[static_cast<size_t>(i)]);  // (T, hd/2)
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);

  if (cache) {
    cache->k[static_cast<size_t>(i)].narrow(2, start, T).copy_(k);
    cache->v[static_cast<size_t>(i)].narrow(2, start, T).copy_(v);
    k = cache->k[static_cast<size_t>(i)].narrow(2, 0, S);
    v = cache->v[static_cast<size_t>(i)].narrow(2, 0, S);
  }
  if (H != KV) {
    k = k.repeat_interleave(H / KV, 1);
    v = v.repeat_interleave(H / KV, 1);
  }
  auto allowed = causal;
  if (l.window > 0) allowed = allowed.logical_and(qpos - kpos < l.window);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * l.softmax_scale();
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto attn = torch::matmul(torch::softmax(scores, -1), v);  // (B, H, T, hd)
  attn = attn.transpose(1, 2).reshape({B, T, H * hd});
  auto o = linear(names::blk(i, names::kAttnOut), attn, l.attn_out_bias ? "bias" : nullptr);
  if (l.post_norms) o = rms_norm(o, p(names::blk(i, names::kAttnPostNorm)), spec_.norm_eps);
  x = x + o;

  h = rms_norm(x, p(names::blk(i, names::kFfnNorm)), spec_.norm_eps);
  auto y = mlp(i, h);
  if (l.post_norms) y = rms_norm(y, p(names::blk(i, names::kFfnPostNorm)), spec_.norm_eps);
  return x + y;
}

torch::Tensor Transformer::head(const torch::Tensor& x) const {
  auto h = rms_norm(x, p(names::kOutputNorm), spec_.norm_eps);
  return linear(spec_.tied_embeddings ? names::kTokenEmbd : names::kOutput, h, nullptr);
}

torch::Tensor Transformer::forward(const torch::Tensor& tokens, KVCache* cache) const {
  auto x = embed(tokens);
  // Every layer sees the same cache->len; it advances once all layers wrote their keys.
  for (int64_t i = 0; i < spec_.n_layer(); ++i) x = layer(i, x, cache);
  if (cache) cache->len += tokens.size(1);
  return head(x);
}

std::vector<torch::Tensor> Transformer::params_list() const {
  std::vector<torch::Tensor> out;
  for (const auto& kv : params_) out.push_back(kv.second);
  return out;
}

TensorMap Transformer::to_host() const {
  TensorMap out;
  for (const auto& kv : params_) {
    auto t = kv.second.detach().contiguous();
    HostTensor h;
    h.shape = t.sizes().vec();
    h.data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    out[kv.first] = std::move(h);
  }
  return out;
}

}  // namespace slmc
