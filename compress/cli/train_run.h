// Training as a library call, shared by `slmc train` and `slmc demo`.
#pragma once

#include <string>
#include <vector>

#include "compress/cli/train_config.h"

namespace slmc::cli {

// Moves the last `fraction` of `train` (rounded down) into a held-out stream, as `slmc train` and
// `slmc distill` do when no held-out file is given.
std::vector<int32_t> split_heldout(std::vector<int32_t>& train, double fraction);

struct TrainRun {
  TrainResult result;
  ModelSpec spec;
  int64_t train_tokens = 0, val_tokens = 0;
};

// Tokenizes `data` (and `val_data`, or the config's held-out tail), trains from scratch and writes
// a Hugging Face-style directory to `out`: config.json, model.safetensors and the tokenizer. With
// checkpoint_every > 0, checkpoints go to `out`/checkpoint.safetensors; `resume` continues from
// it bit for bit.
TrainRun train_to_dir(const TrainConfig& cfg, const std::string& config_origin,
                      const std::string& data, const std::string& val_data,
                      const std::string& out, bool resume = false);

}  // namespace slmc::cli
