#include "quantize/awq.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "compress/core/error.h"

namespace slmc::quant {

void AwqOptions::validate() const {
  SLMC_CHECK(grid >= 1, "awq_grid must be >= 1, got ", grid);
  SLMC_CHECK(clip_grid >= 1, "awq_clip_grid must be >= 1, got ", clip_grid);
  SLMC_CHECK(max_tokens >= 1, "awq_max_tokens must be >= 1, got ", max_tokens);
}

namespace {

using torch::Tensor;

// The searches quantize the same weights tens of times. Each row goes through the codec's own
// scalar functions (quantize_row_ref / dequantize_row_ref, or choose_grid and Grid::round for a
// clipped block, which is what rtn_quantize does), so the values are the ones the codec stores by
// construction; rows run in parallel.
class RowRounder {
 public:
  RowRounder(codec::Format f, int64_t cols)
      : f_(f), cols_(cols), bs_(codec::format_info(f).block_size),
        packed_(codec::row_bytes(f, cols)) {}

  // q = RTN(x).
  void plain(const float* x, float* q) {
    codec::quantize_row_ref(f_, x, cols_, packed_.data());
    codec::dequantize_row_ref(f_, packed_.data(), cols_, q);
  }
  // q = RTN(x) with block b's range shrunk by factor(b).
  template <class Factor>
  void clipped(const float* x, Factor factor, float* q) const {
    for (int64_t b = 0; b < cols_ / bs_; ++b) {
      const float* xb = x + b * bs_;
      const codec::Grid g = codec::choose_grid(f_, xb, factor(b));
      for (int64_t j = 0; j < bs_; ++j) q[b * bs_ + j] = g.round(xb[j]);
    }
  }

 private:
  codec::Format f_;
  int64_t cols_, bs_;
  std::vector<uint8_t> packed_;
};

// Q = RTN(W diag(s)) diag(s)^-1 for s defined, else RTN(W); with `clip` ((rows, blocks) factors)
// every block's grid comes from choose_grid(f, block, factor). W contiguous fp32 (rows, cols).
Tensor fake_quant(const Tensor& W, codec::Format f, const Tensor& s, const Tensor& clip) {
  const int64_t rows = W.size(0), cols = W.size(1), nb = cols / codec::format_info(f).block_size;
  Tensor Q = torch::empty({rows, cols}, torch::kFloat32);
  const float* wp = W.data_ptr<float>();
  const float* sp = s.defined() ? s.data_ptr<float>() : nullptr;
  const float* cp = clip.defined() ? clip.data_ptr<float>() : nullptr;
  float* qp = Q.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    RowRounder rounder(f, cols);
    std::vector<float> x(static_cast<size_t>(cols));
    for (int64_t i = begin; i < end; ++i) {
      const float* w = wp + i * cols;
      float* q = qp + i * cols;
      if (sp)
        for (int64_t j = 0; j < cols; ++j) x[j] = w[j] * sp[j];
      else
        std::copy(w, w + cols, x.begin());
      if (cp)
        rounder.clipped(x.data(), [&](int64_t b) { return cp[i * nb + b]; }, q);
      else
        rounder.plain(x.data(), q);
      if (sp)
        for (int64_t j = 0; j < cols; ++j) q[j] = q[j] / sp[j];
    }
  });
  return Q;
}

int64_t block_size(codec::Format f) { return codec::format_info(f).block_size; }

Tensor as_blocks(const Tensor& W, codec::Format f) {
  const int64_t bs = block_size(f);
  return W.contiguous().view({W.size(0), W.size(1) / bs, bs});
}

void check_finite(const Tensor& t, const char* what) {
  SLMC_CHECK(torch::isfinite(t).all().item<bool>(), "awq: ", what, " has non-finite values");
}

void check_matrix(const Tensor& W, int64_t cols, codec::Format f, const std::string& what) {
  SLMC_CHECK(W.defined() && W.dim() == 2, "awq: ", what, " must be a 2-D matrix");
  SLMC_CHECK(W.size(1) == cols, "awq: ", what, " has ", W.size(1), " columns, the inputs have ",
             cols);
  SLMC_CHECK(codec::row_fits(f, cols), "awq: ", what, ": format ", codec::format_info(f).name,
             " needs rows of a multiple of ", block_size(f), " weights, got ", cols);
  check_finite(W, what.c_str());
}

// At most m rows of X, evenly spaced and deterministic (AutoAWQ strides through the tokens).
Tensor subsample(const Tensor& X, int64_t m) {
  const int64_t n = X.size(0);
  if (n <= m) return X;
  const Tensor idx = (torch::arange(m, torch::kInt64) * n).div(m, "floor");  // floor(i n / m)
  return X.index_select(0, idx);
}

}  // namespace

