// Black-box: the real `slmc` binary on mutated files of every kind it reads (issue 18). Each case
// is a valid file made by slmc's own writers, then truncated at a format boundary, bit-flipped,
// given huge counts, NaN/Inf weights, wrong dtypes or hostile JSON/YAML values. The contract:
// exit 0, or exit 2 with exactly one stderr line "slmc: error: ..." naming the file; never 1
// ("internal error"), never a signal, within kWallSeconds and kMaxRssMb. Cases run two at a time
// (the machine's cores); each process gets --threads 1, RLIMIT_AS and an alarm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "compress/core/atomic_file.h"
#include "compress/core/tensor_names.h"
#include "compress/io/h5.h"
#include "compress/io/model_loader.h"
#include "compress/io/safetensors.h"
#include "compress/tokenizer/tokenizer.h"
#include "export/format/slm_format.h"
#include "quantize/codec/formats.h"
#include "tests/cli/cli_util.h"
#include "tests/test_util.h"

namespace slmc {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::TempDir;

constexpr int kWallSeconds = 20;    // per case (a healthy case takes well under 1 s)
constexpr long kMaxRssMb = 1024;    // peak resident memory per case
constexpr rlim_t kAddressSpace = rlim_t{6} << 30;  // LibTorch maps ~2 GB of address space at start

// ---- fixtures: valid files of every kind --------------------------------------------------------

std::string bytes_of(const std::string& path) { return read_file(path); }
void put(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string llama2c_checkpoint() {
  const int32_t h[7] = {32, 64, 2, 4, 2, -258, 16};  // untied
  std::string b(reinterpret_cast<const char*>(h), sizeof h);
  const int64_t dim = 32, hid = 64, L = 2, hs = 8, q = 32, kv = 16, v = 258, seq = 16;
  const int64_t floats = v * dim + L * (2 * dim + q * dim + 2 * kv * dim + q * dim + 3 * hid * dim) +
                         dim + seq * hs + v * dim;
  for (int64_t i = 0; i < floats; ++i) {
    const float x = static_cast<float>((i * 37) % 101) / 1010.0f - 0.05f;
    b.append(reinterpret_cast<const char*>(&x), 4);
  }
  return b;
}

// ---- running slmc ------------------------------------------------------------------------------

struct Case {
  std::string name;
  std::vector<std::string> args;  // after "slmc --threads 1 -q"
  std::string names;              // an exit-2 message must contain this (the file or its dir)
  std::string dir;                // where stdout/stderr go
};

struct Outcome {
  int code = -1;       // exit status, or 128 + signal
  long rss_mb = 0;
  double seconds = 0;
  std::string err;
};

Outcome run(const Case& c) {
  std::vector<std::string> argv_s = {SLMC_EXE, "--threads", "1", "-q"};
  argv_s.insert(argv_s.end(), c.args.begin(), c.args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  // Per case, not per directory: cases that share a fixture directory run at the same time.
  const std::string out = c.dir + "/" + c.name + ".stdout", err = c.dir + "/" + c.name + ".stderr";
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    const rlimit as{kAddressSpace, kAddressSpace};
    ::setrlimit(RLIMIT_AS, &as);
    const rlimit core{0, 0};
    ::setrlimit(RLIMIT_CORE, &core);
    ::alarm(kWallSeconds);  // survives exec: a hang ends in SIGALRM
    ::chdir(c.dir.c_str());
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  Outcome r;
  int st = 0;
  rusage ru{};
  ::wait4(pid, &st, 0, &ru);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.rss_mb = ru.ru_maxrss / 1024;
  r.err = read_file(err);
  return r;
}

// ---- mutations -----------------------------------------------------------------------------------

class Cases {
 public:
  explicit Cases(const TempDir& root) : root_(root) {}

  // A fresh directory for one case.
  std::string dir(const std::string& name) {
    const std::string d = root_.file("c" + std::to_string(n_++) + "_" + name);
    fs::create_directories(d);
    return d;
  }
  void add(Case c) { cases_.push_back(std::move(c)); }
  std::vector<Case>& all() { return cases_; }

 private:
  const TempDir& root_;
  int n_ = 0;
  std::vector<Case> cases_;
};

// Truncations at each boundary (and one byte either side), then `flips` single-bit flips at
// seeded positions, then `words` overwritten with hostile integers.
std::vector<std::pair<std::string, std::string>> binary_mutants(const std::string& good,
                                                               std::vector<uint64_t> boundaries,
                                                               int flips, uint32_t seed,
                                                               const std::vector<uint64_t>& words) {
  std::vector<std::pair<std::string, std::string>> out;
  std::sort(boundaries.begin(), boundaries.end());
  std::set<uint64_t> cuts;
  for (uint64_t b : boundaries)
    for (int64_t d : {-1, 0, 1})
      if (static_cast<int64_t>(b) + d >= 0 && static_cast<uint64_t>(static_cast<int64_t>(b) + d) < good.size())
        cuts.insert(static_cast<uint64_t>(static_cast<int64_t>(b) + d));
  for (uint64_t c : cuts) out.emplace_back("trunc" + std::to_string(c), good.substr(0, c));
  std::mt19937 rng(seed);
  for (int i = 0; i < flips; ++i) {
    std::string b = good;
    // Half the flips in the first 4 KB (headers), half anywhere.
    const uint64_t span = i % 2 == 0 ? std::min<uint64_t>(good.size(), 4096) : good.size();
    const uint64_t pos = rng() % span;
    b[pos] = static_cast<char>(b[pos] ^ (1 << (rng() % 8)));
    out.emplace_back("flip" + std::to_string(pos), b);
  }
  const uint64_t hostile[] = {0, 0xffffffffffffffffull, 0x7fffffffffffffffull, 0x8000000000000000ull,
                              0x7fffffffull, 0xffffffffull, 1000000000000ull};
  for (uint64_t off : words)
    for (uint64_t v : hostile) {
      if (off + 8 > good.size()) continue;
      std::string b = good;
      std::memcpy(b.data() + off, &v, 8);
      out.emplace_back("word" + std::to_string(off) + "_" + std::to_string(v % 1000), b);
    }
  return out;
}

// JSON values an attacker puts where a count or a name belongs.
std::vector<json> hostile_values() {
  json deep = json::array();
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  return {json(30000000), json(201111111111111111), json(9.2e19), json(-1), json(0), json(2.5),
          json(1e308), json("x"), json(nullptr), json::array(), json::object(), deep,
          json(std::string(5000, 'z'))};
}

// Inserts `deep` levels of nesting as the value of `key` (built as text: nlohmann refuses to
// build what checked_json refuses to read).
std::string with_deep_value(const std::string& text, const std::string& key, int deep) {
  const std::string k = "\"" + key + "\":";
  std::string t = text;
  const size_t at = t.find(k);
  if (at == std::string::npos) return t;
  size_t v = at + k.size();
  while (t[v] == ' ') ++v;
  size_t end = v;
  while (end < t.size() && t[end] != ',' && t[end] != '}' && t[end] != '\n') ++end;
  t.replace(v, end - v, std::string(deep, '[') + std::string(deep, ']'));
  return t;
}

TEST(UntrustedFiles, SlmcExitsZeroOrTwoOnEveryMutatedFile) {
  TempDir root;
  Cases cs(root);

  // Reference files: the tiny byte-level llama of the CLI tests (vocab 258, 32 wide, so every
  // block format fits its matrices), the stories260K tokenizers (../shared/data is required).
  const std::string hf = clitest::make_tiny_model(root, "ref_hf");
  const LoadedModel ref = load_model(hf);
  const std::string stories = std::string(SLMC_SHARED_DATA) + "/models/stories260K/";
  ASSERT_TRUE(fs::exists(stories + "tok512.model") && fs::exists(stories + "tok512.bin"))
      << stories << " (../shared/data is required)";
  const std::string config = bytes_of(hf + "/config.json");
  const std::string st = bytes_of(hf + "/model.safetensors");
  const std::string tok_json = bytes_of(hf + "/tokenizer.json");
  const std::string text_path = root.file("text.txt");
  put(text_path, "Once upon a time there was a little robot.\nThe end.\n");

  // A HF directory holding `cfg`, `weights` and the byte tokenizer; inspected.
  const auto hf_case = [&](const std::string& name, const std::string& cfg, const std::string& w) {
    const std::string d = cs.dir(name);
    put(d + "/config.json", cfg);
    put(d + "/model.safetensors", w);
    put(d + "/tokenizer.json", tok_json);
    cs.add({name, {"inspect", d}, d, d});
  };

  // 1. config.json: every key given every hostile value, removed, duplicated, nested deep.
  const json cj = json::parse(config);
  for (const auto& kv : cj.items()) {
    int i = 0;
    for (const json& v : hostile_values()) {
      json m = cj;
      m[kv.key()] = v;
      hf_case("cfg_" + kv.key() + std::to_string(i++), m.dump(), st);
    }
    json m = cj;
    m.erase(kv.key());
    hf_case("cfg_rm_" + kv.key(), m.dump(), st);
    std::string dup = cj.dump();
    dup.insert(1, "\"" + kv.key() + "\": 7, ");
    hf_case("cfg_dup_" + kv.key(), dup, st);
    hf_case("cfg_deep_" + kv.key(), with_deep_value(cj.dump(), kv.key(), 200000), st);
  }
  for (const auto& [name, b] : binary_mutants(config, {0, 1, config.size() / 2, config.size() - 1}, 10, 1, {}))
    hf_case("cfg_" + name, b, st);

  // 2. model.safetensors: truncations at the header length, the header's end and every tensor's
  // end; bit flips; hostile header lengths; wrong dtypes; NaN and Inf weights; huge shapes.
  {
    uint64_t n = 0;
    std::memcpy(&n, st.data(), 8);
    std::vector<uint64_t> bounds = {0, 4, 8, 9, 8 + n};
    const SafetensorsFile f(hf + "/model.safetensors");
    for (const auto& kv : f.entries()) bounds.push_back(8 + n + kv.second.end);
    for (const auto& [name, b] : binary_mutants(st, bounds, 40, 2, {0}))
      hf_case("st_" + name, config, b);
    const std::string header = st.substr(8, n);
    const auto with_header = [&](std::string h) {
      h.resize(std::max(h.size(), header.size()), ' ');
      const uint64_t len = h.size();
      std::string b(reinterpret_cast<const char*>(&len), 8);
      return b + h + st.substr(8 + n);
    };
    for (const char* dt : {"\"I32\"", "\"U8\"", "\"I64\"", "\"F64\"", "\"f32\"", "\"\"", "7", "null"}) {
      std::string h = header;
      const size_t at = h.find("\"F32\"");
      h.replace(at, 5, dt);
      hf_case(std::string("st_dtype_") + dt, config, with_header(h));
    }
    for (const char* shape : {"[30000000,32]", "[-1,32]", "[9.2e19]", "[4294967296,4294967296]", "[]", "[1.5,32]", "\"x\""}) {
      std::string h = header;
      const size_t at = h.find("\"shape\":[");
      const size_t end = h.find(']', at);
      h.replace(at + 8, end - at - 7, shape);
      hf_case(std::string("st_shape_") + shape, config, with_header(h));
    }
    for (const char* offs : {"[0,99999999999]", "[18446744073709551615,0]", "[0]", "[-8,0]", "[1e30,2e30]"}) {
      std::string h = header;
      const size_t at = h.find("\"data_offsets\":[");
      const size_t end = h.find(']', at);
      h.replace(at + 15, end - at - 14, offs);
      hf_case(std::string("st_offsets_") + offs, config, with_header(h));
    }
    hf_case("st_deep_header", config, with_header("{\"a\":" + std::string(200000, '[') + std::string(200000, ']') + "}"));
    std::string dup = header;
    dup.insert(1, dup.substr(1, dup.find("},") - 1 + 1) + ",");
    hf_case("st_dup_tensor", config, with_header(dup));
    const uint32_t bad_bits[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f800001u};
    for (const auto& kv : f.entries()) {
      if (kv.first.find("layers.1.") == std::string::npos && kv.first != "model.embed_tokens.weight") continue;
      for (uint32_t bits : bad_bits) {
        std::string b = st;
        std::memcpy(b.data() + 8 + n + kv.second.begin + 4 * ((kv.second.end - kv.second.begin) / 8), &bits, 4);
        hf_case("st_nan_" + kv.first + std::to_string(bits & 0xff), config, b);
      }
    }
  }

  // 3. NaN weights reach generate, not only inspect: refused at load naming the tensor.
  {
    uint64_t n = 0;
    std::memcpy(&n, st.data(), 8);
    const SafetensorsFile f(hf + "/model.safetensors");
    std::string b = st;
    const uint32_t nan = 0x7fc00000u;
    std::memcpy(b.data() + 8 + n + f.entries().at("model.layers.0.mlp.up_proj.weight").begin + 8, &nan, 4);
    const std::string d = cs.dir("generate_nan");
    put(d + "/config.json", config);
    put(d + "/model.safetensors", b);
    put(d + "/tokenizer.json", tok_json);
    cs.add({"generate_nan", {"generate", "--model", d, "-n", "4", "--prompt", "Once"}, "up_proj", d});
    cs.add({"eval_nan", {"eval", "--model", d, "--data", text_path, "--ctx", "16"}, "up_proj", d});
  }

  // 4. tokenizer.json (the byte tokenizer) through `data tokenize`.
  const auto tok_case = [&](const std::string& name, const std::string& file, const std::string& bytes) {
    const std::string d = cs.dir(name);
    put(d + "/" + file, bytes);
    cs.add({name, {"data", "tokenize", "--tokenizer", d + "/" + file, "--text", text_path, "-o", d + "/t.h5"},
            d + "/" + file, d});
  };
  for (const auto& [name, b] : binary_mutants(tok_json, {0, 1, tok_json.size() / 3, tok_json.size() - 2}, 30, 3, {}))
    tok_case("tokjson_" + name, "tokenizer.json", b);
  {
    const json tj = json::parse(tok_json);
    int i = 0;
    for (const char* key : {"model", "added_tokens", "pre_tokenizer", "decoder"})
      for (const json& v : hostile_values()) {
        json m = tj;
        m[key] = v;
        tok_case("tokjson_" + std::string(key) + std::to_string(i++), "tokenizer.json", m.dump());
      }
    tok_case("tokjson_deep", "tokenizer.json", with_deep_value(tj.dump(), "model", 200000));
  }

  // 5. llama2.c tokenizer.bin: a huge max_token_length claim, truncations, flips, huge lengths.
  {
    const std::string t = bytes_of(stories + "tok512.bin");
    for (const auto& [name, b] : binary_mutants(t, {0, 4, 8, 12, 13, 20, t.size() - 1}, 30, 4, {0, 8, 40}))
      tok_case("tokbin_" + name, "tokenizer.bin", b);
    std::string claim = t;
    const int32_t huge = 1'400'000'000;
    std::memcpy(claim.data(), &huge, 4);
    tok_case("tokbin_claim", "tokenizer.bin", claim);
  }

  // 6. SentencePiece .model (stories260K's tok512.model, the real thing) truncated and flipped.
  {
    const std::string spm = bytes_of(stories + "tok512.model");
    for (const auto& [name, b] : binary_mutants(spm, {0, 1, 2, 10, 100, spm.size() / 2, spm.size() - 1}, 40, 5, {}))
      tok_case("spm_" + name, "tokenizer.model", b);
  }

  // 7. llama2.c checkpoints: header fields overwritten, truncations, NaN weights.
  {
    const std::string ck = llama2c_checkpoint();
    for (const auto& [name, b] : binary_mutants(ck, {0, 4, 8, 12, 16, 20, 24, 28, 32, ck.size() / 2, ck.size() - 4}, 10, 6, {}))
      cs.add({"l2c_" + name, {"inspect", [&] { const std::string d = cs.dir("l2c_" + name); put(d + "/m.bin", b); return d + "/m.bin"; }()}, "m.bin", ""});
    const int32_t values[] = {0, -1, 0x7fffffff, INT32_MIN, 30000000, 3};
    for (int field = 0; field < 7; ++field)
      for (int32_t v : values) {
        std::string b = ck;
        std::memcpy(b.data() + 4 * field, &v, 4);
        const std::string d = cs.dir("l2c_field" + std::to_string(field));
        put(d + "/m.bin", b);
        cs.add({"l2c_field" + std::to_string(field) + "_" + std::to_string(v), {"inspect", d + "/m.bin"}, "m.bin", ""});
      }
    for (const uint32_t bits : {0x7fc00000u, 0x7f800000u}) {
      std::string b = ck;
      std::memcpy(b.data() + 28 + 4 * 300, &bits, 4);
      const std::string d = cs.dir("l2c_nan");
      put(d + "/m.bin", b);
      cs.add({"l2c_nan" + std::to_string(bits), {"inspect", d + "/m.bin"}, "token_embd.weight", ""});
    }
  }

  // 8. .slm: truncations at the header fields, sections and every table record; header fields
  // overwritten; bit flips; unknown and wrong format ids; NaN scales; through inspect (LibTorch
  // path) and generate (the runtime).
  {
    ModelSpec s = ref.spec;
    s.tied_embeddings = true;
    TensorMap w = ref.tensors;
    w.erase(names::kOutput);
    format::SlmWriter wr;
    wr.set_spec_json(s.to_json());
    wr.set_tokenizer("byte", "");
    int k = 0;
    for (const auto& [name, t] : w) {
      const codec::Format fmts[] = {codec::Format::kQ4_0, codec::Format::kQ8_0, codec::Format::kF16,
                                    codec::Format::kBF16, codec::Format::kF32};
      const codec::Format f = t.shape.size() == 2 ? fmts[k++ % 5] : codec::Format::kF32;
      const int64_t cols = t.shape.back();
      wr.add_tensor(name, f, t.shape, codec::quantize_ref(f, t.data.data(), t.numel() / cols, cols));
    }
    const std::string good_path = root.file("ref.slm");
    wr.write(good_path);
    const std::string slm = bytes_of(good_path);
    const format::SlmFile g(good_path);
    format::SlmHeader h;
    std::memcpy(&h, slm.data(), sizeof h);
    std::vector<uint64_t> bounds = {0, 8, 12, 16, 24, 64, 127, 128, h.spec_offset + h.spec_bytes / 2,
                                    h.table_offset, h.data_offset};
    for (const format::SlmTensor& t : g.tensors()) bounds.push_back(t.offset + t.n_bytes);
    std::vector<uint64_t> words;
    for (uint64_t off = 16; off < 128; off += 8) words.push_back(off);
    int i = 0;
    for (const auto& [name, b] : binary_mutants(slm, bounds, 40, 7, words)) {
      const std::string d = cs.dir("slm_" + name);
      put(d + "/m.slm", b);
      if (i++ % 4 == 0)
        cs.add({"slm_gen_" + name, {"generate", "--model", d + "/m.slm", "-n", "2", "--prompt", "a"}, "m.slm", d});
      else
        cs.add({"slm_" + name, {"inspect", d + "/m.slm"}, "m.slm", d});
    }
    // Spec JSON values.
    const json sj = json::parse(g.spec_json());
    for (const char* key : {"vocab", "d_model", "max_seq", "bos_id", "norm_eps", "layers"}) {
      int j = 0;
      for (const json& v : hostile_values()) {
        json m = sj;
        m[key] = v;
        std::string spec_text = m.dump();
        if (spec_text.size() > h.spec_bytes) continue;  // must fit the section
        spec_text.resize(h.spec_bytes, ' ');
        std::string b = slm;
        b.replace(h.spec_offset, h.spec_bytes, spec_text);
        const std::string d = cs.dir("slmspec");
        put(d + "/m.slm", b);
        cs.add({"slmspec_" + std::string(key) + std::to_string(j++), {"inspect", d + "/m.slm"}, "m.slm", d});
      }
    }
    // Format ids and NaN/Inf in each tensor's first block.
    for (const format::SlmTensor& t : g.tensors()) {
      uint64_t rec = slm.find(t.name, h.table_offset);
      ASSERT_NE(rec, std::string::npos);
      const uint64_t fmt_off = rec + t.name.size();
      for (uint32_t id : {3u, 99u, 0xffffffffu, 1u, 2u}) {
        std::string b = slm;
        std::memcpy(b.data() + fmt_off, &id, 4);
        const std::string d = cs.dir("slmfmt");
        put(d + "/m.slm", b);
        cs.add({"slmfmt_" + t.name + std::to_string(id), {"inspect", d + "/m.slm"}, "m.slm", d});
      }
      if (t.name.find("blk.1") == std::string::npos) continue;
      const char nan_half[2] = {0x00, 0x7e};
      const char nan_f32[4] = {0x00, 0x00, static_cast<char>(0xc0), 0x7f};
      std::string b = slm;
      if (t.format == codec::Format::kF32)
        b.replace(t.offset, 4, nan_f32, 4);
      else
        b.replace(t.offset, 2, nan_half, 2);  // f16/bf16 value, or a block's scale
      const std::string d = cs.dir("slmnan");
      put(d + "/m.slm", b);
      cs.add({"slmnan_gen_" + t.name, {"generate", "--model", d + "/m.slm", "-n", "2", "--prompt", "a"}, t.name, d});
      cs.add({"slmnan_" + t.name, {"inspect", d + "/m.slm"}, t.name, d});
    }
  }

  // 9. HDF5 token files through eval.
  {
    TokenData td;
    for (int i = 0; i < 64; ++i) td.tokens.push_back((i * 7) % 256);
    td.bos_id = 256;
    const std::string p = root.file("ref.h5");
    write_tokens_h5(p, td);
    const std::string h5 = bytes_of(p);
    for (const auto& [name, b] : binary_mutants(h5, {0, 8, 16, 64, 512, h5.size() / 2, h5.size() - 1}, 40, 8, {}))
      cs.add({"h5_" + name,
              {"eval", "--model", hf, "--data", [&] { const std::string d = cs.dir("h5"); put(d + "/t.h5", b); return d + "/t.h5"; }(), "--ctx", "16"},
              "t.h5", ""});
  }

  // 10. Recipes: YAML hazards. The model (--model, in the case's directory) does not exist, so a
  // recipe that parses exits 2 there.
  {
    const std::string good = "version: 1\nmodel: missing_model\nstages:\n  - quantize: {method: rtn, bits: 4, targets: [\"re:blk\\\\..*\"]}\ngates: {max_kl: 0.1}\n";
    const std::vector<std::pair<std::string, std::string>> recipes = {
        {"ok", good},
        {"mapkey", "? {a: 1}\n: 2\n"},
        {"seqkey", "? [a, b]\n: 2\nstages: []\n"},
        {"dupkey", good + "version: 1\n"},
        {"seconddoc", good + "---\nversion: 1\n"},
        {"nan", "version: 1\nstages:\n  - quantize: {}\ngates: {max_kl: .nan}\n"},
        {"inf", "version: 1\nstages:\n  - quantize: {damp: .inf, method: gptq}\n"},
        {"deep", "stages: " + std::string(100000, '[') + "\n"},
        {"deepmap", "stages: " + [] { std::string s; for (int i = 0; i < 5000; ++i) s += "{a: "; return s; }() + "\n"},
        {"cycle", "stages: &a [*a]\n"},
        {"regexdeep", "stages:\n  - quantize: {targets: \"re:" + std::string(3000, '(') + "a" + std::string(3000, ')') + "\"}\n"},
        {"regexnest", "stages:\n  - quantize: {targets: \"re:" + std::string(400, '(') + "a" + std::string(400, ')') + "\"}\n"},
        {"regexbomb", "stages:\n  - quantize: {targets: \"re:(.*)*(.*)*(.*)*(.*)*(.*)*x\"}\n"},
        {"hugeint", "stages:\n  - quantize: {bits: 99999999999999999999999}\n"},
        {"negseed", "data:\n  calibration: {path: a.txt, seed: -1}\nstages:\n  - quantize: {}\n"},
        {"binary", std::string("\x00\xff\xfe key: \x01", 10)},
        {"tabs", "stages:\n\t- quantize: {}\n"},
        {"anchors", "x: &a {bits: 4}\nstages:\n  - quantize: *a\n"},
        {"merge", "stages:\n  - quantize: {<<: {bits: 4}}\n"},
        {"longkey", std::string(100000, 'k') + ": 1\n"},
        {"longstage", "stages:\n  - " + std::string(100000, 'q') + ": {}\n"},
        {"empty", ""},
        {"scalar", "42\n"},
    };
    for (const auto& [name, y] : recipes) {
      const std::string d = cs.dir("recipe_" + name);
      put(d + "/r.yaml", y);
      cs.add({"recipe_" + name, {"run", d + "/r.yaml", "--model", d + "/missing_model"}, d, d});
    }
    for (const auto& [name, b] : binary_mutants(good, {0, 10, 30, 60, good.size() - 2}, 30, 9, {})) {
      const std::string d = cs.dir("recipe_m");
      put(d + "/r.yaml", b);
      cs.add({"recipe_" + name, {"run", d + "/r.yaml", "--model", d + "/missing_model"}, d, d});
    }
  }

  // ~1,500 mutants were made; each costs a process start (LibTorch: ~0.6 s of CPU), so the test
  // runs every named hostile case and a seeded sample of the rest of each kind, ~530 in all.
  const std::map<std::string, size_t> quota = {
      {"cfg", 40},  {"st", 50},      {"tokjson", 35}, {"tokbin", 35}, {"spm", 35}, {"l2c", 45},
      {"slm", 70},  {"slmspec", 30}, {"slmfmt", 25},  {"h5", 35},     {"recipe", 20}};
  const auto always = [](const std::string& n) {
    for (const char* k : {"num_hidden_layers", "_deep", "_dup_", "dtype_", "claim", "nan", "generate", "eval"})
      if (n.find(k) != std::string::npos) return true;
    return n.rfind("recipe_", 0) == 0 && n.rfind("recipe_trunc", 0) != 0 && n.rfind("recipe_flip", 0) != 0;
  };
  std::map<std::string, std::vector<Case>> by_kind;
  for (Case& c : cs.all()) by_kind[c.name.substr(0, c.name.find('_'))].push_back(std::move(c));
  std::vector<Case> cases;
  size_t made = 0;
  std::mt19937 pick(2026);
  for (auto& [kind, list] : by_kind) {
    made += list.size();
    std::shuffle(list.begin(), list.end(), pick);
    size_t sampled = 0;
    for (Case& c : list) {
      if (always(c.name)) {
        cases.push_back(std::move(c));
      } else if (quota.count(kind) && sampled < quota.at(kind)) {
        ++sampled;
        cases.push_back(std::move(c));
      }
    }
  }
  // Every case gets a directory for its outputs.
  for (Case& c : cases)
    if (c.dir.empty()) c.dir = cs.dir("out");
  ASSERT_GE(cases.size(), 500u) << "of " << made;
  std::vector<Outcome> outcomes(cases.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&] {
      for (size_t i = next++; i < cases.size(); i = next++) outcomes[i] = run(cases[i]);
    });
  for (std::thread& t : workers) t.join();

  int exit0 = 0, exit2 = 0;
  double max_s = 0;
  long max_rss = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Outcome& o = outcomes[i];
    max_s = std::max(max_s, o.seconds);
    max_rss = std::max(max_rss, o.rss_mb);
    EXPECT_TRUE(o.code == 0 || o.code == 2) << c.name << ": exit " << o.code << ", stderr: " << o.err.substr(0, 500);
    EXPECT_LT(o.rss_mb, kMaxRssMb) << c.name;
    if (o.code == 0) ++exit0;
    if (o.code != 2) continue;
    ++exit2;
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << c.name << ": " << o.err.substr(0, 500);
    EXPECT_EQ(o.err.rfind("slmc: error: ", 0), 0u) << c.name << ": " << o.err.substr(0, 500);
    EXPECT_NE(o.err.find(c.names), std::string::npos) << c.name << ": should name " << c.names << ": " << o.err.substr(0, 500);
    EXPECT_LT(o.err.size(), 2000u) << c.name << ": message not bounded";
  }
  std::printf("[untrusted files] %zu cases (sampled from %zu mutants): %d exit 0, %d exit 2; slowest %.2f s, peak RSS %ld MB\n",
              cases.size(), made, exit0, exit2, max_s, max_rss);
}

}  // namespace
}  // namespace slmc
