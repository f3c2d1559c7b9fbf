// Distillation as a TrainLoss plugged into the one trainer (compress/model/trainer.h): the
// weighted sum of forward KL, reverse KL, cross-entropy on the data and a hidden-state loss, with
// the teacher run online or read from a top-k cache.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compress/model/trainer.h"
#include "distill/options.h"
#include "distill/topk_cache.h"

namespace slmc::distill {

// Student layer j is matched to teacher layer pairs[j] for the hidden-state loss: keep_layers
// when the student was made from the teacher, else evenly spread (round((j+1) Lt / Ls) - 1).
std::vector<int64_t> matched_layers(int64_t student_layers, int64_t teacher_layers,
                                    const std::vector<int64_t>& keep);

class DistillLoss : public TrainLoss {
 public:
  // At most one of `teacher` (online) and `cache` (offline) is non-null, and one is when a KL or
  // hidden-state weight is > 0 (with cross-entropy alone neither is used); both outlive the loss.
  // `vocab_map` (student id -> teacher id or -1; empty = same vocabulary) needs the teacher
  // online. `layers` is matched_layers(); `seed` initialises the hidden projections.
  DistillLoss(const DistillOptions& o, const Transformer* teacher, const TopKCacheReader* cache,
              const ModelSpec& student, std::vector<int32_t> vocab_map,
              std::vector<int64_t> layers, int64_t ctx, uint64_t seed);

  torch::Tensor loss(const Transformer& student, const Batch& batch,
                     std::map<std::string, double>* parts) override;
  std::map<std::string, torch::Tensor> extra_params() override { return proj_; }

 private:
  // The teacher's truncated distribution for the batch's windows, from the cache.
  struct TopKBatch;
  TopKBatch cached_teacher(const Batch& b) const;

  DistillOptions o_;
  const Transformer* teacher_;
  const TopKCacheReader* cache_;
  std::vector<int64_t> layers_;  // teacher layer per student layer (hidden loss)
  int64_t ctx_;
  torch::Tensor map_student_, map_teacher_;  // (M) int64: mapped ids; undefined = identity
  torch::Tensor teacher_ids_;                // (V_s) int64: teacher id of every student id
  std::map<std::string, torch::Tensor> proj_;  // "hidden_proj.<j>": (D_t, D_s)
};

}  // namespace slmc::distill
