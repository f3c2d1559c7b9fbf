// Training from scratch with cross-entropy: AdamW, linear warmup then cosine decay, gradient
// clipping, random windows of the token stream each starting with BOS (the layout `eval` uses).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "compress/model/transformer.h"

namespace slmc {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch = 16;          // windows per step
  int64_t ctx = 128;           // tokens per window, BOS included
  double lr = 3e-3;            // peak learning rate
  double min_lr_ratio = 0.1;   // cosine decays to lr * min_lr_ratio
  int64_t warmup = 50;         // linear warmup steps
  double weight_decay = 0.1;   // AdamW, on 2-D weights only
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;      // max global L2 norm; 0 disables
  uint64_t seed = 1;
  int64_t eval_every = 0;      // steps between held-out evaluations; 0 = only at the end
};

struct TrainResult {
  double final_train_loss = 0;  // mean over the last 10% of steps, nats/token
  double val_nll = 0;           // held-out nats/token (NaN if no held-out data)
  int64_t tokens_seen = 0;
  double seconds = 0;
};

double lr_at(const TrainOptions& o, int64_t step);

// Mean next-token NLL (nats) of `tokens` cut into BOS-led windows of `ctx` (windows.h).
double heldout_nll(const Transformer& model, const std::vector<int32_t>& tokens, int64_t ctx,
                   int32_t bos);

TrainResult train(Transformer& model, const std::vector<int32_t>& train_tokens,
                  const std::vector<int32_t>& val_tokens, const TrainOptions& opt, int32_t bos);

}  // namespace slmc
