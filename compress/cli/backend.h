// Choosing and driving an inference backend: the LibTorch model (any checkpoint, .slm included,
// dequantized) or the standalone runtime (an .slm artifact or a GGUF file, run by the CPU kernels).
#pragma once

#include <memory>
#include <string>

#include "compress/core/windows.h"
#include "compress/io/model_loader.h"
#include "export/runtime/model.h"

namespace slmc::cli {

enum class Backend { kTorch, kRuntime };

// "auto" picks the runtime for .slm files and LibTorch otherwise; "runtime" on anything but an
// .slm file is an error that says how to make one.
Backend resolve_backend(const std::string& flag, const std::string& model_path);

// The runtime model with its thread pool (global --threads).
struct RuntimeBackend {
  explicit RuntimeBackend(const std::string& path);
  std::unique_ptr<runtime::ThreadPool> pool;
  std::unique_ptr<runtime::Model> model;
};

// The model loaded for the backend `flag` picks: exactly one of `rt` and `torch` is set.
struct LoadedBackend {
  LoadedBackend(const std::string& flag, const std::string& model_path);
  const ModelSpec& spec() const { return rt ? rt->model->spec() : torch->spec; }
  std::unique_ptr<RuntimeBackend> rt;
  std::unique_ptr<LoadedModel> torch;
};

// Evaluation windows through a runtime session of `ctx` positions (reset per window).
LogitsSource runtime_logits_source(RuntimeBackend& rt, int64_t ctx);

}  // namespace slmc::cli
