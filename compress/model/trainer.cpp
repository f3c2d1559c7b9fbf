#include "compress/model/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "compress/core/error.h"
#include "compress/core/progress.h"
#include "compress/io/safetensors.h"
#include "compress/model/windows.h"

namespace slmc {

void TrainOptions::validate(const std::string& o) const {
  SLMC_CHECK(ctx >= 2, o, ": ctx ", ctx, " < 2");
  SLMC_CHECK(steps > 0, o, ": steps ", steps, " must be > 0");
  SLMC_CHECK(batch > 0, o, ": batch ", batch, " must be > 0");
  SLMC_CHECK(micro_batch >= 0, o, ": micro_batch ", micro_batch, " < 0");
  SLMC_CHECK(lr > 0 && lr < 1, o, ": lr ", lr, " must be in (0, 1)");
  SLMC_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, o, ": min_lr_ratio ", min_lr_ratio,
             " must be in [0, 1]");
  SLMC_CHECK(warmup >= 0, o, ": warmup ", warmup, " < 0");
  SLMC_CHECK(weight_decay >= 0, o, ": weight_decay ", weight_decay, " < 0");
  SLMC_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, o,
             ": beta1/beta2 must be in [0, 1)");
  SLMC_CHECK(grad_clip >= 0, o, ": grad_clip ", grad_clip, " < 0");
  SLMC_CHECK(eval_every >= 0, o, ": eval_every ", eval_every, " < 0");
  SLMC_CHECK(checkpoint_every >= 0, o, ": checkpoint_every ", checkpoint_every, " < 0");
}

double lr_at(const TrainOptions& o, int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup));
  const double t = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  const double min_lr = o.lr * o.min_lr_ratio;
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

double heldout_nll(const Transformer& model, const std::vector<int32_t>& tokens, int64_t ctx,
                   int32_t bos, Collective* comm) {
  if (tokens.empty()) return std::nan("");
  std::vector<Window> windows = bos_windows(tokens, ctx, bos);
  if (comm != nullptr) {
    std::vector<Window> mine;
    for (size_t i = static_cast<size_t>(comm->rank()); i < windows.size();
         i += static_cast<size_t>(comm->world()))
      mine.push_back(std::move(windows[i]));
    windows = std::move(mine);
  }
  double sum = 0;
  int64_t n = 0;
  const int64_t vocab = model.spec().vocab;
  for_each_window_logits(model, windows, 8,
                         [&](const float* logits, const int32_t* targets, int64_t len) {
                           for (int64_t t = 0; t < len; ++t)
                             sum += token_nll(logits + t * vocab, vocab, targets[t]);
                           n += len;
                         });
  if (comm != nullptr) {
    auto t = torch::tensor({sum, static_cast<double>(n)}, torch::kFloat64);
    comm->allreduce_sum(t);
    sum = t[0].item<double>();
    n = static_cast<int64_t>(t[1].item<double>());
  }
  return sum / static_cast<double>(n);
}

torch::Tensor CrossEntropyLoss::loss(const Transformer& model, const Batch& b,
                                     std::map<std::string, double>* parts) {
  auto logits = model.forward(b.inputs);
  auto l = torch::nn::functional::cross_entropy(logits.view({-1, model.spec().vocab}),
                                                b.targets.view({-1}));
  (*parts)["ce"] += l.item<double>();
  return l;
}

Batch make_batch(const std::vector<int32_t>& tokens, const int64_t* offsets, int64_t n,
                 int64_t ctx, int32_t bos) {
  Batch b;
  b.inputs = torch::empty({n, ctx}, torch::kInt64);
  b.targets = torch::empty({n, ctx}, torch::kInt64);
  auto ia = b.inputs.accessor<int64_t, 2>();
  auto ta = b.targets.accessor<int64_t, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t off = offsets[r];
    b.offsets.push_back(off);
    ia[r][0] = bos;
    for (int64_t t = 0; t < ctx; ++t) {
      ta[r][t] = tokens[static_cast<size_t>(off + t)];
      if (t + 1 < ctx) ia[r][t + 1] = ta[r][t];
    }
  }
  return b;
}

std::string first_difference(const std::string& a, const std::string& b) {
  if (a == b) return "";
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(sa, la));
    const bool gb = static_cast<bool>(std::getline(sb, lb));
    if (!ga) la = "(nothing)";
    if (!gb) lb = "(nothing)";
    if (la != lb || (!ga && !gb)) return "'" + la + "' vs '" + lb + "'";
  }
}

