#include "compress/eval/evaluate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "compress/core/atomic_file.h"
#include "compress/io/model_loader.h"
#include "compress/model/windows.h"
#include "compress/tokenizer/tokenizer.h"

namespace slmc {
namespace {

const std::string kData = SLMC_SHARED_DATA;

TEST(Windows, EveryTokenPredictedOnceFromBosLedWindows) {
  std::vector<int32_t> stream;
  for (int i = 0; i < 10; ++i) stream.push_back(10 + i);
  const auto w = bos_windows(stream, 4, 1);
  ASSERT_EQ(w.size(), 4u);  // 3 + 3 + 3 + 1 tokens
  EXPECT_EQ(w[0].input, (std::vector<int32_t>{1, 10, 11}));
  EXPECT_EQ(w[0].targets, (std::vector<int32_t>{10, 11, 12}));
  EXPECT_EQ(w[3].input, (std::vector<int32_t>{1}));
  EXPECT_EQ(w[3].targets, (std::vector<int32_t>{19}));
}

TEST(Metrics, KlOfKnownDistributions) {
  const float a[2] = {0.0f, 0.0f};                      // p = (1/2, 1/2)
  const float b[2] = {std::log(3.0f), 0.0f};            // q = (3/4, 1/4)
  const double expected = 0.5 * std::log(0.5 / 0.75) + 0.5 * std::log(0.5 / 0.25);
  EXPECT_NEAR(kl_from_logits(a, b, 2), expected, 1e-7);
  EXPECT_NEAR(kl_from_logits(a, a, 2), 0.0, 1e-12);
  EXPECT_NEAR(token_nll(b, 2, 1), std::log(4.0), 1e-6);
}

// ../shared/data/README.md: llama2.c's run.c, teacher-forced over windows of seq_len = 512 with
// BOS, measured 1885 tokens at 1.842 nats/token with its own encoder.
// - Tokenization is not a difference: run.c's encoder and SentencePiece give the same 1882 ids on
//   this text (tests/tokenizer checks both).
// - The count is reproduced by windows [BOS, t_s .. t_s+510] whose last position also predicts
//   t_s+511, the first token of the next window (3 windows x 512 + 349 = 1885 predictions).
// - slmc's own windows predict every token once (1882 predictions).
// Both give 1.837 nats/token, 0.005 (0.3%) below the published figure; logits agree with a port of
// run.c's forward to 1.5e-5 (tests/model), so the residual lies in how that harness averaged or
// windowed, which its note does not say. kTol bounds it.
TEST(Stories260K, ConsistentWithLlama2cReferenceNll) {
  constexpr double kRefNll = 1.842;
  constexpr double kTol = 0.01;
  const LoadedModel m = load_model(kData + "/models/stories260K/stories260K.bin");
  auto tok = load_tokenizer(kData + "/models/stories260K/tok512.model");
  const auto ids = tok->encode(read_file(kData + "/text/tinystories_sample.txt"));
  ASSERT_EQ(ids.size(), 1882u);
  Transformer model(m.spec, m.tensors);

  std::vector<Window> overlap;
  for (size_t s = 0; s < ids.size(); s += 511) {
    Window w;
    const size_t e = std::min(ids.size(), s + 512);
    w.targets.assign(ids.begin() + static_cast<long>(s), ids.begin() + static_cast<long>(e));
    w.input.push_back(1);
    w.input.insert(w.input.end(), ids.begin() + static_cast<long>(s),
                   ids.begin() + static_cast<long>(e) - 1);
    overlap.push_back(w);
  }
  const EvalResult a = evaluate(model, overlap, EvalOptions{});
  EXPECT_EQ(a.n_tokens, 1885);
  EXPECT_NEAR(a.nll, kRefNll, kTol);

  const EvalResult b = evaluate(model, bos_windows(ids, 512, 1), EvalOptions{});
  EXPECT_EQ(b.n_tokens, 1882);
  EXPECT_NEAR(b.nll, kRefNll, kTol);
  std::printf("overlapping windows: %lld tokens, %.4f nats/token; slmc windows: %lld tokens, %.4f\n",
              static_cast<long long>(a.n_tokens), a.nll, static_cast<long long>(b.n_tokens), b.nll);
}

}  // namespace
}  // namespace slmc
