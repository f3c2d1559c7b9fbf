// `slmc distill` end to end on a tiny teacher: the student directory and report, resume after a
// SIGKILL byte-identical to an uninterrupted run, two processes over Gloo equal to one, the
// offline cache at k = vocab equal to online distillation, and every bad input exiting 2.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "compress/io/safetensors.h"
#include "compress/model/train_state.h"
#include "tests/cli/cli_util.h"

namespace slmc::clitest {
namespace {

// A random 4-layer byte-level teacher (vocab 258, d_model 32, max_seq 32).
std::string make_teacher(const TempDir& dir, const std::string& name, uint32_t seed,
                         int64_t vocab = 258) {
  ModelSpec s = make_uniform_spec(Family::kLlama, vocab, 32, 4, 4, 2, 64, 32);
  s.bos_id = 256;
  s.eos_id = 257;
  TensorMap t;
  uint32_t state = seed;
  for (const TensorDecl& d : expected_tensors(s)) {
    HostTensor h;
    h.shape = d.shape;
    h.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    const bool norm = d.name.find("norm") != std::string::npos;
    for (float& v : h.data) {
      state = state * 1664525u + 1013904223u;
      v = norm ? 1.0f : (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 0.3f;
    }
    t[d.name] = h;
  }
  const std::string path = dir.file(name);
  save_hf_model(path, s, t);
  write_byte_tokenizer_json(path + "/tokenizer.json");
  return path;
}

std::string make_text(const TempDir& dir, const std::string& name, uint32_t seed, int n_words) {
  static const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran",
                                "to", "see", "it", "big", "red", "sun", "was", "hot", "."};
  std::string text;
  uint32_t s = seed;
  for (int i = 0; i < n_words; ++i) {
    s = s * 1664525u + 1013904223u;
    text += words[(s >> 16) % 18];
    text += (s >> 8) % 9 == 0 ? "\n" : " ";
  }
  const std::string p = dir.file(name);
  write_file_atomically(p, text);
  return p;
}

constexpr const char* kSmall = " --ctx 32 --batch 4 --lr 0.003 --warmup 2";

double max_weight_diff(const std::string& a, const std::string& b) {
  const LoadedModel ma = load_model(a), mb = load_model(b);
  double m = 0;
  for (const auto& kv : ma.tensors) {
    const HostTensor& y = mb.tensors.at(kv.first);
    for (size_t i = 0; i < kv.second.data.size(); ++i)
      m = std::max(m, static_cast<double>(std::fabs(kv.second.data[i] - y.data[i])));
  }
  return m;
}

class DistillCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    teacher_ = make_teacher(*dir_, "teacher", 11);
    data_ = make_text(*dir_, "data.txt", 5, 6000);
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
  static std::string teacher_, data_;
};
TempDir* DistillCli::dir_ = nullptr;
std::string DistillCli::teacher_, DistillCli::data_;

TEST_F(DistillCli, WritesAStudentFromTeacherLayers) {
  const TempDir d;
  const Result r = slmc("distill --teacher " + q(teacher_) + " --keep-layers every_other --data " +
                       q(data_) + " -o " + q(d.file("s")) + kSmall +
                       " --steps 6 --eval-every 3 --ce 0.5 --reverse-kl 0.1 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["student"], "teacher layers [0, 2]");
  EXPECT_EQ(j["tokens_seen"], 6 * 4 * 32);
  ASSERT_EQ(j["history"].size(), 2u);  // steps 3 and 6
  EXPECT_TRUE(std::isfinite(j["val_nll"].get<double>()));
  const LoadedModel s = load_model(d.file("s"));
  EXPECT_EQ(s.spec.n_layer(), 2);
  EXPECT_TRUE(fs::exists(d.file("s/tokenizer.json")));
  EXPECT_TRUE(fs::exists(d.file("s/checkpoint.safetensors")));
  EXPECT_TRUE(fs::exists(d.file("s/distill_report.json")));
  // The student evaluates through the ordinary path.
  const Result e = slmc("eval --model " + q(d.file("s")) + " --data " + q(data_) + " --json");
  EXPECT_EQ(e.code, 0) << e.err;
  // A student from a shape file, trained with the hidden-state loss through a projection (its
  // width differs from the teacher's).
  write_file_atomically(d.file("shape.yaml"), "n_layer: 2\nd_model: 16\nn_head: 2\n");
  const Result h = slmc("distill --teacher " + q(teacher_) + " --student " + q(d.file("shape.yaml")) +
                       " --data " + q(data_) + " -o " + q(d.file("h")) + kSmall +
                       " --steps 3 --hidden 1 --hidden-loss cosine");
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_EQ(load_model(d.file("h")).spec.d_model, 16);
}

// Reads the step a checkpoint was written at.
int64_t checkpoint_step(const std::string& path) {
  const SafetensorsFile f(path);
  return TrainState::from_json(f.metadata().at(kTrainStateKey), path).step;
}

TEST_F(DistillCli, ResumeAfterKillIsByteIdentical) {
  const TempDir d;
  const std::string args = "distill --teacher " + q(teacher_) + " --keep-layers 0,3 --data " +
                           q(data_) + kSmall + " --steps 40 --checkpoint-every 4 --eval-every 10 --micro-batch 2";
  const Result full = slmc(args + " -o " + q(d.file("full")));
  ASSERT_EQ(full.code, 0) << full.err;

  // The same run, killed with SIGKILL right after its first checkpoint.
  const std::string out = d.file("killed");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = "exec " + std::string(SLMC_EXE) + " --threads 2 -q " + args + " -o " +
                            q(out) + " >/dev/null 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(out + "/checkpoint.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st)) << "the run finished before it could be killed";
  const int64_t at = checkpoint_step(out + "/checkpoint.safetensors");
  EXPECT_GE(at, 4);
  EXPECT_LT(at, 40);
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));

  const Result resumed = slmc(args + " -o " + q(out) + " --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(read_file(d.file("full/checkpoint.safetensors")), read_file(out + "/checkpoint.safetensors"));
  EXPECT_EQ(read_file(d.file("full/model.safetensors")), read_file(out + "/model.safetensors"));
  const auto a = nlohmann::json::parse(read_file(d.file("full/distill_report.json")));
  const auto b = nlohmann::json::parse(read_file(out + "/distill_report.json"));
  EXPECT_EQ(a["val_nll"], b["val_nll"]);
  EXPECT_EQ(a["history"], b["history"]);
  EXPECT_EQ(b["resumed_from"], at);

  // Other options on resume are refused, naming the difference.
  const Result other = slmc(args + " --weight-decay 0.05 -o " + q(out) + " --resume");
  expect_input_error(other, "'weight_decay: 0.10000000000000001' vs 'weight_decay: 0.050000000000000003'");
}