namespace {

// A trainable tensor with its checkpoint name ("model.<canonical>" or "loss.<name>").
struct Trainable {
  std::string name;
  torch::Tensor t;
};

std::string adam_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

HostTensor to_host_tensor(const torch::Tensor& t) {
  auto c = t.detach().contiguous().to(torch::kFloat32);
  HostTensor h;
  h.shape = c.sizes().vec();
  h.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return h;
}

void write_checkpoint(const std::string& path, const std::vector<Trainable>& params,
                      torch::optim::AdamW& opt, const TrainState& st) {
  TensorMap tensors;
  for (const Trainable& p : params) {
    tensors["param/" + p.name] = to_host_tensor(p.t);
    auto it = opt.state().find(adam_key(p.t));
    if (it == opt.state().end()) continue;  // never stepped
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    tensors["adam_m/" + p.name] = to_host_tensor(s.exp_avg());
    tensors["adam_v/" + p.name] = to_host_tensor(s.exp_avg_sq());
  }
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  write_safetensors(path, tensors, DType::kF32, {{kTrainStateKey, st.to_json()}});
}

// Copies `name` of the checkpoint into `dst`, which must have the same shape.
void load_into(const SafetensorsFile& f, const std::string& name, torch::Tensor& dst) {
  SLMC_CHECK(f.has(name), f.path(), ": checkpoint has no tensor '", name, "'");
  const HostTensor h = f.read(name);
  SLMC_CHECK(h.shape == dst.sizes().vec(), f.path(), ": checkpoint tensor '", name, "' has shape ",
             h.shape_str(), ", the run expects ", shape_str(dst.sizes().vec()));
  torch::NoGradGuard no_grad;
  dst.copy_(torch::from_blob(const_cast<float*>(h.data.data()), h.shape, torch::kFloat32));
}

// The checkpoint's state, checked against the run's fingerprint.
TrainState checkpoint_state(const SafetensorsFile& f, const std::string& fingerprint) {
  auto meta = f.metadata().find(kTrainStateKey);
  SLMC_CHECK(meta != f.metadata().end(), f.path(), ": not an slmc checkpoint (no ", kTrainStateKey,
             " metadata)");
  TrainState st = TrainState::from_json(meta->second, f.path());
  const std::string diff = first_difference(st.fingerprint, fingerprint);
  SLMC_CHECK(diff.empty(), f.path(), ": the checkpoint was written by a run with other options or ",
             "inputs (", diff, "); resume with the same ones or start afresh");
  return st;
}

SafetensorsFile open_checkpoint(const std::string& path) {
  std::error_code ec;
  SLMC_CHECK(std::filesystem::is_regular_file(path, ec), path,
             ": no checkpoint to resume from (--resume needs the file an earlier run wrote)");
  return SafetensorsFile(path);
}

TrainState read_checkpoint(const std::string& path, const std::vector<Trainable>& params,
                           torch::optim::AdamW& opt, const std::string& fingerprint) {
  const SafetensorsFile f = open_checkpoint(path);
  TrainState st = checkpoint_state(f, fingerprint);
  size_t expected = 0;
  for (const Trainable& p : params) {
    torch::Tensor t = p.t;
    load_into(f, "param/" + p.name, t);
    ++expected;
    auto steps = st.adam_steps.find(p.name);
    if (steps == st.adam_steps.end()) continue;
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(steps->second);
    s->exp_avg(torch::zeros_like(p.t));
    s->exp_avg_sq(torch::zeros_like(p.t));
    torch::Tensor m = s->exp_avg(), v = s->exp_avg_sq();
    load_into(f, "adam_m/" + p.name, m);
    load_into(f, "adam_v/" + p.name, v);
    expected += 2;
    opt.state()[adam_key(p.t)] = std::move(s);
  }
  SLMC_CHECK(st.adam_steps.size() <= params.size() && f.entries().size() == expected, path,
             ": checkpoint holds ", f.entries().size(), " tensors, the run has ", expected,
             " (a different model or loss)");
  return st;
}

std::string rng_state_hex() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto s = gen.get_state();
  return to_hex(s.data_ptr<uint8_t>(), static_cast<size_t>(s.numel()));
}

