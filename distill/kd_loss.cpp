#include "distill/kd_loss.h"

#include <torch/torch.h>

#include <cmath>

#include "compress/core/error.h"
#include "distill/losses.h"

namespace slmc::distill {

std::vector<int64_t> matched_layers(int64_t student_layers, int64_t teacher_layers,
                                    const std::vector<int64_t>& keep) {
  if (static_cast<int64_t>(keep.size()) == student_layers) return keep;
  std::vector<int64_t> out;
  for (int64_t j = 0; j < student_layers; ++j)
    out.push_back(std::max<int64_t>(
        0, static_cast<int64_t>(std::llround(static_cast<double>(j + 1) *
                                             static_cast<double>(teacher_layers) /
                                             static_cast<double>(student_layers))) -
               1));
  return out;
}

struct DistillLoss::TopKBatch {
  TopK t;
};

DistillLoss::DistillLoss(const DistillOptions& o, const Transformer* teacher,
                         const TopKCacheReader* cache, const ModelSpec& student,
                         std::vector<int32_t> vocab_map, std::vector<int64_t> layers, int64_t ctx,
                         uint64_t seed)
    : o_(o), teacher_(teacher), cache_(cache), layers_(std::move(layers)), ctx_(ctx) {
  const bool teacher_terms = o.kl > 0 || o.reverse_kl > 0 || o.hidden > 0;
  SLMC_CHECK(teacher == nullptr || cache == nullptr,
             "distill: a teacher and a top-k cache were both given to the loss");
  SLMC_CHECK(!teacher_terms || teacher != nullptr || cache != nullptr,
             "distill: the KL and hidden-state terms need a teacher or a top-k cache");
  if (!teacher_terms) {  // cross-entropy alone
    teacher_ = nullptr;
    cache_ = nullptr;
  }
  if (!vocab_map.empty()) {
    SLMC_CHECK(teacher != nullptr, o.vocab_map, ": a vocabulary map needs the teacher online, ",
               "not a top-k cache");
    SLMC_CHECK(static_cast<int64_t>(vocab_map.size()) == student.vocab, o.vocab_map, ": ",
               vocab_map.size(), " entries for a student vocabulary of ", student.vocab);
    std::vector<int64_t> s, t, all;
    for (size_t i = 0; i < vocab_map.size(); ++i) {
      all.push_back(vocab_map[i]);
      if (vocab_map[i] >= 0) {
        s.push_back(static_cast<int64_t>(i));
        t.push_back(vocab_map[i]);
      }
    }
    map_student_ = torch::tensor(s, torch::kInt64);
    map_teacher_ = torch::tensor(t, torch::kInt64);
    teacher_ids_ = torch::tensor(all, torch::kInt64);
  }
  if (o.hidden > 0) {
    SLMC_CHECK(teacher != nullptr, "the hidden-state loss (hidden ", o.hidden,
               ") needs the teacher online: a top-k cache holds no hidden states");
    SLMC_CHECK(static_cast<int64_t>(layers_.size()) == student.n_layer(),
               "distill: hidden-state layer matching has ", layers_.size(), " entries for ",
               student.n_layer(), " student layers");
    const int64_t ds = student.d_model, dt = teacher->spec().d_model;
    if (ds != dt) {
      at::Generator gen = at::detail::createCPUGenerator(seed);
      for (int64_t j = 0; j < student.n_layer(); ++j)
        proj_["hidden_proj." + std::to_string(j)] =
            at::randn({dt, ds}, gen, torch::kFloat32) / std::sqrt(static_cast<double>(ds));
    }
  }
}

DistillLoss::TopKBatch DistillLoss::cached_teacher(const Batch& b) const {
  const TopKCacheHeader& h = cache_->header();
  const int64_t B = static_cast<int64_t>(b.offsets.size()), k = h.k;
  TopKBatch out;
  out.t.values = torch::empty({B * ctx_, k}, torch::kFloat32);
  out.t.indices = torch::empty({B * ctx_, k}, torch::kInt64);
  out.t.rest_lse = torch::empty({B * ctx_}, torch::kFloat32);
  out.t.temperature = h.temperature;
  out.t.vocab = h.vocab;
  float* v = out.t.values.data_ptr<float>();
  int64_t* idx = out.t.indices.data_ptr<int64_t>();
  float* rest = out.t.rest_lse.data_ptr<float>();
  for (int64_t r = 0; r < B; ++r) {
    const int64_t off = b.offsets[static_cast<size_t>(r)];
    SLMC_CHECK(off % ctx_ == 0, cache_->path(), ": window offset ", off,
               " is not a cached window (a multiple of ctx ", ctx_, ")");
    const TopKWindow w = cache_->read(off / ctx_);
    std::copy(w.values.begin(), w.values.end(), v + r * ctx_ * k);
    std::copy(w.indices.begin(), w.indices.end(), idx + r * ctx_ * k);
    std::copy(w.rest_lse.begin(), w.rest_lse.end(), rest + r * ctx_);
  }
  return out;
}

torch::Tensor DistillLoss::loss(const Transformer& student, const Batch& b,
                                std::map<std::string, double>* parts) {
  const bool want_hidden = o_.hidden > 0;
  std::vector<torch::Tensor> hs;
  auto x = student.embed(b.inputs);
  for (int64_t i = 0; i < student.spec().n_layer(); ++i) {
    x = student.layer(i, x);
    if (want_hidden) hs.push_back(x);
  }
  const int64_t V = student.spec().vocab;
  auto s2 = student.head(x).view({-1, V});  // (B*T, V)
  torch::Tensor total = torch::zeros({}, torch::kFloat32);
  auto add = [&](const char* name, double w, const torch::Tensor& term) {
    (*parts)[name] += term.item<double>();
    total = total + w * term;
  };
  if (o_.ce > 0)
    add("ce", o_.ce, torch::nn::functional::cross_entropy(s2, b.targets.view({-1})));
  const double T = o_.temperature;
  if (teacher_ == nullptr && cache_ == nullptr) return total;
  if (cache_ != nullptr) {
    const TopKBatch t = cached_teacher(b);
    if (o_.kl > 0) add("kl", o_.kl, forward_kl_topk(s2, t.t, T));
    if (o_.reverse_kl > 0) add("rkl", o_.reverse_kl, reverse_kl_topk(s2, t.t, T));
    return total;
  }
  torch::Tensor t2;
  std::vector<torch::Tensor> th;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor in = b.inputs;
    if (teacher_ids_.defined()) {
      in = teacher_ids_.index_select(0, b.inputs.reshape({-1})).view(b.inputs.sizes());
      SLMC_CHECK(in.min().item<int64_t>() >= 0, o_.vocab_map,
                 ": the data holds a student token the teacher does not have (mapped to -1)");
    }
    auto y = teacher_->embed(in);
    for (int64_t i = 0; i < teacher_->spec().n_layer(); ++i) {
      y = teacher_->layer(i, y);
      if (want_hidden) th.push_back(y);
    }
    t2 = teacher_->head(y).view({-1, teacher_->spec().vocab});
  }
  torch::Tensor ss = s2, ts = t2;
  if (map_student_.defined()) {
    ss = s2.index_select(1, map_student_);
    ts = t2.index_select(1, map_teacher_);
  }
  if (o_.kl > 0) add("kl", o_.kl, forward_kl(ss, ts, T));
  if (o_.reverse_kl > 0) add("rkl", o_.reverse_kl, reverse_kl(ss, ts, T));
  if (want_hidden) {
    torch::Tensor h = torch::zeros({}, torch::kFloat32);
    for (size_t j = 0; j < hs.size(); ++j) {
      auto sj = hs[j].reshape({-1, hs[j].size(-1)});
      auto it = proj_.find("hidden_proj." + std::to_string(j));
      if (it != proj_.end()) sj = torch::linear(sj, it->second);
      const torch::Tensor& tj = th[static_cast<size_t>(layers_[j])];
      auto tj2 = tj.reshape({-1, tj.size(-1)});
      h = h + (o_.hidden_loss == "cosine" ? hidden_cosine(sj, tj2) : hidden_mse(sj, tj2));
    }
    add("hidden", o_.hidden, h / static_cast<double>(hs.size()));
  }
  return total;
}

}  // namespace slmc::distill
