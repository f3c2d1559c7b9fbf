// `slmc run` end to end on stories260K (../shared/data): gates exit 3 naming the gate, its
// threshold and the measured value; the decode-speed gate measures the .slm in the runtime.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli/cli_util.h"

namespace slmc {
namespace {

using namespace slmc::clitest;

const std::string kSample = kData + "/text/tinystories_sample.txt";

// The evaluation text: the sample's first 2,000 bytes (a few hundred tokens keep each run short).
std::string eval_text(const TempDir& d) {
  const std::string path = d.file("eval.txt");
  if (!fs::exists(path)) std::ofstream(path) << read_file(kSample).substr(0, 2000);
  return path;
}

// A recipe: int8 of stories260K, evaluated on the sample, with `gates` (a YAML mapping).
std::string write_recipe(const TempDir& d, const std::string& gates, const std::string& extra = "") {
  const std::string recipe = d.file("r.yaml");
  const std::string eval = eval_text(d);
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories << "\ndata:\n  eval: {path: " << eval
                        << ", seq_len: 256}\nstages:\n  - quantize: {method: rtn, bits: 8}\n"
                        << "export: [{format: slm, path: " << d.file("a.slm") << "}]\n"
                        << "gates: " << gates << "\n" << extra;
  return recipe;
}

TEST(CliRunGates, PassingGatesExitZeroAndAreReported) {
  TempDir d;
  const Result r = slmc("run " + q(write_recipe(d, "{max_kl: 0.05, min_top1: 0.5, max_ppl_increase: 0.5, "
                                                   "min_decode_tok_s: 1, max_bytes: 10000000}")) +
                        " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["gates"].size(), 5u);
  for (const auto& g : j["gates"]) EXPECT_TRUE(g["passed"].get<bool>()) << g.dump();
  EXPECT_GT(j["decode_tok_s"].get<double>(), 1.0);
}

TEST(CliRunGates, FailedAccuracyGateExitsThreeNamingGateThresholdAndValue) {
  TempDir d;
  const std::string recipe = write_recipe(d, "{max_kl: 1.0e-9, min_top1: 0.5}");
  const Result r = slmc("run " + q(recipe) + " --json");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find(recipe + ":8: gate failed: max_kl 1e-09: KL 0."), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("min_top1"), std::string::npos) << "only the failed gate: " << r.err;
  // The report is still printed (stdout), with the failed gate and its measured value.
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["gates"][0]["passed"].get<bool>());
  EXPECT_GT(j["gates"][0]["value"].get<double>(), 1e-9);
  EXPECT_TRUE(fs::exists(d.file("a.slm"))) << "artifacts are kept for inspection";
}

TEST(CliRunGates, FailedDecodeSpeedAndBytesGatesExitThree) {
  TempDir d;
  const Result r = slmc("run " + q(write_recipe(d, "{min_decode_tok_s: 1.0e12, max_bytes: 1000}")));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("min_decode_tok_s 1e+12: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" tok/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("max_bytes 1000: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" tensor bytes"), std::string::npos) << r.err;
}

TEST(CliRunGates, GateWithoutWhatItMeasuresIsBadInputBeforeAnyWork) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories
                        << "\nstages:\n  - quantize: {method: rtn, bits: 8}\n"
                        << "export: [{format: hf, path: " << d.file("hf") << "}]\n"
                        << "gates: {min_decode_tok_s: 10}\n";
  const Result r = slmc("run " + q(recipe));
  expect_input_error(r, recipe + ":6: gates max_bytes and min_decode_tok_s measure an .slm");
  EXPECT_FALSE(fs::exists(d.file("hf")));
}

// Removes the values that differ between two runs of the same inputs (times, speeds, memory).
void drop_times(nlohmann::json& j) {
  if (j.is_object()) {
    for (const char* k : {"seconds", "decode_tok_s", "peak_rss_bytes", "cached"}) j.erase(k);
    for (auto& [k, v] : j.items()) drop_times(v);
  } else if (j.is_array()) {
    for (auto& v : j) drop_times(v);
  }
}

std::string sha256sum(const std::string& path) {  // coreutils: an independent reference
  FILE* f = ::popen(("sha256sum " + q(path)).c_str(), "r");
  EXPECT_NE(f, nullptr);
  if (f == nullptr) return "";
  char buf[65] = {};
  const size_t n = std::fread(buf, 1, 64, f);
  EXPECT_EQ(::pclose(f), 0) << path;
  return std::string(buf, n);
}

// The full set of outputs: a pruned and quantized model as .slm, GGUF and HF directory, the
// manifest and the report. A second run of the same inputs leaves the same bytes and hashes.
TEST(CliRunManifest, SameInputsGiveIdenticalArtifactsAndManifest) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  const std::string out = d.file("out");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories << "\ndata:\n"
                        << "  calibration: {path: " << kSample << ", samples: 7, seq_len: 256}\n"
                        << "  eval: {path: " << eval_text(d) << ", seq_len: 256}\n"
                        << "stages:\n  - prune: {method: wanda, pattern: \"2:4\"}\n"
                        << "  - quantize: {method: rtn, bits: 8}\n"
                        << "export:\n  - {format: slm, path: " << out << "/m.slm}\n"
                        << "  - {format: gguf, path: " << out << "/m.gguf}\n"
                        << "  - {format: hf, path: " << out << "/hf}\n"
                        << "gates: {max_kl: 5}\n";
  const std::string tok = " --tokenizer " + q(kData + "/models/stories260K/tok512.model");
  Result r = slmc("run " + q(recipe) + tok);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string slm1 = read_file(out + "/m.slm"), gguf1 = read_file(out + "/m.gguf");
  const std::string hf1 = read_file(out + "/hf/model.safetensors");
  nlohmann::json m1 = nlohmann::json::parse(read_file(out + "/manifest.json"));

  // The manifest holds what it says: hashes of the recipe, model, data and every artifact.
  EXPECT_EQ(m1["slmc_version"], "0.1.0");
  EXPECT_EQ(m1["recipe"]["sha256"], sha256sum(recipe));
  EXPECT_EQ(m1["inputs"]["model"]["sha256"], sha256sum(kStories));
  EXPECT_EQ(m1["inputs"]["calibration"]["sha256"], sha256sum(kSample));
  ASSERT_EQ(m1["artifacts"].size(), 3u);
  EXPECT_EQ(m1["artifacts"][0]["sha256"], sha256sum(out + "/m.slm"));
  EXPECT_EQ(m1["artifacts"][1]["sha256"], sha256sum(out + "/m.gguf"));
  EXPECT_EQ(m1["artifacts"][2]["format"], "hf");
  ASSERT_EQ(m1["stages"].size(), 2u);
  EXPECT_EQ(m1["stages"][0]["pass"], "prune");
  EXPECT_GT(m1["stages"][0]["zero_weights"].get<int64_t>(), 0);
  EXPECT_TRUE(m1["stages"][1].contains("seconds"));
  EXPECT_TRUE(m1["gates"][0]["passed"].get<bool>());

  // The report: Markdown and one self-contained HTML with inline SVG plots.
  const std::string html = read_file(out + "/report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_NE(html.find("m.slm"), std::string::npos) << "the artifact is a point of the plot";
  const std::string md = read_file(out + "/report.md");
  EXPECT_NE(md.find("max_kl"), std::string::npos);
  EXPECT_NE(md.find("blk.0.attn_q.weight"), std::string::npos) << "per-tensor rows";

  drop_times(m1);
  // Twice more: from the stage cache (every stage read back), and with no cache at all.
  for (const char* flags : {"", " --no-cache"}) {
    r = slmc("run " + q(recipe) + tok + flags);
    ASSERT_EQ(r.code, 0) << r.err;
    if (*flags == 0) {
      EXPECT_EQ(r.err.find(": running"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("stage 1/2 prune (" + recipe + ":7): cached"), std::string::npos) << r.err;
      EXPECT_NE(r.err.find("stage 2/2 quantize (" + recipe + ":8): cached"), std::string::npos) << r.err;
    }
    EXPECT_TRUE(read_file(out + "/m.slm") == slm1) << "the .slm differs between two runs" << flags;
    EXPECT_TRUE(read_file(out + "/m.gguf") == gguf1) << "the GGUF differs between two runs" << flags;
    EXPECT_TRUE(read_file(out + "/hf/model.safetensors") == hf1) << "the safetensors differ" << flags;
    nlohmann::json m2 = nlohmann::json::parse(read_file(out + "/manifest.json"));
    drop_times(m2);
    EXPECT_EQ(m1.dump(1), m2.dump(1)) << flags;
  }
}

// A recipe of two stages (2:4 Wanda, then `quant`) into DIR/m.slm.
std::string two_stage_recipe(const TempDir& d, const std::string& quant, int samples = 7) {
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories << "\ndata:\n"
                        << "  calibration: {path: " << kSample << ", samples: " << samples
                        << ", seq_len: 256}\n"
                        << "stages:\n  - prune: {method: wanda, pattern: \"2:4\"}\n"
                        << "  - quantize: " << quant << "\n"
                        << "export: [{format: slm, path: " << d.file("out") << "/m.slm}]\n";
  return recipe;
}

bool has(const Result& r, const std::string& s) { return r.err.find(s) != std::string::npos; }

TEST(CliRunCache, EditingOnlyTheLastStageRerunsOnlyIt) {
  TempDir d;
  std::string recipe = two_stage_recipe(d, "{method: rtn, bits: 8}");
  Result r = slmc("run " + q(recipe));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 prune (" + recipe + ":6): running")) << r.err;
  EXPECT_TRUE(has(r, "stage 2/2 quantize (" + recipe + ":7): running")) << r.err;

  recipe = two_stage_recipe(d, "{method: rtn, bits: 4}");
  r = slmc("run " + q(recipe));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 prune (" + recipe + ":6): cached")) << r.err;
  EXPECT_TRUE(has(r, "stage 2/2 quantize (" + recipe + ":7): running")) << r.err;
  const std::string cached = read_file(d.file("out") + "/m.slm");
  EXPECT_NE(read_file(d.file("out") + "/report.md").find("cached"), std::string::npos);

  // The same result as a run without the cache.
  r = slmc("run " + q(recipe) + " --no-cache");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(read_file(d.file("out") + "/m.slm") == cached);

  // --from reruns that stage and the later ones; --from 1 everything.
  r = slmc("run " + q(recipe) + " --from quantize");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 prune (" + recipe + ":6): cached")) << r.err;
  EXPECT_TRUE(has(r, "stage 2/2 quantize (" + recipe + ":7): running")) << r.err;
  r = slmc("run " + q(recipe) + " --from 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 prune (" + recipe + ":6): running")) << r.err;
  EXPECT_TRUE(read_file(d.file("out") + "/m.slm") == cached);
  expect_input_error(slmc("run " + q(recipe) + " --from distill"), "--from \"distill\": no such stage");
}

TEST(CliRunCache, DryRunPrintsThePlanAndWritesNothing) {
  TempDir d;
  const std::string recipe = two_stage_recipe(d, "{method: rtn, bits: 8}");
  Result r = slmc("run " + q(recipe) + " --dry-run");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("1. prune (" + recipe + ":6)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2. quantize (" + recipe + ":7)\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("in:  "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("out: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pattern: 2:4"), std::string::npos) << "resolved options: " << r.out;
  EXPECT_FALSE(fs::exists(d.file("out"))) << "a dry run writes nothing";
  ASSERT_EQ(slmc("run " + q(recipe)).code, 0);
  r = slmc("run " + q(recipe) + " --dry-run");
  EXPECT_NE(r.out.find("2. quantize (" + recipe + ":7) [cached]"), std::string::npos) << r.out;
}

// Killed (SIGKILL) while the second stage runs: no artifact, no entry for that stage; the next
// run reads the first stage back, runs the second, and ends with the bytes of a run that was
// never interrupted.
TEST(CliRunCache, KilledMidStageResumesFromTheLastCompletedStage) {
  TempDir d;
  const std::string recipe = two_stage_recipe(d, "{method: gptq, bits: 4}", 2);
  const std::string err = d.file("err");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = std::string(SLMC_EXE) + " --threads 2 -q run " + q(recipe) + " 2>" + q(err);
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string second = "stage 2/2 quantize (" + recipe + ":7): running";
  bool seen = false;
  for (int i = 0; i < 60000 && !seen; ++i) {
    seen = fs::exists(err) && read_file(err).find(second) != std::string::npos;
    if (!seen) ::usleep(1000);
  }
  ::kill(pid, SIGKILL);
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(seen) << read_file(err);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the run ended before the kill";
  EXPECT_FALSE(fs::exists(d.file("out") + "/m.slm")) << "no partial artifact";
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d.file("out") + "/.cache"))
    entries += fs::exists(e.path() / "stage.json");
  EXPECT_EQ(entries, 1) << "only the completed stage is cached";

  Result r = slmc("run " + q(recipe));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 prune (" + recipe + ":6): cached")) << r.err;
  EXPECT_TRUE(has(r, "stage 2/2 quantize (" + recipe + ":7): running")) << r.err;
  const std::string resumed = read_file(d.file("out") + "/m.slm");
  r = slmc("run " + q(recipe) + " --no-cache");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(read_file(d.file("out") + "/m.slm") == resumed) << "resumed bytes differ";
}

// A distill stage: a half-depth student trained a few steps, then quantized; editing only the
// quantize stage reruns only it (the student is read back from the cache).
TEST(CliRunDistill, HalfDepthStudentThenQuantizeAndCachedRerun) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  auto write = [&](const char* bits) {
    std::ofstream(recipe) << "version: 1\nmodel: " << kStories << "\n"
                          << "stages:\n  - distill: {data: " << kSample
                          << ", keep_layers: every_other, steps: 3, batch: 2, ctx: 64, warmup: 1}\n"
                          << "  - quantize: {method: rtn, bits: " << bits << "}\n"
                          << "export: [{format: slm, path: " << d.file("out") << "/s.slm}]\n";
  };
  write("8");
  const std::string tok = " --tokenizer " + q(kData + "/models/stories260K/tok512.model");
  Result r = slmc("run " + q(recipe) + tok + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["plan"][0]["n_layer_out"].get<int64_t>(), 3) << "layers 0, 2, 4 of 5";
  EXPECT_LT(j["params_compressed"].get<int64_t>(), j["params_original"].get<int64_t>());
  write("4");
  r = slmc("run " + q(recipe) + tok);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(has(r, "stage 1/2 distill (" + recipe + ":4): cached")) << r.err;
  EXPECT_TRUE(has(r, "stage 2/2 quantize (" + recipe + ":5): running")) << r.err;
}

