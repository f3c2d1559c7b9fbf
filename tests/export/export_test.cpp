// .slm export of the real stories260K checkpoint: reloaded through load_model it gives back the
// weights exactly (f32) or within the codec's own error bound (q8_0), the policy's fallbacks are
// reported, the embedded tokenizer encodes like the original file, and `slmc export` behaves.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "compress/core/atomic_file.h"
#include "compress/core/error.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/slm_format.h"
#include "export/slm_export.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace slmc {
namespace {

const std::string kData = SLMC_SHARED_DATA;
const std::string kStories = kData + "/models/stories260K/stories260K.bin";
const std::string kTokBin = kData + "/models/stories260K/tok512.bin";
const std::string kTokSpm = kData + "/models/stories260K/tok512.model";
const std::string kText = kData + "/text/tinystories_sample.txt";

using slmc::testing::TempDir;

const LoadedModel& stories() {
  static const LoadedModel m = load_model(kStories);
  return m;
}

const TensorExport& entry(const ExportReport& r, const std::string& name) {
  for (const TensorExport& t : r.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no report entry " + name);
}

// Independent distortion statistics of `got` against `ref`, as the report defines them.
struct Stats {
  double rel_l2 = 0, max_abs = 0, zero_frac = 0;
};
Stats stats(const std::vector<float>& ref, const std::vector<float>& got) {
  double e2 = 0, r2 = 0;
  Stats s;
  int64_t zeros = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = static_cast<double>(ref[i]) - got[i];
    e2 += e * e;
    r2 += static_cast<double>(ref[i]) * ref[i];
    s.max_abs = std::max(s.max_abs, std::fabs(e));
    zeros += got[i] == 0 && ref[i] != 0;
  }
  s.rel_l2 = std::sqrt(e2 / r2);
  s.zero_frac = static_cast<double>(zeros) / static_cast<double>(ref.size());
  return s;
}

TEST(SlmExport, F32IsExact) {
  TempDir dir;
  const std::string out = dir.file("f32.slm");
  const auto tok = load_tokenizer(kTokBin);
  const ExportReport r = export_slm(stories(), codec::Format::kF32, tok.get(), out, 2);
  EXPECT_EQ(r.n_fallback, 0);
  EXPECT_EQ(r.n_weights, stories().spec.n_params());
  EXPECT_EQ(r.tensor_bytes, static_cast<uint64_t>(r.n_weights) * 4);
  EXPECT_DOUBLE_EQ(r.bits_per_weight, 32.0);
  EXPECT_EQ(r.file_bytes, fs::file_size(out));
  for (const TensorExport& t : r.tensors) {
    EXPECT_EQ(t.format, codec::Format::kF32) << t.name;
    EXPECT_FALSE(t.lossy) << t.name;
  }

  const LoadedModel back = load_model(out);
  EXPECT_EQ(back.format, "slm");
  EXPECT_EQ(back.spec.to_json(), stories().spec.to_json());
  EXPECT_EQ(back.bytes_by_dtype.size(), 1u);
  EXPECT_EQ(back.bytes_by_dtype.at("f32"), static_cast<int64_t>(r.tensor_bytes));
  ASSERT_EQ(back.tensors.size(), stories().tensors.size());
  for (const auto& [name, t] : stories().tensors) {
    const HostTensor& b = back.tensors.at(name);
    EXPECT_EQ(b.shape, t.shape) << name;
    EXPECT_EQ(b.data, t.data) << name;  // bit for bit
  }
}

TEST(SlmExport, Q8_0WithinTheCodecBoundAndFfnDownFallsBackToF16) {
  TempDir dir;
  const std::string out = dir.file("q8.slm");
  const ExportReport r = export_slm(stories(), codec::Format::kQ8_0, nullptr, out, 2);
  const LoadedModel back = load_model(out);
  int n_q8 = 0;
  for (const TensorDecl& d : expected_tensors(stories().spec)) {
    const TensorExport& e = entry(r, d.name);
    const std::vector<float>& ref = stories().tensors.at(d.name).data;
    const std::vector<float>& got = back.tensors.at(d.name).data;
    ASSERT_EQ(got.size(), ref.size());
    if (d.shape.size() == 1) {
      EXPECT_EQ(e.format, codec::Format::kF32) << d.name;
      EXPECT_EQ(got, ref) << d.name;
      continue;
    }
    if (d.shape[1] == 172) {  // ffn_down: 172 columns, not a multiple of Q8_0's 32
      EXPECT_EQ(e.format, codec::Format::kF16) << d.name;
      EXPECT_TRUE(e.fallback) << d.name;
      EXPECT_NE(e.note.find("172"), std::string::npos) << e.note;
      // IEEE half, round to nearest: half an ulp, 2^-11 relative for normals, 2^-25 absolute
      // below 2^-14.
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_LE(std::fabs(ref[i] - got[i]),
                  std::ldexp(std::fabs(ref[i]), -11) + std::ldexp(1.0, -25))
            << d.name << " [" << i << "]";
    } else {
      ++n_q8;
      EXPECT_EQ(e.format, codec::Format::kQ8_0) << d.name;
      EXPECT_FALSE(e.fallback) << d.name;
      // Q8_0 per 32-weight block: d = amax / 127 and x ≈ d * round(x / d), so rounding costs at
      // most d / 2 = amax / 254; d stored as fp16 (relative error 2^-11) adds |q| * d * 2^-11
      // <= amax * 2^-11; 1e-6 * amax covers fp32 arithmetic.
      for (size_t b = 0; b < ref.size(); b += 32) {
        float amax = 0;
        for (size_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(ref[j]));
        const double bound = amax / 254.0 + std::ldexp(amax, -11) + 1e-6 * amax;
        for (size_t j = b; j < b + 32; ++j)
          ASSERT_LE(std::fabs(ref[j] - got[j]), bound) << d.name << " [" << j << "]";
      }
    }
    // The report's statistics are those of the artifact.
    const Stats s = stats(ref, got);
    EXPECT_NEAR(e.rel_l2, s.rel_l2, 1e-9) << d.name;
    EXPECT_DOUBLE_EQ(e.max_abs, s.max_abs) << d.name;
    EXPECT_DOUBLE_EQ(e.zero_frac, s.zero_frac) << d.name;
    EXPECT_LT(e.rel_l2, 0.01) << d.name;  // Q8_0 on trained weights: well under 1 %
  }
  EXPECT_EQ(n_q8, 1 + 4 * stories().spec.n_layer() + 2 * stories().spec.n_layer());
  EXPECT_EQ(r.n_fallback, stories().spec.n_layer());
  EXPECT_NEAR(r.bits_per_weight, 8.0 * r.tensor_bytes / r.n_weights, 1e-12);
  // Every weight's cost: 8.5 bits in Q8_0 (34 bytes per 32), 16 in the f16 fallbacks, 32 in f32.
  double bits = 0;
  for (const TensorExport& t : r.tensors)
    bits += t.n_weights * (t.format == codec::Format::kQ8_0  ? 8.5
                           : t.format == codec::Format::kF16 ? 16.0
                                                             : 32.0);
  EXPECT_NEAR(r.bits_per_weight, bits / r.n_weights, 1e-12);
  EXPECT_EQ(back.bytes_by_dtype.at("q8_0") + back.bytes_by_dtype.at("f16") +
                back.bytes_by_dtype.at("f32"),
            static_cast<int64_t>(r.tensor_bytes));
  const std::string table = export_report_table(r);
  EXPECT_NE(table.find("stored as f16"), std::string::npos) << table;
  const auto j = nlohmann::json::parse(export_report_json(r));
  EXPECT_EQ(j.at("totals").at("n_fallback").get<int>(), r.n_fallback);
  std::printf("%s", table.c_str());
}

// A format whose block does not divide d_model (q4_g128 vs 64 columns) leaves no matrix in it:
// everything falls back, and the report says so tensor by tensor.
TEST(SlmExport, Q4FormatsAndTheirFallbacks) {
  TempDir dir;
  for (const codec::Format f :
       {codec::Format::kQ4_0, codec::Format::kQ4_G64, codec::Format::kQ4_G128}) {
    const std::string out = dir.file(std::string(codec::format_info(f).name) + ".slm");
    const ExportReport r = export_slm(stories(), f, nullptr, out, 2);
    const LoadedModel back = load_model(out);
    const int block = codec::format_info(f).block_size;
    for (const TensorDecl& d : expected_tensors(stories().spec)) {
      if (d.shape.size() != 2) continue;
      const TensorExport& e = entry(r, d.name);
      const bool fits = d.shape[1] % block == 0;
      EXPECT_EQ(e.format, fits ? f : codec::Format::kF16) << d.name;
      EXPECT_EQ(e.fallback, !fits) << d.name;
      const Stats s = stats(stories().tensors.at(d.name).data, back.tensors.at(d.name).data);
      EXPECT_NEAR(e.rel_l2, s.rel_l2, 1e-9) << d.name;
      // int4 RTN: about 1/15 of a block's range per step; 25 % relative L2 would mean a broken
      // codec, not rounding.
      EXPECT_LT(e.rel_l2, fits ? 0.25 : 1e-3) << d.name;
    }
    std::printf("%s: %llu bytes, %.3f bits/weight, %d fallbacks\n", codec::format_info(f).name,
                static_cast<unsigned long long>(r.file_bytes), r.bits_per_weight, r.n_fallback);
  }
}

TEST(SlmExport, BytesDoNotDependOnThreads) {
  TempDir dir;
  const auto tok = load_tokenizer(kTokSpm);
  const ExportReport a =
      export_slm(stories(), codec::Format::kQ4_0, tok.get(), dir.file("1.slm"), 1);
  const ExportReport b =
      export_slm(stories(), codec::Format::kQ4_0, tok.get(), dir.file("2.slm"), 2);
  EXPECT_EQ(read_file(dir.file("1.slm")), read_file(dir.file("2.slm")));
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].rel_l2, b.tensors[i].rel_l2);
    EXPECT_EQ(a.tensors[i].max_abs, b.tensors[i].max_abs);
  }
}

