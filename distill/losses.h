// Distillation losses. Every function returns the mean over the N rows (positions) of a scalar,
// differentiable in the student's tensors; teacher tensors are treated as constants.
//
// Temperature: both distributions are softmax(logits / T), and the KL terms are multiplied by
// T^2 so their gradients keep the same scale as T changes (Hinton et al. 2015).
//
// Truncated teacher (offline cache): the teacher keeps only its top-k logits per position. The
// correction used here is "top-k plus one rest bucket": the cache also stores
// rest_lse = log sum_{i not in top-k} exp(z_i / T), the log of the mass the dropped tokens carry
// at the cache's temperature, computed from the full logits when the cache was made. Both
// distributions are then compared over k + 1 outcomes: the k kept tokens and "any other token",
// whose student probability is the student's exact mass outside the kept set. Nothing is
// renormalised, the teacher's distribution over the k + 1 outcomes is exact, and with k = vocab
// (no rest) the loss is the full-vocabulary loss.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace slmc::distill {

// student, teacher: (N, V) logits. T^2 * KL(p_teacher || p_student), mean over rows.
torch::Tensor forward_kl(const torch::Tensor& student, const torch::Tensor& teacher, double T);
// T^2 * KL(p_student || p_teacher), mean over rows.
torch::Tensor reverse_kl(const torch::Tensor& student, const torch::Tensor& teacher, double T);

// A teacher distribution truncated to its top k logits per row.
struct TopK {
  torch::Tensor values;    // (N, k) float32: raw teacher logits (temperature 1)
  torch::Tensor indices;   // (N, k) int64: their token ids, distinct within a row
  torch::Tensor rest_lse;  // (N) float32: log sum of exp(z / T) over the other ids; -inf if none
  double temperature = 1;  // the T rest_lse was computed at
  int64_t vocab = 0;       // full vocabulary size V
};

// The top k of `teacher` (N, V) logits at temperature T, with the rest bucket.
TopK top_k(const torch::Tensor& teacher, int64_t k, double T);

// The same losses against a truncated teacher (k + 1 outcomes, see above). `student` is (N, V);
// t.temperature must equal T.
torch::Tensor forward_kl_topk(const torch::Tensor& student, const TopK& t, double T);
torch::Tensor reverse_kl_topk(const torch::Tensor& student, const TopK& t, double T);

// Hidden states (N, D_s) and (N, D_t) after the student's projection to D_t: mean squared error
// per element, and 1 - cosine similarity per row.
torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher);
torch::Tensor hidden_cosine(const torch::Tensor& student, const torch::Tensor& teacher);

}  // namespace slmc::distill
