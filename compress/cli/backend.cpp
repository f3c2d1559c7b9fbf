#include "compress/cli/backend.h"

#include "compress/cli/commands.h"
#include "compress/core/error.h"
#include "compress/eval/sources.h"
#include "export/format/gguf.h"
#include "export/format/slm_format.h"

namespace slmc::cli {

Backend resolve_backend(const std::string& flag, const std::string& model_path) {
  // The runtime runs exported files: .slm artifacts and GGUF files.
  const bool exported = format::is_slm_file(model_path) || format::is_gguf_file(model_path);
  if (flag == "torch") return Backend::kTorch;
  if (flag == "runtime") {
    SLMC_CHECK(exported, model_path, ": --backend runtime runs .slm artifacts and GGUF files; "
               "make one with `slmc export --model ", model_path, " --format slm -o model.slm`");
    return Backend::kRuntime;
  }
  return exported ? Backend::kRuntime : Backend::kTorch;
}

RuntimeBackend::RuntimeBackend(const std::string& path)
    : pool(std::make_unique<runtime::ThreadPool>(global_options().threads)),
      model(std::make_unique<runtime::Model>(path)) {}

LoadedBackend::LoadedBackend(const std::string& flag, const std::string& model_path) {
  if (resolve_backend(flag, model_path) == Backend::kRuntime) {
    rt = std::make_unique<RuntimeBackend>(model_path);
  } else {
    torch = std::make_unique<LoadedModel>(load_model(model_path));
  }
}

LogitsSource runtime_logits_source(RuntimeBackend& rt, int64_t ctx) {
  return slmc::runtime_logits_source(*rt.model, *rt.pool, ctx);
}

}  // namespace slmc::cli