TEST(CliRunDistill, DistillStageWithoutDataIsBadInput) {
  TempDir d;
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories
                        << "\nstages:\n  - distill: {keep_layers: every_other}\n"
                        << "export: [{format: slm, path: " << d.file("s.slm") << "}]\n";
  expect_input_error(slmc("run " + q(recipe)), recipe + ":4");
}

// Bad recipes exit 2 before any work: an export that cannot be written, a stage whose input
// does not fit what the previous stage leaves.
TEST(CliRunCache, UnwritableExportIsBadInputBeforeAnyWork) {
  TempDir d;
  std::ofstream(d.file("file")) << "x";
  const std::string recipe = d.file("r.yaml");
  std::ofstream(recipe) << "version: 1\nmodel: " << kStories
                        << "\nstages:\n  - quantize: {method: rtn, bits: 8}\n"
                        << "export:\n  - {format: slm, path: " << d.file("ok.slm") << "}\n"
                        << "  - {format: slm, path: " << d.file("file") << "/sub/m.slm}\n";
  const Result r = slmc("run " + q(recipe) + " --dry-run");
  expect_input_error(r, recipe + ":7: export path " + d.file("file") + "/sub/m.slm cannot be written");
  EXPECT_EQ(slmc("run " + q(recipe)).code, 2);
  EXPECT_FALSE(fs::exists(d.file("ok.slm")));
}

}  // namespace
}  // namespace slmc
