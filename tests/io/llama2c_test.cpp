// llama2.c legacy checkpoints: the shared stories260K model, a synthetic untied file whose every
// tensor is checked against where the format puts it, the RoPE row permutation, and bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

using testing::append_pod;
using testing::expect_error;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

const std::string kStories = std::string(SLMC_SHARED_DATA) + "/models/stories260K/stories260K.bin";

struct Header {
  int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;
};

std::string header_bytes(const Header& h) {
  std::string s;
  for (int32_t v : {h.dim, h.hidden, h.layers, h.heads, h.kv_heads, h.vocab, h.seq_len})
    append_pod(&s, v);
  return s;
}

// The float blocks of a llama2.c file in file order (export.py legacy_export).
struct Blocks {
  std::vector<float> emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls;
};

Blocks random_blocks(const Header& h, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  auto make = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
  };
  const int64_t vocab = std::abs(h.vocab), d = h.dim, L = h.layers, hs = h.dim / h.heads;
  const int64_t q = h.heads * hs, kv = h.kv_heads * hs;
  Blocks b;
  b.emb = make(vocab * d);
  b.rms_att = make(L * d);
  b.wq = make(L * q * d);
  b.wk = make(L * kv * d);
  b.wv = make(L * kv * d);
  b.wo = make(L * d * q);
  b.rms_ffn = make(L * d);
  b.w1 = make(L * h.hidden * d);
  b.w2 = make(L * d * h.hidden);
  b.w3 = make(L * h.hidden * d);
  b.rms_final = make(d);
  b.freq = make(h.seq_len * hs);  // real then imag, (seq_len, hs/2) each
  if (h.vocab < 0) b.wcls = make(vocab * d);
  return b;
}

std::string file_bytes(const Header& h, const Blocks& b) {
  std::string s = header_bytes(h);
  for (const auto* v : {&b.emb, &b.rms_att, &b.wq, &b.wk, &b.wv, &b.wo, &b.rms_ffn, &b.w1, &b.w2,
                        &b.w3, &b.rms_final, &b.freq, &b.wcls})
    s.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float));
  return s;
}

// Slice `i` of a block stacked over layers, each slice `n` floats.
std::vector<float> layer(const std::vector<float>& block, int64_t i, int64_t n) {
  return std::vector<float>(block.begin() + i * n, block.begin() + (i + 1) * n);
}

TEST(Llama2c, SyntheticUntiedFilePutsEveryTensorWhereTheFormatSays) {
  TempDir dir;
  const Header h{8, 12, 2, 2, 1, -10, 6};  // untied, GQA 2:1, head size 4
  const Blocks b = random_blocks(h, 7);
  const std::string path = dir.file("tiny.bin");
  write_bytes(path, file_bytes(h, b));

  const LoadedModel m = load_llama2c(path);
  EXPECT_EQ(m.format, "llama2c");
  EXPECT_FALSE(m.spec.tied_embeddings);
  EXPECT_EQ(m.spec.vocab, 10);
  const TensorMap& t = m.tensors;
  const int64_t d = 8, hid = 12, hs = 4, half = 2;
  EXPECT_EQ(t.at("token_embd.weight").data, b.emb);
  EXPECT_EQ(t.at("output_norm.weight").data, b.rms_final);
  EXPECT_EQ(t.at("output.weight").data, b.wcls);
  EXPECT_EQ(t.at("output.weight").shape, (std::vector<int64_t>{10, 8}));
  for (int64_t i = 0; i < 2; ++i) {
    auto at = [&](const char* suffix) { return t.at(names::blk(i, suffix)); };
    EXPECT_EQ(at(names::kAttnNorm).data, layer(b.rms_att, i, d));
    EXPECT_EQ(at(names::kAttnV).data, layer(b.wv, i, hs * d));
    EXPECT_EQ(at(names::kAttnOut).data, layer(b.wo, i, d * 2 * hs));
    EXPECT_EQ(at(names::kFfnNorm).data, layer(b.rms_ffn, i, d));
    EXPECT_EQ(at(names::kFfnGate).data, layer(b.w1, i, hid * d));  // w1 = gate
    EXPECT_EQ(at(names::kFfnDown).data, layer(b.w2, i, d * hid));  // w2 = down
    EXPECT_EQ(at(names::kFfnUp).data, layer(b.w3, i, hid * d));    // w3 = up
    EXPECT_EQ(at(names::kFfnDown).shape, (std::vector<int64_t>{d, hid}));
    // q, k rows: HF row h*hs + t*half + j comes from interleaved row h*hs + 2j + t.
    const std::vector<float> wq = layer(b.wq, i, 2 * hs * d), wk = layer(b.wk, i, hs * d);
    const HostTensor& q = at(names::kAttnQ);
    const HostTensor& k = at(names::kAttnK);
    for (int64_t head = 0; head < 2; ++head)
      for (int64_t tt = 0; tt < 2; ++tt)
        for (int64_t j = 0; j < half; ++j)
          for (int64_t c = 0; c < d; ++c) {
            const int64_t to = head * hs + tt * half + j, from = head * hs + 2 * j + tt;
            EXPECT_EQ(q.data[static_cast<size_t>(to * d + c)],
                      wq[static_cast<size_t>(from * d + c)]);
            if (head < 1) {
              EXPECT_EQ(k.data[static_cast<size_t>(to * d + c)],
                        wk[static_cast<size_t>(from * d + c)]);
            }
          }
  }
}