// The runtime has only the blob: rebuilt from it, each tokenizer must encode the sample text to
// the very ids of the original file, and decode them back alike.
TEST(SlmExport, TokenizerRoundTripThroughTheBlob) {
  TempDir dir;
  const std::string text = read_file(kText);
  for (const std::string& path : {kTokBin, kTokSpm}) {
    const auto original = load_tokenizer(path);
    const std::string out = dir.file("tok.slm");
    export_slm(stories(), codec::Format::kQ8_0, original.get(), out, 2);
    const format::SlmFile f(out);
    EXPECT_EQ(f.tokenizer_kind(), original->kind());
    const std::string blob(reinterpret_cast<const char*>(f.tokenizer_data()), f.tokenizer_bytes());
    EXPECT_EQ(blob, read_file(path));  // the file's bytes as-is
    const auto rebuilt = load_tokenizer_from_bytes(f.tokenizer_kind(), blob, out + " (embedded)");
    EXPECT_EQ(rebuilt->kind(), original->kind());
    EXPECT_EQ(rebuilt->vocab_size(), original->vocab_size());
    EXPECT_EQ(rebuilt->bos_id(), original->bos_id());
    EXPECT_EQ(rebuilt->eos_id(), original->eos_id());
    EXPECT_EQ(rebuilt->blob(), blob);
    const std::vector<int32_t> ids = original->encode(text);
    ASSERT_GT(ids.size(), 1000u);
    EXPECT_EQ(rebuilt->encode(text), ids) << path;
    EXPECT_EQ(rebuilt->decode(ids), original->decode(ids)) << path;
  }
}