void restore_rng(const std::string& hex, const std::string& origin) {
  const std::vector<uint8_t> bytes = from_hex(hex, origin + ": torch_rng");
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto cur = gen.get_state();
  SLMC_CHECK(static_cast<int64_t>(bytes.size()) == cur.numel(), origin, ": torch_rng holds ",
             bytes.size(), " bytes, LibTorch's generator state has ", cur.numel());
  auto t = torch::from_blob(const_cast<uint8_t*>(bytes.data()), {cur.numel()}, torch::kUInt8).clone();
  gen.set_state(t);
}

}  // namespace

void check_resumable(const std::string& checkpoint, const std::string& fingerprint) {
  checkpoint_state(open_checkpoint(checkpoint), fingerprint);
}

TrainResult train(Transformer& model, const std::vector<int32_t>& train_tokens,
                  const std::vector<int32_t>& val_tokens, const TrainOptions& o, int32_t bos,
                  const TrainSetup& setup) {
  o.validate(setup.label);
  SLMC_CHECK(o.ctx <= model.spec().max_seq, setup.label, ": ctx ", o.ctx, " exceeds the model's max_seq ",
             model.spec().max_seq);
  Collective* comm = setup.comm;
  const int world = comm ? comm->world() : 1, rank = comm ? comm->rank() : 0;
  SLMC_CHECK(o.batch % world == 0, setup.label, ": world size ", world,
             " does not divide the global batch ", o.batch);
  const int64_t per_rank = o.batch / world;
  const int64_t micro = o.micro_batch > 0 ? o.micro_batch : per_rank;
  SLMC_CHECK(per_rank % micro == 0, setup.label, ": micro_batch ", micro,
             " does not divide the per-rank batch ", per_rank, " (batch ", o.batch, " / world ",
             world, ")");
  const int64_t accum = per_rank / micro;
  SLMC_CHECK(!setup.resume || !setup.checkpoint.empty(), setup.label,
             ": resuming needs a checkpoint path");
  WindowSampler sampler(setup.order, static_cast<int64_t>(train_tokens.size()), o.ctx, o.seed);
  torch::manual_seed(o.seed);

  CrossEntropyLoss ce;
  TrainLoss& objective = setup.loss ? *setup.loss : ce;
  std::vector<Trainable> params;
  for (auto& kv : model.params()) params.push_back({"model." + kv.first, kv.second});
  for (auto& kv : objective.extra_params()) params.push_back({"loss." + kv.first, kv.second});
  std::vector<torch::Tensor> decay, no_decay, all;
  for (Trainable& p : params) {
    p.t.set_requires_grad(true);
    // Defined zero gradients from the start: every backward accumulates into a buffer, in a
    // fresh run and in a resumed one alike (an undefined gradient would be assigned instead,
    // which keeps the sign of a -0 that accumulation turns into +0).
    p.t.mutable_grad() = torch::zeros_like(p.t);
    (p.t.dim() >= 2 ? decay : no_decay).push_back(p.t);
    all.push_back(p.t);
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

  TrainState st;
  if (setup.resume) {
    st = read_checkpoint(setup.checkpoint, params, opt, setup.fingerprint);
    SLMC_CHECK(st.step <= o.steps, setup.checkpoint, ": checkpoint is at step ", st.step,
               ", past the run's ", o.steps, " steps");
    sampler.restore(st.sampler, setup.checkpoint);
    restore_rng(st.torch_rng, setup.checkpoint);
    if (rank == 0)
      std::fprintf(stderr, "%s: resuming from %s at step %lld\n", setup.label.c_str(),
                   setup.checkpoint.c_str(), static_cast<long long>(st.step));
  }
  st.fingerprint = setup.fingerprint;
  auto save = [&] {
    if (setup.checkpoint.empty() || rank != 0) return;
    st.sampler = sampler.state();
    st.torch_rng = rng_state_hex();
    st.adam_steps.clear();
    for (const Trainable& p : params) {
      auto it = opt.state().find(adam_key(p.t));
      if (it != opt.state().end())
        st.adam_steps[p.name] =
            static_cast<torch::optim::AdamWParamState&>(*it->second).step();
    }
    write_checkpoint(setup.checkpoint, params, opt, st);
  };

  TrainResult res;
  res.resumed_from = st.step;
  Progress bar(setup.label, o.steps, "step");
  const int64_t tail_from = o.steps - std::max<int64_t>(1, o.steps / 10);
  const int64_t step_tokens = o.batch * o.ctx;
  for (int64_t step = st.step; step < o.steps; ++step) {
    const std::vector<int64_t> offsets = sampler.next(o.batch);
    const double lr = lr_at(o, step);
    for (auto& g : opt.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    std::map<std::string, double> parts;
    double loss_sum = 0;
    const double scale = 1.0 / static_cast<double>(accum * world);
    for (int64_t a = 0; a < accum; ++a) {
      const Batch b =
          make_batch(train_tokens, offsets.data() + rank * per_rank + a * micro, micro, o.ctx, bos);
      auto l = objective.loss(model, b, &parts);
      (l * scale).backward();
      loss_sum += l.item<double>();
    }
    std::vector<std::string> part_names;
    for (const auto& kv : parts) part_names.push_back(kv.first);
    if (comm != nullptr) {
      // One all-reduce of every gradient plus the loss figures for the log line.
      std::vector<torch::Tensor> flat;
      for (torch::Tensor& p : all) flat.push_back(p.grad().reshape({-1}));
      std::vector<float> stats{static_cast<float>(loss_sum)};
      for (const auto& kv : parts) stats.push_back(static_cast<float>(kv.second));
      flat.push_back(torch::from_blob(stats.data(), {static_cast<int64_t>(stats.size())},
                                      torch::kFloat32));
      torch::Tensor buf = torch::cat(flat);
      comm->allreduce_sum(buf);
      int64_t at = 0;
      for (torch::Tensor& p : all) {
        const int64_t n = p.numel();
        p.mutable_grad().copy_(buf.narrow(0, at, n).view(p.sizes()));
        at += n;
      }
      loss_sum = buf[at].item<double>();
      for (size_t i = 0; i < part_names.size(); ++i)
        parts[part_names[i]] = buf[at + 1 + static_cast<int64_t>(i)].item<double>();
    }
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(all, o.grad_clip);
    opt.step();
    const double l = loss_sum / static_cast<double>(accum * world);
    SLMC_CHECK(std::isfinite(l), setup.label, ": loss became ", l, " at step ", step,
               " (lower --lr or check the data)");
    if (step >= tail_from) {
      st.tail_loss += l;
      ++st.tail_n;
    }
    st.step = step + 1;
    st.tokens_seen += step_tokens;
    ++res.steps_run;
    if (rank == 0) {
      std::string extra;
      char buf[96];
      std::snprintf(buf, sizeof buf, "loss %.3f", l);
      extra = buf;
      if (part_names.size() > 1) {
        extra += " (";
        for (size_t i = 0; i < part_names.size(); ++i) {
          std::snprintf(buf, sizeof buf, "%s%s %.3f", i ? ", " : "", part_names[i].c_str(),
                        parts[part_names[i]] / static_cast<double>(accum * world));
          extra += buf;
        }
        extra += ")";
      }
      std::snprintf(buf, sizeof buf, ", lr %.2e, %.0f tok/s", lr,
                    static_cast<double>(res.steps_run * step_tokens) /
                        std::max(1e-9, bar.elapsed_s()));
      extra += buf;
      bar.update(step + 1, extra);
    }
    if (o.eval_every > 0 && (step + 1) % o.eval_every == 0 && step + 1 < o.steps &&
        !val_tokens.empty()) {
      torch::NoGradGuard no_grad;
      const double v = heldout_nll(model, val_tokens, o.ctx, bos, comm);
      st.history.emplace_back(step + 1, v);
      if (rank == 0)
        std::fprintf(stderr, "%sstep %lld: held-out %.4f nats/token (ppl %.3f)\n", "\r\x1b[K",
                     static_cast<long long>(step + 1), v, std::exp(v));
    }
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps)
      save();
  }
  res.seconds = bar.elapsed_s();
  for (Trainable& p : params) {
    p.t.mutable_grad() = torch::Tensor();
    p.t.set_requires_grad(false);
  }
  res.val_nll = heldout_nll(model, val_tokens, o.ctx, bos, comm);
  if (!val_tokens.empty() && (st.history.empty() || st.history.back().first != o.steps))
    st.history.emplace_back(o.steps, res.val_nll);
  save();
  res.final_train_loss = st.tail_loss / static_cast<double>(std::max<int64_t>(1, st.tail_n));
  res.tokens_seen = st.tokens_seen;
  res.history = st.history;
  char summary[200];
  std::snprintf(summary, sizeof summary,
                "%.0f tok/s, final train loss %.4f, held-out %.4f nats/token",
                static_cast<double>(res.steps_run * step_tokens) / std::max(1e-9, res.seconds),
                res.final_train_loss, res.val_nll);
  if (rank == 0) bar.finish(summary);
  return res;
}

}  // namespace slmc