// ---- stories260K ----

// Interleaved (llama2.c run.c) RoPE of one (n_head * hs) vector at position `pos`.
void rope_interleaved(std::vector<double>* v, int64_t hs, int64_t pos) {
  for (size_t i = 0; i < v->size(); i += 2) {
    const double freq = 1.0 / std::pow(10000.0, static_cast<double>(i % hs) / hs);
    const double c = std::cos(pos * freq), s = std::sin(pos * freq);
    const double a = (*v)[i], b = (*v)[i + 1];
    (*v)[i] = a * c - b * s;
    (*v)[i + 1] = a * s + b * c;
  }
}

// Rotate-half (HF) RoPE: pairs (j, j + hs/2) in each head, frequency 10000^(-2j/hs).
void rope_half(std::vector<double>* v, int64_t hs, int64_t pos) {
  const int64_t half = hs / 2;
  for (size_t h0 = 0; h0 < v->size(); h0 += static_cast<size_t>(hs))
    for (int64_t j = 0; j < half; ++j) {
      const double freq = 1.0 / std::pow(10000.0, 2.0 * j / hs);
      const double c = std::cos(pos * freq), s = std::sin(pos * freq);
      double& a = (*v)[h0 + static_cast<size_t>(j)];
      double& b = (*v)[h0 + static_cast<size_t>(j + half)];
      const double x = a, y = b;
      a = x * c - y * s;
      b = y * c + x * s;
    }
}

std::vector<double> matvec(const float* w, int64_t rows, int64_t cols,
                           const std::vector<double>& x) {
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[static_cast<size_t>(r)] += w[r * cols + c] * x[static_cast<size_t>(c)];
  return y;
}

