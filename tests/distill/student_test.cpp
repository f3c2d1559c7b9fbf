// Students made from the teacher: layer selection, widths (units kept by magnitude), the widths
// report and vocabulary-map parsers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "compress/core/tensor_names.h"
#include "compress/model/transformer.h"
#include "distill/kd_loss.h"
#include "distill/student.h"
#include "tests/test_util.h"

namespace slmc::distill {
namespace {

using slmc::testing::expect_error;

LoadedModel random_teacher(int64_t n_layer, int64_t n_head = 4, int64_t n_kv = 2, int64_t ffn = 48) {
  LoadedModel m;
  m.spec = make_uniform_spec(Family::kLlama, 40, 32, n_layer, n_head, n_kv, ffn, 16);
  m.path = "teacher";
  Transformer t = Transformer::random_init(m.spec, 7);
  m.tensors = t.to_host();
  // Norm weights away from 1 so a wrong copy shows.
  for (auto& kv : m.tensors)
    if (kv.first.find("norm") != std::string::npos)
      for (size_t i = 0; i < kv.second.data.size(); ++i) kv.second.data[i] = 0.5f + 0.01f * static_cast<float>(i % 17);
  return m;
}

PatternList items(std::initializer_list<const char*> xs) {
  PatternList p;
  for (const char* x : xs) p.add(x, "--keep-layers");
  return p;
}

torch::Tensor logits(const LoadedModel& m, const torch::Tensor& tokens) {
  Transformer t(m.spec, m.tensors);
  torch::NoGradGuard g;
  return t.forward(tokens);
}

TEST(StudentTest, KeepLayersForms) {
  EXPECT_EQ(parse_keep_layers(items({"every_other"}), 6), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(parse_keep_layers(items({"every_other"}), 5), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(parse_keep_layers(items({"all"}), 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(parse_keep_layers(items({"0", "3", "5"}), 6), (std::vector<int64_t>{0, 3, 5}));
  EXPECT_EQ(parse_keep_layers(items({"1, 2,4"}), 6), (std::vector<int64_t>{1, 2, 4}));
  expect_error([] { parse_keep_layers(items({"0", "6"}), 6); },
               {"--keep-layers", "index 6 is out of range", "6 layers"});
  expect_error([] { parse_keep_layers(items({"-1"}), 6); }, {"index -1 is out of range"});
  expect_error([] { parse_keep_layers(items({"2", "1"}), 6); }, {"increasing", "1 after 2"});
  expect_error([] { parse_keep_layers(items({"2", "2"}), 6); }, {"increasing"});
  expect_error([] { parse_keep_layers(items({"odd"}), 6); }, {"'odd' is not a layer index"});
  expect_error([] { parse_keep_layers(items({"all", "1"}), 6); }, {"cannot be combined"});
}

// Student layer j is teacher layer keep[j]: running the teacher's layers keep[] in order over the
// same embedding gives the student's logits exactly.
TEST(StudentTest, KeptLayersAreTheTeachersLayers) {
  const LoadedModel t = random_teacher(4);
  const LoadedModel s = student_from_teacher(t, {1, 3}, {});
  EXPECT_EQ(s.spec.n_layer(), 2);
  EXPECT_EQ(s.tensors.at(names::blk(0, names::kAttnQ)).data, t.tensors.at(names::blk(1, names::kAttnQ)).data);
  EXPECT_EQ(s.tensors.at(names::blk(1, names::kFfnDown)).data, t.tensors.at(names::blk(3, names::kFfnDown)).data);
  const auto tokens = torch::randint(0, 40, {2, 9}, torch::kInt64);
  Transformer teacher(t.spec, t.tensors);
  torch::NoGradGuard g;
  auto x = teacher.embed(tokens);
  x = teacher.layer(1, x);
  x = teacher.layer(3, x);
  EXPECT_TRUE(torch::equal(teacher.head(x), logits(s, tokens)));
  // keep = all and no widths: the teacher itself.
  EXPECT_TRUE(torch::equal(logits(student_from_teacher(t, {}, {}), tokens), logits(t, tokens)));
}

// Units whose weights are zero are the least important; cutting exactly those leaves the
// function unchanged, so the student's logits equal the teacher's.
TEST(StudentTest, WidthsCutTheLeastImportantUnits) {
  LoadedModel t = random_teacher(2, 4, 2, 48);
  const int64_t hd = 8, d = 32;
  // Layer 0: zero MLP channels 5, 17 and 40 (their down columns); zero head 2's output columns
  // (head 2 is in KV group 1 with head 3).
  HostTensor& down = t.tensors[names::blk(0, names::kFfnDown)];
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c : {5, 17, 40}) down.data[static_cast<size_t>(r * 48 + c)] = 0;
  HostTensor& o = t.tensors[names::blk(0, names::kAttnOut)];
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c = 2 * hd; c < 3 * hd; ++c) o.data[static_cast<size_t>(r * 32 + c)] = 0;
  // Layer 1: zero all of KV group 0 (heads 0 and 1).
  HostTensor& o1 = t.tensors[names::blk(1, names::kAttnOut)];
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c = 0; c < 2 * hd; ++c) o1.data[static_cast<size_t>(r * 32 + c)] = 0;

  std::vector<LayerWidths> w(2);
  w[0].ffn_dim = 45;
  w[0].n_head = 2;     // one head per KV group: head 2 goes
  w[0].n_kv_head = 2;
  w[1].n_kv_head = 1;  // group 0 goes
  w[1].n_head = 2;
  const LoadedModel s = student_from_teacher(t, {}, w);
  EXPECT_EQ(s.spec.layers[0].ffn_dim, 45);
  EXPECT_EQ(s.spec.layers[0].n_head, 2);
  EXPECT_EQ(s.spec.layers[1].n_kv_head, 1);
  EXPECT_EQ(s.tensors.at(names::blk(0, names::kFfnGate)).shape, (std::vector<int64_t>{45, 32}));
  EXPECT_EQ(s.tensors.at(names::blk(1, names::kAttnK)).shape, (std::vector<int64_t>{8, 32}));
  const auto tokens = torch::randint(0, 40, {2, 11}, torch::kInt64);
  // Layer 0's n_head 2 of 4 also drops one non-zero head (0 or 1); compare only with the
  // MLP cut and the whole-group cut, which remove zero units alone.
  std::vector<LayerWidths> exact(2);
  exact[0].ffn_dim = 45;
  exact[1] = w[1];
  const LoadedModel s2 = student_from_teacher(t, {}, exact);
  EXPECT_LE((logits(s2, tokens) - logits(t, tokens)).abs().max().item<double>(), 1e-5);
  // Head 2 (zero) is the one dropped from group 1 of layer 0: its kept heads are 0 or 1 and 3.
  const HostTensor& q0 = s.tensors.at(names::blk(0, names::kAttnQ));
  const HostTensor& tq0 = t.tensors.at(names::blk(0, names::kAttnQ));
  EXPECT_EQ(std::vector<float>(q0.data.begin() + hd * d, q0.data.end()),
            std::vector<float>(tq0.data.begin() + 3 * hd * d, tq0.data.end()));
}

TEST(StudentTest, WidthsErrorsNameTheLayer) {
  const LoadedModel t = random_teacher(2, 4, 2, 48);
  std::vector<LayerWidths> w(2);
  w[1].ffn_dim = 64;
  expect_error([&] { student_from_teacher(t, {}, w); }, {"teacher layer 1", "ffn_dim 64", "48"});
  w[1] = LayerWidths{3, 2, 0};
  expect_error([&] { student_from_teacher(t, {}, w); }, {"n_head 3", "not a multiple"});
  w[1] = LayerWidths{0, 3, 0};
  expect_error([&] { student_from_teacher(t, {}, w); }, {"n_kv_head 3 exceeds"});
  w[1] = LayerWidths{6, 2, 0};
  expect_error([&] { student_from_teacher(t, {}, w); }, {"3 heads per KV group"});
}

TEST(StudentTest, WidthsReport) {
  const auto w = parse_widths_report(
      R"({"layers": [{"ffn_dim": 32}, {"n_head": 2, "n_kv_head": 1}, {}]})", "r.json", 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].ffn_dim, 32);
  EXPECT_EQ(w[1].n_head, 2);
  EXPECT_EQ(w[1].n_kv_head, 1);
  EXPECT_EQ(w[2].ffn_dim, 0);
  expect_error([] { parse_widths_report(R"({"layers": [{}]})", "r.json", 2); },
               {"r.json", "1 entries", "2 layers"});
  expect_error([] { parse_widths_report(R"({"layers": [{"ffn": 3}]})", "r.json", 1); },
               {"layers[0]", "unknown key 'ffn'"});
  expect_error([] { parse_widths_report(R"({"layers": [{"ffn_dim": -3}]})", "r.json", 1); },
               {"layers[0].ffn_dim"});
  expect_error([] { parse_widths_report(R"({"layers": [], "x": 1})", "r.json", 0); },
               {"unknown key 'x'"});
  expect_error([] { parse_widths_report("[1,2", "r.json", 0); }, {"r.json"});
}

TEST(StudentTest, VocabMap) {
  EXPECT_EQ(parse_vocab_map("3\n-1\n0\n", "m.txt", 3, 5), (std::vector<int32_t>{3, -1, 0}));
  expect_error([] { parse_vocab_map("3\n-1\n", "m.txt", 3, 5); }, {"m.txt", "2 lines", "3 token ids"});
  expect_error([] { parse_vocab_map("3\n5\n0\n", "m.txt", 3, 5); }, {"m.txt:2", "teacher id 5"});
  expect_error([] { parse_vocab_map("3\n3\n0\n", "m.txt", 3, 5); }, {"m.txt:2", "mapped twice"});
  expect_error([] { parse_vocab_map("3\nx\n0\n", "m.txt", 3, 5); }, {"m.txt:2", "'x'"});
  expect_error([] { parse_vocab_map("-1\n-1\n", "m.txt", 2, 5); }, {"no student id maps"});
  expect_error([] { parse_vocab_map("1\n2\n3\n", "m.txt", 2, 5); }, {"m.txt:3", "more lines"});
}

TEST(StudentTest, MatchedLayers) {
  EXPECT_EQ(matched_layers(3, 6, {0, 2, 4}), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(matched_layers(3, 6, {}), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(matched_layers(2, 3, {}), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(matched_layers(4, 4, {}), (std::vector<int64_t>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace slmc::distill
