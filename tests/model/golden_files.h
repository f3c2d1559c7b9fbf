// The golden files tests/model/gen_goldens.py writes per case, read without LibTorch (the runtime
// tests share this with the LibTorch model tests): golden.json + input_ids.i64 + logits.f32, raw
// little-endian, row-major. Anything missing or inconsistent throws, so a missing golden is a
// test failure, never a skip.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace slmc::testing {

// Every case gen_goldens.py writes (its cases() keys), for the tests that run them all.
inline constexpr const char* kGoldenCases[] = {
    "llama_gqa_untied", "llama3_tied_ropescaled", "qwen2_bias",        "mistral_window",
    "llama_bf16",       "llama_fp16",             "llama_sharded",     "head_dim_explicit",
    "phi3_fused",       "gemma3_text",            "openelm_layerwise", "mixtral_moe",
    "mixtral_dead_expert",
};

struct GoldenFiles {
  int64_t batch = 0, seq = 0, vocab = 0;
  std::vector<int64_t> ids;   // (batch, seq), each in [0, vocab)
  std::vector<float> logits;  // (batch, seq, vocab), finite
};

// Whole file as bytes; the size must be exactly `expect_bytes` (checked before any use).
inline std::vector<char> read_exact(const std::string& path, size_t expect_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path + " (run the model_goldens_gen test)");
  std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (buf.size() != expect_bytes)
    throw std::runtime_error(path + ": " + std::to_string(buf.size()) + " bytes, expected " +
                             std::to_string(expect_bytes));
  return buf;
}

inline GoldenFiles read_golden_files(const std::string& dir) {
  static_assert(sizeof(float) == 4 && sizeof(int64_t) == 8, "raw golden layout");
  GoldenFiles g;
  std::ifstream jf(dir + "/golden.json");
  if (!jf) throw std::runtime_error("cannot open " + dir + "/golden.json (run model_goldens_gen)");
  const auto j = nlohmann::json::parse(jf);
  g.batch = j.at("batch").get<int64_t>();
  g.seq = j.at("seq").get<int64_t>();
  g.vocab = j.at("vocab").get<int64_t>();
  if (g.batch < 1 || g.batch > 64 || g.seq < 1 || g.seq > 4096 || g.vocab < 1 || g.vocab > 1 << 20)
    throw std::runtime_error(dir + "/golden.json: implausible batch/seq/vocab");
  const size_t n_ids = static_cast<size_t>(g.batch * g.seq);
  const size_t n_logits = n_ids * static_cast<size_t>(g.vocab);
  const auto ids = read_exact(dir + "/input_ids.i64", n_ids * sizeof(int64_t));
  const auto lg = read_exact(dir + "/logits.f32", n_logits * sizeof(float));
  g.ids.resize(n_ids);
  std::memcpy(g.ids.data(), ids.data(), ids.size());
  for (int64_t id : g.ids)
    if (id < 0 || id >= g.vocab) throw std::runtime_error(dir + "/input_ids.i64: id out of range");
  g.logits.resize(n_logits);
  std::memcpy(g.logits.data(), lg.data(), lg.size());
  for (float v : g.logits)
    if (!std::isfinite(v)) throw std::runtime_error(dir + "/logits.f32: non-finite logit");
  return g;
}

// For tests: missing or corrupt goldens are a failure (ASSERT_NO_FATAL_FAILURE on the call).
inline void read_golden_files_or_fail(const std::string& dir, GoldenFiles* g) {
  try {
    *g = read_golden_files(dir);
  } catch (const std::exception& e) {
    FAIL() << "goldens missing or corrupt: " << e.what();
  }
}

}  // namespace slmc::testing
