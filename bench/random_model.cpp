// slmc_random_model: writes an .slm with random weights at a real Llama shape, so decode and
// prefill speed can be measured at sizes no pretrained checkpoint here has, or a tiny checkpoint
// of any family (bench/gguf_check.sh has llama.cpp load each). Weights are N(0, 0.02) (norms 1),
// quantized with the codec's reference RTN, like llama.cpp's random-weight benches; the byte
// tokenizer is embedded (`slmc export --format gguf` pads it to the vocab).
//
//   slmc_random_model --shape 134m|1.1b|tiny [--family llama|qwen2|phi3|gemma3|openelm|mixtral|
//                     pruned] --type q4_0 -o model.slm
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "compress/core/error.h"
#include "compress/core/model_spec.h"
#include "compress/core/progress.h"
#include "compress/core/tensor_names.h"
#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"

namespace {

using namespace slmc;

// A tiny checkpoint of `family` at widths every block format holds (rows of 256), vocab 258 (the
// byte tokenizer): the shapes tests/export/gguf_export_test.cpp exports. "pruned" is a llama whose
// layers differ in heads and FFN width (llama.cpp's deci).
ModelSpec tiny_spec(const std::string& family) {
  Family f = Family::kLlama;
  SLMC_CHECK(family == "pruned" || family_from_name(family == "gemma3" ? "gemma3_text" : family, &f),
             "--family must be llama, mistral, qwen2, phi3, gemma3, openelm, mixtral or pruned, got '",
             family, "'");
  const int64_t n_layer = f == Family::kGemma3 || f == Family::kOpenELM || family == "pruned" ? 3 : 2;
  ModelSpec s = make_uniform_spec(f, 258, 256, n_layer, 4, 2, 512, 512);
  s.tied_embeddings = f == Family::kQwen2 || f == Family::kGemma3 || f == Family::kOpenELM;
  s.bos_id = 256;
  s.eos_id = 257;
  for (size_t i = 0; i < s.layers.size(); ++i) {
    LayerSpec& l = s.layers[i];
    if (f == Family::kQwen2) l.attn_qkv_bias = true;
    if (f == Family::kMixtral) {
      l.n_expert = 4;
      l.n_expert_used = 2;
    }
    if (f == Family::kGemma3) {
      l.qk_norm = l.post_norms = true;
      l.attn_scale = 1.0 / 8.0;  // 1/sqrt(head_dim 64)
      if (i != 2) {
        l.window = 8;
        l.rope_scaled = false;
      } else {
        l.rope_theta = 1000000.0;
      }
    }
    if (f == Family::kOpenELM) {
      l.qk_norm = true;
      l.n_head = 2 + 2 * static_cast<int64_t>(i);
      l.n_kv_head = 1 + static_cast<int64_t>(i);
      l.head_dim = 64;
      l.ffn_dim = 256 * (1 + static_cast<int64_t>(i));
    }
  }
  if (f == Family::kGemma3) {
    s.act = Activation::kGeluTanh;
    s.embed_scale = 16.0;
  }
  if (family == "pruned") {
    s.layers[1].n_head = 2;
    s.layers[1].n_kv_head = 1;
    s.layers[2].ffn_dim = 256;
  }
  return s;
}

ModelSpec shape_spec(const std::string& shape, const std::string& family) {
  ModelSpec s;
  if (shape == "134m") {
    s = make_uniform_spec(Family::kLlama, 32000, 768, 12, 12, 12, 2048, 2048);
    s.tied_embeddings = false;
  } else if (shape == "1.1b") {
    s = make_uniform_spec(Family::kLlama, 32000, 2048, 22, 32, 4, 5632, 2048);
    s.tied_embeddings = false;
  } else if (shape == "tiny") {
    s = tiny_spec(family);
  } else {
    fail("--shape must be 134m, 1.1b or tiny, got '", shape, "'");
  }
  SLMC_CHECK(shape == "tiny" || family == "llama", "--family applies to --shape tiny only");
  s.validate();
  return s;
}

// xorshift64* uniforms; the sum of four is close enough to normal for speed benchmarks.
struct Rng {
  uint64_t s;
  float uniform() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<float>((s * 2685821657736338717ull) >> 40) / 16777216.0f;
  }
  float normal() { return (uniform() + uniform() + uniform() + uniform() - 2.0f) * 1.7320508f; }
};