torch::Tensor awq_fake_quantize(const torch::Tensor& W, codec::Format f,
                                const torch::Tensor& clip) {
  torch::NoGradGuard no_grad;
  SLMC_CHECK(W.defined() && W.dim() == 2, "awq_fake_quantize: weights must be 2-D");
  const Tensor w = W.to(torch::kFloat32).contiguous();
  check_matrix(w, w.size(1), f, "awq_fake_quantize weights");
  if (!clip.defined()) return fake_quant(w, f, Tensor(), Tensor());
  SLMC_CHECK(codec::has_grid(f), "awq_fake_quantize: clipping needs a format with a grid, got ",
             codec::format_info(f).name);
  const int64_t nb = w.size(1) / block_size(f);
  SLMC_CHECK(clip.dim() == 2 && clip.size(0) == w.size(0) && clip.size(1) == nb,
             "awq_fake_quantize: clip must be (", w.size(0), ", ", nb, ")");
  return fake_quant(w, f, Tensor(), clip.to(torch::kFloat32).contiguous());
}

AwqScaleResult awq_search_scales(const std::vector<torch::Tensor>& Ws, const torch::Tensor& X,
                                 const std::vector<codec::Format>& formats, const AwqOptions& o) {
  torch::NoGradGuard no_grad;
  o.validate();
  SLMC_CHECK(!Ws.empty(), "awq_search_scales: no linears to scale");
  SLMC_CHECK(formats.size() == Ws.size(), "awq_search_scales: ", Ws.size(), " linears but ",
             formats.size(), " formats");
  SLMC_CHECK(X.defined() && X.dim() == 2 && X.size(0) >= 1,
             "awq_search_scales: inputs must be a non-empty 2-D (tokens, features) matrix");
  const int64_t cols = X.size(1);
  std::vector<Tensor> w(Ws.size());
  for (size_t i = 0; i < Ws.size(); ++i) {
    w[i] = Ws[i].defined() ? Ws[i].to(torch::kFloat32).contiguous() : Ws[i];
    check_matrix(w[i], cols, formats[i], str_cat("linear ", i));
  }
  check_finite(X, "the calibration inputs");
  const Tensor x = subsample(X, o.max_tokens).to(torch::kFloat32).contiguous();
  const int64_t n = x.size(0);

  // sum_t ||(W - Q) x_t||^2 = tr(E H E^T) with H = X^T X: with more tokens than channels one
  // (cols, cols) product per ratio replaces a pass over every token, which is what makes 20 ratios
  // cheap; with fewer tokens the tokens themselves are the cheaper factor.
  const bool use_tokens = n <= cols;
  const Tensor H = use_tokens ? Tensor() : x.t().mm(x);

  // x_mean: mean |x| per input channel. w_mean: each weight's magnitude relative to the largest
  // of its quantization block, averaged over all output rows of the group (AutoAWQ).
  const Tensor x_mean = x.abs().mean(0);
  std::vector<Tensor> rel;
  for (size_t i = 0; i < w.size(); ++i) {
    // Plain floats have no blocks; their whole row plays the group's part.
    const Tensor b = codec::has_grid(formats[i]) ? as_blocks(w[i], formats[i])
                                                 : w[i].view({w[i].size(0), 1, cols});
    const Tensor a = b.abs();
    rel.push_back((a / (a.amax(-1, true) + 1e-6f)).view({w[i].size(0), cols}));
  }
  const Tensor w_mean = torch::cat(rel, 0).mean(0);

  auto loss_of = [&](const Tensor& s) {
    std::vector<Tensor> err;
    for (size_t i = 0; i < w.size(); ++i) {
      err.push_back(w[i] - fake_quant(w[i], formats[i], s, Tensor()));
    }
    const Tensor E = torch::cat(err, 0);
    const double sum = use_tokens ? x.mm(E.t()).pow(2).sum(torch::kFloat64).item<double>()
                                  : (E.mm(H) * E).sum(torch::kFloat64).item<double>();
    return sum / static_cast<double>(n);
  };

  const Tensor ones = torch::ones({cols}, torch::kFloat32);
  AwqScaleResult r;
  r.loss_plain = loss_of(ones);
  double best_loss = std::numeric_limits<double>::infinity(), best_ratio = 0;
  Tensor best_scales;
  for (int64_t k = 0; k < o.grid; ++k) {
    const double a = static_cast<double>(k) / static_cast<double>(o.grid);
    double loss;
    Tensor s;
    if (!o.duo_scaling && k == 0) {
      s = ones;  // x_mean^0 = 1 everywhere: exactly the plain quantization
      loss = r.loss_plain;
    } else {
      s = o.duo_scaling ? (x_mean.pow(a) / (w_mean.pow(1.0 - a) + 1e-4f)).clamp_min(1e-4f)
                        : x_mean.pow(a).clamp_min(1e-4f);
      // Centre the scales geometrically so that W s and x / s keep their magnitudes.
      s = s / (s.max() * s.min()).sqrt();
      // Overflow guard (AutoAWQ).
      s = torch::where(torch::isfinite(s), s, torch::ones_like(s)).contiguous();
      loss = loss_of(s);
    }
    if (loss < best_loss) {
      best_loss = loss;
      best_ratio = a;
      best_scales = s;
    }
  }
  // Scaling must never make the group worse than plain round to nearest: with duo scaling alpha = 0
  // is 1 / w_mean, not the identity, so s = 1 is a candidate of its own.
  if (best_loss < r.loss_plain) {
    r.scales = best_scales.contiguous();
    r.best_ratio = best_ratio;
    r.loss_best = best_loss;
  } else {
    r.scales = ones;
    r.best_ratio = 0;
    r.loss_best = r.loss_plain;
  }
  return r;
}

