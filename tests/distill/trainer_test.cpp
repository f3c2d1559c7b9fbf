// The grown trainer: gradient accumulation equals the full batch, a crashed run resumed from its
// checkpoint ends byte-identical to an uninterrupted one, and resumes refuse other options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "compress/model/trainer.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using slmc::testing::TempDir;

std::vector<int32_t> text_tokens(size_t n, uint32_t seed) {
  std::vector<int32_t> t(n);
  uint32_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    t[i] = static_cast<int32_t>((i % 7 == 0) ? 3 : (s >> 24) % 20);  // some structure to learn
  }
  return t;
}

ModelSpec tiny_spec() { return make_uniform_spec(Family::kLlama, 24, 32, 2, 4, 2, 64, 16); }

TrainOptions tiny_opts() {
  TrainOptions o;
  o.steps = 8;
  o.batch = 4;
  o.ctx = 16;
  o.lr = 3e-3;
  o.warmup = 2;
  o.seed = 3;
  return o;
}

// A loss that fails on its n-th call: a run that dies mid-way.
class CrashingLoss : public CrossEntropyLoss {
 public:
  explicit CrashingLoss(int crash_at) : left_(crash_at) {}
  torch::Tensor loss(const Transformer& m, const Batch& b, std::map<std::string, double>* p) override {
    if (--left_ == 0) throw std::runtime_error("simulated crash");
    return CrossEntropyLoss::loss(m, b, p);
  }

 private:
  int left_;
};

double max_diff(const Transformer& a, const Transformer& b) {
  double m = 0;
  for (const auto& kv : a.params())
    m = std::max(m, (kv.second - b.params().at(kv.first)).abs().max().item<double>());
  return m;
}

TEST(TrainerTest, AccumulationEqualsTheFullBatch) {
  const auto data = text_tokens(4000, 1), val = text_tokens(300, 2);
  for (auto order : {WindowSampler::Order::kRandomOffsets, WindowSampler::Order::kShuffledWindows}) {
    Transformer full = Transformer::random_init(tiny_spec(), 5);
    Transformer acc = Transformer::random_init(tiny_spec(), 5);
    TrainOptions o = tiny_opts();
    TrainSetup s;
    s.order = order;
    const TrainResult a = train(full, data, val, o, 23, s);
    o.micro_batch = 1;  // 4 accumulation steps
    const TrainResult b = train(acc, data, val, o, 23, s);
    // Same mean gradient summed in another order: fp32 rounding only, amplified a little by 8
    // AdamW steps (measured ~1e-7).
    EXPECT_LE(max_diff(full, acc), 2e-5);
    EXPECT_NEAR(a.final_train_loss, b.final_train_loss, 1e-4);
    EXPECT_NEAR(a.val_nll, b.val_nll, 1e-4);
    EXPECT_GT(max_diff(full, Transformer::random_init(tiny_spec(), 5)), 1e-3);  // it trained
  }
}

TEST(TrainerTest, ResumeAfterACrashIsBitExact) {
  const TempDir d;
  const auto data = text_tokens(4000, 1), val = text_tokens(300, 2);
  for (auto order : {WindowSampler::Order::kRandomOffsets, WindowSampler::Order::kShuffledWindows}) {
    SCOPED_TRACE(order == WindowSampler::Order::kRandomOffsets ? "random offsets" : "windows");
    TrainOptions o = tiny_opts();
    o.checkpoint_every = 3;
    o.eval_every = 2;
    o.micro_batch = 2;
    TrainSetup s;
    s.order = order;
    s.fingerprint = "options v1\n";
    s.checkpoint = d.file("full.safetensors");
    Transformer a = Transformer::random_init(tiny_spec(), 5);
    const TrainResult ra = train(a, data, val, o, 23, s);

    // Dies in step 4 (0-based; the 9th micro-batch), after the checkpoint of step 3.
    s.checkpoint = d.file("crash.safetensors");
    CrashingLoss crash(9);
    s.loss = &crash;
    Transformer b = Transformer::random_init(tiny_spec(), 5);
    EXPECT_THROW(train(b, data, val, o, 23, s), std::runtime_error);
    ASSERT_TRUE(std::filesystem::exists(s.checkpoint));
    // Resumed in a fresh model whose weights differ: everything comes from the checkpoint.
    s.loss = nullptr;
    s.resume = true;
    Transformer c = Transformer::random_init(tiny_spec(), 99);
    const TrainResult rc = train(c, data, val, o, 23, s);
    EXPECT_EQ(rc.resumed_from, 3);
    EXPECT_EQ(rc.steps_run, 5);
    EXPECT_EQ(slmc::testing::read_bytes(d.file("full.safetensors")),
              slmc::testing::read_bytes(d.file("crash.safetensors")));
    for (const auto& kv : a.params()) EXPECT_TRUE(torch::equal(kv.second, c.params().at(kv.first))) << kv.first;
    EXPECT_EQ(ra.final_train_loss, rc.final_train_loss);
    EXPECT_EQ(ra.val_nll, rc.val_nll);
    EXPECT_EQ(ra.history, rc.history);
    EXPECT_EQ(ra.tokens_seen, rc.tokens_seen);
  }
}