int run(int argc, char** argv) {
  std::string shape = "134m", family = "llama", type = "q4_0", out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    SLMC_CHECK(i + 1 < argc, "usage: slmc_random_model --shape 134m|1.1b --type FORMAT -o OUT.slm");
    if (a == "--shape") shape = argv[++i];
    else if (a == "--family") family = argv[++i];
    else if (a == "--type") type = argv[++i];
    else if (a == "-o") out = argv[++i];
    else fail("unknown argument '", a, "'");
  }
  SLMC_CHECK(!out.empty(), "-o OUT.slm is required");
  codec::Format fmt;
  SLMC_CHECK(codec::format_from_name(type, &fmt), "--type must be one of ", codec::format_names(),
             ", got '", type, "'");
  const ModelSpec spec = shape_spec(shape, family);
  const std::vector<TensorDecl> decls = expected_tensors(spec);
  std::vector<std::vector<uint8_t>> bytes(decls.size());
  std::vector<codec::Format> formats(decls.size());
  Progress bar("random " + shape, static_cast<int64_t>(decls.size()), "tensor");
  std::atomic<int64_t> next{0}, done{0};
  auto worker = [&](uint64_t seed) {
    for (int64_t i; (i = next++) < static_cast<int64_t>(decls.size());) {
      const TensorDecl& d = decls[static_cast<size_t>(i)];
      Rng rng{0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1) + 12345};  // per tensor: any thread gives the same weights
      const int64_t n = shape_numel(d.shape);
      std::vector<float> x(static_cast<size_t>(n));
      const bool vec = d.shape.size() == 1;
      // Tiny models get the 1/sqrt(width) scale of an initialised network (0.02 would leave their
      // logits flat); norms near 1 with some spread.
      const float scale = shape == "tiny" && !vec ? 1.0f / std::sqrt(static_cast<float>(d.shape[1])) : 0.02f;
      for (float& v : x) v = vec ? (shape == "tiny" ? 1.0f + 0.1f * rng.normal() : 1.0f) : scale * rng.normal();
      // The export policy: linears and the embedding in --type (when their rows fit), the rest f32.
      const bool keep_f32 = vec || (!d.is_linear && d.name != names::kTokenEmbd) ||
                            !codec::row_fits(fmt, d.shape[1]);
      const codec::Format f = keep_f32 ? codec::Format::kF32 : fmt;
      const int64_t rows = vec ? 1 : d.shape[0], cols = vec ? d.shape[0] : d.shape[1];
      bytes[static_cast<size_t>(i)] = codec::quantize_ref(f, x.data(), rows, cols);
      formats[static_cast<size_t>(i)] = f;
      ++done;
    }
  };
  std::vector<std::thread> threads;
  const unsigned nt = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < nt; ++t) threads.emplace_back(worker, t);
  while (done < static_cast<int64_t>(decls.size())) {
    bar.update(done);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (auto& t : threads) t.join();
  bar.finish();
  format::SlmWriter w;
  w.set_spec_json(spec.to_json());
  w.set_tokenizer("byte", "");
  for (size_t i = 0; i < decls.size(); ++i)
    w.add_tensor(decls[i].name, formats[i], decls[i].shape, std::move(bytes[i]));
  w.write(out);
  std::fprintf(stderr, "wrote %s (%s, %.1f M params, %s)\n", out.c_str(), shape.c_str(),
               static_cast<double>(spec.n_params()) / 1e6, type.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const slmc::Error& e) {
    std::fprintf(stderr, "slmc_random_model: error: %s\n", e.what());
    return 2;
  }
}
