#include "quantize/gptq.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/float16.h"
#include "compress/model/hessian.h"

namespace slmc::quant {

void GptqOptions::validate() const {
  SLMC_CHECK(std::isfinite(damp) && damp > 0 && damp <= 1,
             "gptq: damp must be in (0, 1], got ", damp);
  SLMC_CHECK(block_size >= 1, "gptq: block_size must be >= 1, got ", block_size);
  SLMC_CHECK(refit >= 0 && refit <= 16, "gptq: refit must be in [0, 16], got ", refit);
  SLMC_CHECK(std::isfinite(asym_calib) && asym_calib >= 0 && asym_calib <= 1,
             "gptq: asym_calib must be in [0, 1], got ", asym_calib);
  // With act_order a format block would mix grids chosen at different points of the sweep;
  // the stored formats need one grid per contiguous block, fixed up front.
  SLMC_CHECK(!act_order || static_groups,
             "gptq: act_order=true needs static_groups=true (grids per contiguous block), got "
             "static_groups=false");
}

namespace {

using torch::Tensor;

std::string shape_str(const Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

// The grids' scales and zero points, one per block: d, z (rows, nblk) float64.
std::pair<Tensor, Tensor> grid_params(const std::vector<codec::Grid>& grids, int64_t rows,
                                      int64_t nblk) {
  Tensor d = torch::empty({rows, nblk}, torch::kFloat64), z = torch::empty_like(d);
  double* dp = d.data_ptr<double>();
  double* zp = z.data_ptr<double>();
  for (size_t i = 0; i < grids.size(); ++i) {
    dp[i] = grids[i].d;
    zp[i] = grids[i].z;
  }
  return {d, z};
}

// Per row, the proxy loss (w - w_hat)^T H (w - w_hat) that GPTQ minimises.
Tensor row_loss(const Tensor& w64, const Tensor& H64, const Tensor& codes,
                const std::vector<codec::Grid>& grids, int bs) {
  auto [d, z] = grid_params(grids, w64.size(0), w64.size(1) / bs);
  const Tensor e =
      w64 - d.repeat_interleave(bs, 1) * (codes.to(torch::kFloat64) - z.repeat_interleave(bs, 1));
  return (e * e.mm(H64)).sum(1);
}

// Scale refit: with every code fixed, each row's block scales d (one per block) enter the proxy
// loss quadratically, loss(d) = d^T A d - 2 c^T d + w^T H w with A = U^T H U and c = U^T H w,
// where U (cols, nblk) holds the row's integer offsets codes - z, block b in column b. Solves for
// the best d (a ridge of 1e-9 x mean diag(A) towards the current d keeps empty blocks where they
// are), rounds it to the stored fp16 (a non-finite value keeps the current scale) and keeps it
// for every row whose loss falls. Returns whether any row changed.
bool refit_grids(const Tensor& w64, const Tensor& H64, const Tensor& codes,
                 std::vector<codec::Grid>& grids, int bs) {
  const int64_t rows = w64.size(0), cols = w64.size(1), nblk = cols / bs;
  auto [d_old, z] = grid_params(grids, rows, nblk);
  const Tensor U = codes.to(torch::kFloat64) - z.repeat_interleave(bs, 1);
  Tensor A = torch::empty({rows, nblk, nblk}, torch::kFloat64);
  for (int64_t b = 0; b < nblk; ++b)  // column b of every row's A: U (U_b H_b,:)
    A.select(2, b).copy_(
        (U * U.narrow(1, b * bs, bs).mm(H64.narrow(0, b * bs, bs))).view({rows, nblk, bs}).sum(2));
  const Tensor c = (U * w64.mm(H64)).view({rows, nblk, bs}).sum(2);
  const Tensor ridge =
      1e-9 * A.diagonal(0, 1, 2).abs().mean(1, /*keepdim=*/true).clamp_min(1e-30);  // (rows, 1)
  Tensor Ar = A.clone();
  Ar.diagonal(0, 1, 2).add_(ridge);
  Tensor d_new = torch::linalg_solve(Ar, (c + ridge * d_old).unsqueeze(2)).squeeze(2).contiguous();
  double* dn = d_new.data_ptr<double>();
  const double* dp = d_old.data_ptr<double>();
  for (int64_t i = 0; i < rows * nblk; ++i) {
    const float h = f16_to_f32(f32_to_f16(static_cast<float>(dn[i])));
    dn[i] = std::isfinite(h) ? h : dp[i];
  }
  auto loss = [&](const Tensor& d) {
    return (d.unsqueeze(1).bmm(A).squeeze(1) * d).sum(1) - 2 * (c * d).sum(1);
  };
  const Tensor better = (loss(d_new) < loss(d_old)).contiguous();
  const bool* bp = better.data_ptr<bool>();
  bool changed = false;
  for (int64_t r = 0; r < rows; ++r) {
    if (!bp[r]) continue;
    changed = true;
    for (int64_t b = 0; b < nblk; ++b)
      grids[static_cast<size_t>(r * nblk + b)].d = static_cast<float>(dn[r * nblk + b]);
  }
  return changed;
}

// Keeps, row by row, whichever of `codes` and `cand` has the lower proxy loss on `grids`.
void keep_better_rows(const Tensor& w64, const Tensor& H64, const Tensor& cand,
                      const std::vector<codec::Grid>& grids, int bs, Tensor& codes) {
  const Tensor better =
      (row_loss(w64, H64, cand, grids, bs) < row_loss(w64, H64, codes, grids, bs));
  codes = torch::where(better.unsqueeze(1), cand, codes);
}

}  // namespace

QuantResult gptq_quantize(const Tensor& W, const Tensor& H, codec::Format f, const GptqOptions& o,
                          const Tensor& pinned) {
  torch::NoGradGuard no_grad;
  o.validate();
  SLMC_CHECK(W.defined() && W.dim() == 2, "gptq: weights must be 2-D, got ",
             W.defined() ? shape_str(W) : std::string("none"));
  const int64_t rows = W.size(0), cols = W.size(1);
  const codec::FormatInfo& fi = codec::format_info(f);
  SLMC_CHECK(rows > 0, "gptq: weights ", shape_str(W), " have no rows");
  SLMC_CHECK(codec::row_fits(f, cols), "gptq: ", cols, " columns do not fit ", fi.name,
             " (a multiple of ", fi.block_size, " needed)");
  SLMC_CHECK(H.defined() && H.dim() == 2 && H.size(0) == cols && H.size(1) == cols,
             "gptq: H must be (", cols, ", ", cols, ") for weights ", shape_str(W), ", got ",
             H.defined() ? shape_str(H) : std::string("none"));
  SLMC_CHECK(W.is_floating_point() && H.is_floating_point(), "gptq: W and H must be floating point");
  const Tensor w_orig = W.to(torch::kFloat32).contiguous();
  SLMC_CHECK(torch::isfinite(w_orig).all().item<bool>(), "gptq: weights ", shape_str(W),
             " contain NaN or Inf");
  // Our copy (the caller's H is never modified), float64 for the factorization.
  Tensor h = H.to(torch::kFloat64, /*non_blocking=*/false, /*copy=*/true);
  SLMC_CHECK(torch::isfinite(h).all().item<bool>(), "gptq: H ", shape_str(H),
             " contains NaN or Inf");
  // Plain floats have no integer grid for errors to be measured against; round to nearest.
  if (!codec::has_grid(f)) return rtn_quantize(w_orig, f, H);

  // Grids: one per block, or for the K-quants one per sub-block of gs weights (8 or 16 per
  // 256-weight super-block, sharing the super-block's scales: choose_grids picks them together).
  const int bs = fi.block_size, gs = fi.grid_size;
  const int64_t nblk = cols / bs, ngrid = cols / gs;
  const bool kquant = codec::is_k_quant(f);

  // Inputs that were never active: H[i, i] = 1 makes H invertible and, with row and column i of
  // H zero, leaves column i decoupled (it neither receives nor spreads error). Unlike the
  // reference we keep the weight (rounded on its block's grid) instead of zeroing it, so an
  // input the calibration set missed still works after quantization.
  Tensor hdiag = h.diagonal();
  hdiag.masked_fill_(hdiag == 0, 1.0);
  // diag(H) as fp32 importances: the mse grid search's weights, and for the K-quants the
  // quant_weights of ggml's weighted quantizer (what llama.cpp's imatrix supplies: the mean square
  // of each input, proportional to diag(H)).
  const Tensor hd = hdiag.to(torch::kFloat32).contiguous();
  const float* hw = hd.data_ptr<float>();

  // Static groups: every grid from the original weights, before any update.
  std::vector<codec::Grid> grids(static_cast<size_t>(rows * ngrid));
  const float* wo = w_orig.data_ptr<float>();
  if (o.static_groups) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nblk; ++b) {
        const float* x = wo + r * cols + b * bs;
        if (kquant) {
          // ggml's importance-weighted super-block search is the K-quants' grid search.
          codec::choose_grids(f, x, hw + b * bs, grids.data() + r * ngrid + b * (bs / gs));
          continue;
        }
        codec::Grid best = codec::choose_grid(f, x);
        if (o.mse_grid) {
          auto cost = [&](const codec::Grid& g) {
            double e = 0;
            for (int j = 0; j < bs; ++j) {
              const double d = static_cast<double>(x[j]) - g.round(x[j]);
              e += static_cast<double>(hw[b * bs + j]) * d * d;
            }
            return e;
          };
          double best_cost = cost(best);
          for (int k = 1; k <= 20; ++k) {
            const codec::Grid g = codec::choose_grid(f, x, 1.0f - 0.025f * static_cast<float>(k));
            const double c = cost(g);
            if (c < best_cost) {
              best_cost = c;
              best = g;
            }
          }
        }
        grids[static_cast<size_t>(r * nblk + b)] = best;
      }
  }