torch::Tensor awq_search_clip(const torch::Tensor& W, const torch::Tensor& X, codec::Format f,
                              const AwqOptions& o) {
  torch::NoGradGuard no_grad;
  o.validate();
  SLMC_CHECK(codec::has_grid(f), "awq_search_clip: clipping needs a format with a grid, got ",
             codec::format_info(f).name);
  SLMC_CHECK(X.defined() && X.dim() == 2 && X.size(0) >= 1,
             "awq_search_clip: inputs must be a non-empty 2-D (tokens, features) matrix");
  const Tensor w = W.defined() ? W.to(torch::kFloat32).contiguous() : W;
  check_matrix(w, X.size(1), f, "awq_search_clip weights");
  // AutoAWQ samples 512 tokens for the clipping search.
  check_finite(X, "the calibration inputs");
  const Tensor x =
      subsample(X, std::min<int64_t>(o.max_tokens, 512)).to(torch::kFloat32).contiguous();

  const int64_t rows = w.size(0), cols = w.size(1), bs = block_size(f), nb = cols / bs;
  // Error of one (row, block): sum_t (x_tb . e_b)^2 = e_b^T H_b e_b with H_b = X_b^T X_b, the
  // block's diagonal block of X^T X; so each candidate costs a batched (rows, bs) x (bs, bs)
  // product instead of a pass over the tokens.
  const Tensor xb = x.view({x.size(0), nb, bs}).permute({1, 0, 2});  // (nb, n, bs)
  const Tensor Hb = torch::bmm(xb.transpose(1, 2), xb);               // (nb, bs, bs)

  std::vector<float> factors;
  for (int64_t k = 0; k <= o.clip_grid; ++k)
    factors.push_back(static_cast<float>(1.0 - 0.5 * static_cast<double>(k) /
                                                   static_cast<double>(o.clip_grid)));
  const int64_t F = static_cast<int64_t>(factors.size());
  const Tensor factor_t = torch::tensor(factors, torch::kFloat32);

  // All candidates of a chunk of rows at once: a few large parallel steps rather than a dozen
  // small ones per candidate (cheaper, and far less sensitive to a busy machine). A chunk's
  // candidate errors take at most ~16 MB.
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 22) / (F * cols), 1, rows);
  Tensor best_c = torch::empty({rows, nb}, torch::kFloat32);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t rr = std::min(chunk, rows - r0), tasks = F * rr;
    // e[b][t] = w_b - q_b for task t = (candidate t / rr, row t % rr), laid out for the bmm.
    Tensor e = torch::empty({nb, tasks, bs}, torch::kFloat32);
    const float* wp = w.data_ptr<float>() + r0 * cols;
    float* ep = e.data_ptr<float>();
    at::parallel_for(0, tasks, 16, [&](int64_t begin, int64_t end) {
      const RowRounder rounder(f, cols);
      std::vector<float> q(static_cast<size_t>(cols));
      for (int64_t t = begin; t < end; ++t) {
        const float c = factors[static_cast<size_t>(t / rr)];
        const float* x = wp + (t % rr) * cols;
        rounder.clipped(x, [c](int64_t) { return c; }, q.data());
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t j = 0; j < bs; ++j)
            ep[(b * tasks + t) * bs + j] = x[b * bs + j] - q[static_cast<size_t>(b * bs + j)];
      }
    });
    const Tensor err = (torch::bmm(e, Hb) * e).sum(-1).view({nb, F, rr});
    // argmin keeps the first minimum: on ties the larger factor (1 first) wins, so blocks where
    // clipping cannot help stay unclipped.
    const Tensor best = err.argmin(1).t();  // (rr, nb)
    best_c.narrow(0, r0, rr).copy_(factor_t.index_select(0, best.reshape(-1)).view({rr, nb}));
  }
  return best_c;
}

}  // namespace slmc::quant
