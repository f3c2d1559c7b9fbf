// Training as a library call, shared by `slmc train` and `slmc demo`.
#pragma once

#include <string>

#include "compress/cli/train_config.h"

namespace slmc::cli {

struct TrainRun {
  TrainResult result;
  ModelSpec spec;
  int64_t train_tokens = 0, val_tokens = 0;
};

// Tokenizes `data` (and `val_data`, or the config's held-out tail), trains from scratch and writes
// a Hugging Face-style directory to `out`: config.json, model.safetensors and the tokenizer.
TrainRun train_to_dir(const TrainConfig& cfg, const std::string& config_origin,
                      const std::string& data, const std::string& val_data,
                      const std::string& out);

}  // namespace slmc::cli