// Two ranks on loopback with the same global batch reach the one-process weights up to fp32
// rounding (the gradient sums are ordered differently).
TEST_F(DistillCli, TwoProcessesEqualOneProcess) {
  const TempDir d;
  const std::string args = "distill --teacher " + q(teacher_) + " --keep-layers 1,2 --data " +
                           q(data_) + kSmall + " --steps 8 --eval-every 4";
  const Result one = slmc(args + " -o " + q(d.file("one")));
  ASSERT_EQ(one.code, 0) << one.err;
  const Result two = slmc(args + " --nproc 2 -o " + q(d.file("two")));
  ASSERT_EQ(two.code, 0) << two.err;
  const double diff = max_weight_diff(d.file("one"), d.file("two"));
  EXPECT_LE(diff, 1e-4);
  const auto a = nlohmann::json::parse(read_file(d.file("one/distill_report.json")));
  const auto b = nlohmann::json::parse(read_file(d.file("two/distill_report.json")));
  EXPECT_EQ(b["world_size"], 2);
  EXPECT_NEAR(a["val_nll"].get<double>(), b["val_nll"].get<double>(), 1e-4);
  // Accumulation inside each rank (micro-batch 1) changes nothing either.
  const Result acc = slmc(args + " --micro-batch 1 --nproc 2 -o " + q(d.file("acc")));
  ASSERT_EQ(acc.code, 0) << acc.err;
  EXPECT_LE(max_weight_diff(d.file("one"), d.file("acc")), 1e-4);
}

TEST_F(DistillCli, UnreachableRendezvousFailsWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = slmc("distill --teacher " + q(teacher_) + " --keep-layers 0 --data " + q(data_) +
                       " -o " + q(dir_->file("never")) + kSmall +
                       " --world-size 2 --rank 1 --master 127.0.0.1:9 --ddp-timeout 2");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  expect_input_error(r, "rendezvous at 127.0.0.1:9 (rank 1 of 2): not reached within 2 s");
  EXPECT_LT(s, 30);
}