TEST(TrainerTest, ResumeRefusesOtherOptionsAndMissingCheckpoints) {
  const TempDir d;
  const auto data = text_tokens(2000, 1);
  TrainOptions o = tiny_opts();
  o.steps = 2;
  TrainSetup s;
  s.checkpoint = d.file("c.safetensors");
  s.fingerprint = "lr: 0.003\nbatch: 4\n";
  Transformer a = Transformer::random_init(tiny_spec(), 5);
  train(a, data, {}, o, 23, s);
  s.resume = true;
  s.fingerprint = "lr: 0.003\nbatch: 8\n";
  slmc::testing::expect_error([&] { train(a, data, {}, o, 23, s); },
                              {"c.safetensors", "'batch: 4' vs 'batch: 8'"});
  s.checkpoint = d.file("none.safetensors");
  slmc::testing::expect_error([&] { train(a, data, {}, o, 23, s); },
                              {"none.safetensors", "no checkpoint"});
  // A checkpoint of another model shape.
  s.checkpoint = d.file("c.safetensors");
  s.fingerprint = "lr: 0.003\nbatch: 4\n";
  Transformer other = Transformer::random_init(make_uniform_spec(Family::kLlama, 24, 32, 1, 4, 2, 64, 16), 5);
  slmc::testing::expect_error([&] { train(other, data, {}, o, 23, s); }, {"c.safetensors"});
}

TEST(TrainerTest, BatchSplitsAreChecked) {
  Transformer m = Transformer::random_init(tiny_spec(), 5);
  TrainOptions o = tiny_opts();
  o.micro_batch = 3;
  slmc::testing::expect_error([&] { train(m, text_tokens(2000, 1), {}, o, 23); },
                              {"micro_batch 3 does not divide the per-rank batch 4"});
  o.micro_batch = 0;
  o.ctx = 17;
  slmc::testing::expect_error([&] { train(m, text_tokens(2000, 1), {}, o, 23); },
                              {"ctx 17 exceeds the model's max_seq 16"});
  o.ctx = 16;
  slmc::testing::expect_error([&] { train(m, text_tokens(10, 1), {}, o, 23); },
                              {"10 tokens, fewer than one window of 16"});
}

TEST(TrainerTest, SamplerStateRoundTrips) {
  for (auto order : {WindowSampler::Order::kRandomOffsets, WindowSampler::Order::kShuffledWindows}) {
    WindowSampler a(order, 1000, 10, 4);
    a.next(137);  // crosses an epoch of 100 windows
    WindowSampler b(order, 1000, 10, 4);
    b.restore(a.state(), "test");
    EXPECT_EQ(a.next(250), b.next(250));
  }
  WindowSampler w(WindowSampler::Order::kShuffledWindows, 1000, 10, 4);
  std::vector<int64_t> epoch = w.next(100);
  std::sort(epoch.begin(), epoch.end());
  for (int64_t i = 0; i < 100; ++i) EXPECT_EQ(epoch[static_cast<size_t>(i)], i * 10);  // each window once
  slmc::testing::expect_error([&] { w.restore("windows 0 101", "ck"); }, {"ck", "does not fit 100 windows"});
  slmc::testing::expect_error([&] { w.restore("random 1 2", "ck"); }, {"ck"});
}

TEST(TrainerTest, TrainStateRejectsMalformedJson) {
  TrainState s;
  s.step = 3;
  s.sampler = "windows 0 3";
  s.adam_steps["model.x"] = 3;
  s.history = {{2, 1.5}};
  const TrainState r = TrainState::from_json(s.to_json(), "c");
  EXPECT_EQ(r.step, 3);
  EXPECT_EQ(r.adam_steps, s.adam_steps);
  EXPECT_EQ(r.history, s.history);
  slmc::testing::expect_error([] { TrainState::from_json("{}", "c.st"); }, {"c.st", "no 'version'"});
  std::string j = s.to_json();
  j.replace(j.find("\"step\":3"), 8, "\"step\":-3");
  slmc::testing::expect_error([&] { TrainState::from_json(j, "c.st"); }, {"c.st", "step"});
}

}  // namespace
}  // namespace slmc
