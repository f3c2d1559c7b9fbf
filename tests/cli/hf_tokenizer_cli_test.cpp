// End to end with a real tokenizer.json: a random-weight Llama checkpoint (vocab 128,256) beside
// Meta's Llama 3 tokenizer (from the hf_oracle fixture, tests/tokenizer/hf_oracle_setup.sh) runs
// inspect, data tokenize, eval, generate and quantize --calib on WikiText-2 text; its .slm
// carries the tokenizer and the runtime generates the same text as LibTorch; generation stops at
// every EOS id generation_config.json lists; bad tokenizer files exit 2 naming file and key.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "compress/core/atomic_file.h"
#include "compress/io/h5.h"
#include "compress/model/sampler.h"
#include "compress/model/transformer.h"
#include "compress/tokenizer/hf_tokenizer.h"
#include "tests/cli/cli_util.h"

namespace slmc {
namespace {

using namespace slmc::clitest;

const std::string kLlama3 = std::string(SLMC_HF_ORACLE_DIR) + "/llama3";
constexpr int64_t kVocab = 128256;
constexpr int32_t kBos = 128000, kEos = 128001, kEot = 128009;

// A random Llama 3 shaped checkpoint (d_model 32, 2 layers, GQA) with the real tokenizer files
// beside config.json.
std::string make_llama3(const TempDir& dir, const std::vector<int32_t>& eos_ids = {kEos, kEot}) {
  ModelSpec s = make_uniform_spec(Family::kLlama, kVocab, 32, 2, 4, 2, 64, 512, 500000.0);
  s.bos_id = kBos;
  s.eos_id = kEos;
  TensorMap t;
  std::mt19937 rng(2024);
  std::uniform_real_distribution<float> weight(-0.25f, 0.25f);
  for (const TensorDecl& d : expected_tensors(s)) {
    HostTensor& h = t[d.name];
    h.shape = d.shape;
    h.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    for (float& v : h.data) v = weight(rng);
  }
  const std::string path = dir.file("llama3");
  save_hf_model(path, s, t);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(kLlama3 + "/" + f, path + "/" + f);
  write_file_atomically(path + "/generation_config.json",
                        nlohmann::json{{"bos_token_id", kBos}, {"eos_token_id", eos_ids}}.dump());
  return path;
}

// The first `n` bytes of WikiText-2 test, cut at a line end.
std::string wikitext(size_t n) {
  const std::string all = read_file(kData + "/text/wikitext-2-test.txt");
  return all.substr(0, all.find('\n', n) + 1);
}

TEST(HfTokenizerCli, Llama3CheckpointEndToEnd) {
  ASSERT_TRUE(fs::exists(kLlama3 + "/tokenizer.json"))
      << kLlama3 << ": the hf_oracle fixture (npm, node) did not run or failed";
  TempDir d;
  const std::string model = make_llama3(d);
  const std::string text = d.file("wiki.txt");
  write_file_atomically(text, wikitext(3000));
  const auto tok = load_tokenizer(model + "/tokenizer.json");
  const std::vector<int32_t> ids = tok->encode(read_file(text));

  // inspect: kind, vocabulary, BOS, every EOS id (and --json, on the .slm below).
  Result r = slmc("inspect " + q(model));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("tokenizer     hf " + model + "/tokenizer.json (vocab 128256)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("special       bos 128000 \"<|begin_of_text|>\", eos 128001 \"<|end_of_text|>\" "
                       "128009 \"<|eot_id|>\", 256 special tokens"), std::string::npos) << r.out;
  // data tokenize: the HDF5 stream is the tokenizer's ids.
  r = slmc("data tokenize --model " + q(model) + " --text " + q(text) + " -o " + q(d.file("t.h5")));
  ASSERT_EQ(r.code, 0) << r.err;
  const TokenData td = read_tokens_h5(d.file("t.h5"));
  EXPECT_EQ(td.tokens, ids);
  EXPECT_EQ(td.bos_id, kBos);