TEST(Llama2c, Stories260KSpec) {
  ASSERT_TRUE(std::filesystem::exists(kStories)) << kStories;
  const LoadedModel m = load_model(kStories);
  EXPECT_EQ(m.format, "llama2c");
  EXPECT_EQ(m.path, kStories);
  const ModelSpec& s = m.spec;
  EXPECT_EQ(s.family, Family::kLlama);
  EXPECT_EQ(s.d_model, 64);
  EXPECT_EQ(s.vocab, 512);
  EXPECT_EQ(s.n_layer(), 5);
  EXPECT_EQ(s.max_seq, 512);
  EXPECT_TRUE(s.tied_embeddings);
  EXPECT_DOUBLE_EQ(s.norm_eps, 1e-5);
  EXPECT_EQ(s.bos_id, 1);
  EXPECT_EQ(s.eos_id, 2);
  for (const LayerSpec& l : s.layers) {
    EXPECT_EQ(l.n_head, 8);
    EXPECT_EQ(l.n_kv_head, 4);
    EXPECT_EQ(l.head_dim, 8);
    EXPECT_EQ(l.ffn_dim, 172);
    EXPECT_DOUBLE_EQ(l.rope_theta, 10000.0);
  }
  EXPECT_EQ(m.tensors.size(), 1u + 5u * 9u + 1u);
  EXPECT_EQ(m.tensors.count("output.weight"), 0u);
  // Every weight but the 512 x 8 RoPE table is counted.
  EXPECT_EQ(m.bytes_by_dtype.at("F32"),
            static_cast<int64_t>(std::filesystem::file_size(kStories)) - 28 - 512 * 8 * 4);
}

TEST(Llama2c, Stories260KRopePermutationKeepsAttentionScores) {
  const LoadedModel m = load_llama2c(kStories);
  const std::string raw = read_bytes(kStories);
  const int64_t d = 64, L = 5, vocab = 512, hs = 8, n_head = 8, n_kv = 4;
  // Original (interleaved) wq and wk of every layer, straight from the file.
  const float* base = reinterpret_cast<const float*>(raw.data() + 28);
  const float* wq = base + vocab * d + L * d;
  const float* wk = wq + L * d * d;

  std::mt19937 rng(42);
  std::normal_distribution<double> dist;
  for (int64_t li = 0; li < L; ++li) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<double> xq(d), xk(d);
      for (double& v : xq) v = dist(rng);
      for (double& v : xk) v = dist(rng);
      const int64_t pos_q = 5 + 37 * trial, pos_k = 3 + 11 * trial;

      std::vector<double> q0 = matvec(wq + li * d * d, n_head * hs, d, xq);
      std::vector<double> k0 = matvec(wk + li * n_kv * hs * d, n_kv * hs, d, xk);
      rope_interleaved(&q0, hs, pos_q);
      rope_interleaved(&k0, hs, pos_k);

      const HostTensor& pq = m.tensors.at(names::blk(li, names::kAttnQ));
      const HostTensor& pk = m.tensors.at(names::blk(li, names::kAttnK));
      std::vector<double> q1 = matvec(pq.data.data(), n_head * hs, d, xq);
      std::vector<double> k1 = matvec(pk.data.data(), n_kv * hs, d, xk);
      rope_half(&q1, hs, pos_q);
      rope_half(&k1, hs, pos_k);

      // Rotated vectors agree component for component under the permutation...
      for (int64_t h = 0; h < n_head; ++h)
        for (int64_t t = 0; t < 2; ++t)
          for (int64_t j = 0; j < hs / 2; ++j)
            ASSERT_NEAR(q1[static_cast<size_t>(h * hs + t * hs / 2 + j)],
                        q0[static_cast<size_t>(h * hs + 2 * j + t)], 1e-9);
      // ...so every attention score q_h . k_{h / group} is the same.
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t g = h / (n_head / n_kv);
        double s0 = 0, s1 = 0;
        for (int64_t c = 0; c < hs; ++c) {
          s0 += q0[static_cast<size_t>(h * hs + c)] * k0[static_cast<size_t>(g * hs + c)];
          s1 += q1[static_cast<size_t>(h * hs + c)] * k1[static_cast<size_t>(g * hs + c)];
        }
        EXPECT_NEAR(s1, s0, 1e-9 * (1 + std::abs(s0))) << "layer " << li << " head " << h;
      }
    }
  }
}

// ---- bad files ----

