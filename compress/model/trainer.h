// The one training loop of slmc: AdamW, linear warmup then cosine decay, gradient clipping,
// gradient accumulation, held-out evaluation every N steps, checkpoints with a bit-exact resume,
// and data-parallel gradient all-reduce. What is minimised is pluggable (TrainLoss): `slmc train`
// uses cross-entropy on the data, `slmc distill` a weighted sum of distillation losses.
//
// Batches. `batch` windows per optimizer step are drawn globally (WindowSampler,
// train_state.h); with world size W each rank takes its contiguous slice of batch / W windows and
// runs it as (batch / W) / micro_batch forward/backward passes of micro_batch windows. Each
// micro-batch loss (a mean over its tokens) is scaled by 1 / (accumulation steps x W), so the
// summed gradient is the gradient of the mean loss over the global batch, whatever W and
// micro_batch are.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "compress/model/train_state.h"
#include "compress/model/transformer.h"

namespace slmc {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch = 16;          // windows per optimizer step, over all ranks
  int64_t micro_batch = 0;     // windows per forward pass on one rank; 0 = batch / world size
  int64_t ctx = 128;           // tokens per window, BOS included
  double lr = 3e-3;            // peak learning rate
  double min_lr_ratio = 0.1;   // cosine decays to lr * min_lr_ratio
  int64_t warmup = 50;         // linear warmup steps
  double weight_decay = 0.1;   // AdamW, on 2-D weights only
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;      // max global L2 norm; 0 disables
  uint64_t seed = 1;
  int64_t eval_every = 0;        // steps between held-out evaluations; 0 = only at the end
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0 = only the final one

  // Keys shared by `slmc train` configs and `slmc distill` options (STYLE 4).
  template <class V>
  void visit(V& v) {
    v("ctx", ctx, "training window in tokens, BOS included (distill: 0 = the teacher's max_seq)");
    v("steps", steps, "optimizer steps");
    v("batch", batch, "windows per optimizer step (global: all ranks, all micro-batches)");
    v("micro_batch", micro_batch,
      "windows per forward pass on one rank; 0 = batch / world size (accumulation when smaller)");
    v("lr", lr, "peak learning rate");
    v("min_lr_ratio", min_lr_ratio, "final lr as a share of the peak (cosine)");
    v("warmup", warmup, "linear warmup steps");
    v("weight_decay", weight_decay, "AdamW weight decay on 2-D weights");
    v("beta1", beta1, "AdamW beta1");
    v("beta2", beta2, "AdamW beta2");
    v("grad_clip", grad_clip, "max global gradient norm (0 = off)");
    v("seed", seed, "init and data order seed");
    v("eval_every", eval_every, "steps between held-out evaluations (0 = end only)");
    v("checkpoint_every", checkpoint_every,
      "steps between checkpoints (0 = only the final one; needs a checkpoint path)");
  }
  // Throws naming `origin` and the key for impossible values (shape-independent checks).
  void validate(const std::string& origin) const;
};

struct TrainResult {
  double final_train_loss = 0;  // mean over the last 10% of steps, nats/token
  double val_nll = 0;           // held-out nats/token (NaN if no held-out data)
  int64_t tokens_seen = 0;      // global, including steps before a resume
  int64_t steps_run = 0;        // optimizer steps this process ran (fewer after a resume)
  int64_t resumed_from = 0;     // step the run resumed from (0 = fresh start)
  double seconds = 0;           // wall time of this process's steps
  std::vector<std::pair<int64_t, double>> history;  // held-out (step, nats/token)
};

// One micro-batch as a loss sees it.
struct Batch {
  torch::Tensor inputs;          // (B, ctx) int64: BOS, stream[off .. off + ctx - 2]
  torch::Tensor targets;         // (B, ctx) int64: stream[off .. off + ctx - 1]
  std::vector<int64_t> offsets;  // stream offset of each row
};

// The (n, ctx) batch of the windows at `offsets` (each needs offset + ctx <= tokens.size()).
Batch make_batch(const std::vector<int32_t>& tokens, const int64_t* offsets, int64_t n, int64_t ctx,
                 int32_t bos);

// What training minimises.
class TrainLoss {
 public:
  virtual ~TrainLoss() = default;
  // The mean loss over the batch's B x ctx positions, differentiable in the model's parameters
  // (and extra_params()). Adds detached per-term means to `parts` ("kl", "ce", ...), which the
  // progress line shows.
  virtual torch::Tensor loss(const Transformer& model, const Batch& batch,
                             std::map<std::string, double>* parts) = 0;
  // Trainable tensors the loss owns (e.g. hidden-state projections): optimised and checkpointed
  // with the model, never written into it. Names must be stable across runs.
  virtual std::map<std::string, torch::Tensor> extra_params() { return {}; }
};

// Next-token cross-entropy on the data: what `slmc train` minimises.
class CrossEntropyLoss : public TrainLoss {
 public:
  torch::Tensor loss(const Transformer& model, const Batch& batch,
                     std::map<std::string, double>* parts) override;
};

// The collective operations data parallelism needs (distill/ implements it on c10d Gloo).
class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Sums a contiguous CPU tensor over all ranks in place; every rank receives the same values.
  virtual void allreduce_sum(torch::Tensor& t) = 0;
};

struct TrainSetup {
  TrainLoss* loss = nullptr;  // nullptr: cross-entropy on the data
  WindowSampler::Order order = WindowSampler::Order::kRandomOffsets;
  Collective* comm = nullptr;  // nullptr: one process
  // Checkpoint file (train_state.h). Written every checkpoint_every steps and at the end, by
  // rank 0 only, atomically. "" = none.
  std::string checkpoint;
  bool resume = false;      // continue from `checkpoint`, which must exist
  // What must not change across a resume (resolved options, input hashes): a checkpoint with a
  // different fingerprint is refused, naming the first differing line.
  std::string fingerprint;
  std::string label = "train";  // progress bar label
};

double lr_at(const TrainOptions& o, int64_t step);

// Mean next-token NLL (nats) of `tokens` cut into BOS-led windows of `ctx` (windows.h). With a
// collective, each rank evaluates every world-th window and the sums are all-reduced.
double heldout_nll(const Transformer& model, const std::vector<int32_t>& tokens, int64_t ctx,
                   int32_t bos, Collective* comm = nullptr);

TrainResult train(Transformer& model, const std::vector<int32_t>& train_tokens,
                  const std::vector<int32_t>& val_tokens, const TrainOptions& opt, int32_t bos,
                  const TrainSetup& setup = {});

// Throws the error a resume from `checkpoint` would throw for a missing or unreadable file or a
// fingerprint that differs, before any work (commands call it before printing their plan).
void check_resumable(const std::string& checkpoint, const std::string& fingerprint);

// The first line where two fingerprints differ, "" if they are equal.
std::string first_difference(const std::string& a, const std::string& b);

}  // namespace slmc