  // Stable sort: equal diag(H) entries keep their original order, so the result is deterministic.
  Tensor perm;
  Tensor w;  // our working copy, columns in sweep order, updated in place
  if (o.act_order) {
    perm = std::get<1>(torch::sort(hdiag, /*stable=*/true, /*dim=*/0, /*descending=*/true));
    h = h.index_select(0, perm).index_select(1, perm);
    w = w_orig.index_select(1, perm).contiguous();
  } else {
    w = w_orig.clone();
  }
  std::vector<int64_t> sweep_col(static_cast<size_t>(cols));  // original column of each position
  if (o.act_order) perm = perm.contiguous();
  for (int64_t i = 0; i < cols; ++i)
    sweep_col[static_cast<size_t>(i)] = o.act_order ? perm.data_ptr<int64_t>()[i] : i;

  SLMC_CHECK(!pinned.defined() || pinned.sizes() == W.sizes(), "gptq: pinned mask ",
             shape_str(pinned), " differs from the weights ", shape_str(W));
  const Tensor pin_t = pinned.defined() ? pinned.to(torch::kBool).contiguous() : Tensor();
  const bool* pin = pin_t.defined() ? pin_t.data_ptr<bool>() : nullptr;
  const Tensor hinv_t = factor_damped(h, o.damp, "gptq", inverse_cholesky_upper).contiguous();
  const float* hinv = hinv_t.data_ptr<float>();

