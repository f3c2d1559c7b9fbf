#include "compress/model/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <random>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/model/windows.h"

namespace slmc {

double lr_at(const TrainOptions& o, int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup));
  const double t = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  const double min_lr = o.lr * o.min_lr_ratio;
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

double heldout_nll(const Transformer& model, const std::vector<int32_t>& tokens, int64_t ctx,
                   int32_t bos) {
  if (tokens.empty()) return std::nan("");
  double sum = 0;
  int64_t n = 0;
  const int64_t vocab = model.spec().vocab;
  for_each_window_logits(model, bos_windows(tokens, ctx, bos), 8,
                         [&](const float* logits, const int32_t* targets, int64_t len) {
                           for (int64_t t = 0; t < len; ++t)
                             sum += token_nll(logits + t * vocab, vocab, targets[t]);
                           n += len;
                         });
  return sum / static_cast<double>(n);
}

TrainResult train(Transformer& model, const std::vector<int32_t>& train_tokens,
                  const std::vector<int32_t>& val_tokens, const TrainOptions& o, int32_t bos) {
  SLMC_CHECK(o.steps > 0 && o.batch > 0, "train: steps and batch must be > 0 (steps ", o.steps,
             ", batch ", o.batch, ")");
  SLMC_CHECK(o.ctx >= 2 && o.ctx <= model.spec().max_seq, "train: ctx ", o.ctx,
             " must be in [2, max_seq ", model.spec().max_seq, "]");
  const int64_t span = o.ctx - 1;  // stream tokens per window
  SLMC_CHECK(static_cast<int64_t>(train_tokens.size()) > span, "train: the training data has ",
             train_tokens.size(), " tokens, fewer than one window of ", o.ctx);
  torch::manual_seed(o.seed);
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(train_tokens.size()) - span);

  std::vector<torch::Tensor> decay, no_decay;
  for (auto& kv : model.params()) {
    kv.second.set_requires_grad(true);
    (kv.second.dim() >= 2 ? decay : no_decay).push_back(kv.second);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr)
                                     .betas({o.beta1, o.beta2})
                                     .weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr)
                                        .betas({o.beta1, o.beta2})
                                        .weight_decay(0.0)));
  torch::optim::AdamW opt(std::move(groups));

  TrainResult res;
  Progress bar("train", o.steps, "step");
  double tail_loss = 0;
  int64_t tail_n = 0;
  const int64_t tail_from = o.steps - std::max<int64_t>(1, o.steps / 10);
  for (int64_t step = 0; step < o.steps; ++step) {
    auto inp = torch::empty({o.batch, o.ctx}, torch::kInt64);
    auto tgt = torch::empty({o.batch, o.ctx}, torch::kInt64);
    auto ia = inp.accessor<int64_t, 2>();
    auto ta = tgt.accessor<int64_t, 2>();
    for (int64_t b = 0; b < o.batch; ++b) {
      const int64_t off = pick(rng);
      ia[b][0] = bos;
      for (int64_t t = 0; t < o.ctx; ++t) {
        ta[b][t] = train_tokens[static_cast<size_t>(off + t)];
        if (t + 1 < o.ctx) ia[b][t + 1] = ta[b][t];
      }
    }
    const double lr = lr_at(o, step);
    for (auto& g : opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    auto logits = model.forward(inp);
    auto loss = torch::nn::functional::cross_entropy(logits.view({-1, model.spec().vocab}),
                                                     tgt.view({-1}));
    loss.backward();
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model.params_list(), o.grad_clip);
    opt.step();
    const double l = loss.item<double>();
    SLMC_CHECK(std::isfinite(l), "train: loss became ", l, " at step ", step,
               " (lower --lr or check the data)");
    if (step >= tail_from) {
      tail_loss += l;
      ++tail_n;
    }
    res.tokens_seen += o.batch * o.ctx;
    char extra[96];
    std::snprintf(extra, sizeof extra, "loss %.3f, lr %.2e, %.0f tok/s", l, lr,
                  static_cast<double>(res.tokens_seen) / std::max(1e-9, bar.elapsed_s()));
    bar.update(step + 1, extra);
    if (o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < o.steps &&
        !val_tokens.empty()) {
      const double v = heldout_nll(model, val_tokens, o.ctx, bos);
      std::fprintf(stderr, "%sstep %lld: held-out %.4f nats/token (ppl %.2f)\n",
                   "\r\x1b[K", static_cast<long long>(step + 1), v, std::exp(v));
    }
  }
  res.seconds = bar.elapsed_s();
  res.final_train_loss = tail_loss / static_cast<double>(std::max<int64_t>(1, tail_n));
  for (auto& kv : model.params()) kv.second.set_requires_grad(false);
  res.val_nll = heldout_nll(model, val_tokens, o.ctx, bos);
  char summary[160];
  std::snprintf(summary, sizeof summary, "%.0f tok/s, final train loss %.4f, held-out %.4f nats/token",
                static_cast<double>(res.tokens_seen) / std::max(1e-9, res.seconds),
                res.final_train_loss, res.val_nll);
  bar.finish(summary);
  return res;
}

}  // namespace slmc