// With k = vocab and fp32 values the cache holds the whole distribution: offline distillation is
// online distillation up to fp32 rounding.
TEST_F(DistillCli, OfflineCacheAtFullVocabEqualsOnline) {
  const TempDir d;
  const std::string common = " --keep-layers 0,2 --data " + q(data_) + kSmall + " --steps 6 --temperature 2";
  const Result c = slmc("distill --teacher " + q(teacher_) + common + " --top-k 258 --cache-dtype f32" +
                       " --write-cache " + q(d.file("c.h5")) + " --json");
  ASSERT_EQ(c.code, 0) << c.err;
  const auto cj = nlohmann::json::parse(c.out);
  EXPECT_GT(cj["positions"].get<int64_t>(), 0);
  const Result online = slmc("distill --teacher " + q(teacher_) + common + " -o " + q(d.file("on")));
  ASSERT_EQ(online.code, 0) << online.err;
  const Result offline = slmc("distill --teacher " + q(teacher_) + " --teacher-cache " +
                             q(d.file("c.h5")) + common + " -o " + q(d.file("off")));
  ASSERT_EQ(offline.code, 0) << offline.err;
  EXPECT_LE(max_weight_diff(d.file("on"), d.file("off")), 1e-4);

  // The cache refuses other teachers, data, temperatures and losses it cannot serve.
  const std::string other_teacher = make_teacher(d, "other", 12);
  expect_input_error(slmc("distill --teacher " + q(other_teacher) + " --teacher-cache " +
                         q(d.file("c.h5")) + common + " -o " + q(d.file("x"))),
                     "made from another teacher");
  const std::string other_data = make_text(d, "other.txt", 6, 6000);
  expect_input_error(slmc("distill --teacher " + q(teacher_) + " --teacher-cache " + q(d.file("c.h5")) +
                         " --keep-layers 0,2 --data " + q(other_data) + kSmall +
                         " --steps 6 --temperature 2 -o " + q(d.file("x"))),
                     "made from other training data");
  expect_input_error(slmc("distill --teacher " + q(teacher_) + " --teacher-cache " + q(d.file("c.h5")) +
                         " --keep-layers 0,2 --data " + q(data_) + kSmall + " --steps 6 -o " +
                         q(d.file("x"))),
                     "made at temperature 2, this run distills at 1");
  expect_input_error(slmc("distill --teacher " + q(teacher_) + " --teacher-cache " + q(d.file("c.h5")) +
                         common + " --hidden 1 -o " + q(d.file("x"))),
                     "needs the teacher online");
}

TEST_F(DistillCli, BadInputExitsTwo) {
  const std::string plain = "distill --teacher " + q(teacher_) + " --data " + q(data_);
  const std::string base = plain + kSmall + " --steps 2 -o " + q(dir_->file("bad"));
  expect_input_error(slmc(base + " --keep-layers 0 4"),
                     "index 4 is out of range: the teacher has 4 layers");
  const std::string wide = make_teacher(*dir_, "wide_vocab", 3, 300);
  expect_input_error(slmc(base + " --student " + q(wide)),
                     "the teacher's vocabulary (258 tokens) and the student's (300");
  // With a map (student ids 0..257 are the teacher's, 258..299 have no counterpart) it trains.
  std::string map;
  for (int i = 0; i < 300; ++i) map += std::to_string(i < 258 ? i : -1) + "\n";
  write_file_atomically(dir_->file("vocab.map"), map);
  const Result mapped = slmc(base + " --student " + q(wide) + " --vocab-map " + q(dir_->file("vocab.map")));
  EXPECT_EQ(mapped.code, 0) << mapped.err;
  expect_input_error(slmc(base + " --student " + q(wide) + " --vocab-map " + q(dir_->file("vocab.map")) +
                          " --teacher-cache " + q(dir_->file("none.h5"))),
                     "none.h5: no such file");
  expect_input_error(slmc(base + " --keep-layers 0 --world-size 3 --rank 0 --master 127.0.0.1:9"),
                     "world size 3 does not divide the global batch 4");
  expect_input_error(slmc(base), "give the student either as --student");
  expect_input_error(slmc(base + " --keep-layers 0 --kl 0"), "every loss weight is 0");
  expect_input_error(slmc(base + " --keep-layers 0 --master 127.0.0.1"), "--master '127.0.0.1' must be host:port");
  write_file_atomically(dir_->file("d.yaml"), "kl: 1\nkeep_layers: [0]\nbogus: 3\n");
  const std::string out = " -o " + q(dir_->file("bad"));
  expect_input_error(slmc(plain + out + " --config " + q(dir_->file("d.yaml"))), "unknown key \"bogus\"");
  write_file_atomically(dir_->file("d2.yaml"), "keep_layers: [0, 2]\n");
  expect_input_error(slmc(plain + out + " --config " + q(dir_->file("d2.yaml")) + " --keep-layers 1"),
                     "give distill options either in --config or as flags (--keep-layers");
  expect_input_error(slmc(plain + kSmall + " --keep-layers 0 --resume -o " + q(dir_->file("nothing"))),
                     "no checkpoint to resume from");
}

}  // namespace
}  // namespace slmc::clitest
