// In-memory comparison (compare.h) against the file-based path it replaced: saving the
// reference's logits to HDF5 and evaluating each model against them must give the same numbers,
// bit for bit, whatever the chunk size.
#include "compress/eval/compare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "tests/test_util.h"

namespace slmc {
namespace {

using slmc::testing::TempDir;

constexpr int64_t kVocab = 37;

// Deterministic logits from the window's tokens and a model seed: row t depends on input[t].
LogitsSource fake_model(uint32_t seed) {
  return [seed](const std::vector<Window>& windows, const LogitsSink& sink) {
    std::vector<float> logits;
    for (const Window& w : windows) {
      const int64_t n = static_cast<int64_t>(w.input.size());
      logits.resize(static_cast<size_t>(n * kVocab));
      for (int64_t t = 0; t < n; ++t)
        for (int64_t v = 0; v < kVocab; ++v) {
          uint32_t h = seed * 2654435761u ^
                       static_cast<uint32_t>(w.input[static_cast<size_t>(t)] * 40503 + v * 97 + t);
          h ^= h >> 13;
          h *= 0x5bd1e995u;
          h ^= h >> 15;
          logits[static_cast<size_t>(t * kVocab + v)] = static_cast<float>(h % 10007) / 1000.0f;
        }
      sink(logits.data(), w.targets.data(), n);
    }
  };
}

std::vector<Window> windows() {
  std::vector<int32_t> stream;
  for (int i = 0; i < 300; ++i) stream.push_back((i * 7 + 3) % kVocab);
  return bos_windows(stream, 16, 1);
}

TEST(Compare, EqualsTheSavedLogitsPathAtAnyChunkSize) {
  const TempDir dir;
  const std::vector<Window> w = windows();
  EvalOptions save;
  save.save_logits = dir.file("ref.h5");
  const EvalResult ref = evaluate(fake_model(1), kVocab, w, save);
  EvalOptions cmp;
  cmp.ref_logits = save.save_logits;
  const EvalResult a = evaluate(fake_model(2), kVocab, w, cmp);
  const EvalResult b = evaluate(fake_model(3), kVocab, w, cmp);
  for (int64_t chunk : {int64_t{1}, int64_t{16 * kVocab * 4 * 3}, int64_t{1} << 30}) {
    const Comparison c =
        compare_models(fake_model(1), {fake_model(2), fake_model(3)}, kVocab, w, "t", chunk);
    EXPECT_EQ(c.reference.ppl, ref.ppl) << chunk;
    EXPECT_EQ(c.reference.n_tokens, 300);
    EXPECT_FALSE(c.reference.has_ref);
    ASSERT_EQ(c.models.size(), 2u);
    for (const auto& [got, want] : {std::pair{c.models[0], a}, std::pair{c.models[1], b}}) {
      EXPECT_TRUE(got.has_ref);
      EXPECT_EQ(got.ppl, want.ppl) << chunk;
      EXPECT_EQ(got.kl_mean, want.kl_mean) << chunk;
      EXPECT_EQ(got.kl_p99, want.kl_p99) << chunk;
      EXPECT_EQ(got.top1, want.top1) << chunk;
    }
  }
  // A model against itself: KL 0, top-1 1.
  const Comparison same = compare_models(fake_model(1), {fake_model(1)}, kVocab, w);
  EXPECT_EQ(same.models[0].kl_mean, 0.0);
  EXPECT_EQ(same.models[0].top1, 1.0);
}

TEST(Compare, RefusesSourcesThatDisagreeOnTheWindows) {
  const std::vector<Window> w = windows();
  const LogitsSource shifted = [](const std::vector<Window>& ws, const LogitsSink& sink) {
    std::vector<float> logits(static_cast<size_t>(16 * kVocab), 0.0f);
    for (const Window& x : ws) {
      std::vector<int32_t> t = x.targets;
      t[0] = (t[0] + 1) % kVocab;
      sink(logits.data(), t.data(), static_cast<int64_t>(t.size()));
    }
  };
  slmc::testing::expect_error([&] { (void)compare_models(fake_model(1), {shifted}, kVocab, w); },
                              {"compare: model 0 has target"});
  const LogitsSource short_source = [](const std::vector<Window>&, const LogitsSink&) {};
  slmc::testing::expect_error(
      [&] { (void)compare_models(fake_model(1), {short_source}, kVocab, w); },
      {"compare: model 0 yields 0 positions"});
}

}  // namespace
}  // namespace slmc