  // One GPTQ sweep over a fresh copy of the (permuted) weights. With `choose` (static_groups
  // off, first sweep) a block's grid is picked when the sweep reaches it; otherwise `grids` is
  // read as is. Returns the codes in original column order.
  const Tensor w_sweep0 = w;
  auto sweep = [&](bool choose) {
    Tensor w = w_sweep0.clone();
    Tensor codes_sweep = torch::empty({rows, cols}, torch::kInt32);
    int32_t* cq = codes_sweep.data_ptr<int32_t>();
    float* wp = w.data_ptr<float>();

    for (int64_t i1 = 0; i1 < cols; i1 += o.block_size) {
      const int64_t i2 = std::min(i1 + o.block_size, cols), count = i2 - i1;
      Tensor err_t = torch::empty({rows, count}, torch::kFloat32);
      float* err = err_t.data_ptr<float>();
      // Rows are independent within a lazy block: each row's sweep only reads its own weights and
      // Hinv, so rows run in parallel and a row's block segment stays in L1.
      const int64_t grain = std::max<int64_t>(1, 32768 / (count * count + 1));
      at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
        std::vector<float> cur(static_cast<size_t>(bs));
        for (int64_t r = r0; r < r1; ++r) {
          float* wr = wp + r * cols;
          float* er = err + r * count;
          for (int64_t i = i1; i < i2; ++i) {
            if (choose && i % bs == 0) {
              // The grid sees the weights as updated by every column quantized so far. Columns
              // past this lazy block still lack the block's pending update, so it is applied to
              // the copy here. The reference reads its outer W, which lacks all of the current
              // lazy block's updates; the two agree when every format block starts a lazy block
              // (q4_g128 with block_size 128), and only ours is independent of block_size.
              for (int64_t j = i; j < i + bs; ++j) {
                float v = wr[j];
                if (j >= i2)
                  for (int64_t k = 0; k < i - i1; ++k) v -= er[k] * hinv[(i1 + k) * cols + j];
                cur[static_cast<size_t>(j - i)] = v;
              }
              codec::choose_grids(f, cur.data(), kquant ? hw + i : nullptr,
                                  grids.data() + r * ngrid + i / gs);
            }
            const codec::Grid& g =
                grids[static_cast<size_t>(r * ngrid + sweep_col[static_cast<size_t>(i)] / gs)];
            const float x = wr[i];
            const bool zero = pin && pin[r * cols + sweep_col[static_cast<size_t>(i)]];
            const int q = g.code(zero ? 0.0f : x);
            cq[r * cols + i] = q;
            const float e = (x - g.value(q)) / hinv[i * cols + i];
            er[i - i1] = e;
            const float* hrow = hinv + i * cols;
            for (int64_t j = i + 1; j < i2; ++j) wr[j] -= e * hrow[j];
          }
        }
      });
      if (i2 < cols) {
        Tensor rest = w.narrow(1, i2, cols - i2);
        rest.addmm_(err_t, hinv_t.narrow(0, i1, count).narrow(1, i2, cols - i2), /*beta=*/1,
                    /*alpha=*/-1);
      }
    }
    return o.act_order ? codes_sweep.index_select(1, torch::argsort(perm)) : codes_sweep;
  };

  Tensor codes = sweep(!o.static_groups);
  // The refit solves each grid's scale freely; a K-quant's scales are 6-bit codes of a shared
  // super-block scale, so the K-quants keep the weighted search's scales.
  if (o.refit > 0 && !kquant) {
    const Tensor w64 = w_orig.to(torch::kFloat64), H64 = H.to(torch::kFloat64);
    for (int it = 0; it < o.refit; ++it) {
      if (!refit_grids(w64, H64, codes, grids, bs)) break;  // no row improved
      if (it + 1 < o.refit) keep_better_rows(w64, H64, sweep(false), grids, bs, codes);
    }
  }
  return pack_result(w_orig, f, codes, grids, H);
}

