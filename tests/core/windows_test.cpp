// llama_windows against a literal port of llama-perplexity's chunk loop (tools/perplexity/
// perplexity.cpp, perplexity()): the same scored (context, target) pairs in the same order, and
// scored_rows_only drops exactly the unscored rows.
#include <gtest/gtest.h>

#include <vector>

#include "compress/core/error.h"
#include "compress/core/windows.h"

namespace slmc {
namespace {

struct Scored {
  std::vector<int32_t> context;  // what the model sees up to and including the predicting position
  int32_t target;
  bool operator==(const Scored& o) const { return context == o.context && target == o.target; }
};

// llama-perplexity: tokens = tokenize(text, add_bos) = [BOS] + stream; n_chunk = size / n_ctx;
// per chunk, tokens[start] is replaced by BOS for the batch; logits of positions first = n_ctx/2
// .. n_ctx - 2 are scored against tokens[start + pos + 1].
std::vector<Scored> llama_reference(const std::vector<int32_t>& stream, int n_ctx, int32_t bos) {
  std::vector<int32_t> tokens = {bos};
  tokens.insert(tokens.end(), stream.begin(), stream.end());
  const int n_chunk = static_cast<int>(tokens.size()) / n_ctx;
  const int first = n_ctx / 2;
  std::vector<Scored> out;
  for (int i = 0; i < n_chunk; ++i) {
    const int start = i * n_ctx;
    std::vector<int32_t> batch(tokens.begin() + start, tokens.begin() + start + n_ctx);
    batch[0] = bos;
    for (int pos = first; pos < n_ctx - 1; ++pos)
      out.push_back({std::vector<int32_t>(batch.begin(), batch.begin() + pos + 1),
                     tokens[static_cast<size_t>(start + pos + 1)]});
  }
  return out;
}

TEST(LlamaWindows, ScoreWhatLlamaPerplexityScores) {
  for (int n_ctx : {4, 5, 16, 17}) {
    for (int len : {2 * n_ctx - 1, 2 * n_ctx, 3 * n_ctx + 5, 10 * n_ctx - 2}) {
      std::vector<int32_t> stream;
      for (int k = 0; k < len; ++k) stream.push_back(1000 + k);
      const std::vector<Window> ws = llama_windows(stream, n_ctx, 7);
      std::vector<Scored> got;
      for (const Window& w : ws) {
        ASSERT_EQ(w.input.size(), w.targets.size());
        for (size_t p = static_cast<size_t>(w.skip); p < w.input.size(); ++p)
          got.push_back({std::vector<int32_t>(w.input.begin(), w.input.begin() + static_cast<long>(p) + 1),
                         w.targets[p]});
      }
      EXPECT_EQ(got, llama_reference(stream, n_ctx, 7)) << "ctx " << n_ctx << " len " << len;
    }
  }
  EXPECT_THROW(llama_windows(std::vector<int32_t>(6, 1), 4, 0), Error);  // needs 2 ctx - 1 = 7
}

TEST(LlamaWindows, ScoredRowsOnlyDropsTheSkippedRows) {
  const int64_t vocab = 3;
  std::vector<Window> ws(2);
  ws[0].input = {0, 1, 2, 3};
  ws[0].targets = {1, 2, 3, 4};
  ws[0].skip = 2;
  ws[1].input = {0, 5};
  ws[1].targets = {5, 6};
  const LogitsSource inner = [&](const std::vector<Window>& w, const LogitsSink& sink) {
    for (const Window& x : w) {
      std::vector<float> logits;
      for (int32_t t : x.input)
        for (int64_t v = 0; v < vocab; ++v) logits.push_back(static_cast<float>(t * 10 + v));
      sink(logits.data(), x.targets.data(), static_cast<int64_t>(x.input.size()));
    }
  };
  std::vector<int32_t> targets;
  std::vector<float> first_logit;
  scored_rows_only(inner, vocab)(ws, [&](const float* logits, const int32_t* t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      targets.push_back(t[i]);
      first_logit.push_back(logits[i * vocab]);
    }
  });
  EXPECT_EQ(targets, (std::vector<int32_t>{3, 4, 5, 6}));
  EXPECT_EQ(first_logit, (std::vector<float>{20, 30, 0, 50}));
}

}  // namespace
}  // namespace slmc