TEST(Llama2cErrors, HeaderInconsistentWithFileSize) {
  TempDir dir;
  const Header h{8, 12, 2, 2, 1, 10, 6};
  std::string bytes = file_bytes(h, random_blocks(h, 1));
  const size_t expected = bytes.size();
  const std::string longer = dir.file("longer.bin"), shorter = dir.file("shorter.bin");
  write_bytes(longer, bytes + std::string(4, '\0'));
  write_bytes(shorter, bytes.substr(0, bytes.size() - 1));
  expect_error([&] { load_llama2c(longer); },
               {longer, "implies", std::to_string(expected) + " bytes",
                "has " + std::to_string(expected + 4)});
  expect_error([&] { load_llama2c(shorter); },
               {shorter, "implies", "has " + std::to_string(expected - 1)});
  // Detection refuses it too and says why.
  expect_error([&] { load_model(longer); }, {longer, "unrecognised", "llama2.c", "implies"});
}

TEST(Llama2cErrors, BadHeaderFields) {
  TempDir dir;
  const std::string path = dir.file("bad.bin");
  auto expect_bad = [&](const Header& h, std::initializer_list<std::string> words) {
    write_bytes(path, header_bytes(h) + std::string(64, '\0'));
    std::vector<std::string> parts(words);
    try {
      load_llama2c(path);
      ADD_FAILURE() << "expected slmc::Error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  };
  expect_bad({8, 12, 2, 0, 1, 10, 6}, {"n_heads must be > 0, got 0"});
  expect_bad({8, -12, 2, 2, 1, 10, 6}, {"hidden_dim must be > 0, got -12"});
  expect_bad({8, 12, 2, 2, 1, 0, 6}, {"vocab_size", "got 0"});
  expect_bad({10, 12, 2, 4, 1, 10, 6}, {"dim 10 is not divisible by n_heads 4"});
  expect_bad({8, 12, 2, 2, 3, 10, 6}, {"n_heads 2 is not a multiple of n_kv_heads 3"});
  expect_bad({6, 12, 2, 2, 1, 10, 6}, {"head size 3"});
  expect_bad({1 << 30, 1 << 30, 1 << 30, 1, 1, 1 << 30, 1 << 30}, {"2^64"});
  write_bytes(path, std::string(10, '\1'));
  expect_error([&] { load_llama2c(path); }, {path, "truncated", "10 bytes"});
}

TEST(Llama2cErrors, CorruptedHeadersOnlyEverThrowSlmcError) {
  TempDir dir;
  const Header h{8, 12, 2, 2, 1, -10, 6};
  const std::string bytes = file_bytes(h, random_blocks(h, 5));
  const std::string path = dir.file("corrupt.bin");
  std::mt19937 rng(99);
  int rejected = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string b = bytes;
    if (i % 2 == 0) {
      b[rng() % 28] = static_cast<char>(rng());  // a header byte
    } else {
      b.resize(rng() % b.size());  // a truncation
    }
    write_bytes(path, b);
    for (bool detect : {false, true}) {
      try {
        if (detect) {
          load_model(path);
        } else {
          load_llama2c(path);
        }
      } catch (const Error& e) {
        ++rejected;
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(rejected, 1000);
}

TEST(ModelLoader, DetectionErrors) {
  TempDir dir;
  expect_error([&] { load_model(dir.file("absent")); }, {dir.file("absent"), "no such file"});
  const std::string text = dir.file("notes.txt");
  write_bytes(text, "Once upon a time there was a little model that could not be loaded.\n");
  expect_error([&] { load_model(text); }, {text, "unrecognised", "expected a Hugging Face"});
  const std::string tiny = dir.file("tiny.bin");
  write_bytes(tiny, "abc");
  expect_error([&] { load_model(tiny); }, {tiny, "only 3 bytes"});
  const std::string h5 = dir.file("tokens.h5");
  write_bytes(h5, std::string("\x89HDF\r\n\x1a\n", 8) + std::string(100, '\0'));
  expect_error([&] { load_model(h5); }, {h5, "HDF5"});
}

}  // namespace
}  // namespace slmc
