#include "distill/losses.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "compress/core/error.h"

namespace slmc::distill {

namespace {

// log of the smallest normal float: where a teacher's rest mass underflowed to 0, reverse KL
// uses this instead of log 0 (an infinite penalty for any student mass outside the top k).
constexpr double kLogFloor = -87.3;

void check_pair(const torch::Tensor& s, const torch::Tensor& t, const char* what) {
  SLMC_CHECK(s.dim() == 2 && t.sizes() == s.sizes(), what, ": student logits ", s.sizes(),
             " and teacher logits ", t.sizes(), " must both be (N, V)");
}

void check_topk(const torch::Tensor& s, const TopK& t, double T, const char* what) {
  SLMC_CHECK(s.dim() == 2 && s.size(1) == t.vocab && t.values.dim() == 2 &&
                 t.values.size(0) == s.size(0) && t.indices.sizes() == t.values.sizes() &&
                 t.rest_lse.dim() == 1 && t.rest_lse.size(0) == s.size(0),
             what, ": student ", s.sizes(), " does not fit a top-k teacher ", t.values.sizes(),
             " over vocab ", t.vocab);
  SLMC_CHECK(t.temperature == T, what, ": the teacher's rest bucket was computed at temperature ",
             t.temperature, ", the loss runs at ", T);
}

// Student log-probabilities at the kept ids (N, k) and of the rest bucket (N); the rest is
// undefined when k == V (no rest).
struct StudentBuckets {
  torch::Tensor kept, rest;
};

StudentBuckets student_buckets(const torch::Tensor& student, const TopK& t, double T) {
  auto z = student / T;
  auto lse = torch::logsumexp(z, 1);  // (N)
  StudentBuckets b;
  b.kept = z.gather(1, t.indices) - lse.unsqueeze(1);
  if (t.values.size(1) < t.vocab) {
    auto masked = z.scatter(1, t.indices, -std::numeric_limits<float>::infinity());
    b.rest = torch::logsumexp(masked, 1) - lse;
  }
  return b;
}

// Teacher log-probabilities of the kept ids (N, k) and of the rest bucket (N, -inf if empty).
std::pair<torch::Tensor, torch::Tensor> teacher_buckets(const TopK& t, double T) {
  auto zt = t.values / T;
  auto lse = torch::logsumexp(torch::cat({zt, t.rest_lse.unsqueeze(1)}, 1), 1);
  return {zt - lse.unsqueeze(1), t.rest_lse - lse};
}

}  // namespace

torch::Tensor forward_kl(const torch::Tensor& student, const torch::Tensor& teacher, double T) {
  check_pair(student, teacher, "forward_kl");
  auto ls = torch::log_softmax(student / T, 1);
  auto lt = torch::log_softmax(teacher.detach() / T, 1);
  return (lt.exp() * (lt - ls)).sum(1).mean() * (T * T);
}

torch::Tensor reverse_kl(const torch::Tensor& student, const torch::Tensor& teacher, double T) {
  check_pair(student, teacher, "reverse_kl");
  auto ls = torch::log_softmax(student / T, 1);
  auto lt = torch::log_softmax(teacher.detach() / T, 1);
  return (ls.exp() * (ls - lt)).sum(1).mean() * (T * T);
}

TopK top_k(const torch::Tensor& teacher, int64_t k, double T) {
  SLMC_CHECK(teacher.dim() == 2 && k >= 1 && k <= teacher.size(1), "top_k: k ", k,
             " must be in [1, vocab ", teacher.dim() == 2 ? teacher.size(1) : 0, "]");
  torch::NoGradGuard no_grad;
  TopK out;
  auto z = teacher.to(torch::kFloat32);
  auto top = z.topk(k, 1);
  out.values = std::get<0>(top).contiguous();
  out.indices = std::get<1>(top).contiguous();
  out.temperature = T;
  out.vocab = z.size(1);
  if (k == z.size(1)) {
    out.rest_lse = torch::full({z.size(0)}, -std::numeric_limits<float>::infinity());
  } else {
    auto masked = (z / T).scatter(1, out.indices, -std::numeric_limits<float>::infinity());
    out.rest_lse = torch::logsumexp(masked, 1).contiguous();
  }
  return out;
}

torch::Tensor forward_kl_topk(const torch::Tensor& student, const TopK& t, double T) {
  check_topk(student, t, T, "forward_kl (top-k)");
  const StudentBuckets s = student_buckets(student, t, T);
  auto [lt, lt_rest] = teacher_buckets(t, T);
  auto per_row = (lt.exp() * (lt - s.kept)).sum(1);
  if (s.rest.defined()) {
    // p log(p / q) is 0 where the teacher's rest mass p is 0.
    auto p = lt_rest.exp();
    auto has = p > 0;
    auto safe_lt = torch::where(has, lt_rest, torch::zeros_like(lt_rest));
    per_row = per_row + torch::where(has, p * (safe_lt - s.rest), torch::zeros_like(p));
  }
  return per_row.mean() * (T * T);
}

torch::Tensor reverse_kl_topk(const torch::Tensor& student, const TopK& t, double T) {
  check_topk(student, t, T, "reverse_kl (top-k)");
  const StudentBuckets s = student_buckets(student, t, T);
  auto [lt, lt_rest] = teacher_buckets(t, T);
  auto per_row = (s.kept.exp() * (s.kept - lt)).sum(1);
  if (s.rest.defined())
    per_row = per_row + s.rest.exp() * (s.rest - lt_rest.clamp_min(kLogFloor));
  return per_row.mean() * (T * T);
}

torch::Tensor hidden_mse(const torch::Tensor& student, const torch::Tensor& teacher) {
  SLMC_CHECK(student.sizes() == teacher.sizes(), "hidden_mse: student ", student.sizes(),
             " and teacher ", teacher.sizes(), " differ");
  return torch::mse_loss(student, teacher.detach());
}

torch::Tensor hidden_cosine(const torch::Tensor& student, const torch::Tensor& teacher) {
  SLMC_CHECK(student.sizes() == teacher.sizes(), "hidden_cosine: student ", student.sizes(),
             " and teacher ", teacher.sizes(), " differ");
  return (1 - torch::cosine_similarity(student, teacher.detach(), -1, 1e-8)).mean();
}

}  // namespace slmc::distill