Tensor gptq_asym_target(const Tensor& W, const Tensor& H, const Tensor& D, double alpha,
                        double damp) {
  torch::NoGradGuard no_grad;
  SLMC_CHECK(W.defined() && W.dim() == 2, "gptq asym_calib: weights must be 2-D, got ",
             W.defined() ? shape_str(W) : std::string("none"));
  const int64_t cols = W.size(1);
  for (const Tensor* t : {&H, &D})
    SLMC_CHECK(t->defined() && t->dim() == 2 && t->size(0) == cols && t->size(1) == cols,
               "gptq asym_calib: H and D must be (", cols, ", ", cols, ") for weights ",
               shape_str(W), ", got ", t->defined() ? shape_str(*t) : std::string("none"));
  SLMC_CHECK(std::isfinite(alpha) && alpha >= 0 && alpha <= 1,
             "gptq asym_calib: alpha must be in [0, 1], got ", alpha);
  SLMC_CHECK(std::isfinite(damp) && damp > 0 && damp <= 1,
             "gptq asym_calib: damp must be in (0, 1], got ", damp);
  if (alpha == 0) return W.to(torch::kFloat32).clone();
  const Tensor w = W.to(torch::kFloat64);
  Tensor h = H.to(torch::kFloat64, /*non_blocking=*/false, /*copy=*/true);
  const Tensor d = D.to(torch::kFloat64);
  SLMC_CHECK(torch::isfinite(w).all().item<bool>() && torch::isfinite(h).all().item<bool>() &&
                 torch::isfinite(d).all().item<bool>(),
             "gptq asym_calib: W, H or D (", shape_str(W), ") contains NaN or Inf");
  h.diagonal().masked_fill_(h.diagonal() == 0, 1.0);
  // The dampening escalation of gptq_quantize, so a tensor GPTQ can take never fails here first.
  const Tensor factor = factor_damped(h, damp, "gptq asym_calib", [](const Tensor& hd) {
    auto [L, info] = torch::linalg_cholesky_ex(hd);
    return info.item<int64_t>() == 0 ? L : Tensor();
  });
  // W D H^-1 = (H^-1 D^T W^T)^T (H is symmetric).
  const Tensor z = torch::cholesky_solve(d.t().matmul(w.t()), factor);
  return (w + alpha * z.t()).to(torch::kFloat32);
}

}  // namespace slmc::quant