  // eval on the text: every token is evaluated once.
  r = slmc("eval --model " + q(model) + " --data " + q(text) + " --ctx 256 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto je = nlohmann::json::parse(r.out);
  EXPECT_EQ(je["tokens"].get<int64_t>(), static_cast<int64_t>(ids.size())) << r.out;
  EXPECT_TRUE(std::isfinite(je["nll"].get<double>()));

  // quantize with calibration windows drawn from the text; the .slm carries the tokenizer.
  r = slmc("quantize --model " + q(model) + " --method rtn --bits 8 --calib " + q(text) +
           " --samples 4 --seq-len 64 -o " + q(d.file("q8.slm")));
  ASSERT_EQ(r.code, 0) << r.err;
  r = slmc("inspect " + q(d.file("q8.slm")) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto ji = nlohmann::json::parse(r.out)["tokenizer"];
  EXPECT_EQ(ji["kind"], "hf");
  EXPECT_EQ(ji["vocab"], kVocab);
  EXPECT_EQ(ji["bos"]["id"], kBos);
  EXPECT_EQ(ji["eos"].size(), 2u);
  EXPECT_EQ(ji["eos"][1]["token"], "<|eot_id|>");

  // export: the .slm carries the tokenizer; greedy text on the runtime equals LibTorch's.
  r = slmc("export --model " + q(model) + " --format slm --type f32 -o " + q(d.file("m.slm")));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string gen = " --prompt " + q("The game began development in") + " -n 40 --temperature 0";
  const Result torch = slmc("generate --model " + q(model) + " --backend torch" + gen);
  const Result runtime = slmc("generate --model " + q(d.file("m.slm")) + " --backend runtime" + gen);
  ASSERT_EQ(torch.code, 0) << torch.err;
  ASSERT_EQ(runtime.code, 0) << runtime.err;
  EXPECT_EQ(runtime.out, torch.out);
  EXPECT_EQ(torch.out.rfind("The game began development in", 0), 0u) << torch.out;
  EXPECT_GT(torch.out.size(), 60u) << torch.out;
  // The tokenizer rebuilt from the .slm is the one in the directory.
  r = slmc("data tokenize --model " + q(d.file("m.slm")) + " --text " + q(text) + " -o " + q(d.file("t2.h5")));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_tokens_h5(d.file("t2.h5")).tokens, ids);
}

// Generation stops at any EOS id of generation_config.json: the greedy continuation's sixth token
// is listed as an EOS id, and the printed text ends right before it.
TEST(HfTokenizerCli, GenerateStopsAtEveryEosId) {
  ASSERT_TRUE(fs::exists(kLlama3 + "/tokenizer.json")) << "the hf_oracle fixture did not run";
  TempDir d;
  const std::string model = make_llama3(d);
  const auto tok = load_tokenizer(model + "/tokenizer.json");
  const std::string prompt = "Robert Boulter is an English film";
  std::vector<int32_t> ids{kBos};
  for (const int32_t id : tok->encode(prompt)) ids.push_back(id);
  const LoadedModel m = load_model(model);
  Transformer t(m.spec, m.tensors);
  Sampler greedy(0.0, 1.0, 1);
  std::vector<int32_t> out;
  generate(t, ids, 12, greedy, [&](int32_t id) { out.push_back(id); });
  ASSERT_EQ(out.size(), 12u) << "the random model already stops at BOS or EOS";
  size_t k = 5;
  while (k < out.size() && std::find(out.begin(), out.begin() + static_cast<long>(k), out[k]) != out.begin() + static_cast<long>(k)) ++k;
  ASSERT_LT(k, out.size()) << "no token of the continuation occurs for the first time after 5";
  std::string want = prompt;
  int32_t prev = ids.back();
  for (size_t i = 0; i < k; ++i) {
    want += tok->decode_piece(prev, out[i]);
    prev = out[i];
  }
  write_file_atomically(model + "/generation_config.json",
                        nlohmann::json{{"eos_token_id", {kEos, out[k]}}}.dump());
  const std::string args = " --prompt " + q(prompt) + " -n 12 --temperature 0";
  for (const std::string backend : {"torch", "runtime"}) {
    std::string path = model;
    if (backend == "runtime") {
      ASSERT_EQ(slmc("export --model " + q(model) + " --format slm --type f32 -o " + q(d.file("m.slm"))).code, 0);
      path = d.file("m.slm");  // the EOS list travels inside the .slm
    }
    const Result r = slmc("generate --model " + q(path) + " --backend " + backend + args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, want + "\n") << backend;
    EXPECT_NE(r.err.find("generated " + std::to_string(k) + " tokens"), std::string::npos) << r.err;
  }
}

TEST(HfTokenizerCli, BadTokenizerJsonExits2NamingFileAndKey) {
  ASSERT_TRUE(fs::exists(kLlama3 + "/tokenizer.json")) << "the hf_oracle fixture did not run";
  TempDir d;
  const std::string model = make_tiny_model(d);
  const std::string path = model + "/tokenizer.json";
  const std::string text = d.file("t.txt");
  write_file_atomically(text, "hello world\n");
  // A small BPE tokenizer.json over the byte vocabulary, edited into each bad form.
  nlohmann::ordered_json good = nlohmann::ordered_json::parse(read_file(path));
  good["model"]["merges"] = {"h e"};
  good["model"]["vocab"].erase("<s>");
  good["model"]["vocab"].erase("</s>");
  good["model"]["vocab"]["he"] = 256;
  good["added_tokens"] = nlohmann::ordered_json::array();
  write_file_atomically(path, good.dump());
  const Result r = slmc("data tokenize --model " + q(model) + " --text " + q(text) + " -o " + q(d.file("o.h5")));
  ASSERT_EQ(r.code, 0) << r.err;  // a BPE with merges: kind hf
  EXPECT_EQ(read_tokens_h5(d.file("o.h5")).tokenizer, "hf:" + path);
  const auto bad = [&](const std::string& contents, const std::string& must) {
    write_file_atomically(path, contents);
    const Result b = slmc("data tokenize --model " + q(model) + " --text " + q(text) + " -o " + q(d.file("o.h5")));
    expect_input_error(b, path);
    EXPECT_NE(b.err.find(must), std::string::npos) << b.err;
  };
  const auto edited = [&](const std::function<void(nlohmann::ordered_json&)>& f) {
    nlohmann::ordered_json j = good;
    f(j);
    return j.dump();
  };
  // Every kind of problem is in hf_tokenizer_test.cpp; here, that the CLI reports them.
  bad(good.dump().substr(0, good.dump().size() / 2), "not valid JSON");
  bad(edited([](auto& j) { j["model"]["merges"].push_back("h zz"); }), "model.merges[1]");
  bad(edited([](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "pre_tokenizer.type");
  bad(edited([](auto& j) {
        j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(?<"}}}, {"behavior", "Isolated"}, {"invert", false}};
      }), "pre_tokenizer.pattern.Regex");
}

}  // namespace
}  // namespace slmc