TEST(SlmExport, TokenizerFromBytesRejectsBadInput) {
  EXPECT_THROW(load_tokenizer_from_bytes("tiktoken", "x", "blob"), Error);
  EXPECT_THROW(load_tokenizer_from_bytes("sentencepiece", "", "blob"), Error);
  EXPECT_THROW(load_tokenizer_from_bytes("llama2c", "ab", "blob"), Error);
  const auto byte = load_tokenizer_from_bytes("byte", "", "blob");  // built-in byte tokenizer
  EXPECT_EQ(byte->kind(), "byte");
  EXPECT_EQ(byte->vocab_size(), 258);
  try {
    load_tokenizer_from_bytes("sentencepiece", "\x0a\x05", "m.slm (embedded tokenizer)");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("m.slm (embedded tokenizer)", 0), 0u) << e.what();
  }
}

TEST(SlmExport, NonFiniteWeightIsRefusedAndNothingIsWritten) {
  TempDir dir;
  LoadedModel m = stories();
  m.tensors.at("blk.2.ffn_up.weight").data[77] = std::numeric_limits<float>::quiet_NaN();
  const std::string out = dir.file("nan.slm");
  try {
    export_slm(m, codec::Format::kQ8_0, nullptr, out, 2);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("blk.2.ffn_up.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index 77"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(out));
}

// ---- The command line ----------------------------------------------------------------------

struct Result {
  int code = -1;
  std::string out, err;
};

Result slmc(const std::string& args) {
  TempDir dir;
  const std::string out = dir.file("out"), err = dir.file("err");
  const std::string cmd =
      std::string(SLMC_EXE) + " --threads 2 -q " + args + " >" + out + " 2>" + err;
  const int st = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

TEST(SlmExportCli, BadInputExits2WithOneLine) {
  TempDir dir;
  const Result r = slmc("export --model /nonexistent/m.bin -o " + q(dir.file("x.slm")));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("slmc: error: /nonexistent/m.bin", 0), 0u) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x.slm")));

  const Result g =
      slmc("export --model " + q(kStories) + " --format safetensors -o " + q(dir.file("x")));
  EXPECT_EQ(g.code, 2) << g.err;
  EXPECT_NE(g.err.find("slm or gguf (safetensors comes later)"), std::string::npos) << g.err;
  const Result t = slmc("export --model " + q(kStories) + " --type q3_k -o " + q(dir.file("x")));
  EXPECT_EQ(t.code, 2) << t.err;
  EXPECT_NE(t.err.find("q4_g128"), std::string::npos) << t.err;  // the choices, from the table

  write_file_atomically(dir.file("bad.slm"), std::string(format::kSlmMagic, 8) + "garbage");
  const Result b = slmc("inspect " + q(dir.file("bad.slm")));
  EXPECT_EQ(b.code, 2) << b.err;
  EXPECT_EQ(std::count(b.err.begin(), b.err.end(), '\n'), 1) << b.err;
  EXPECT_NE(b.err.find("bad.slm"), std::string::npos) << b.err;
}

// Export, then let LibTorch evaluate exactly the artifact with the tokenizer it embeds (no
// tokenizer file beside it): f32 scores what the .bin scores; q8_0 stays close.
TEST(SlmExportCli, ExportInspectAndEvalTheArtifact) {
  TempDir dir;
  const Result e32 = slmc("export --model " + q(kStories) + " --tokenizer " + q(kTokSpm) +
                          " --type f32 -o " + q(dir.file("f32.slm")));
  ASSERT_EQ(e32.code, 0) << e32.err;
  EXPECT_NE(e32.out.find("total:"), std::string::npos) << e32.out;
  const Result e8 = slmc("export --model " + q(kStories) + " --type Q8_0 -o " +
                         q(dir.file("q8.slm")) + " --json");
  ASSERT_EQ(e8.code, 0) << e8.err;
  const auto j = nlohmann::json::parse(e8.out);
  EXPECT_EQ(j.at("type"), "q8_0");
  // Found beside the .bin: tok*.model comes before tok*.bin (find_tokenizer_beside).
  EXPECT_EQ(j.at("tokenizer").at("kind"), "sentencepiece");
  EXPECT_EQ(j.at("totals").at("n_fallback"), 5);
  for (const auto& t : j.at("tensors")) {
    if (t.at("name").get<std::string>().find("ffn_down") != std::string::npos) {
      EXPECT_EQ(t.at("format"), "f16") << t.dump();
      EXPECT_TRUE(t.at("fallback").get<bool>()) << t.dump();
    }
  }

  const Result in = slmc("inspect " + q(dir.file("q8.slm")) + " --json");
  ASSERT_EQ(in.code, 0) << in.err;
  const auto ij = nlohmann::json::parse(in.out);
  EXPECT_EQ(ij.at("format"), "slm");
  EXPECT_EQ(ij.at("tokenizer").at("kind"), "sentencepiece");
  EXPECT_NE(ij.at("tokenizer").at("path").get<std::string>().find("embedded"), std::string::npos);
  EXPECT_TRUE(ij.at("bytes_by_dtype").contains("q8_0"));

  const auto eval = [&](const std::string& model) {
    const Result r =
        slmc("eval --model " + q(model) + " --data " + q(kText) + " --backend torch --json");
    EXPECT_EQ(r.code, 0) << r.err;
    return nlohmann::json::parse(r.out).at("nll").get<double>();
  };
  const double nll_bin = eval(kStories);
  const double nll_f32 = eval(dir.file("f32.slm"));
  const double nll_q8 = eval(dir.file("q8.slm"));
  EXPECT_NEAR(nll_f32, nll_bin, 1e-6);
  constexpr double kQ8Tol = 0.02;  // nats/token: Q8_0 moves stories260K by a few thousandths
  EXPECT_NEAR(nll_q8, nll_bin, kQ8Tol);
  std::printf("stories260K NLL: bin %.5f, f32.slm %.5f, q8_0.slm %.5f\n", nll_bin, nll_f32, nll_q8);
}

}  // namespace
}  // namespace slmc
