// The standalone runtime against the PyTorch goldens of every model family
// (tests/model/gen_goldens.py): each case's Hugging Face directory is loaded (compress/io),
// exported as an f32 .slm and run by runtime::Session over both sequences
//   * as one prefill with the logits of every position,
//   * token by token (decode over the KV cache),
//   * in chunks of 5 (prefill batches that start at pos > 0; the last chunk is shorter),
// on every instruction set this CPU has. Each case isolates a feature the runtime must get right:
// GQA, tied head, llama3 / linear RoPE scaling, q/k/v biases, sliding windows, BF16/F16/sharded
// storage, explicit head_dim, fused projections (phi3), gemma3 (embedding scale, q/k norms,
// post-norms, local/global layers with their own RoPE, query_pre_attn_scalar), per-layer widths
// (openelm) and mixtures of experts (mixtral, including an expert no token picks).
//
// Links only torch-free libraries; it is registered under SLMC_WITH_TORCH because the goldens
// come from the model_goldens fixture (python3-torch). Missing goldens fail, never skip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "export/runtime/model.h"
#include "export/slm_export.h"
#include "tests/model/golden_files.h"

#ifndef SLMC_MODEL_GOLDEN_DIR
#error "SLMC_MODEL_GOLDEN_DIR must name the directory gen_goldens.py writes"
#endif

namespace fs = std::filesystem;

namespace slmc {
namespace {

// Max abs logit error against the fp32 PyTorch reference. Logits are O(1..12). The f32 artifact
// holds the reference's exact weights, so the runtime differs from it only by fp32 summation
// order (SIMD dot products, tiled matmuls) and exp/cos/sin implementations: gen_goldens.py
// measures each case's fp32 rounding noise against a float64 run at <= ~1e-5 (and refuses a case
// above 2e-5). 1e-4 is ~10x that noise, while every real mistake (a wrong RoPE pairing or
// frequency, a window off by one, a missing bias or norm, the wrong softmax scale or embedding
// scale, a wrong expert choice or weight) moves logits by >= 1e-1. Same bound as
// tests/model/golden_test.cpp.
constexpr double kLogitTol = 1e-4;

// The fixture writes into the build tree; SLMC_MODEL_GOLDEN_DIR in the environment points the
// test at goldens generated elsewhere (gen_goldens.py --out DIR) when run by hand.
std::string golden_dir(const std::string& c) {
  const char* env = std::getenv("SLMC_MODEL_GOLDEN_DIR");
  return std::string(env && *env ? env : SLMC_MODEL_GOLDEN_DIR) + "/" + c;
}

// Max abs error of `got` (seq, vocab) against sequence b of the golden; `worst_pos` gets the
// position of the largest error (a position-dependent error points at RoPE or the window), and
// a non-finite logit counts as an infinite error.
double max_error(const testing::GoldenFiles& g, int64_t b, const std::vector<float>& got, int64_t* worst_pos) {
  double worst = 0;
  *worst_pos = 0;
  const float* want = g.logits.data() + b * g.seq * g.vocab;
  for (int64_t t = 0; t < g.seq; ++t)
    for (int64_t v = 0; v < g.vocab; ++v) {
      const float x = got[static_cast<size_t>(t * g.vocab + v)];
      const double e = std::isfinite(x) ? std::fabs(static_cast<double>(x) - want[t * g.vocab + v])
                                        : INFINITY;
      if (e > worst) {
        worst = e;
        *worst_pos = t;
      }
    }
  return worst;
}

// Removes the exported artifact however the test ends.
struct TempFile {
  std::string path;
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

std::vector<runtime::Isa> isas() {
  std::vector<runtime::Isa> out;
  for (runtime::Isa isa :
       {runtime::Isa::kScalar, runtime::Isa::kAvx2, runtime::Isa::kAvx512, runtime::Isa::kAmx})
    if (static_cast<int>(isa) <= static_cast<int>(runtime::hardware_isa())) out.push_back(isa);
  return out;
}

// What a decode step streams, from the spec alone, for an f32 artifact (4 bytes per weight): every
// tensor but an untied embedding table, and of each MoE layer's experts n_expert_used of them.
uint64_t f32_bytes_per_token(const ModelSpec& spec) {
  uint64_t n = 0;
  for (const TensorDecl& d : expected_tensors(spec)) {
    if (d.name == names::kTokenEmbd && !spec.tied_embeddings) continue;
    if (d.name.find(".expert.") != std::string::npos) continue;
    int64_t numel = 1;
    for (int64_t s : d.shape) numel *= s;
    n += 4 * static_cast<uint64_t>(numel);
  }
  for (const LayerSpec& l : spec.layers)
    n += 4 * static_cast<uint64_t>(l.n_expert_used * 3 * l.ffn_dim * spec.d_model);
  return n;
}

class FamilyGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(FamilyGolden, RuntimeMatchesPyTorchReference) {
  const std::string name = GetParam();
  const std::string dir = golden_dir(name);
  testing::GoldenFiles g;
  ASSERT_NO_FATAL_FAILURE(testing::read_golden_files_or_fail(dir, &g));
  const LoadedModel m = load_model(dir);
  ASSERT_EQ(m.spec.vocab, g.vocab);

  TempFile slm{(fs::temp_directory_path() /
                ("slmc_family_golden_" + std::to_string(::getpid()) + "_" + name + ".slm"))
                   .string()};
  export_slm(m, codec::Format::kF32, nullptr, slm.path, 2);
  runtime::Model rm(slm.path);
  ASSERT_EQ(rm.spec().to_json(), m.spec.to_json());
  EXPECT_EQ(rm.bytes_per_token(), f32_bytes_per_token(m.spec));
  runtime::ThreadPool pool(2);

  const int64_t T = g.seq, V = g.vocab;
  double case_worst = 0;
  for (runtime::Isa isa : isas()) {
    runtime::Session s(rm, pool, T, isa, runtime::ActPrecision::kPrecise);
    for (int64_t chunk : {T, int64_t{1}, int64_t{5}}) {
      const std::string mode = chunk == T ? "prefill" : chunk == 1 ? "decode" : "chunk 5";
      double worst = 0;
      for (int64_t b = 0; b < g.batch; ++b) {
        const std::vector<int32_t> ids(g.ids.begin() + b * T, g.ids.begin() + (b + 1) * T);
        std::vector<float> got(static_cast<size_t>(T * V), NAN);
        s.reset();
        for (int64_t p = 0; p < T; p += chunk) {
          const int64_t n = std::min(chunk, T - p);
          s.forward(ids.data() + p, n, got.data() + p * V, /*all_logits=*/true);
          ASSERT_EQ(s.pos(), p + n);
        }
        int64_t pos = 0;
        const double err = max_error(g, b, got, &pos);
        worst = std::max(worst, err);
        EXPECT_LE(err, kLogitTol) << name << " " << runtime::isa_name(isa) << " " << mode
                                  << ": sequence " << b << ", worst at position " << pos;
      }
      std::printf("[ runtime  ] %-22s %-6s %-8s max abs error %.3g\n", name.c_str(),
                  runtime::isa_name(isa), mode.c_str(), worst);
      case_worst = std::max(case_worst, worst);
    }
  }
  RecordProperty("max_abs_error", std::to_string(case_worst));
}

INSTANTIATE_TEST_SUITE_P(Cases, FamilyGolden, ::testing::ValuesIn(testing::kGoldenCases),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

}  // namespace
}  // namespace slmc
