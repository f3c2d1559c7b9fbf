// Helpers shared by the tests that drive the real `slmc` binary.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "compress/core/atomic_file.h"
#include "compress/core/tensor_names.h"
#include "compress/io/model_loader.h"
#include "compress/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace slmc::clitest {

namespace fs = std::filesystem;
using slmc::testing::TempDir;

inline const std::string kData = SLMC_SHARED_DATA;
inline const std::string kStories = kData + "/models/stories260K/stories260K.bin";

struct Result {
  int code = -1;
  std::string out, err;
};

// Runs slmc with `args` (a shell-quoted string), capturing stdout, stderr and the exit status.
inline Result slmc(const std::string& args) {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() /
                       ("slmc_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  const std::string out = (dir / "out").string(), err = (dir / "err").string();
  const std::string cmd = std::string(SLMC_EXE) + " --threads 2 -q " + args + " >" + out + " 2>" + err;
  const int st = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove_all(dir);
  return r;
}

inline std::string q(const std::string& s) { return "'" + s + "'"; }

using slmc::testing::TempDir;

// A tiny random llama checkpoint with the byte tokenizer, written through slmc's own writer.
inline std::string make_tiny_model(const TempDir& dir, const std::string& name = "tiny") {
  ModelSpec s = make_uniform_spec(Family::kLlama, 258, 32, 2, 4, 2, 64, 64);
  s.bos_id = 256;
  s.eos_id = 257;
  TensorMap t;
  uint32_t state = 12345;
  for (const TensorDecl& d : expected_tensors(s)) {
    HostTensor h;
    h.shape = d.shape;
    h.data.resize(static_cast<size_t>(shape_numel(d.shape)));
    for (float& v : h.data) {
      state = state * 1664525u + 1013904223u;
      v = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
    t[d.name] = h;
  }
  const std::string path = dir.file(name);
  save_hf_model(path, s, t);
  write_byte_tokenizer_json(path + "/tokenizer.json");
  return path;
}

inline void expect_input_error(const Result& r, const std::string& must_contain) {
  EXPECT_EQ(r.code, 2) << "stderr: " << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << "stderr: " << r.err;
  // One line, no backtrace.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
  EXPECT_EQ(r.err.rfind("slmc: error: ", 0), 0u) << "stderr: " << r.err;
}

}  // namespace slmc::clitest
