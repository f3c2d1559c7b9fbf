// The stage cache of `slmc run`: each stage's output (the CompressedModel: spec, fp32 tensors,
// packed codec tensors, sparsity masks) and its PassReport, in a folder named by a key of
// everything that determines it: the previous stage's key (or the model's hash), the pass and
// its resolved options, the calibration data's hash and draw when the stage uses it, and the
// slmc version. A folder is written under a temporary name and renamed when complete, so a run
// killed mid-stage leaves no entry and the next run resumes after the last completed stage.
#pragma once

#include <string>

#include "compress/recipe/pass.h"

namespace slmc {

// sha256 over the parts, each length-prefixed (no two part lists collide).
std::string cache_key(const std::vector<std::string>& parts);

// Whether DIR holds a complete entry.
bool stage_cached(const std::string& dir);

// Writes `m` (not its tokenizer) and `rep` into DIR atomically (a temporary folder beside it,
// renamed). An existing DIR is left as it is (same key, same content).
void save_stage(const std::string& dir, const CompressedModel& m, const PassReport& rep);

// Reads an entry's report and, when `m` is not null, its model state into *m (the tokenizer, the
// path and format of the original are kept). Throws slmc::Error naming the file and field if the
// entry is damaged.
PassReport load_stage(const std::string& dir, CompressedModel* m);

}  // namespace slmc
